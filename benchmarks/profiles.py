"""The device under constrained-hardware profiles (:mod:`device_sim.profiles`).

For each profile a real ``ramanedge device serve`` process is started by the replay with the
profile's cores, CPU share and address-space limit, and the test split is replayed to it
unpaced (back-to-back requests: the CPU share is what limits throughput) and paced at
115200 baud (the rover's link). Reported per profile: how the CPU share was enforced here,
latency and device compute (median / p95), spectra per second, the device's peak RSS, top-1,
and the board-equivalent compute estimate (host compute / share: a quota cannot slow a job
shorter than its quantum, see docs/benchmarks.md).

``--calibrate`` times the float MobileNet v1 1.0/224 TFLite model (one thread) on this
machine: the reference the profiles' shares are relative to (``REFERENCE_MS``).

    python -m benchmarks.profiles --model models/demo --data ../shared/data/rruff \\
        --split-file runs/demo/split.csv --out bench_out/profiles
    python -m benchmarks.profiles --calibrate
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ramanedge.machine import machine_info


def calibrate(runs: int = 40) -> float:
    """Median ms of the float MobileNet v1 1.0/224 TFLite model, one thread, on this host."""
    import keras
    import tensorflow as tf

    from edge_runtime.interpreter import make_interpreter

    model = keras.applications.MobileNet(weights=None, input_shape=(224, 224, 3), alpha=1.0)
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    it = make_interpreter(blob, num_threads=1)
    idx = it.get_input_details()[0]["index"]
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    times = []
    for _ in range(runs):
        it.set_tensor(idx, x)
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[5:]) * 1e3)


def run_profile(model: Path, items: list[Any], name: str, baud: int | None, limit: int
                ) -> dict[str, Any]:
    """One replay of ``limit`` spectra under profile ``name``; the figures that matter."""
    from device_sim.profiles import get_profile
    from device_sim.replay import ReplayConfig, replay

    prof = get_profile(name)
    rep = replay(items, ReplayConfig(model=model, baud=baud, limit=limit, profile=name))
    comp = rep["device_compute_ms"]
    return {"profile": name, "boards": prof.boards, "cpu_fraction": prof.cpu_fraction,
            "memory_mib": prof.memory_mib, "baud": baud,
            "cpu_limit": rep["device"]["cpu_limit"],
            "latency_p50_ms": rep["latency_ms"]["p50"], "latency_p95_ms": rep["latency_ms"]["p95"],
            "compute_p50_ms": comp["p50"], "compute_p95_ms": comp["p95"],
            "board_compute_estimate_ms": comp["p50"] / prof.cpu_fraction,
            "spectra_per_s": rep["throughput"]["spectra_per_s"],
            "peak_rss_mib": (rep["device"]["peak_rss_bytes_reported"] or 0) / 2**20,
            "top1": rep["accuracy"]["top1"], "answered": rep["counts"]["answered"]}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows."""
    out = ["| profile | link | CPU share (how enforced) | latency p50 / p95 ms | device compute "
           "p50 / p95 ms | board-equivalent compute ms | spectra/s | peak RSS MiB | top-1 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        link = f"{r['baud']:,} baud" if r["baud"] else "unpaced"
        out.append(f"| {r['profile']} | {link} | {r['cpu_fraction']:g} ({r['cpu_limit']}) | "
                   f"{r['latency_p50_ms']:.2f} / {r['latency_p95_ms']:.2f} | "
                   f"{r['compute_p50_ms']:.2f} / {r['compute_p95_ms']:.2f} | "
                   f"{r['board_compute_estimate_ms']:.1f} | {r['spectra_per_s']:.1f} | "
                   f"{r['peak_rss_mib']:.1f} | {100 * r['top1']:.1f} % |")
    return "\n".join(out)


def section(res: dict[str, Any]) -> str:
    """The "Constrained-hardware profiles" section of docs/benchmarks.md from this bench's
    JSON."""
    from device_sim.profiles import PROFILES, REFERENCE_MS

    mach = res.get("machine", {})
    L = ["## Constrained-hardware profiles (`benchmarks/profiles.py`, `device_sim/profiles.py`)",
         "", f"`{res.get('command', 'python -m benchmarks.profiles')}` on "
         f"{str(mach.get('date', ''))[:16]} UTC, {mach.get('cpu')} {mach.get('cores')}-core; "
         f"model `{res.get('model')}`. `ramanedge sim replay --profile NAME` starts the device "
         "with the profile's core, CPU share and address-space limit (RLIMIT_AS); the share "
         "is enforced by the first mechanism the kernel allows (cgroup v2 `cpu.max`, cgroup "
         "v1 CFS quota, else SIGSTOP/SIGCONT duty cycling), named in the table.", "",
         "| profile | stands for | CPU share of a reference core | memory limit |",
         "|---|---|---|---|"]
    for p in PROFILES.values():
        mem = f"{p.memory_mib} MiB" if p.memory_mib else "-"
        L.append(f"| {p.name} | {p.boards} | {p.cpu_fraction:g} | {mem} |")
    L += ["", f"Shares: MobileNet v1 1.0/224 float TFLite, 1 thread, {REFERENCE_MS} ms on the "
          "reference core (AMD EPYC, `python -m benchmarks.profiles --calibrate`) against ~87 "
          "ms published for a Raspberry Pi 4 CPU (share 11.0/87); a Pi Zero 2 W core is taken "
          "as 2.8x slower than a Pi 4's (Pi 4 ~2x a Pi 3B+ in published TFLite benchmarks, x "
          "1.4 GHz / 1.0 GHz clock). Approximate by construction: the point is the order of "
          "magnitude a rover board gives, not one board's exact figure.", "",
          table(res["rows"]), "",
          "Unpaced rows send requests back to back: the CPU share limits throughput. A quota "
          "cannot slow a job shorter than its quantum (one spectrum is ~0.5-1 ms here, the "
          "quota >= 1 ms per period), so per-spectrum compute is not stretched; the "
          "board-equivalent column is compute / share, an estimate. Over the 115200-baud link "
          "the wire (~260 ms per raw spectrum) dominates on every profile.", ""]
    return "\n".join(L)


@click.command()
@click.option("--model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profiles", default="host,pi4,zero2", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10**6), default=236, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench_out/profiles"), show_default=True)
@click.option("--calibrate", "only_calibrate", is_flag=True,
              help="Only time the MobileNet v1 reference on this machine.")
def main(model: Path | None, data: Path | None, split_file: Path | None, profiles: str,
         limit: int, out: Path, only_calibrate: bool) -> None:
    """Latency, throughput and memory of the device under each hardware profile."""
    if only_calibrate:
        click.echo(f"MobileNet v1 1.0/224 float, 1 thread: {calibrate():.2f} ms median "
                   f"({machine_info()['cpu']})")
        return
    if model is None or data is None:
        raise click.UsageError("--model and --data are required (or --calibrate)")
    from device_sim.spectra import load_items

    items = load_items(data, split_file=split_file, part="test", payload="raw")
    rows = []
    for name in [p.strip() for p in profiles.split(",") if p.strip()]:
        for baud in (None, 115200):
            rows.append(run_profile(model, items, name, baud, limit))
            click.echo(f"  {name} {baud or 'unpaced'}: {rows[-1]['spectra_per_s']:.1f}/s, "
                       f"compute p50 {rows[-1]['compute_p50_ms']:.2f} ms", err=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profiles.json").write_text(json.dumps(
        {"machine": machine_info(), "model": str(model), "rows": rows,
         "command": "python -m benchmarks.profiles " + " ".join(sys.argv[1:])}, indent=1) + "\n")
    from benchmarks.report import rerender

    if rerender(out):  # --out docs: the section lands in docs/benchmarks.md
        click.echo(f"re-rendered {out / 'benchmarks.md'}", err=True)
    click.echo(table(rows))


if __name__ == "__main__":
    main()
