"""Peak memory and cold start of edge-only processes (fresh subprocesses, no TensorFlow).

Two measurements, both on real spectrum files:

* :func:`probe_runs`: ``python -m benchmarks.edge_probe`` (imports only ``edge_runtime``)
  started ``repeats`` times; cold start = process spawn -> first classification result
  (interpreter start-up + imports + artifact load and checks + first read/preprocess/invoke),
  with the in-process phases separately; peak RSS per run. Medians over the runs.
* :func:`classify_cli_run`: the user-facing ``ramanedge classify --model DIR FILES...`` on the
  same files; peak RSS and wall time.

Peak RSS is ``ru_maxrss`` from ``os.wait4`` of exactly that process, started through the
small launcher :mod:`benchmarks.launch` (see there why), cross-checked with the probe's own
``VmHWM``.

The file cache is warm (the files were read before); a truly cold disk is not measured.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import child_env, python


def _launch(cmd: Sequence[str], env: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    """Run ``cmd`` through :mod:`benchmarks.launch` (exact peak RSS, see there); returns
    (launcher result, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="ramanedge-bench-") as d:
        res_path = Path(d) / "launch.json"
        proc = subprocess.run([python(), "-m", "benchmarks.launch", str(res_path), *cmd],
                              capture_output=True, env=env, stdin=subprocess.DEVNULL)
        try:
            res = json.loads(res_path.read_text())
        except (OSError, ValueError):
            res = {"returncode": proc.returncode, "peak_rss_kib": None}
    return res, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def probe_runs(model: Path, files: Sequence[Path], *, repeats: int = 5, threads: int = 1,
               unknown: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the edge-only probe ``repeats`` times; medians and every run's numbers.

    ``unknown=False`` runs it without the artifact's unknown-mineral rule (to show its cost).
    """
    runs = []
    env = child_env(threads)
    for r in range(repeats):
        cmd = [python(), "-m", "benchmarks.edge_probe", "--model", str(model),
               "--threads", str(threads), *([] if unknown else ["--no-unknown"]),
               *map(str, files)]
        lr, out, err = _launch(cmd, env)
        if lr["returncode"] != 0:
            raise RuntimeError(f"edge probe failed (exit {lr['returncode']}): "
                               f"{err.strip()[-800:]}")
        res = json.loads(out.strip().splitlines()[-1])
        res["spawn_to_first_s"] = res["t_first_result_wall"] - lr["t_spawn"]
        res["process_wall_s"] = lr["wall_s"]
        rss_kib = int(lr["peak_rss_kib"])
        res["wait4_peak_rss_kib"] = rss_kib
        runs.append(res)
        log(f"    probe {r + 1}/{repeats}: cold start {res['spawn_to_first_s']:.2f} s "
            f"(import {res['import_s']:.2f}, load {res['load_s']:.2f}, first "
            f"{1e3 * res['first_inference_s']:.0f} ms), peak RSS "
            f"{rss_kib / 1024:.1f} MiB, {res['n_classified']} spectra")
    keys = ("spawn_to_first_s", "cold_start_in_process_s", "import_s", "load_s",
            "first_inference_s", "process_wall_s", "per_spectrum_rest_ms")
    med = {k: float(np.median([r[k] for r in runs])) for k in keys}
    rss = [r["wait4_peak_rss_kib"] / 1024 for r in runs]
    heavy = sorted({m for r in runs for m in r["heavy_modules"]})
    phases = {k: float(np.median([r["rss_kib"][k] for r in runs])) / 1024
              for k in runs[0]["rss_kib"]}
    return {"repeats": repeats, "threads": threads, "n_files": len(files), "median": med,
            "peak_rss_mib": {"median": float(np.median(rss)), "max": float(np.max(rss))},
            "peak_rss_after_first_mib": float(np.median(
                [r["peak_rss_after_first_kib"] / 1024 for r in runs])),
            "heavy_modules_imported": heavy, "rss_phases_mib": phases,
            "unknown_rule": runs[0]["unknown_rule"], "runs": runs}


def classify_cli_run(model: Path, files: Sequence[Path], *, repeats: int = 3,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """``ramanedge classify --model MODEL --json FILES...`` in fresh processes (``repeats``
    times): peak RSS (``wait4``), wall time and the number of files classified."""
    env = child_env(1)
    cmd = [python(), "-m", "ramanedge.cli", "classify", "--model", str(model), "--json",
           "--base-head", *map(str, files)]
    walls, rss, n_ok = [], [], 0
    for r in range(repeats):
        lr, out, err = _launch(cmd, env)
        if lr["returncode"] != 0:
            raise RuntimeError(f"ramanedge classify failed (exit {lr['returncode']}): "
                               f"{err.strip()[-800:]}")
        wall, rss_kib = float(lr["wall_s"]), int(lr["peak_rss_kib"])
        recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        n_ok = sum(1 for rec in recs if not rec.get("error"))
        walls.append(wall)
        rss.append(rss_kib / 1024)
        log(f"    ramanedge classify {r + 1}/{repeats}: {n_ok} files in {wall:.2f} s, "
            f"peak RSS {rss_kib / 1024:.1f} MiB")
    return {"command": "ramanedge classify --model MODEL --json --base-head FILES...",
            "repeats": repeats, "n_files": len(files), "n_classified": n_ok,
            "wall_s_median": float(np.median(walls)),
            "peak_rss_mib": {"median": float(np.median(rss)), "max": float(np.max(rss))}}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m benchmarks.memory --data ROOT --split-file SPLIT --model DIR [--model DIR]``:
    :func:`classify_cli_run` of each artifact on the first ``--n`` test spectra of the split
    (extracted to files once), one after the other; the JSON to ``--out`` when given."""
    import argparse
    import time

    from benchmarks.spectra import extract_spectra
    from ramanedge.dataset import build_dataset
    from ramanedge.errors import RamanEdgeError
    from ramanedge.machine import cpu_model
    from ramanedge.splits import read_split_csv

    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                 description="Peak RSS of 'ramanedge classify' per artifact.")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--model", type=Path, action="append", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.n < 1 or a.repeats < 1:
        ap.error(f"--n and --repeats must be >= 1, got {a.n} and {a.repeats}")
    try:  # the project's errors (no data, no split file, ...) end it with one line
        ds = build_dataset(a.data, "rruff-raw", min_spectra=8)
        split = read_split_csv(a.split_file, ds)
        rel = [p for p, s in zip(ds.paths, split, strict=True) if s == "test"][:a.n]
        files = extract_spectra(a.data, rel)
    except RamanEdgeError as e:
        raise SystemExit(f"error: {e}") from None
    res = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu_model(),
           "models": {str(m): classify_cli_run(m, files, repeats=a.repeats) for m in a.model}}
    for m, r in res["models"].items():
        print(f"{m}: peak RSS {r['peak_rss_mib']['median']:.1f} MiB (max "
              f"{r['peak_rss_mib']['max']:.1f}), {r['n_classified']}/{r['n_files']} classified")
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":  # pragma: no cover
    main()
