"""End-to-end numbers over the simulated serial link (``ramanedge sim replay``).

For each baud rate, the device simulator replays the test split (raw spectra, cropped to the
model window) to a separate ``ramanedge device serve`` process over a pty pair, paced to the
line rate, and reports wire time, device compute, end-to-end latency, throughput, accuracy
and device RSS. This module only runs the CLI and keeps the figures that matter.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, child_env, python, run_streaming

BAUDS = (115200, 921600)


def replay(model: Path, data_root: Path, split_file: Path, out: Path, *, baud: int,
           limit: int | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``ramanedge sim replay`` once; return the summary of its ``replay.json``."""
    cmd = [python(), "-m", "ramanedge.cli", "sim", "replay", "--model", _r(model),
           "--data", _r(data_root), "--split-file", _r(split_file), "--baud", str(baud),
           "--out", _r(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    rc, lines, secs = run_streaming(cmd, env=child_env(1), cwd=REPO, echo=_progress(log))
    if rc != 0:
        raise RuntimeError(f"sim replay at {baud} baud failed: {' | '.join(lines[-3:])}")
    rep = json.loads((out / "replay.json").read_text())
    return summarise(rep, secs, cmd)


def _r(p: Path) -> str:
    """``p`` relative to the repository (the commands run there), for readable commands."""
    return os.path.relpath(p, REPO)


def _progress(log: Callable[[str], None]) -> Callable[[str], None]:
    """Echo the replay's progress lines, not its JSON summary (printed on stdout)."""

    def echo(line: str) -> None:
        body = line.strip().lstrip("|").strip()
        if body and body[0] not in '{}[]"-0123456789' and not body.startswith(("W0000",
                                                                              "I0000")):
            log(line)

    return echo


def summarise(rep: dict[str, Any], wall_s: float, cmd: Sequence[str]) -> dict[str, Any]:
    """The figures of one replay report that go into the benchmark tables."""
    dev = rep.get("device", {})
    return {
        "baud": rep["config"].get("baud"),
        "spectra": rep["counts"]["spectra"],
        "answered": rep["counts"]["answered"],
        "failed": rep["counts"]["failed"],
        "top1": rep["accuracy"]["top1"],
        "top_k": rep["accuracy"]["top_k"],
        "latency_ms": rep["latency_ms"],
        "wire_ms": rep["wire_ms"],
        "device_compute_ms": rep["device_compute_ms"],
        "device_infer_ms": rep.get("device_infer_ms"),
        "overhead_ms": rep["overhead_ms"],
        "request_bytes_p50": rep["wire"].get("request_bytes_p50"),
        "response_bytes_p50": rep["wire"].get("response_bytes_p50"),
        "spectra_per_s": rep["throughput"].get("spectra_per_s"),
        "device_peak_rss_mib": (dev.get("peak_rss_bytes_reported") or 0) / 2**20,
        "rss_slope_kib_per_1000": (dev.get("rss_slope", {}).get("bytes_per_1000") or 0) / 1024,
        "wall_s": wall_s,
        "command": " ".join(["ramanedge", *map(str, cmd[3:])]),
    }


def run_all(model: Path, data_root: Path, split_file: Path, out_root: Path, *,
            bauds: Sequence[int] = BAUDS, limit: int | None = None,
            img_dir: Path | None = None, log: Callable[[str], None] = print
            ) -> list[dict[str, Any]]:
    """Replay at every baud rate; copy each ``latency.png`` to ``img_dir/serial_BAUD.png``."""
    rows = []
    for b in bauds:
        log(f"  replay at {b} baud" + (f" ({limit} spectra)" if limit else ""))
        out = out_root / f"replay_{b}"
        row = replay(model, data_root, split_file, out, baud=b, limit=limit, log=log)
        if img_dir is not None and (out / "latency.png").is_file():
            img_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "latency.png", img_dir / f"serial_{b}.png")
            row["plot"] = f"img/serial_{b}.png"
        rows.append(row)
        log(f"  {b} baud: median latency {row['latency_ms'].get('p50', float('nan')):.1f} ms "
            f"(wire {row['wire_ms'].get('p50', float('nan')):.1f}, compute "
            f"{row['device_compute_ms'].get('p50', float('nan')):.2f}), top-1 "
            f"{100 * row['top1']:.1f}%, {row['spectra_per_s']:.1f} spectra/s")
    return rows
