"""The files of a replay report: ``replay.json`` (the summary), ``answers.jsonl`` (one
record per spectrum) and ``latency.png`` (latency histogram and device RSS).

Ground side only: matplotlib is imported when the figure is drawn, never by the device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge import jsonio


def write_report(report: dict[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``replay.json``, ``answers.jsonl`` and ``latency.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = report.get("_records", [])
    body = {k: v for k, v in report.items() if k != "_records"}
    paths = {"json": out / "replay.json", "answers": out / "answers.jsonl",
             "png": out / "latency.png"}
    # strict JSON: a statistic of no samples is null, never a bare NaN
    paths["json"].write_text(jsonio.dumps(body, indent=2) + "\n")
    with open(paths["answers"], "w") as f:
        for r in records:
            f.write(jsonio.dumps(r) + "\n")
    plot_report(report, paths["png"])
    return paths


def plot_report(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Latency histogram (p50/p95/p99 marked, wire+compute budget) and device RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in report.get("_records", []) if "error" not in r]
    lat = np.array([r["latency_ms"] for r in recs]) if recs else np.zeros(0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    if lat.size:
        ax.hist(lat, bins=min(60, max(10, lat.size // 5)), color="#4477aa", alpha=0.85)
        for key, col in (("p50", "k"), ("p95", "#cc6677"), ("p99", "#aa3377")):
            v = report["latency_ms"][key]
            ax.axvline(v, color=col, ls="--", lw=1, label=f"{key} {v:.1f} ms")
        wc = report["target"]["median_wire_plus_compute_ms"]
        ax.axvline(wc, color="#228833", lw=1, label=f"median wire+compute {wc:.1f} ms")
    cfg = report["config"]
    ax.set_title(f"end-to-end latency, {len(recs)} spectra, baud {cfg.get('baud') or 'unpaced'}")
    ax.set_xlabel("ms")
    ax.set_ylabel("spectra")
    ax.legend(fontsize=8)
    ax = axes[1]
    rs = report.get("rss_samples", {})
    if rs.get("index"):
        idx, val, pid = (np.asarray(rs[k]) for k in ("index", "rss_bytes", "pid"))
        for j, p in enumerate(dict.fromkeys(pid.tolist())):  # one colour per device boot
            m = pid == p
            ax.plot(idx[m], val[m] / 2**20, ".", ms=3, label=f"pid {p}",
                    color=("#4477aa", "#ee6677", "#228833", "#ccbb44")[j % 4])
        slope = report["device"]["rss_slope"].get("bytes_per_1000", float("nan"))
        ax.set_title(f"device RSS (last boot: slope {slope / 1024:.1f} KiB / 1000 spectra)")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend(fontsize=8)
    else:
        ax.set_title("device RSS (not sampled)")
    ax.set_xlabel("spectrum #")
    ax.set_ylabel("MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
