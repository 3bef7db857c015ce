"""``ramanedge data build|split|info`` through ramanedge.cli.main: output and one-line errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/rruff"
CACHE = REPO / ".cache" / "ramanedge"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"RRUFF data not found at {DATA}")


def _synth_root(root: Path, minerals: int = 3, samples: int = 3) -> Path:
    raw = root / "LR-Raman" / "raw"
    raw.mkdir(parents=True)
    x = np.arange(100.0, 2000.0, 2.0)
    n = 0
    for m in range(minerals):
        for s in range(samples):
            for laser in ("532", "785"):
                n += 1
                y = 100 + 900 * np.exp(-0.5 * ((x - 300 - 200 * m) / 5) ** 2) + n
                text = f"##NAMES=Min{m}\n##RRUFFID=R{m}{s:05d}\n##RAMAN WAVELENGTH={laser}\n"
                text += "".join(f"{a}, {b}\n" for a, b in zip(x, y, strict=True))
                name = (f"Min{m}__R{m}{s:05d}__Broad_Scan__{laser}__0__unoriented__"
                        f"Raman_Data_Raw__{n}.txt")
                (raw / name).write_text(text)
    return root


def test_build_split_info_on_synthetic(tmp_path, capsys):
    root = _synth_root(tmp_path / "d")
    cache = str(tmp_path / "c")
    code, out, err = run_cli(capsys, "data", "build", "--data", str(root), "--min-spectra", "2",
                             "--cache", cache)
    assert code == 0, err
    assert "spectra       18" in out and "minerals      3" in out and "samples       9" in out
    assert "parsing" in err  # progress goes to stderr
    code, out, err = run_cli(capsys, "data", "build", "--data", str(root), "--cache", cache,
                             "--min-spectra", "2", "--json")
    s = json.loads(out)
    assert s["spectra"] == 18 and s["skipped"]["too_few_spectra"] == 0
    f = tmp_path / "split.csv"
    code, out, err = run_cli(capsys, "data", "split", "--data", str(root), "--cache", cache,
                             "--min-spectra", "2", "--kind", "grouped", "--seed", "1",
                             "--out", str(f))
    assert code == 0, err
    rows = f.read_text().splitlines()
    assert rows[0] == "path,split" and len(rows) == 19
    assert "train" in out and "sha256" in out
    # refusing to overwrite keeps the file intact
    before = f.read_bytes()
    code, _, err = run_cli(capsys, "data", "split", "--data", str(root), "--cache", cache,
                           "--min-spectra", "2", "--out", str(f))
    assert code == 2 and "--force" in err and f.read_bytes() == before
    code, out, err = run_cli(capsys, "data", "info", "--data", str(root), "--cache", cache,
                             "--min-spectra", "2", "--split", str(f), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["split"]["train"] + info["split"]["val"] + info["split"]["test"] == 18


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["data", "build", "--data", "{tmp}/missing"], "data folder"),
        (["data", "build", "--data", "{tmp}/empty.zip"], "no spectrum files"),
        (["data", "build", "--data", "{root}", "--min-spectra", "99"], "no mineral"),
        (["data", "build", "--data", "{root}", "--min-spectra", "1", "--mineral", "Quartz"],
         "not in rruff-raw"),
        (["data", "info", "--data", "{root}", "--min-spectra", "1", "--split", "{tmp}/bad.csv"],
         "not in the data set"),
        (["data", "info", "--file", "{tmp}/empty.zip"], "not a spectrum"),
        (["data", "info", "--file", "{tmp}/nope.txt"], "No such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, match):
    root = _synth_root(tmp_path / "d", minerals=2, samples=1)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    (tmp_path / "bad.csv").write_text("path,split\nLR-Raman/raw/nope.txt,train\n")
    argv = [a.format(tmp=tmp_path, root=root) for a in args] + ["--cache", str(tmp_path / "c")]
    if "--file" in args:
        argv = argv[:-2]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["data", "build", "--min-spectra", "abc"], "'abc' is not a valid integer"),
        (["data", "build", "--no-such-option"], "No such option '--no-such-option'"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, args, match):
    """A value click cannot parse, an unknown option or command: one line naming it and
    where the help is, exit 2 (no usage block above it)."""
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and match in err and "--help'" in err, err


def test_info_file_describes_one_spectrum(tmp_path, capsys):
    p = tmp_path / "s.csv"
    p.write_text("wavenumber,intensity\n100,1\n200,3\n300,2\n")
    code, out, err = run_cli(capsys, "data", "info", "--file", str(p), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["n_points"] == 3 and d["y_max"] == 3.0 and d["mineral"] is None


@needs_data
@pytest.mark.realdata
def test_build_real_rruff_raw(capsys):
    code, out, err = run_cli(capsys, "data", "build", "--data", str(DATA), "--name", "rruff-raw",
                             "--cache", str(CACHE), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["name"] == "rruff-raw" and s["min_spectra"] == 8
    assert s["spectra"] > 1000 and s["minerals"] > 50 and s["samples"] > 300
