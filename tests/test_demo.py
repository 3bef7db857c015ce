"""The demo's helpers (cheap): choosing and splitting the held-out minerals, extracting
spectrum files from a tar.xz into a cache folder, and the CLI's handling of a missing data
root. The full demo (``make demo``, minutes) is measured in docs/benchmarks.md."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from benchmarks.demo import DemoError, _replay_line, choose_new_minerals, main
from benchmarks.spectra import extract_spectra
from ramanedge.errors import DataError


def _held():
    # mineral A: 3 samples (2+2+3 spectra), B: 2 samples (3+1), C: 1 sample (5), D: 2 (1+1)
    rows = ([("A", "R1")] * 2 + [("A", "R2")] * 2 + [("A", "R3")] * 3
            + [("B", "R4")] * 3 + [("B", "R5")] + [("C", "R6")] * 5
            + [("D", "R7"), ("D", "R8")])
    names = np.array([r[0] for r in rows])
    sids = np.array([r[1] for r in rows])
    return names, sids


def test_new_minerals_split_by_sample():
    names, sids = _held()
    picked = choose_new_minerals(names, sids, 5, min_teach=3, min_check=1)
    # C has one sample only (nothing left to check), D too few spectra to teach
    assert [p["mineral"] for p in picked] == ["A", "B"]
    for p in picked:
        assert set(sids[p["teach"]]).isdisjoint(sids[p["check"]])
        assert set(names[p["teach"] + p["check"]]) == {p["mineral"]}
        assert len(p["teach"]) >= 3
        assert sorted(p["teach"] + p["check"]) == list(np.flatnonzero(names == p["mineral"]))
    a = picked[0]
    assert a["teach_samples"] == ["R1", "R2"] and a["check_samples"] == ["R3"]
    # with 2 checking spectra required, B (1 left) is no longer eligible
    assert [p["mineral"] for p in choose_new_minerals(names, sids, 5, min_check=2)] == ["A"]


def test_new_minerals_random_draw_and_named():
    names = np.repeat([f"M{i:02d}" for i in range(20)], 6)
    sids = np.array([f"S{i // 2}" for i in range(names.size)])  # 3 samples per mineral
    draws = {tuple(p["mineral"] for p in choose_new_minerals(names, sids, 2, seed=s))
             for s in range(6)}
    assert len(draws) > 1  # the seed decides, not the order of the names
    one = choose_new_minerals(names, sids, 2, seed=3)
    assert one == choose_new_minerals(names, sids, 2, seed=3)
    named = choose_new_minerals(names, sids, 2, wanted=["M05", "M11"])
    assert [p["mineral"] for p in named] == ["M05", "M11"]
    with pytest.raises(DemoError, match="Quartz"):
        choose_new_minerals(names, sids, 2, wanted=["M05", "Quartz"])


def _tar_xz(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:xz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_extract_spectra_from_tar_xz(tmp_path):
    root = tmp_path / "data"
    (root / "LR-Raman").mkdir(parents=True)
    members = {f"LR-Raman/raw/S{i}.txt": f"##NAMES=S{i}\n100, {i}\n".encode() for i in range(4)}
    _tar_xz(root / "LR-Raman" / "LR-Raman.tar.xz", members)
    want = ["LR-Raman/raw/S2.txt", "LR-Raman/raw/S0.txt"]
    cache = tmp_path / "cache"
    lines = []
    got = extract_spectra(root, want, cache, progress=lines.append)
    assert got == [cache / w for w in want]
    assert [p.read_bytes() for p in got] == [members[w] for w in want]
    assert sorted(p.name for p in (cache / "LR-Raman" / "raw").iterdir()) == ["S0.txt", "S2.txt"]
    assert len(lines) == 1 and "2 spectrum files" in lines[0]
    # cached: no archive needed any more
    (root / "LR-Raman" / "LR-Raman.tar.xz").unlink()
    assert extract_spectra(root, want, cache, progress=lines.append) == got
    assert len(lines) == 1
    with pytest.raises(DataError, match="not found"):
        extract_spectra(root, ["LR-Raman/raw/S3.txt"], cache)
    with pytest.raises(DataError, match="relative"):
        extract_spectra(root, ["../outside.txt"], cache)
    assert not (tmp_path / "outside.txt").exists()


def test_replay_progress_filter():
    assert _replay_line("replaying 236 of 236 test spectra (raw) at 115200 baud")
    assert _replay_line("  20/236 spectra")
    assert not _replay_line('  "counts": {')
    assert not _replay_line("{")
    assert not _replay_line("    12.5,")


def test_demo_without_data_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "RRUFF data not found" in err and "Traceback" not in err


def test_gate_failure_is_recognised_in_quantize_output():
    from benchmarks.demo import _GATE_FAILED

    assert _GATE_FAILED.search("error: int8 parity gate failed on 236 test spectra: ...")
    assert _GATE_FAILED.search("error: int8 parity gate (float head on int8 features) failed "
                               "on 236 test spectra: argmax agreement 97.46% < 98%")
    assert not _GATE_FAILED.search("wrote models/x: ... gate on head: passed")
    assert not _GATE_FAILED.search("error: run folder runs/x does not exist")
