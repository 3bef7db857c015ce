"""Model-agnostic attribution over wavenumber, and the band sanity check (numpy only).

Shared by the ground (``trainer.explain``, Keras) and the rover (``edge_runtime.explain``,
the int8 model): the same occlusion code runs on both, with whatever ``predict`` they have.

- :func:`occlusion_map`: for every window of ``2 * half_width + 1`` grid points (one point =
  1 cm-1) the window is replaced by the straight line between its two edge values (a band is
  removed, the baseline kept) and the drop of the class probability is recorded; each grid
  point gets the mean drop of the windows covering it, negative drops count as 0, and the
  map is scaled to [0, 1]. No gradients: it works through the int8 interpreter as well.
- :func:`attributed_bands`: the ``n`` strongest local maxima of a map, at least
  ``min_separation`` points apart (greedy non-maximum suppression).
- :func:`spectrum_peaks`: the ``n`` most prominent peaks of a spectrum (local maxima ranked
  by height above the lower of the two minima within ``reach`` points on either side).
- :func:`band_hits`: whether each attributed band lies within ``tol`` points of one of
  those peaks: the sanity check of ``docs/results.md`` section 6 (a map that explains the
  decision by the spectrum's own bands scores high; a map of a randomised network should
  score near chance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
"""``(N, P) float32 spectra -> (N, K) probabilities``."""


def occlude(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """A copy of ``x`` (P,) whose points ``lo..hi`` (inclusive) lie on the straight line
    between ``x[lo - 1]`` and ``x[hi + 1]`` (the nearest inside value at the grid ends)."""
    x = np.array(x, dtype=np.float32)
    p = x.size
    lo, hi = max(0, lo), min(p - 1, hi)
    a = x[lo - 1] if lo > 0 else x[hi + 1] if hi + 1 < p else x[lo]
    b = x[hi + 1] if hi + 1 < p else a
    x[lo:hi + 1] = np.linspace(a, b, hi - lo + 3, dtype=np.float32)[1:-1]
    return x


def occlusion_map(predict: Predict, x: np.ndarray, cls: int, *, half_width: int = 10,
                  stride: int = 5, batch: int = 64) -> np.ndarray:
    """Occlusion attribution (P,) in [0, 1] of class ``cls`` for one spectrum ``x`` (P,).

    ``predict`` is called on batches of at most ``batch`` occluded copies; the number of
    copies is ``ceil(P / stride)`` (279 for the 1392-point grid at stride 5).
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if half_width < 0 or stride < 1:
        raise ValueError(f"half_width must be >= 0 and stride >= 1, got {half_width}, {stride}")
    p = x.size
    base = float(np.asarray(predict(x[None]))[0, cls])
    centres = np.arange(0, p, stride)
    drops = np.empty(centres.size)
    for i in range(0, centres.size, batch):
        cs = centres[i:i + batch]
        X = np.stack([occlude(x, c - half_width, c + half_width) for c in cs])
        drops[i:i + len(cs)] = base - np.asarray(predict(X))[:, cls]
    drops = np.maximum(drops, 0.0)
    acc = np.zeros(p)
    cnt = np.zeros(p)
    for c, d in zip(centres, drops, strict=True):
        lo, hi = max(0, c - half_width), min(p, c + half_width + 1)
        acc[lo:hi] += d
        cnt[lo:hi] += 1
    m = acc / np.maximum(cnt, 1)
    top = m.max()
    return (m / top if top > 0 else m).astype(np.float32)


def attributed_bands(attr: np.ndarray, n: int = 3, min_separation: int = 20) -> np.ndarray:
    """Indices of the ``n`` strongest positive local maxima of ``attr`` (P,), strongest first,
    at least ``min_separation`` points apart. Fewer when the map has fewer."""
    a = np.asarray(attr, dtype=np.float64).reshape(-1)
    order = np.argsort(-a, kind="stable")
    out: list[int] = []
    for i in order:
        if a[i] <= 0 or len(out) == n:
            break
        if all(abs(int(i) - j) >= min_separation for j in out):
            out.append(int(i))
    return np.array(out, dtype=np.int64)


def spectrum_peaks(x: np.ndarray, n: int = 5, reach: int = 25,
                   min_prominence: float = 0.02) -> np.ndarray:
    """Indices of the ``n`` most prominent peaks of ``x`` (P,), most prominent first.

    A peak is a point no lower than every point within 3 on either side (plateaus keep their
    first point); its prominence is its height above the higher of the lowest values within
    ``reach`` points on its left and on its right (a band's height over its local baseline).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    pad = np.pad(x, 3, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, 7)
    is_max = x >= win.max(axis=1)
    is_max[1:] &= x[1:] != x[:-1]  # one point per plateau
    cand = np.flatnonzero(is_max)
    if cand.size == 0:
        return cand
    padr = np.pad(x, reach, mode="edge")
    left = np.array([padr[c:c + reach + 1].min() for c in cand])
    right = np.array([padr[c + reach:c + 2 * reach + 1].min() for c in cand])
    prom = x[cand] - np.maximum(left, right)
    keep = prom >= min_prominence
    cand, prom = cand[keep], prom[keep]
    order = np.argsort(-prom, kind="stable")[:n]
    return cand[order].astype(np.int64)


def band_hits(bands: np.ndarray, peaks: np.ndarray, tol: int = 10) -> np.ndarray:
    """Whether each attributed band (index) lies within ``tol`` points of one of ``peaks``."""
    bands = np.asarray(bands, dtype=np.int64).reshape(-1, 1)
    peaks = np.asarray(peaks, dtype=np.int64).reshape(1, -1)
    if peaks.size == 0:
        return np.zeros(bands.shape[0], dtype=bool)
    return (np.abs(bands - peaks) <= tol).any(axis=1)


def chance_hit_rate(peaks: np.ndarray, n_points: int, tol: int = 10) -> float:
    """Probability that a band drawn uniformly on the grid lands within ``tol`` of a peak."""
    covered = np.zeros(n_points, dtype=bool)
    for c in np.asarray(peaks, dtype=np.int64):
        covered[max(0, c - tol):min(n_points, c + tol + 1)] = True
    return float(covered.mean())
