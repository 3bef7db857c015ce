"""Conformal prediction sets: the minerals that hold the true one with a stated coverage.

Split-conformal classification with the LAC score (Sadinle, Lei & Wasserman 2019; the score
that gives the smallest mean set among rules using only the probabilities): on ``n``
held-out spectra of known minerals (the validation specimens, never trained on) the score is
``s_i = 1 - p_i[y_i]``, one minus the probability the model gives the true mineral, and
``threshold`` is their ``ceil((n + 1) * level) / n`` empirical quantile. For a new spectrum
the set is every mineral ``k`` with ``1 - p[k] <= threshold``. If the new spectrum is
exchangeable with the calibration spectra (a known mineral, measured like them), the set
holds its true mineral with probability at least ``level`` (at most ``level + 1/(n+1)``),
averaged over spectra: a *marginal* guarantee, not one per mineral.

Two choices made here, each costing only over-coverage:

* the set is never empty: the top-1 mineral is always in it (an empty LAC set means "no
  mineral is plausible", which the ``unknown`` flag reports separately);
* with too few calibration spectra for the level (``ceil((n + 1) * level) > n``) the
  threshold is 1: every mineral is in the set.

After an onboard head retrain the threshold is recomputed (:func:`recalibrate`) from the
calibration spectra's stored int8 features (:data:`~ramanedge.manifest.CALIBRATION_FILE`)
under the *new* head: for the artifact's own minerals the guarantee then holds for the new
head as it did for the old one (the calibration specimens are still held out from both the
backbone and the head). The minerals taught on board have no held-out spectra, so their
coverage is not guaranteed, only measured (``docs/results.md``).

TensorFlow-free: used by ``quantize`` on the ground and by the rover's classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from ramanedge.errors import ManifestError

METHODS = ("lac",)
DEFAULT_LEVEL = 0.95


def check_level(level: float) -> float:
    """``level`` as a float in (0, 1); :class:`ValueError` otherwise."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    return level


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal threshold of ``scores`` (n,): their ``ceil((n + 1) * level)``-th
    smallest value, or 1.0 (everything passes) when that rank exceeds ``n``."""
    level = check_level(level)
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError("conformal calibration needs at least one finite score")
    # exact rational arithmetic: (n + 1) * 0.55 in floating point can round up past an
    # integer and ask for one score more than the level needs
    rank = math.ceil((s.size + 1) * Fraction(repr(level)))
    return 1.0 if rank > s.size else float(s[rank - 1])


def lac_scores(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LAC non-conformity scores ``1 - probs[i, y[i]]`` of labelled spectra (N,)."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if P.ndim != 2 or y.shape != (P.shape[0],):
        raise ValueError(f"probs (N, K) and labels (N,) must match, got {P.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= P.shape[1]):
        raise ValueError(f"labels must be in 0..{P.shape[1] - 1}")
    return 1.0 - P[np.arange(y.size), y]


def calibrate_sets(probs: np.ndarray, y: np.ndarray, *, level: float = DEFAULT_LEVEL
                   ) -> dict[str, Any]:
    """The manifest ``conformal`` rule from held-out labelled spectra: ``probs`` (N, K) the
    probabilities the rover computes for them, ``y`` (N,) their class ids."""
    scores = lac_scores(probs, y)
    return {"method": "lac", "level": check_level(level),
            "threshold": conformal_quantile(scores, level), "n_calibration": int(scores.size)}


def check_section(section: Any) -> None:
    """Raise :class:`ManifestError` unless ``section`` is a usable ``conformal`` section."""
    if not isinstance(section, dict) or section.get("method") not in METHODS:
        got = section.get("method") if isinstance(section, dict) else section
        raise ManifestError(f"manifest 'conformal.method' must be one of {METHODS}, got {got!r}")
    for key, lo, hi in (("level", 0.0, 1.0), ("threshold", 0.0, 1.0)):
        v = section.get(key)
        if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi \
                or (key == "level" and v in (0, 1)):
            raise ManifestError(f"manifest 'conformal.{key}' must be a number in "
                                f"{'(0, 1)' if key == 'level' else '[0, 1]'}, got {v!r}")


def prediction_set(probs: np.ndarray, threshold: float,
                   order: np.ndarray | None = None) -> np.ndarray:
    """Class indices of the set of one spectrum (``probs`` (K,)), most probable first:
    every class whose score ``1 - p`` is at most ``threshold``, and always the top one.

    Those classes are a prefix of the classes sorted by decreasing probability (ties in index
    order), so the set is that prefix; ``order`` passes the sort when the caller already has
    it. (The classifier takes the same prefix of its own ranking, with :func:`set_size`.)
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    if order is None:
        order = np.argsort(-p, kind="stable")
    return order[:set_size(p, threshold)]


def set_size(probs: np.ndarray, threshold: float) -> int:
    """Size of the set of one spectrum (``probs`` (K,)): :func:`prediction_set` without the
    indices."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    return max(1, int(np.count_nonzero(p >= 1.0 - float(threshold))))


def set_sizes(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Set size of each row of ``probs`` (N, K) (vectorised :func:`prediction_set`)."""
    P = np.asarray(probs, dtype=np.float64)
    return np.maximum((1.0 - float(threshold) <= P).sum(axis=1), 1)


def covered(probs: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each row's set holds its true class ``y`` (bool (N,))."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    p_true = P[np.arange(y.size), y]
    return (p_true >= 1.0 - float(threshold)) | (P.argmax(axis=1) == y)


def recalibrate(section: dict[str, Any], probs: np.ndarray, labels: Sequence[str],
                cal_labels: Sequence[str]) -> dict[str, Any]:
    """The ``section`` recomputed for another head: ``probs`` (N, K) the new head's
    probabilities over ``labels`` for the N calibration spectra whose true minerals are
    ``cal_labels``. Spectra of a mineral the new head does not have are dropped (counted in
    ``n_dropped``). Returns a new section (``recalibrated: true``)."""
    check_section(section)
    index = {lab: i for i, lab in enumerate(labels)}
    keep = np.array([lab in index for lab in cal_labels], dtype=bool)
    y = np.array([index[lab] for lab in np.asarray(cal_labels)[keep]], dtype=np.int64)
    if not keep.any():
        raise ValueError("no calibration spectrum is of a mineral the new head knows")
    rule = calibrate_sets(np.asarray(probs)[keep], y, level=section["level"])
    return {**section, **rule, "recalibrated": True, "n_dropped": int((~keep).sum())}
