"""Ground-side exemplar selection: the artifact's ``exemplars.npz`` and its unknown rule.

A few training spectra per class, stored as the int8 model's own ``features`` codes, are the
onboard head retrainer's memory of the old classes (:class:`edge_runtime.head.SoftmaxHead`
fits on them with the new samples) and the reference bank of the ``knn_cosine`` unknown rule
(:mod:`edge_runtime.ood`).

- :func:`select_exemplars`: herding (iCaRL), the indices of ``per_class`` exemplars per class;
- :func:`build_exemplars`: from the training split's int8 features (as
  :func:`edge_runtime.interpreter.run_int8_batch` gives them) to an :class:`ExemplarBank`
  (int8 codes exactly as the model outputs them, class ids, the npz bytes);
- :func:`knn_unknown_section`: the manifest's ``knn_cosine`` / ``knn_logit`` ``unknown``
  section over the bank,
  calibrated on validation spectra, keeping the superseded rule under ``previous``.

:func:`quantize.export.export_artifact` (``QuantizeConfig.exemplars_per_class``) computes all of
this before it writes the artifact once; :func:`attach_exemplars` adds exemplars to an
existing artifact with the same functions. TensorFlow-free.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.interpreter import (
    dequantize_int8,
    make_interpreter,
    quantize_int8,
    run_int8_batch,
)
from ramanedge.errors import ModelError
from ramanedge.fsutil import atomic_write_bytes
from ramanedge.manifest import (
    EXEMPLARS_FILE,
    QuantParams,
    exemplars_entry,
    unknown_section,
    write_manifest,
)

#: Exemplars per class of ``ramanedge quantize`` (``--exemplars``) and :func:`attach_exemplars`.
DEFAULT_PER_CLASS = 10


def select_exemplars(features: np.ndarray, y: np.ndarray, *, per_class: int = 5) -> np.ndarray:
    """Indices of up to ``per_class`` exemplars per class, chosen by herding (iCaRL).

    Herding greedily picks the samples whose running mean best approximates the class mean
    in feature space, so a few exemplars represent the class centre rather than outliers.
    Deterministic. ``features`` (N, D), ``y`` (N,) integer or string labels.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    F = np.asarray(features, dtype=np.float64)
    y = np.asarray(y)
    chosen: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        Fc = F[idx]
        mu = Fc.mean(axis=0)
        acc = np.zeros_like(mu)
        picked: list[int] = []
        for j in range(min(per_class, idx.size)):
            cand = (acc[None, :] + Fc) / (j + 1)
            dist = np.linalg.norm(cand - mu[None, :], axis=1)
            dist[picked] = np.inf
            best = int(np.argmin(dist))
            picked.append(best)
            acc += Fc[best]
        chosen.extend(int(idx[p]) for p in picked)
    return np.array(sorted(chosen), dtype=np.int64)


@dataclass(frozen=True)
class ExemplarBank:
    """The exemplars of an artifact: ``codes`` int8 (M, D) exactly as the model outputs them,
    ``y`` int32 (M,) class ids, ``features`` float32 (M, D) their dequantised values (the
    ``knn_cosine`` bank), ``per_class`` the requested number per class."""

    codes: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    features: np.ndarray = field(repr=False)
    per_class: int

    def npz_bytes(self) -> bytes:
        """The content of :data:`~ramanedge.manifest.EXEMPLARS_FILE` (``features``, ``y``;
        ``np.savez``, loadable with ``allow_pickle=False``)."""
        buf = io.BytesIO()
        np.savez(buf, features=self.codes, y=self.y)
        return buf.getvalue()


def build_exemplars(features: np.ndarray, y: np.ndarray, features_q: QuantParams, *,
                    per_class: int) -> ExemplarBank:
    """Herd ``per_class`` exemplars per class from the training split's int8 features.

    ``features`` (N, D): the dequantised ``features`` output of the int8 model
    (:func:`edge_runtime.interpreter.run_int8_batch`), ``features_q`` its quantisation. The
    int8 codes are recovered exactly (a dequantised int8 value is exact in float32, so
    ``round(x / scale) + zero_point`` gives the code back); anything else is refused.
    """
    features = np.asarray(features, dtype=np.float32)
    idx = select_exemplars(features, y, per_class=per_class)
    chosen = features[idx]
    codes = quantize_int8(chosen, features_q)
    if not np.array_equal(dequantize_int8(codes, features_q), chosen):
        raise ModelError("exemplar features are not the int8 model's dequantised outputs")
    return ExemplarBank(codes, np.asarray(y)[idx].astype(np.int32), chosen, int(per_class))


def knn_unknown_section(val_probs: np.ndarray, val_features: np.ndarray, bank: ExemplarBank,
                        *, target_tpr: float, previous: dict[str, Any] | None,
                        val_logits: np.ndarray | None = None,
                        norm: bool = True) -> dict[str, Any]:
    """The ``knn_cosine`` (or, given ``val_logits``, ``knn_logit_norm``; with ``norm=False``
    ``knn_logit``) ``unknown`` section over ``bank``, calibrated on validation spectra.

    ``val_probs`` (N, K): the int8 model's ``probs`` output (its ``max_prob`` threshold is
    kept in ``max_prob_threshold``); ``val_features`` (N, D): their dequantised features;
    ``val_logits`` (N, K): the float head's logits on those features; ``previous``: the rule
    it supersedes (kept under ``previous``).
    """
    from edge_runtime.ood import KNN_LOGIT_NORM_WEIGHT, calibrate_unknown

    rule = calibrate_unknown(val_probs, target_tpr=target_tpr, features=val_features,
                             bank=bank.features, logits=val_logits,
                             norm_weight=KNN_LOGIT_NORM_WEIGHT if norm else 0.0)
    return unknown_section(rule, split="val", previous=previous)


def _check_spectra(name: str, X: np.ndarray, n_points: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_points or len(X) == 0:
        raise ModelError(f"{name} must be (N, {n_points}) with N >= 1, got {X.shape}")
    return X


def attach_exemplars(
    model_dir: str | os.PathLike,
    X: np.ndarray,
    y: np.ndarray,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    X_val: np.ndarray | None = None,
    target_tpr: float | None = None,
    num_threads: int = 1,
) -> dict[str, Any]:
    """Add ``exemplars.npz`` to an existing artifact and re-write its manifest.

    For artifacts exported without exemplars (``ramanedge quantize --exemplars 0`` or
    :func:`~quantize.export.export_artifact` with ``exemplars_per_class=0``); a new export
    computes the same with ``QuantizeConfig.exemplars_per_class`` and writes once.
    ``X`` (N, 1392): preprocessed float32 *training-split* spectra; ``y`` (N,): their class
    ids in the manifest's label order. Every spectrum runs through the artifact's int8 model;
    ``per_class`` exemplars per class are picked and stored by :func:`build_exemplars`. The
    manifest gains ``head.exemplars``, ``head.exemplars_per_class`` and the file's sha256.

    With ``X_val`` (validation spectra of the known minerals) the ``unknown`` section becomes
    the ``knn_cosine`` rule (:func:`knn_unknown_section`) at ``target_tpr`` (default: the
    existing section's, else 0.95); the previous section is kept under ``unknown.previous``.

    Crash-safe order: the npz is written atomically first, then the manifest (atomically);
    an interruption leaves the previous, still valid artifact plus an unlisted file.
    Returns the manifest's new ``head`` section.
    """
    from edge_runtime.artifact import load_artifact

    art = load_artifact(model_dir)
    n_points = art.grid.n_points
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != n_points or y.shape != (X.shape[0],):
        raise ModelError(f"need X (N, {n_points}) and y (N,), got {X.shape} and {y.shape}")
    if y.size == 0 or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= len(art.labels):
        raise ModelError(f"y must be class ids in 0..{len(art.labels) - 1}")
    if X_val is not None:
        X_val = _check_spectra("X_val", X_val, n_points)
    it = make_interpreter(art.model_path, num_threads=num_threads)
    outputs = {"probs": art.probs_q, "features": art.features_q}
    train = run_int8_batch(it, X, art.input_q, outputs)
    bank = build_exemplars(train["features"], y, art.features_q, per_class=per_class)
    data = {k: v for k, v in art.manifest.data.items() if k != "manifest_sha256"}
    data["head"] = {**(data.get("head") or {}), **exemplars_entry(per_class)}
    data["files"] = {name: {} for name in {**data["files"], EXEMPLARS_FILE: {}}}
    if X_val is not None:
        prev = data.get("unknown") or {}
        tpr = float(target_tpr if target_tpr is not None else prev.get("target_tpr", 0.95))
        val = run_int8_batch(it, X_val, art.input_q, outputs)
        data["unknown"] = knn_unknown_section(val["probs"], val["features"], bank,
                                              target_tpr=tpr, previous=prev)
    folder = Path(model_dir)
    atomic_write_bytes(folder / EXEMPLARS_FILE, bank.npz_bytes())
    write_manifest(folder, data)
    return data["head"]
