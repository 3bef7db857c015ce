"""Unknown-mineral (out-of-distribution) detection: the score and its calibrated threshold.

Method ``max_prob``: a spectrum is ``unknown`` when the model's top probability is below a
threshold calibrated on held-out in-distribution spectra (the ``1 - target_tpr`` quantile of
their top probabilities, so about ``target_tpr`` of known minerals pass). The threshold lives
in the manifest under ``"unknown"``; :func:`is_unknown` applies it on the rover.
"""

from __future__ import annotations

import numpy as np

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


def is_unknown(probs: np.ndarray, section: dict | None) -> np.ndarray | bool:
    """Apply a manifest ``unknown`` section; no section means nothing is flagged."""
    if not section:
        return False
    if section.get("method") not in METHODS:
        raise ValueError(f"unknown-detection method must be one of {METHODS}, "
                         f"got {section.get('method')!r}")
    return np.asarray(probs).max(axis=-1) < float(section["threshold"])
