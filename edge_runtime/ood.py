"""Unknown-mineral (out-of-distribution) detection: the score and its calibrated threshold.

Two rules, both calibrated on held-out *in-distribution* spectra (the validation split) so
that about ``target_tpr`` of known minerals pass; the result is the manifest's ``"unknown"``
section, which :class:`edge_runtime.classify.Classifier` applies on the rover:

``max_prob``
    unknown when the model's top probability is below ``threshold`` (the ``1 - target_tpr``
    quantile of the calibration spectra's top probabilities). Needs nothing but the output.
``knn_cosine``
    unknown when the cosine distance ``1 - max_j cos(f, b_j)`` from the spectrum's D-dimensional
    int8-backbone features ``f`` to the nearest vector ``b_j`` of a reference bank exceeds
    ``threshold`` (the ``target_tpr`` quantile of the calibration distances). The bank is the
    artifact's exemplar features (``exemplars.npz``), plus, when a retrained head is active,
    the features of the head store's samples, so taught minerals stop being "unknown".
    Measured better than ``max_prob`` on RRUFF minerals the model never saw
    (``docs/parts/edge.md``); written on the ground by :mod:`quantize.exemplars` (an export
    with exemplars, or ``attach_exemplars`` given validation spectra).
``knn_logit``
    the ``knn_cosine`` distance and the negative largest logit of the float head, each
    standardised by its mean and s.d. on the calibration spectra, mixed with ``weight`` on
    the distance: ``w * (d - mu_d) / sd_d + (1 - w) * (-max z - mu_z) / sd_z``; unknown above
    ``threshold`` (the ``target_tpr`` quantile on the calibration spectra). The two scores
    fail on different spectra (far from every exemplar vs no class claims it), so their sum
    separates unseen minerals better than either (docs/results.md section 4; the weight
    :data:`KNN_LOGIT_WEIGHT` was chosen on the *negatives* half of the rare minerals, never
    on the evaluation half). After an onboard head retrain the standardisation and threshold
    are recomputed from the artifact's calibration spectra under the new head
    (:func:`recalibrate_knn_logit`).
``knn_logit_norm``
    ``knn_logit`` with a third part, minus the features' length standardised the same way:
    ``(1 - v) * (the two parts above) + v * (-|f| - norm_mean) / norm_sd`` with
    ``v = norm_weight``: unknown minerals excite fewer features (:data:`KNN_LOGIT_NORM_WEIGHT`,
    chosen on the negatives half; written by exports since 2026-12-05). A method name of its
    own, so that a runtime that does not know the third part refuses the artifact instead of
    comparing a two-part score with a three-part threshold. Recalibrated after an onboard
    head retrain it becomes ``knn_logit`` (the norm of a taught mineral's features cannot
    be taught; the bank and the head learn the mineral).

Every rule has a score, higher = more likely unknown: :func:`score` computes it and
:func:`threshold_score` gives the section's threshold on that scale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ramanedge.errors import ManifestError

METHODS = ("max_prob", "knn_cosine", "knn_logit", "knn_logit_norm")
#: the rules that compare with the exemplar bank, and those that also read the head's logits
BANK_METHODS = ("knn_cosine", "knn_logit", "knn_logit_norm")
LOGIT_METHODS = ("knn_logit", "knn_logit_norm")
KNN_LOGIT_WEIGHT = 0.6
"""Weight of the cosine distance in ``knn_logit`` (chosen on the negatives half, 5 splits)."""
KNN_LOGIT_NORM_WEIGHT = 0.2
"""Weight of the feature-norm part of ``knn_logit_norm`` (chosen on the negatives half, 5 grouped
splits of the early-pool default: the highest mean AUROC of 0.1 / 0.2 / 0.3;
``benchmarks.ood_variants``)."""


def unknown_score(probs: np.ndarray) -> np.ndarray:
    """``max_prob`` score ``1 - max p``: higher = more likely unknown. (N, K) or (K,)."""
    probs = np.asarray(probs, dtype=np.float64)
    return 1.0 - probs.max(axis=-1)


def normalise_rows(F: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    F = np.asarray(F, dtype=np.float32)
    n = np.linalg.norm(F, axis=-1, keepdims=True)
    return F / np.maximum(n, 1e-12)


class Int8Bank:
    """A cosine reference bank that keeps the exemplar features as the model's int8 codes.

    The rover's largest array after the model: 676 x 2048 exemplar features are 5.5 MB as
    float32 but 1.4 MB as int8. Cosine similarity ignores the dequantisation scale, so a row
    ``scale * (q - zero_point)`` is compared as ``q - zero_point``, exactly, in chunks of
    :attr:`CHUNK` rows: no full-size float copy ever exists (peak RSS is a flight
    constraint). ``extra`` holds a few float rows (the head store's taught samples).

    A bank whose float32 unit rows fit in :attr:`CACHE_BYTES` (the flight model's 676 x 192:
    0.5 MB) keeps them, so a query is one matrix product instead of a chunked int8 -> float
    conversion per call (the unknown check then costs a small fraction of the model's
    invoke); larger banks (the paper family's 2,048-wide features) stay chunked.
    """

    CHUNK = 128
    CACHE_BYTES = 2 << 20

    def __init__(self, codes: np.ndarray, zero_point: float = 0.0,
                 extra: np.ndarray | None = None) -> None:
        codes = np.asarray(codes)
        if codes.dtype != np.int8 or codes.ndim != 2:
            raise ValueError(f"codes must be int8 (M, D), got {codes.dtype} {codes.shape}")
        self.codes = codes
        self.zero_point = np.float32(zero_point)
        self.inv_norm = np.empty(codes.shape[0], dtype=np.float32)
        for i, block in self._blocks():
            self.inv_norm[i:i + len(block)] = 1.0 / np.maximum(
                np.linalg.norm(block, axis=1), 1e-12)
        self.extra = None if extra is None or not len(extra) else normalise_rows(extra)
        # the cached bank: unit rows (exemplars, then extra) transposed to (D, rows), so any
        # query is one product against it; None = chunked
        self._unit: np.ndarray | None = None
        if codes.shape[0] * codes.shape[1] * 4 <= self.CACHE_BYTES:
            rows = [block * self.inv_norm[i:i + len(block), None] for i, block in self._blocks()]
            if self.extra is not None:
                rows.append(self.extra)
            self._unit = np.ascontiguousarray(
                np.concatenate(rows or [np.zeros((0, codes.shape[1]), np.float32)]).T)

    @property
    def unit_columns(self) -> np.ndarray | None:
        """The cached bank as float32 (D, rows) unit columns (exemplars, then extra rows), or
        ``None`` when the bank is too large to cache (queried in chunks instead)."""
        return self._unit

    def _blocks(self):
        for i in range(0, self.codes.shape[0], self.CHUNK):
            block = self.codes[i:i + self.CHUNK].astype(np.float32)
            block -= self.zero_point
            yield i, block

    def __len__(self) -> int:
        return int(self.codes.shape[0]) + (0 if self.extra is None else len(self.extra))

    def distance(self, features: np.ndarray) -> float:
        """``knn_cosine`` score of one feature vector (D,): 1 - its largest cosine with any
        bank row (the classifier's per-spectrum path, without the batch reshaping)."""
        return self.distance_and_norm(features)[0]

    def distance_and_norm(self, features: np.ndarray) -> tuple[float, float]:
        """(:meth:`distance`, the vector's L2 length) of one feature vector (D,): the
        length is computed for the cosine anyway, and ``knn_logit`` may use it."""
        f = np.asarray(features, dtype=np.float32).reshape(-1)
        length = math.sqrt(f @ f)
        norm = max(length, 1e-12)
        if self._unit is not None and self._unit.shape[1]:  # one product, no reshaping
            return 1.0 - float((f @ self._unit).max()) / norm, length
        return 1.0 - float(self.max_cosine((f / norm).reshape(1, -1))[0]), length

    def max_cosine(self, units: np.ndarray) -> np.ndarray:
        """Largest cosine of each unit-norm query row (N, D) with any bank row -> (N,)."""
        best = np.full(units.shape[0], -np.inf, dtype=np.float32)
        if self._unit is not None:  # exemplars and extra rows in one product
            if self._unit.shape[1]:
                np.maximum(best, (units @ self._unit).max(axis=1), out=best)
            return best
        for i, block in self._blocks():
            s = (units @ block.T) * self.inv_norm[i:i + len(block)]
            np.maximum(best, s.max(axis=1), out=best)
        if self.extra is not None:
            np.maximum(best, (units @ self.extra.T).max(axis=1), out=best)
        return best


def knn_cosine_score(features: np.ndarray, bank_unit: np.ndarray | Int8Bank) -> np.ndarray:
    """``knn_cosine`` score: cosine distance to the nearest bank row. (N, D) or (D,).

    ``bank_unit``: (M, D) reference features already passed through :func:`normalise_rows`,
    or an :class:`Int8Bank`.
    """
    units = normalise_rows(features)
    if isinstance(bank_unit, Int8Bank):
        flat = units.reshape(-1, units.shape[-1])
        best = bank_unit.max_cosine(flat).reshape(units.shape[:-1])
        return (1.0 - best).astype(np.float64)
    s = units @ np.asarray(bank_unit, dtype=np.float32).T
    return (1.0 - s.max(axis=-1)).astype(np.float64)


def feature_norms(features: np.ndarray) -> np.ndarray:
    """L2 length of each feature row (N, D) (or of one (D,) vector), float64, computed as the
    rover does (float32 features, float32 sum of squares)."""
    F = np.asarray(features, dtype=np.float32)
    return np.sqrt(np.einsum("...d,...d->...", F, F).astype(np.float64))


def knn_logit_score(distance: np.ndarray | float, logits: np.ndarray,
                    section: dict[str, Any],
                    norms: np.ndarray | float | None = None) -> np.ndarray | float:
    """``knn_logit`` score from the cosine distance(s), the head's logits ((K,) or (N, K))
    and, when the section has a norm part, the features' lengths (:func:`feature_norms`),
    with the section's standardisation and weights."""
    w = float(section["weight"])
    m = -np.asarray(logits, dtype=np.float64).max(axis=-1)
    two = (w * (np.asarray(distance, dtype=np.float64) - section["knn_mean"])
           / section["knn_sd"]
           + (1.0 - w) * (m - section["logit_mean"]) / section["logit_sd"])
    if section["method"] != "knn_logit_norm":
        return two
    if norms is None:
        raise ManifestError("the knn_logit_norm rule needs the features' lengths")
    v = float(section["norm_weight"])
    n = -np.asarray(norms, dtype=np.float64)
    return (1.0 - v) * two + v * (n - section["norm_mean"]) / section["norm_sd"]


def knn_logit_score_1(distance: float, max_logit: float, section: dict[str, Any],
                      norm: float | None = None) -> float:
    """:func:`knn_logit_score` of one spectrum from its distance, its largest logit and (for
    ``knn_logit_norm``) its features' length, in Python floats (the same IEEE double
    arithmetic, without numpy's per-call cost)."""
    w = float(section["weight"])
    two = (w * (distance - section["knn_mean"]) / section["knn_sd"]
           + (1.0 - w) * (-max_logit - section["logit_mean"]) / section["logit_sd"])
    if section["method"] != "knn_logit_norm":
        return two
    if norm is None:
        raise ManifestError("the knn_logit_norm rule needs the features' length")
    v = section["norm_weight"]
    return (1.0 - v) * two + v * (-norm - section["norm_mean"]) / section["norm_sd"]


def _knn_logit_rule(d: np.ndarray, logits: np.ndarray, *, weight: float,
                    target_tpr: float, norms: np.ndarray | None, norm_weight: float
                    ) -> dict[str, Any]:
    m = -np.asarray(logits, dtype=np.float64).max(axis=-1)
    d = np.asarray(d, dtype=np.float64)
    rule = {"method": "knn_logit_norm" if norm_weight else "knn_logit",
            "weight": float(weight),
            "knn_mean": float(d.mean()), "knn_sd": float(max(d.std(), 1e-9)),
            "logit_mean": float(m.mean()), "logit_sd": float(max(m.std(), 1e-9))}
    if norm_weight:
        n = -np.asarray(norms, dtype=np.float64)
        rule.update(norm_weight=float(norm_weight), norm_mean=float(n.mean()),
                    norm_sd=float(max(n.std(), 1e-9)))
    rule["threshold"] = float(np.quantile(knn_logit_score(d, logits, rule, norms),
                                          target_tpr))
    rule["knn_threshold"] = float(np.quantile(d, target_tpr))
    return rule


def recalibrate_knn_logit(section: dict[str, Any], features: np.ndarray, logits: np.ndarray,
                          bank: Int8Bank) -> dict[str, Any]:
    """A ``knn_logit`` section recomputed for another head and bank: ``features`` (N, D) the
    calibration spectra's features, ``logits`` (N, K) the new head's logits for them,
    ``bank`` the new reference bank. Same weight and target rate, no feature-norm part (a
    taught mineral's features may be weak: the backbone never trained on it);
    ``recalibrated: true``."""
    check_section(section)
    d = knn_cosine_score(features, bank)
    # without the feature-norm part: it measures how strongly the backbone responds, and a
    # mineral taught on board is one the backbone never trained on; the bank (its samples)
    # and the head (its class) learn it, its feature norm cannot be taught
    rule = _knn_logit_rule(d, logits, weight=section["weight"],
                           target_tpr=section.get("target_tpr", 0.95), norms=None,
                           norm_weight=0.0)
    base = {k: v for k, v in section.items() if k not in ("norm_weight", "norm_mean",
                                                            "norm_sd")}
    return {**base, **rule, "recalibrated": True, "n_calibration": int(len(d))}


def calibrate_unknown(
    probs: np.ndarray,
    *,
    target_tpr: float = 0.95,
    features: np.ndarray | None = None,
    bank: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    weight: float = KNN_LOGIT_WEIGHT,
    norm_weight: float = KNN_LOGIT_NORM_WEIGHT,
) -> dict:
    """Manifest ``unknown`` section from held-out in-distribution outputs.

    ``probs`` (N, K): softmax outputs of the calibration (validation) spectra. With only
    ``probs`` the rule is ``max_prob``. With ``features`` (N, D, their dequantised backbone
    features) and ``bank`` (M, D, the exemplar features shipped in the artifact) the rule is
    ``knn_cosine``; the ``max_prob`` threshold is kept in ``max_prob_threshold`` for reference.
    With the float head's ``logits`` (N, K) of the same spectra as well the rule is
    ``knn_logit_norm`` (``weight`` on the distance, ``norm_weight`` on the feature-norm part;
    ``norm_weight=0``: ``knn_logit``), its ``knn_cosine`` threshold kept in
    ``knn_threshold``.
    """
    if not 0.0 < target_tpr < 1.0:
        raise ValueError(f"target_tpr must be in (0, 1), got {target_tpr}")
    top = np.asarray(probs, dtype=np.float64).max(axis=-1)
    if top.size == 0:
        raise ValueError("need at least one held-out spectrum to calibrate the threshold")
    mp = float(np.quantile(top, 1.0 - target_tpr))
    if features is None and bank is None:
        return {"method": "max_prob", "threshold": mp, "target_tpr": target_tpr,
                "n_calibration": int(top.size)}
    if features is None or bank is None:
        raise ValueError("knn_cosine calibration needs both features and bank")
    features = np.asarray(features, dtype=np.float32)
    if features.shape[0] != top.size:
        raise ValueError(f"features has {features.shape[0]} rows but probs has {top.size}")
    d = knn_cosine_score(features, normalise_rows(bank))
    common = {"bank": "exemplars", "n_bank": int(len(bank)), "target_tpr": target_tpr,
              "n_calibration": int(top.size), "max_prob_threshold": mp}
    if logits is None:
        return {"method": "knn_cosine", "threshold": float(np.quantile(d, target_tpr)),
                **common}
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if not 0.0 <= norm_weight < 1.0:
        raise ValueError(f"norm_weight must be in [0, 1), got {norm_weight}")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[0] != top.size:
        raise ValueError(f"logits has {logits.shape[0]} rows but probs has {top.size}")
    norms = feature_norms(features) if norm_weight else None
    return {**_knn_logit_rule(d, logits, weight=weight, target_tpr=target_tpr, norms=norms,
                              norm_weight=norm_weight), **common}


def check_section(section: dict[str, Any]) -> None:
    """Raise :class:`ManifestError` unless ``section`` is a usable ``unknown`` section."""
    if not isinstance(section, dict) or section.get("method") not in METHODS:
        got = section.get("method") if isinstance(section, dict) else section
        raise ManifestError(f"manifest 'unknown.method' must be one of {METHODS}, got {got!r}")
    keys = ["threshold"]
    if section["method"] in LOGIT_METHODS:
        keys += ["weight", "knn_mean", "knn_sd", "logit_mean", "logit_sd"]
    if section["method"] == "knn_logit_norm":
        keys += ["norm_weight", "norm_mean", "norm_sd"]
    if "target_tpr" in section:
        keys.append("target_tpr")
    for key in keys:
        v = section.get(key)
        # a JSON number only (a string that float() would parse is refused: the per-spectrum
        # path does arithmetic on these values as they are)
        if type(v) not in (int, float) or not np.isfinite(v):
            raise ManifestError(f"manifest 'unknown.{key}' must be a finite number, got {v!r}")
        if key.endswith("_sd") and v <= 0:
            raise ManifestError(f"manifest 'unknown.{key}' must be > 0, got {v!r}")
        if key == "weight" and not 0 <= v <= 1:
            raise ManifestError(f"manifest 'unknown.weight' must be in [0, 1], got {v!r}")
        if key == "norm_weight" and not 0 <= v < 1:
            raise ManifestError(f"manifest 'unknown.norm_weight' must be in [0, 1), got {v!r}")
        if key == "target_tpr" and not 0 < v < 1:
            raise ManifestError(f"manifest 'unknown.target_tpr' must be in (0, 1), got {v!r}")


def score(section: dict[str, Any], *, probs: np.ndarray, features: np.ndarray | None = None,
          bank_unit: np.ndarray | None = None,
          logits: np.ndarray | None = None) -> np.ndarray | float:
    """The section's unknown score (higher = more unknown).

    ``max_prob`` uses ``probs`` (K,) or (N, K); ``knn_cosine`` uses ``features`` and the
    unit-norm reference ``bank_unit`` (see :func:`knn_cosine_score`); ``knn_logit`` those and
    the float head's ``logits``.
    """
    check_section(section)
    if section["method"] == "max_prob":
        return unknown_score(probs)
    if features is None or bank_unit is None or len(bank_unit) == 0:
        raise ManifestError(f"the {section['method']} unknown rule needs features and the "
                            "exemplar bank (exemplars.npz)")
    d = knn_cosine_score(features, bank_unit)
    if section["method"] == "knn_cosine":
        return d
    if logits is None:
        raise ManifestError("the knn_logit unknown rule needs the head's logits")
    norms = feature_norms(features) if section["method"] == "knn_logit_norm" else None
    return knn_logit_score(d, logits, section, norms)


def threshold_score(section: dict[str, Any]) -> float:
    """The section's threshold expressed on the :func:`score` scale."""
    check_section(section)
    t = float(section["threshold"])
    return 1.0 - t if section["method"] == "max_prob" else t


def is_unknown(probs: np.ndarray, section: dict | None, *, features: np.ndarray | None = None,
               bank_unit: np.ndarray | None = None,
               logits: np.ndarray | None = None) -> np.ndarray | bool:
    """Apply a manifest ``unknown`` section; no section means nothing is flagged."""
    if not section:
        return False
    return score(section, probs=probs, features=features, bank_unit=bank_unit,
                 logits=logits) > threshold_score(section)
