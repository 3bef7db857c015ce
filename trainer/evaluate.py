"""Evaluation: top-k accuracy, per-class recall, confusion matrix, robustness to x-shifts.

Everything here works on a *predict function* ``X (N, 1392) -> scores (N, K)`` so the same
code evaluates the Keras model, an int8 TFLite model (quantize) and the baselines.

Shift robustness: each test spectrum is shifted by ``+s`` and by ``-s`` grid points (1 cm-1
each) with :func:`ramanedge.grid.shift_spectra` (edge padding) and the reported accuracy at
``s`` is the mean of the two.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from ramanedge.grid import shift_spectra

DEFAULT_SHIFTS: tuple[int, ...] = (0, 15, 30)
PredictFn = Callable[[np.ndarray], np.ndarray]


def topk_accuracy(scores: np.ndarray, y: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose true class is among the ``k`` highest scores.

    Ties are broken toward the lower class index (stable sort), so the result is
    deterministic. Returns ``nan`` for an empty set.
    """
    scores = np.asarray(scores)
    y = np.asarray(y, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (N, K) with N = len(y), got {scores.shape} and {y.shape}")
    if y.size == 0:
        return float("nan")
    k = max(1, min(int(k), scores.shape[1]))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of spectra of true class ``i`` predicted as ``j`` (int64)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; ``nan`` where a class has no sample."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def shift_accuracy(
    predict: PredictFn,
    X: np.ndarray,
    y: np.ndarray,
    shifts: Sequence[int] = DEFAULT_SHIFTS,
    ks: Sequence[int] = (1, 3),
) -> dict[str, dict[str, float]]:
    """Top-k accuracy under x-shifts: ``{"s": {"top1": mean(+s, -s), "top1_plus": ...}}``.

    Shift 0 is evaluated once. Keys: ``top{k}`` (mean of the two directions),
    ``top{k}_plus``, ``top{k}_minus``.
    """
    out: dict[str, dict[str, float]] = {}
    for s in shifts:
        s = abs(int(s))
        row: dict[str, float] = {}
        directions = [s] if s == 0 else [s, -s]
        per_dir = {d: predict(shift_spectra(X, d)) for d in directions}
        for k in ks:
            accs = {d: topk_accuracy(sc, y, k) for d, sc in per_dir.items()}
            row[f"top{k}"] = float(np.mean(list(accs.values())))
            if s:
                row[f"top{k}_plus"] = accs[s]
                row[f"top{k}_minus"] = accs[-s]
        out[str(s)] = row
    return out


def evaluate_predictions(
    predict: PredictFn,
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    shifts: Sequence[int] = DEFAULT_SHIFTS,
) -> dict:
    """All metrics of one predictor on one set, as a JSON-ready dict.

    Keys: ``n``, ``top1``, ``top3``, ``per_class_recall`` ({label: recall or null},
    classes present in ``y`` only), ``balanced_accuracy`` (mean of those recalls),
    ``shifts`` (see :func:`shift_accuracy`), and ``confusion`` (list of lists).
    """
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    scores = predict(X)
    pred = np.argmax(scores, axis=1)
    cm = confusion_matrix(y, pred, len(labels))
    rec = per_class_recall(cm)
    present = np.bincount(y, minlength=len(labels)) > 0
    return {
        "n": int(y.size),
        "top1": topk_accuracy(scores, y, 1),
        "top3": topk_accuracy(scores, y, 3),
        "balanced_accuracy": float(np.nanmean(rec[present])) if present.any() else float("nan"),
        "per_class_recall": {labels[i]: float(rec[i]) for i in np.flatnonzero(present)},
        "shifts": shift_accuracy(predict, X, y, shifts),
        "confusion": cm.tolist(),
    }


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str | os.PathLike,
                   title: str = "") -> None:
    """Write a row-normalised confusion-matrix PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(4 + 0.12 * k, 30)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fs = max(2.0, min(8.0, 400.0 / max(k, 1)))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=90, fontsize=fs)
    ax.set_yticklabels(labels, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
