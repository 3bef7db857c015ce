"""``ramanedge classify`` end to end: real RRUFF files, formats, JSON schema, per-file errors,
exit codes, and the rover-side import rule (no TensorFlow) in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ramanedge.grid import GRID
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_rruff(shared_data_root, tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """(LR-Raman RAW files covering the grid, oriented-subset RAW files that do not).

    The LR files are streamed out of the shared ``LR-Raman.tar.xz`` (first 4 covering
    members) into a temporary folder, byte for byte; the oriented files are used in place.
    """
    from ramanedge.grid import covers
    from ramanedge.io import iter_spectrum_files, parse_spectrum

    out = tmp_path_factory.mktemp("rruff_lr")
    good: list[Path] = []
    archive = shared_data_root / "LR-Raman" / "LR-Raman.tar.xz"
    for sf in iter_spectrum_files(archive, accept=lambda p: "/raw/" in p):
        if covers(parse_spectrum(sf.data, sf.path).x):
            p = out / sf.path.rsplit("/", 1)[-1]
            p.write_bytes(sf.data)
            good.append(p)
        if len(good) == 4:
            break
    oriented = sorted((shared_data_root / "excellent_oriented_subset" / "raw").glob("*.txt"))[:2]
    assert len(good) == 4 and len(oriented) == 2
    return good, oriented


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, synthetic_data) -> Path:
    """A folder of synthetic spectra in every format plus broken files."""
    d = tmp_path_factory.mktemp("mixed")
    X, _ = synthetic_data.part("test")
    x = np.linspace(150.0, 1650.0, 3000)
    np.savetxt(d / "a_columns.csv", np.c_[x, 900 * np.interp(x, GRID, X[0])], delimiter=",",
               header="wavenumber,intensity", comments="")
    np.save(d / "b_pair.npy", np.vstack([x, 50 * np.interp(x, GRID, X[1])]))
    with open(d / "c_rruff_like.txt", "w") as f:
        f.write("##NAMES=Testite\n##RRUFFID=R000000\n")
        for xi, yi in zip(x, np.interp(x, GRID, X[2]), strict=True):
            f.write(f"{xi:.3f}, {yi * 1e4:.2f}\n")
        f.write("##END=\n")
    (d / "d_empty.txt").write_bytes(b"")
    nan = np.c_[x, np.interp(x, GRID, X[3])]
    nan[100, 1] = np.nan
    np.savetxt(d / "e_nan.csv", nan, delimiter=",")
    np.savetxt(d / "f_short.csv", np.c_[np.linspace(400, 1000, 500), np.ones(500)],
               delimiter=",")  # 43% of the grid: below the default --min-coverage
    (d / "g_picture.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    np.savetxt(d / "h_flat.csv", np.c_[x, np.full(x.size, 37.0)], delimiter=",")  # dead detector
    (d / "notes.md").write_text("not a spectrum and not picked up from a folder\n")
    return d


@pytest.mark.realdata
def test_classify_real_rruff_files(capsys, tiny_artifact, real_rruff):
    good, oriented = real_rruff
    code, out, err = run_cli(capsys, "classify", "--model", tiny_artifact, "--top-k", "2",
                             *good, *oriented)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(good) + len(oriented)  # one result line per spectrum
    labels = json.loads((tiny_artifact / "manifest.json").read_text())["labels"]
    for p, line in zip([*good, *oriented], lines, strict=True):
        assert line.startswith(f"{p}: ")
        pairs = line.split(": ", 1)[1].split("  [")[0].split(", ")
        assert len(pairs) == 2 and all(pr.rsplit(" ", 1)[0] in labels for pr in pairs)
        # the oriented-subset files end near 1520 cm-1: padded, the covered share shown
        assert ("[covers" in line) == (p in oriented)
    assert f"classified {len(good) + len(oriented)} of {len(good) + len(oriented)}" in err
    # --coverage refuse: each partial file gets its own clear error line
    code, out, err = run_cli(capsys, "classify", "--model", tiny_artifact, "--coverage",
                             "refuse", *good, *oriented)
    assert code == 0 and len(out.strip().splitlines()) == len(good)
    for p in oriented:
        assert f"{p}: error: spectrum covers" in err and "200-1591" in err
    assert f"classified {len(good)} of {len(good) + len(oriented)} files" in err
    assert "Traceback" not in err
    # a minimum coverage only means something when padding: asked with refuse, a usage error
    code, out, err = run_cli(capsys, "classify", "--model", tiny_artifact, "--coverage",
                             "refuse", "--min-coverage", "0.5", *good)
    assert code == 2 and out == "" and "--min-coverage applies to --coverage pad" in err
    assert "Traceback" not in err


@pytest.mark.realdata
def test_json_lines_schema(capsys, tiny_artifact, real_rruff):
    good, oriented = real_rruff
    code, out, _ = run_cli(capsys, "classify", "--model", tiny_artifact, "--json",
                           "--top-k", "3", good[0], oriented[0], good[1])
    assert code == 0
    recs = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["path"] for r in recs] == [str(good[0]), str(oriented[0]), str(good[1])]
    for r in recs:
        assert {"path", "top", "unknown"} <= set(r) and "error" not in r
        assert isinstance(r["unknown"], bool)
        assert len(r["top"]) == 3
        assert all(set(t) == {"label", "prob"} and 0 <= t["prob"] <= 1 for t in r["top"])
        assert [t["prob"] for t in r["top"]] == sorted((t["prob"] for t in r["top"]),
                                                       reverse=True)
    assert 0.9 < recs[1]["coverage"] < 1.0 and len(recs[1]["top"]) == 3  # padded
    assert recs[0]["coverage"] == recs[2]["coverage"] == 1.0


def test_formats_folder_and_per_file_errors(capsys, tiny_artifact, mixed_folder,
                                            synthetic_data):
    code, out, _ = run_cli(capsys, "classify", "--model", tiny_artifact, "--json",
                           mixed_folder, mixed_folder / "missing.csv")
    assert code == 0
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.strip().splitlines())}
    assert "notes.md" not in recs  # folders contribute spectrum files only
    _, y = synthetic_data.part("test")
    for name, i in (("a_columns.csv", 0), ("b_pair.npy", 1), ("c_rruff_like.txt", 2)):
        assert "error" not in recs[name], recs[name]
        assert recs[name]["top"][0]["label"] == synthetic_data.labels[y[i]]
    assert "empty" in recs["d_empty.txt"]["error"]
    assert "NaN" in recs["e_nan.csv"]["error"]
    assert "43% of the model's 200-1591" in recs["f_short.csv"]["error"]
    assert "not a spectrum" in recs["g_picture.txt"]["error"]
    assert "spectrum is flat on the model grid" in recs["h_flat.csv"]["error"]
    assert "no such file" in recs["missing.csv"]["error"]


def test_exit_codes(capsys, tiny_artifact, mixed_folder, tmp_path):
    code, _, err = run_cli(capsys, "classify", "--model", tiny_artifact,
                           mixed_folder / "d_empty.txt", mixed_folder / "e_nan.csv")
    assert code == 1 and "classified 0 of 2" in err  # every file failed
    code, _, err = run_cli(capsys, "classify", "--model", tmp_path / "nope",
                           mixed_folder / "a_columns.csv")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    code, _, err = run_cli(capsys, "classify", "--model", tiny_artifact, "--edgetpu",
                           mixed_folder / "a_columns.csv")
    assert code == 2 and "libedgetpu" in err and len(err.strip().splitlines()) <= 2


def test_rover_side_never_imports_tensorflow(artifact_copy, mixed_folder, tmp_path):
    """Fresh interpreter: import every edge_runtime module, classify and retrain through the
    CLI, then check that no TensorFlow/Keras/trainer/quantize module was loaded."""
    script = f"""
import importlib, pkgutil, sys
import edge_runtime
mods = [m.name for m in pkgutil.iter_modules(edge_runtime.__path__)]
assert {{"interpreter", "artifact", "classify", "ood", "head", "headstore", "cli"}} <= set(mods)
for name in mods:
    importlib.import_module("edge_runtime." + name)
from ramanedge.cli import main
def run(*a):
    try:
        main(list(a))
    except SystemExit as e:
        assert not e.code, (a, e.code)
m, f = {str(artifact_copy)!r}, {str(mixed_folder / "a_columns.csv")!r}
run("classify", "--model", m, "--json", f)
run("head", "add", "--model", m, "--label", "Newite", {str(mixed_folder / "b_pair.npy")!r})
run("head", "retrain", "--model", m)
run("head", "list", "--model", m)
run("classify", "--model", m, f)
bad = sorted(n for n in sys.modules
             if n.split(".")[0] in ("tensorflow", "keras", "tf_keras", "trainer", "quantize"))
print("FORBIDDEN:", bad)
sys.exit(1 if bad else 0)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FORBIDDEN: []" in r.stdout
    assert '"top"' in r.stdout and "head v0001 active" in r.stdout


def _special_files(folder: Path) -> dict[str, Path]:
    """Issue 16.6: inputs that used to abort a batch or exhaust memory."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 2)))
    header = buf.getvalue()[:128].replace(b"(3, 2), ", b"(10**12,2),".replace(b"10**12",
                                                                              b"1" + b"0" * 12))
    (folder / "huge_header.npy").write_bytes(header.ljust(193, b"\0"))
    os.mkfifo(folder / "fifo.csv")
    big = folder / "big.csv"
    with open(big, "wb") as f:
        f.truncate(400_000)
    return {"huge_header.npy": folder / "huge_header.npy", "fifo.csv": folder / "fifo.csv",
            "zero": Path("/dev/zero"), "big.csv": big}


def test_special_files_are_one_line_errors_and_the_batch_goes_on(capsys, tiny_artifact,
                                                                 mixed_folder, tmp_path,
                                                                 monkeypatch):
    bad = _special_files(tmp_path)
    limit = 300_000
    assert (mixed_folder / "a_columns.csv").stat().st_size < limit
    monkeypatch.setenv("RAMANEDGE_MAX_INPUT_BYTES", str(limit))
    code, out, err = run_cli(capsys, "classify", "--model", tiny_artifact, "--json",
                             *bad.values(), mixed_folder / "a_columns.csv")
    assert code == 0 and "Traceback" not in err
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.strip().splitlines())}
    assert "header claims shape (1000000000000, 2)" in recs["huge_header.npy"]["error"]
    assert "not a regular file" in recs["fifo.csv"]["error"]
    assert "not a regular file" in recs["zero"]["error"]
    assert "over the 300,000-byte limit" in recs["big.csv"]["error"]
    assert "error" not in recs["a_columns.csv"]
    # the same files through head add: one error line each, the good file stored
    code, out, err = run_cli(capsys, "head", "add", "--model", tiny_artifact, "--store",
                             tmp_path / "hs", "--label", "newite", *bad.values(),
                             mixed_folder / "a_columns.csv")
    assert "Traceback" not in err and "stored as sample 000001" in out
    assert sum(ln.startswith("error") or "error:" in ln for ln in err.splitlines()) >= 4


def test_runtime_log_lines_stay_out_of_the_terminal_unless_verbose(tiny_artifact,
                                                                   mixed_folder):
    """Issue 13.4: LiteRT's 'INFO: Created TensorFlow Lite XNNPACK delegate' line."""
    argv = [sys.executable, "-m", "ramanedge.cli", "classify", "--model", str(tiny_artifact),
            str(mixed_folder / "a_columns.csv")]
    env = {k: v for k, v in os.environ.items() if k != "RAMANEDGE_VERBOSE"}
    quiet = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert quiet.returncode == 0 and "XNNPACK" not in quiet.stderr, quiet.stderr
    assert "classified 1 of 1" in quiet.stderr
    loud = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**env, "RAMANEDGE_VERBOSE": "1"})
    assert loud.returncode == 0 and "XNNPACK" in loud.stderr
