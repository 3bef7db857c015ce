"""Random "views" of Raman grid spectra for contrastive pretraining (numpy only).

Two views of one spectrum must look like two plausible measurements of the same specimen, so
every transform mimics something that really changes between Raman acquisitions:

- x-shift of a few cm-1 (spectrometer calibration offsets; :func:`trainer.augment.shift_rows`,
  edge padding, whole grid points = 1 cm-1);
- smooth multiplicative gain ``1 + g(x)`` (detector response / orientation changing relative
  band intensities; a random linear ramp) and a global intensity factor;
- fluorescence-like additive baseline: a random low-order polynomial (degree <= 3) or a
  decaying/rising exponential ``a * exp(-(x - x0) / tau)``, both smooth over the grid;
- Gaussian detector noise (relative to the max);
- cosmic-ray spikes: 0..``spikes`` single- or two-point narrow spikes of random height.

Each view is max-normalised again at the end, like :func:`ramanedge.grid.preprocess` output.
The supervised augmentation of the trainer (:mod:`trainer.augment`) is reused where it already
has the transform (the shift); the rest is new here (spikes, exponential baselines).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ramanedge.options import check_options, option
from trainer.augment import crop_rows, renormalise, shift_rows


@dataclass(frozen=True)
class RamanAugmentConfig:
    """Strength of each random transform of :func:`raman_views` (0 disables one); each field
    is declared with its range (:func:`ramanedge.options.option`)."""

    shift_cm: int = option(6, within=(0, 100))
    """Maximum |x-shift| in cm-1 (grid points)."""
    gain: float = option(0.2, within=(0.0, 10.0))
    """Maximum |slope| of the smooth multiplicative ramp."""
    baseline: float = option(0.5, within=(0.0, 10.0))
    """Maximum amplitude (relative to the max) of the added fluorescence-like baseline."""
    noise_std: float = option(0.01, within=(0.0, 10.0))
    """Maximum standard deviation of the Gaussian noise (relative to the max)."""
    spikes: int = option(2, within=(0, 20))
    """Maximum number of cosmic-ray spikes per view."""
    spike_height: float = option(0.6, within=(0.0, 10.0))
    """Maximum spike height (relative to the max)."""
    crop: float = option(0.0, within=(0.0, 1.0))
    """Share of views that keep only a random window of the grid (partial coverage,
    :func:`trainer.augment.crop_rows`: at least 40 % of the grid, padded outside)."""

    def __post_init__(self) -> None:
        check_options(self, what="Raman view")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def fluorescence_baseline(n: int, p: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` smooth random baselines on ``p`` points, each scaled to max |value| 1.

    Half are random polynomials of degree 1-3 in ``t`` in [-1, 1] shifted to be >= 0, half are
    exponentials ``exp(+-t * r)`` with rate ``r`` in [0.5, 4] (fluorescence tails).
    """
    t = np.linspace(-1.0, 1.0, p)[None, :]
    deg = rng.integers(1, 4, size=(n, 1))
    coef = rng.normal(size=(n, 4)) * (np.arange(4)[None, :] <= deg)
    poly = sum(coef[:, i:i + 1] * t ** i for i in range(4))
    poly = poly - poly.min(axis=1, keepdims=True)
    rate = rng.uniform(0.5, 4.0, size=(n, 1)) * rng.choice([-1.0, 1.0], size=(n, 1))
    expo = np.exp(rate * t)
    use_exp = rng.random((n, 1)) < 0.5
    out = np.where(use_exp, expo, poly)
    return out / np.maximum(np.abs(out).max(axis=1, keepdims=True), 1e-9)


def add_cosmic_spikes(X: np.ndarray, max_spikes: int, height: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Add 0..``max_spikes`` narrow (1-2 point) positive spikes to each row (copy)."""
    X = np.array(X, dtype=np.float64)
    n, p = X.shape
    if max_spikes <= 0 or height <= 0:
        return X
    counts = rng.integers(0, max_spikes + 1, size=n)
    for i in np.flatnonzero(counts):
        pos = rng.integers(0, p - 1, size=counts[i])
        h = rng.uniform(0.1, 1.0, size=counts[i]) * height
        X[i, pos] += h
        wide = rng.random(counts[i]) < 0.5
        X[i, pos[wide] + 1] += 0.5 * h[wide]
    return X


def raman_views(X: np.ndarray, config: RamanAugmentConfig, rng: np.random.Generator,
                spans: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One random augmented view per row of ``X`` (N, P); float32, each row max 1.

    ``X`` is not modified. The same call with the same ``rng`` state gives the same views.
    ``spans``: ``(lo, hi)`` per row, the grid points each spectrum really covers (partial
    spectra of :class:`ramanedge.corpus.Corpus` are padded outside); the crop then stays
    inside the span (moved with the row's shift), see :func:`trainer.augment.crop_rows`.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"need spectra of shape (N, P), got {X.shape}")
    n, p = X.shape
    if n == 0:
        return X.astype(np.float32)
    out = X
    if spans is not None:
        spans = (np.asarray(spans[0], np.int64), np.asarray(spans[1], np.int64))
    if config.shift_cm:
        s = rng.integers(-config.shift_cm, config.shift_cm + 1, size=n)
        out = shift_rows(out, s)
        if spans is not None:  # the covered points moved with the bands
            spans = (np.clip(spans[0] + s, 0, p - 1), np.clip(spans[1] + s, 1, p))
    t = np.linspace(-1.0, 1.0, p)[None, :]
    if config.gain:
        out = out * (1.0 + rng.uniform(-config.gain, config.gain, size=(n, 1)) * t)
    out = out * rng.uniform(0.7, 1.3, size=(n, 1))  # global intensity (laser power, focus)
    if config.baseline:
        amp = rng.uniform(0.0, config.baseline, size=(n, 1))
        out = out + amp * fluorescence_baseline(n, p, rng)
    if config.noise_std:
        out = out + rng.normal(size=out.shape) * rng.uniform(0.0, config.noise_std, size=(n, 1))
    if config.spikes:
        out = add_cosmic_spikes(out, config.spikes, config.spike_height, rng)
    if config.crop:
        out = crop_rows(out, config.crop, rng, spans=spans)
    return renormalise(out).astype(np.float32)
