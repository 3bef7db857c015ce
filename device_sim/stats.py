"""Statistics of a replay: latency percentiles and the device's RSS growth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(values: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ..., "mean", "max"}`` of ``values`` (empty -> {})."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {}
    out = {f"p{p}": float(np.percentile(v, p)) for p in ps}
    out["mean"] = float(v.mean())
    out["max"] = float(v.max())
    return out


def rss_slope(index: Sequence[float], rss: Sequence[float], warmup_fraction: float = 0.1
              ) -> dict[str, float]:
    """Least-squares RSS growth after warm-up: bytes per 1000 spectra (+ the fit's range)."""
    i = np.asarray(index, dtype=np.float64)
    r = np.asarray(rss, dtype=np.float64)
    if i.size < 3:
        return {"bytes_per_1000": float("nan"), "n_samples": int(i.size)}
    keep = i >= i.min() + warmup_fraction * (i.max() - i.min())
    if keep.sum() < 3:
        keep = np.ones_like(i, dtype=bool)
    slope, intercept = np.polyfit(i[keep], r[keep], 1)
    return {"bytes_per_1000": float(slope * 1000.0), "n_samples": int(keep.sum()),
            "first_bytes": float(r[keep][0]), "last_bytes": float(r[keep][-1]),
            "min_bytes": float(r[keep].min()), "max_bytes": float(r[keep].max())}
