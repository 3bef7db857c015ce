"""Unknown-mineral (out-of-distribution) detection: the score and its calibrated threshold.

Method ``max_prob``: a spectrum is ``unknown`` when the model's top probability is below a
threshold calibrated on held-out in-distribution spectra (the ``1 - target_tpr`` quantile of
their top probabilities, so about ``target_tpr`` of known minerals pass). The threshold lives
in the manifest under ``"unknown"``; :func:`is_unknown` applies it on the rover.

Every method defines a score, higher = more likely unknown; :func:`score` computes it from a
manifest section and :func:`flag` compares it with the section's threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ramanedge.errors import ManifestError

METHODS = ("max_prob",)


def unknown_score(probs: np.ndarray) -> np.ndarray:
    """Higher = more likely unknown. ``probs``: (N, K) or (K,) softmax outputs."""
    probs = np.asarray(probs, dtype=np.float64)
    return 1.0 - probs.max(axis=-1)


def calibrate_unknown(probs: np.ndarray, *, target_tpr: float = 0.95) -> dict:
    """Manifest ``unknown`` section from held-out in-distribution softmax outputs (N, K)."""
    if not 0.0 < target_tpr < 1.0:
        raise ValueError(f"target_tpr must be in (0, 1), got {target_tpr}")
    top = np.asarray(probs, dtype=np.float64).max(axis=-1)
    if top.size == 0:
        raise ValueError("need at least one held-out spectrum to calibrate the threshold")
    threshold = float(np.quantile(top, 1.0 - target_tpr))
    return {"method": "max_prob", "threshold": threshold, "target_tpr": target_tpr,
            "n_calibration": int(top.size)}


def check_section(section: dict[str, Any]) -> None:
    """Raise :class:`ManifestError` unless ``section`` is a usable ``unknown`` section."""
    if not isinstance(section, dict) or section.get("method") not in METHODS:
        got = section.get("method") if isinstance(section, dict) else section
        raise ManifestError(f"manifest 'unknown.method' must be one of {METHODS}, got {got!r}")
    try:
        float(section["threshold"])
    except (KeyError, TypeError, ValueError):
        raise ManifestError("manifest 'unknown.threshold' must be a number") from None


def score(section: dict[str, Any], *, probs: np.ndarray,
          features: np.ndarray | None = None) -> np.ndarray | float:
    """The section's unknown score (higher = more unknown) for (K,) or (N, K) ``probs``."""
    check_section(section)
    return unknown_score(probs)


def threshold_score(section: dict[str, Any]) -> float:
    """The section's threshold expressed on the :func:`score` scale."""
    check_section(section)
    return 1.0 - float(section["threshold"])


def is_unknown(probs: np.ndarray, section: dict | None) -> np.ndarray | bool:
    """Apply a manifest ``unknown`` section; no section means nothing is flagged."""
    if not section:
        return False
    check_section(section)
    return np.asarray(probs).max(axis=-1) < float(section["threshold"])
