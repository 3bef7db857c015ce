"""Physically meaningful training augmentation for grid spectra (numpy, off by default).

Each transform mimics something that differs between two measurements of one mineral:

- ``shift_cm``: a random x-shift of up to ``shift_cm`` cm-1 (whole grid points; the grid step
  is 1 cm-1), padded with the edge value exactly like :func:`ramanedge.grid.shift_spectra`.
  Spectrometer calibration offsets between instruments are a few cm-1 (SOURCE.md quirk 16).
- ``noise_std``: additive Gaussian noise, standard deviation relative to the spectrum's max.
- ``baseline``: additive smooth drift (a random quadratic over the grid) with peak amplitude
  up to ``baseline`` relative to the max, like a change of fluorescence background.
- ``scale``: a smooth multiplicative gain ``1 + g(x)`` with ``|g| <= scale`` (random linear
  ramp), changing relative band intensities as orientation or detector response would.
- ``background``: with this probability a spectrum's own fluorescence background is replaced
  by the background of another *training* spectrum, scaled by a random factor in [0, 1.5]
  (0 = the baseline-free spectrum). Backgrounds come from :func:`split_background`, the same
  modified-polynomial fit (degree 5) that builds ``rruff-clean``; the bands stay those of the
  spectrum itself. Real background shapes and strengths, decoupled from the mineral.

After any of them the spectrum is max-normalised again, so every augmented input looks like
an output of :func:`ramanedge.grid.preprocess` (maximum exactly 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ramanedge.grid import pad_outside
from ramanedge.options import check_options, option, parse_options

CROP_MIN_FRACTION: float = 0.4
"""Smallest window of the grid a ``crop`` augmentation keeps: a little below the rover's
default refusal threshold (:data:`ramanedge.grid.DEFAULT_MIN_COVERAGE`), so every spectrum the
rover accepts is inside what training showed."""


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; all zero (the paper's setting) disables augmentation.

    Each field is declared with its range and its ``--augment`` key
    (:func:`ramanedge.options.option`).
    """

    shift_cm: int = option(0, within=(0, 100), key="shift")
    noise_std: float = option(0.0, within=(0.0, 1.0), key="noise")
    baseline: float = option(0.0, within=(0.0, 10.0))
    scale: float = option(0.0, within=(0.0, 1.0))
    background: float = option(0.0, within=(0.0, 1.0))
    crop: float = option(0.0, within=(0.0, 1.0))

    def __post_init__(self) -> None:
        check_options(self, what="augmentation")

    @property
    def enabled(self) -> bool:
        """True when at least one transform is on."""
        return bool(self.shift_cm or self.noise_std or self.baseline or self.scale
                    or self.background or self.crop)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        """Inverse of :meth:`to_dict` (runs written before ``crop`` existed have none)."""
        return cls(**d)

    @classmethod
    def parse(cls, spec: str) -> AugmentConfig:
        """Parse a CLI spec such as ``"shift=5,noise=0.01,baseline=0.1,scale=0.1"``.

        ``""``, ``"none"``, ``"off"`` and ``"0"`` give the disabled config. Raises
        ``ValueError`` naming the bad item.
        """
        return parse_options(spec, cls, what="augmentation", example="'shift=5,noise=0.01'")


def shift_rows(X: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each row of ``X`` (N, P) by its own whole number of points, edge padding.

    Row ``i`` equals ``ramanedge.grid.shift_spectra(X[i], shifts[i])``; positive shifts move
    bands to higher wavenumbers.
    """
    X = np.asarray(X)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1)
    if X.ndim != 2 or shifts.shape[0] != X.shape[0]:
        raise ValueError(f"need X of shape (N, P) and N shifts, got {X.shape} and {shifts.shape}")
    p = X.shape[1]
    idx = np.clip(np.arange(p)[None, :] - shifts[:, None], 0, p - 1)
    return np.take_along_axis(X, idx, axis=1)


def row_peaks(X: np.ndarray) -> np.ndarray:
    """The maximum of each row of ``X`` (N, P) as (N, 1); 1 where it would be <= 0 (never for
    real preprocessed spectra), so that dividing by it leaves such a row alone."""
    peak = X.max(axis=1, keepdims=True)
    return np.where(peak > 1e-6, peak, 1.0)


def renormalise(X: np.ndarray) -> np.ndarray:
    """Each row of ``X`` (N, P) divided by its maximum again after a transform."""
    return X / row_peaks(X)


def split_background(X: np.ndarray, degree: int = 5, max_iter: int = 100,
                     tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Split spectra (N, P) into ``(bands, background)`` with ``X = bands + background``.

    Vectorised form of :func:`ramanedge.dataset.remove_baseline` (iterative modified
    polynomial fit, Lieber & Mahadevan-Jansen 2003): each row's fit stops once it changes by
    less than ``tol`` (relative), as there.

    The result does not depend on how many threads numpy's BLAS has: the fit runs on one.
    """
    # OpenBLAS sums these (N, P) x (P, d+1) products in another order with another thread
    # count; the stopping test turns that last-bit difference into other backgrounds, and so
    # into another training (measured 2026-12-06: the few-label baseline of split 0, seed 1
    # trained 74 epochs with 2 threads, 62 with 1). One thread is what OPENBLAS_NUM_THREADS=1
    # (set by the Makefile and the tests) always gave, so those results stay as they were.
    with threadpool_limits(limits=1, user_api="blas"):
        return _split_background(np.asarray(X, dtype=np.float64), degree, max_iter, tol)


def _split_background(X: np.ndarray, degree: int, max_iter: int,
                      tol: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split_background`'s fit, in whatever BLAS threading the caller set."""
    n, p = X.shape
    t = np.linspace(-1.0, 1.0, p)
    V = np.polynomial.polynomial.polyvander(t, degree)  # (P, d+1)
    pinv = np.linalg.pinv(V)  # (d+1, P)
    work = X.copy()
    base = work @ pinv.T @ V.T
    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        work[active] = np.minimum(work[active], base[active])
        new = work[active] @ pinv.T @ V.T
        change = np.linalg.norm(new - base[active], axis=1) / np.maximum(
            np.linalg.norm(base[active], axis=1), 1e-12)
        base[active] = new
        idx = np.flatnonzero(active)
        active[idx[change < tol]] = False
        if not active.any():
            break
    return X - base, base


def augment_batch(
    X: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
    *,
    bands: np.ndarray | None = None,
    backgrounds: np.ndarray | None = None,
    with_shifts: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Return an augmented float32 copy of the batch ``X`` (N, P); ``X`` is not modified.

    ``bands`` (rows aligned with ``X``) and ``backgrounds`` (any number of rows, the pool to
    draw from) are needed when ``config.background > 0``; see :func:`split_background`.
    ``with_shifts``: return ``(batch, shifts)``, the whole-point shift drawn for each row
    (zeros without ``shift_cm``); the random draws are the same either way.
    """
    X = np.asarray(X, dtype=np.float32)
    shifts = np.zeros(X.shape[0], dtype=np.int64)
    if not config.enabled or X.shape[0] == 0:
        return (X.copy(), shifts) if with_shifts else X.copy()
    n, p = X.shape
    out = X.astype(np.float64)
    if config.background:
        if bands is None or backgrounds is None or bands.shape != X.shape:
            raise ValueError("background augmentation needs bands aligned with X and a "
                             "background pool (see split_background)")
        swap = rng.random(n) < config.background
        donor = rng.integers(0, backgrounds.shape[0], size=n)
        amp = rng.uniform(0.0, 1.5, size=(n, 1))
        mixed = bands + amp * backgrounds[donor]
        out = np.where(swap[:, None], mixed, out)
        out = renormalise(out)
    if config.shift_cm:
        shifts = rng.integers(-config.shift_cm, config.shift_cm + 1, size=n)
        out = shift_rows(out, shifts)
    t = np.linspace(-1.0, 1.0, p)[None, :]
    if config.scale:
        slope = rng.uniform(-config.scale, config.scale, size=(n, 1))
        out = out * (1.0 + slope * t)
    if config.baseline:
        # random quadratic a + b t + c t^2, rescaled so its largest |value| is the amplitude
        coef = rng.normal(size=(n, 3))
        curve = coef[:, :1] + coef[:, 1:2] * t + coef[:, 2:3] * t * t
        curve /= np.maximum(np.abs(curve).max(axis=1, keepdims=True), 1e-9)
        amp = rng.uniform(0.0, config.baseline, size=(n, 1))
        out = out + amp * curve
    if config.noise_std:
        out = out + rng.normal(scale=config.noise_std, size=out.shape)
    if config.crop:
        out = crop_rows(out, config.crop, rng)
    out = renormalise(out).astype(np.float32)
    return (out, shifts) if with_shifts else out


def crop_rows(X: np.ndarray, prob: float, rng: np.random.Generator,
              min_fraction: float = CROP_MIN_FRACTION,
              spans: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """With probability ``prob`` per row, keep a random window of at least ``min_fraction``
    of the grid and pad outside it (:func:`ramanedge.grid.pad_outside`); other rows unchanged.

    The window's width is uniform in ``[min_fraction, 1]`` of the grid and its position
    uniform among those that fit, so cuts at the low end, the high end and both are all seen.
    ``spans``: ``(lo, hi)`` per row, the grid points a partial spectrum really covers (the
    rest is padding already, :class:`ramanedge.corpus.Corpus`): the window is then drawn
    inside that span and its width is a fraction of the span (so a partial spectrum can be
    cut below ``min_fraction`` of the grid), and a crop never keeps only padding.
    """
    X = np.asarray(X)
    n, p = X.shape
    lo0, hi0 = ((np.zeros(n, np.int64), np.full(n, p, np.int64)) if spans is None else
                (np.asarray(spans[0], np.int64), np.asarray(spans[1], np.int64)))
    room = np.maximum(hi0 - lo0, 1)
    hit = rng.random(n) < prob
    width = np.minimum(room, np.maximum(2, np.round(rng.uniform(min_fraction, 1.0, size=n)
                                                   * room))).astype(np.int64)
    lo = lo0 + np.floor(rng.random(n) * (room - width + 1)).astype(np.int64)
    lo = np.where(hit, lo, 0)
    hi = np.where(hit, np.minimum(lo + width, p), p)
    return pad_outside(X, lo, hi)
