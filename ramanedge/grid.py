"""The model grid and the preprocessing every model sees, on the ground and on the rover.

The grid is ``200 + k`` cm-1 for ``k = 0 ... 1391`` (1 cm-1 steps, 200-1591 cm-1), exactly the
grid of the data published with Soysal et al. 2025. A raw spectrum is resampled onto it by
linear interpolation and divided by its maximum (per-spectrum max normalisation, as in the
paper). No baseline correction: the models classify raw spectra.
"""

from __future__ import annotations

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
        if not (self.step > 0 and self.n_points > 0):
            raise ValueError(
                f"grid needs step > 0 and n_points > 0, got step={self.step}, "
                f"n_points={self.n_points}"
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
        return cls(start=float(d["start"]), step=float(d["step"]), n_points=int(d["n_points"]))


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


def resample(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID) -> np.ndarray:
    """Linearly interpolate a spectrum onto ``grid``; float64 result.

    Raises :class:`CoverageError` when the spectrum does not cover the grid: the models are
    never asked to classify extrapolated data.
    """
    x, y = clean_axis(x, y)
    if not covers(x, grid):
        raise CoverageError(
            f"spectrum covers {x[0]:.1f}-{x[-1]:.1f} cm-1 but the model needs "
            f"{grid.start:g}-{grid.stop:g} cm-1"
        )
    return np.interp(grid.axis(), x, y)


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


def preprocess(x: np.ndarray, y: np.ndarray, grid: GridSpec = DEFAULT_GRID) -> np.ndarray:
    """Raw spectrum -> model input: resample onto ``grid``, then max-normalise (float32)."""
    return normalise_max(resample(x, y, grid))


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
