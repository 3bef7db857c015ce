"""The model grid and the preprocessing every model sees, on the ground and on the rover.

The grid is ``200 + k`` cm-1 for ``k = 0 ... 1391`` (1 cm-1 steps, 200-1591 cm-1), exactly the
grid of the data published with Soysal et al. 2025. A raw spectrum is resampled onto it by
linear interpolation and divided by its maximum (per-spectrum max normalisation, as in the
paper). No baseline correction: the models classify raw spectra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ramanedge.errors import CoverageError, SpectrumError

GRID_START: float = 200.0
GRID_STEP: float = 1.0
GRID_POINTS: int = 1392
GRID: np.ndarray = GRID_START + GRID_STEP * np.arange(GRID_POINTS, dtype=np.float64)
GRID.setflags(write=False)


@dataclass(frozen=True)
class GridSpec:
    """A uniform wavenumber grid, as recorded in a model manifest."""

    start: float = GRID_START
    step: float = GRID_STEP
    n_points: int = GRID_POINTS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and 0 < self.step < math.inf
                and type(self.n_points) is int and self.n_points > 0):
            raise ValueError(
                f"grid needs a finite start, a finite step > 0 and a whole n_points > 0, got "
                f"start={self.start}, step={self.step}, n_points={self.n_points!r}"
            )

    @property
    def stop(self) -> float:
        """The last wavenumber on the grid (inclusive)."""
        return self.start + self.step * (self.n_points - 1)

    def axis(self) -> np.ndarray:
        """The grid's wavenumbers as a float64 array."""
        return self.start + self.step * np.arange(self.n_points, dtype=np.float64)

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready form, as stored in ``manifest.json``."""
        return {"start": self.start, "step": self.step, "n_points": self.n_points}

    @classmethod
    def from_dict(cls, d: dict) -> GridSpec:
        """Inverse of :meth:`to_dict`."""
        n = d["n_points"]
        if isinstance(n, bool) or not isinstance(n, int):  # int() would take "1392" or 1392.5
            raise ValueError(f"grid n_points must be a whole number, got {n!r}")
        return cls(start=float(d["start"]), step=float(d["step"]), n_points=n)


DEFAULT_GRID = GridSpec()


def clean_axis(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a spectrum and make its axis strictly increasing.

    Sorts by wavenumber and averages the intensities of repeated wavenumbers (RRUFF quirk 8:
    concatenated segments with overlapping x). Raises :class:`SpectrumError` when the arrays
    are empty, of different lengths, not 1-D, or hold NaN/inf.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise SpectrumError(f"expected 1-D wavenumber and intensity arrays, got shapes "
                            f"{x.shape} and {y.shape}")
    if x.size != y.size:
        raise SpectrumError(f"wavenumber and intensity lengths differ ({x.size} vs {y.size})")
    if x.size < 2:
        raise SpectrumError(f"a spectrum needs at least 2 points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SpectrumError("spectrum contains NaN or infinite values")
    if np.all(np.diff(x) > 0):
        return x, y
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    uy = np.bincount(inverse, weights=y) / counts
    if ux.size < 2:
        raise SpectrumError("spectrum has fewer than 2 distinct wavenumbers")
    return ux, uy


def covers(x: np.ndarray, grid: GridSpec = DEFAULT_GRID) -> bool:
    """True when the axis ``x`` spans the whole grid."""
    x = np.asarray(x)
    return bool(x.size >= 2 and np.min(x) <= grid.start and np.max(x) >= grid.stop)


#: Coverage policies for spectra that span only part of the grid (``--coverage``).
COVERAGE_MODES: tuple[str, ...] = ("pad", "refuse")
DEFAULT_MIN_COVERAGE: float = 0.5
"""Default smallest covered fraction of the grid that is still classified (``pad`` mode).

Measured (docs/results.md section 8, int8, grouped split 0): the default flight model gets
60-79 % test top-1 with 65-93 % of the grid (depending on which end is missing) and 56-66 %
with 50 % (80 % on the full grid);
training never shows it less than 40 % (``trainer.augment.CROP_MIN_FRACTION``), so below half
the grid (about 700 of the 1392 cm-1) an answer is not backed by what the model saw."""


@dataclass(frozen=True)
class CoveragePolicy:
    """What to do with a spectrum that covers only part of the model grid.

    ``mode``: ``"pad"`` (default) classifies it: the grid points outside the measured range
    hold the nearest measured value (:func:`pad_outside`, the same edge hold training
    augmentation uses), and the covered fraction travels with the answer; ``"refuse"``
    raises :class:`CoverageError` for anything short of the full grid. ``min_fraction``:
    in ``pad`` mode, spectra covering less than this fraction of the grid are refused.
    """

    mode: str = "pad"
    min_fraction: float = DEFAULT_MIN_COVERAGE

    def __post_init__(self) -> None:
        if self.mode not in COVERAGE_MODES:
            raise ValueError(f"coverage mode must be one of {', '.join(COVERAGE_MODES)}, "
                             f"got {self.mode!r}")
        if isinstance(self.min_fraction, bool) or not isinstance(self.min_fraction,
                                                                 (int, float)):
            raise ValueError(f"min_fraction must be a number in [0, 1], got "
                             f"{self.min_fraction!r}")
        if not 0.0 <= float(self.min_fraction) <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        object.__setattr__(self, "min_fraction", float(self.min_fraction))


REFUSE_PARTIAL = CoveragePolicy(mode="refuse", min_fraction=1.0)
"""Only spectra covering the whole grid (data set builds: training data is never padded)."""


def covered_span(x: np.ndarray, grid: GridSpec = DEFAULT_GRID) -> tuple[int, int]:
    """Indices ``(lo, hi)`` of the grid points inside the range of ``x`` (``grid[lo:hi]``).

    ``lo == hi`` when the spectrum does not overlap the grid at all. The fraction of the grid
    a spectrum covers is ``(hi - lo) / grid.n_points``.
    """
    x = np.asarray(x, dtype=np.float64)
    axis = grid.axis()
    lo = int(np.searchsorted(axis, np.min(x), side="left"))
    hi = int(np.searchsorted(axis, np.max(x), side="right"))
    return lo, max(lo, hi)


def pad_outside(X: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
    """Hold the edge values outside ``[lo, hi)`` on the last axis (a copy).

    Row ``i`` keeps ``X[i, lo_i:hi_i]``; the points below ``lo_i`` take ``X[i, lo_i]`` and
    the points from ``hi_i`` on take ``X[i, hi_i - 1]``. The rover pads a partially covering
    spectrum with it (:func:`resample_covered`) and training augmentation crops with it
    (``trainer.augment``), so the model sees the very padding it was trained on. Needs
    ``0 <= lo < hi <= P`` for every row.
    """
    X = np.asarray(X)
    if X.ndim not in (1, 2):
        raise ValueError(f"need one spectrum (P,) or a batch (N, P), got shape {X.shape}")
    p = X.shape[-1]
    rows = 1 if X.ndim == 1 else X.shape[0]
    lo_a = np.broadcast_to(np.asarray(lo, dtype=np.int64).reshape(-1), (rows,))
    hi_a = np.broadcast_to(np.asarray(hi, dtype=np.int64).reshape(-1), (rows,))
    if np.any(lo_a < 0) or np.any(hi_a > p) or np.any(hi_a <= lo_a):
        raise ValueError(f"need 0 <= lo < hi <= {p}, got lo={lo}, hi={hi}")
    idx = np.clip(np.arange(p)[None, :], lo_a[:, None], hi_a[:, None] - 1)
    out = np.take_along_axis(np.atleast_2d(X), idx, axis=1)
    return out[0] if X.ndim == 1 else out


def _span(x: np.ndarray) -> str:
    """A spectrum's own range for a message: one decimal (a wild axis, e.g. 1e300 cm-1, in 3
    significant digits)."""
    return "-".join(f"{v:.1f}" if abs(v) < 1e7 else f"{v:.3g}" for v in (x[0], x[-1]))


def resample_covered(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID,
                     coverage: CoveragePolicy = REFUSE_PARTIAL) -> tuple[np.ndarray, float]:
    """Linearly interpolate a spectrum onto ``grid``: ``(float64 grid spectrum, fraction)``.

    ``fraction``: the share of grid points inside the measured range (1.0 = full coverage).
    A partial spectrum is refused (:class:`CoverageError`) under ``coverage.mode ==
    "refuse"`` or below ``coverage.min_fraction``; otherwise it is interpolated on the
    covered points and padded outside them with :func:`pad_outside`. Nothing is ever
    extrapolated.
    """
    x, y = clean_axis(x, y)
    if covers(x, grid):
        return np.interp(grid.axis(), x, y), 1.0
    full = f"{grid.start:g}-{grid.stop:g} cm-1"
    span = _span(x)
    lo, hi = covered_span(x, grid)
    frac = (hi - lo) / grid.n_points
    if coverage.mode == "refuse":
        raise CoverageError(f"spectrum covers {span} cm-1 but the model needs "
                            f"{full}")
    if hi - lo < 2:  # nothing (or one point) to resample, whatever the minimum
        raise CoverageError(f"spectrum covers {span} cm-1: fewer than 2 points "
                            f"of the model's {full} grid")
    if frac < coverage.min_fraction:
        raise CoverageError(
            f"spectrum covers {span} cm-1, {100 * frac:.0f}% of the model's "
            f"{full}; the minimum is {100 * coverage.min_fraction:.0f}% (--min-coverage)")
    out = np.empty(grid.n_points, dtype=np.float64)
    out[lo:hi] = np.interp(grid.axis()[lo:hi], x, y)
    return pad_outside(out, lo, hi), float(frac)


def resample(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID,
             coverage: CoveragePolicy = REFUSE_PARTIAL) -> np.ndarray:
    """Linearly interpolate a spectrum onto ``grid``; float64 result.

    By default raises :class:`CoverageError` when the spectrum does not cover the grid;
    see :func:`resample_covered` for the ``pad`` policy.
    """
    return resample_covered(x, y, grid, coverage)[0]


def normalise_max(y: np.ndarray) -> np.ndarray:
    """Divide a spectrum (or each row of a batch) by its maximum; float32 result.

    Per-spectrum max normalisation as in the paper. Raw counts keep their fluorescence
    background; negative counts stay negative. A spectrum whose maximum is not positive
    carries no usable signal and raises :class:`SpectrumError`.
    """
    y = np.asarray(y, dtype=np.float64)
    peak = np.max(y, axis=-1, keepdims=True)
    if np.any(~np.isfinite(peak)) or np.any(peak <= 0):
        raise SpectrumError("spectrum maximum is not positive; cannot normalise")
    return (y / peak).astype(np.float32)


def preprocess(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID,
               coverage: CoveragePolicy = REFUSE_PARTIAL) -> np.ndarray:
    """Raw spectrum -> model input: resample onto ``grid``, then max-normalise (float32)."""
    return normalise_max(resample(x, y, grid, coverage))


def preprocess_covered(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID,
                       coverage: CoveragePolicy = REFUSE_PARTIAL) -> tuple[np.ndarray, float]:
    """:func:`preprocess` that also returns the covered fraction of the grid (1.0 = all)."""
    g, frac = resample_covered(x, y, grid, coverage)
    return normalise_max(g), frac


def shift_spectra(X: np.ndarray, shift_points: int) -> np.ndarray:
    """Shift grid spectra by ``shift_points`` samples, padding with the edge value.

    Positive shifts move peaks to higher wavenumbers. Works on one spectrum or a batch
    (last axis is the grid). Used by evaluation (robustness at 0/15/30 cm-1) and training
    augmentation.
    """
    X = np.asarray(X)
    s = int(shift_points)
    if s == 0:
        return X.copy()
    out = np.empty_like(X)
    if s > 0:
        out[..., s:] = X[..., :-s]
        out[..., :s] = X[..., :1]
    else:
        out[..., :s] = X[..., -s:]
        out[..., s:] = X[..., -1:]
    return out
