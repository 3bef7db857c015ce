"""Cost of a growing onboard head store on the device (issue 16, item 8).

Benchmark (not a test)::

    python -m benchmarks.storescale --model DIR --samples 0,2566,10000 \
        --work bench_out/storescale [--adds 20] [--boots 3]

For each sample count N (ascending, one store growing): the device store's head store is
filled to N labelled samples (synthetic spectra through the artifact's own int8 model, the
same ``HeadStore.add_sample`` the device uses), then ``ramanedge device serve --port pty``
is started ``--boots`` times and the time from spawn to its "serving" line is taken (boot:
Python start, model load, head store open); over the link (unpaced) ``--adds`` new
HEAD_ADDs are timed on the host (request sent -> answer) and INFO's ``rss_bytes`` /
``peak_rss_bytes`` are read after them. TensorFlow-free. The last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO, child_env, stats_ms
from ramanedge.machine import machine_info


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _spectra(n: int, seed: int, points: int) -> np.ndarray:
    """``n`` distinct max-normalised synthetic spectra (three peaks + noise)."""
    rng = np.random.default_rng(seed)
    k = np.arange(points, dtype=np.float64)
    out = np.empty((n, points), np.float32)
    for i in range(n):
        s = sum(rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((k - rng.uniform(50, points - 50))
                                                       / rng.uniform(3, 9)) ** 2)
                for _ in range(3))
        s = s + 0.05 + rng.normal(0, 0.01, points)
        out[i] = s / s.max()
    return out


def fill(store_root: Path, artifact: Path, n_total: int, *, seed: int = 0) -> float:
    """Add samples until the head store holds ``n_total``; returns seconds spent."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.headstore import HeadStore
    from edge_runtime.interpreter import make_interpreter

    art = load_artifact(artifact)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    store = HeadStore.open(art, store_root, create=True)
    have = sum(store.sample_counts().values())
    t0 = time.perf_counter()
    if n_total > have:
        X = _spectra(n_total - have, seed + have, art.grid.n_points)
        for i, g in enumerate(X):
            store.add_sample(f"Mineral{(have + i) % 50:02d}", g, clf.features_int8(g),
                             source="storescale")
    return time.perf_counter() - t0


def _serve(model: Path, store: Path) -> tuple[subprocess.Popen, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ramanedge.cli", "device", "serve",
                             "--port", "pty", "--model", str(model), "--store", str(store),
                             "--cpus", "1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, cwd=REPO, env=child_env(1))
    assert proc.stderr is not None
    line = ""
    while "serving" not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"device did not start: {proc.stderr.read()}")
    return proc, line.split(" on ")[1].split(" ")[0], time.perf_counter() - t0


def measure(model: Path, store: Path, *, adds: int, boots: int, seed: int) -> dict[str, Any]:
    """Boot times, HEAD_ADD latencies and device memory for the store as it is now."""
    import signal

    from device_sim.host import HostClient, HostConfig
    from device_sim.transport import Link, open_port
    from edge_runtime.artifact import load_artifact

    boot_s = []
    for _ in range(boots - 1):
        proc, _, dt = _serve(model, store)
        boot_s.append(dt)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    proc, path, dt = _serve(model, store)
    boot_s.append(dt)
    try:
        port = open_port(path)
        host = HostClient(Link(port), HostConfig(deadline=120))
        host.wait_ready(30)
        n_points = load_artifact(model).grid.n_points
        X = _spectra(adds, 10_000_000 + seed, n_points)
        add_s = []
        for i, g in enumerate(X):
            t0 = time.perf_counter()
            out = host.head_add(f"Newite{i % 3}", g)
            add_s.append(time.perf_counter() - t0)
            assert out["created"], out
        info = host.info()
        port.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return {"boot": stats_ms(boot_s), "head_add": stats_ms(add_s),
            "n_samples_after": out["n_samples"], "rss_mib": info["rss_bytes"] / 2**20,
            "peak_rss_mib": info["peak_rss_bytes"] / 2**20}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="int8 artifact folder")
    ap.add_argument("--samples", default="0,2566,10000", help="sample counts, ascending")
    ap.add_argument("--work", type=Path, default=REPO / "bench_out" / "storescale")
    ap.add_argument("--adds", type=int, default=20)
    ap.add_argument("--boots", type=int, default=3)
    a = ap.parse_args(argv)
    counts = sorted(int(s) for s in a.samples.split(","))
    if a.work.exists():
        shutil.rmtree(a.work)
    store = a.work / "store"
    rows = []
    for n in counts:
        # the first serve creates the model store; its head store is STORE/headstore
        filled = fill(store / "headstore", a.model, n)
        _log(f"N={n}: filled in {filled:.1f} s; measuring")
        row = {"n_samples": n, **measure(a.model, store, adds=a.adds, boots=a.boots,
                                         seed=n)}
        _log(f"  boot {row['boot']['median']:.0f} ms, HEAD_ADD {row['head_add']['median']:.1f} "
             f"ms (p90 {row['head_add']['p90']:.1f}), RSS {row['rss_mib']:.1f} MiB "
             f"(peak {row['peak_rss_mib']:.1f})")
        rows.append(row)
    print(json.dumps({"machine": machine_info(), "model": str(a.model), "rows": rows}))


if __name__ == "__main__":
    main()
