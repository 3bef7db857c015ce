"""k-NN and SVM baselines (scikit-learn) on exactly the split the CNN uses.

Both classifiers see the same max-normalised grid spectra as the CNN. Hyper-parameters are
chosen on the validation split only (top-1), the chosen model is fitted on the training split
and reported on the test split, at shifts 0/15/30 cm-1 like the CNN.

- k-NN: ``k`` in ``knn_ks`` and metric in ``knn_metrics``, distance-weighted votes. Its class
  score is the vote share plus a small term for the distance to the class's nearest training
  spectrum, so top-3 is well defined even for ``k = 1`` (the library-search ranking).
- SVM: RBF ``SVC`` with balanced class weights, ``C`` in ``svm_cs``, ``gamma="scale"``;
  scores are the one-vs-rest decision values.

``rruff-clean`` holds the *same files* as ``rruff-raw`` with the fluorescence baseline
removed (see :mod:`ramanedge.dataset`; RRUFF's own LR "Processed" files are mostly not
corrected, so the data layer corrects the raw files itself). Clean rows are matched to raw
rows by file path, so the clean baselines use exactly the raw split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.evaluate import DEFAULT_SHIFTS, shift_accuracy, topk_accuracy


@dataclass(frozen=True)
class BaselineConfig:
    """Hyper-parameter grids searched on the validation split."""

    knn_ks: tuple[int, ...] = field(default=(1, 3, 5))
    knn_metrics: tuple[str, ...] = field(default=("euclidean", "cosine"))
    svm_cs: tuple[float, ...] = field(default=(1.0, 10.0, 100.0))
    shifts: tuple[int, ...] = field(default=DEFAULT_SHIFTS)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {k: list(v) for k, v in asdict(self).items()}


class KNNScorer:
    """Distance-weighted k-NN returning a score for every class (see module docstring)."""

    def __init__(self, k: int = 1, metric: str = "euclidean") -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.k = int(k)
        self.metric = metric

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> KNNScorer:
        """Store the reference spectra."""
        self.X_ = np.asarray(X, dtype=np.float64)
        self.y_ = np.asarray(y, dtype=np.int64)
        self.n_classes_ = int(n_classes)
        return self

    def _distances(self, X: np.ndarray) -> np.ndarray:
        from sklearn.metrics import pairwise_distances

        return pairwise_distances(np.asarray(X, dtype=np.float64), self.X_, metric=self.metric)

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(N, K) class scores; argmax is the k-NN vote, the rest ranks by nearest distance."""
        d = self._distances(X)
        n = d.shape[0]
        k = min(self.k, d.shape[1])
        nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else \
            np.tile(np.arange(d.shape[1]), (n, 1))
        nd = np.take_along_axis(d, nn, axis=1)
        w = 1.0 / np.maximum(nd, 1e-12)
        votes = np.zeros((n, self.n_classes_))
        np.add.at(votes, (np.repeat(np.arange(n), nn.shape[1]), self.y_[nn].ravel()), w.ravel())
        votes /= votes.sum(axis=1, keepdims=True)
        # nearest distance per class (inf for classes without reference spectra)
        dmin = np.full((n, self.n_classes_), np.inf)
        for c in np.unique(self.y_):
            dmin[:, c] = d[:, self.y_ == c].min(axis=1)
        finite = np.isfinite(dmin)
        scale = max(float(dmin[finite].max()), 1e-12) if finite.any() else 1.0
        rank = np.where(finite, 1.0 - dmin / (scale * 1.0001), -1.0)  # in (0, 1], -1 if absent
        return votes + 1e-3 * rank


class SVMScorer:
    """RBF SVM with balanced class weights; scores are one-vs-rest decision values."""

    def __init__(self, C: float = 10.0, seed: int = 0) -> None:
        self.C = float(C)
        self.seed = int(seed)

    def fit(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> SVMScorer:
        """Fit the SVM on (X, y)."""
        from sklearn.svm import SVC

        self.n_classes_ = int(n_classes)
        self.model_ = SVC(C=self.C, kernel="rbf", gamma="scale", class_weight="balanced",
                          decision_function_shape="ovr", random_state=self.seed)
        self.model_.fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64))
        return self

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(N, K) scores; classes without training spectra score -inf."""
        dec = np.asarray(self.model_.decision_function(np.asarray(X, dtype=np.float64)))
        classes = self.model_.classes_
        if dec.ndim == 1:  # two classes: sklearn returns one column
            dec = np.stack([-dec, dec], axis=1)
        out = np.full((dec.shape[0], self.n_classes_), -np.inf)
        out[:, classes] = dec
        return out


def _select(candidates: list[tuple[dict, Any]], Xtr, ytr, Xva, yva, n_classes: int):
    """Fit each candidate on train, keep the best top-1 on val (first wins ties)."""
    best = None
    tried = []
    for params, make in candidates:
        est = make().fit(Xtr, ytr, n_classes)
        acc = topk_accuracy(est.scores(Xva), yva, 1)
        tried.append({**params, "val_top1": acc})
        if best is None or acc > best[0]:
            best = (acc, params, est)
    assert best is not None
    return best[2], best[1], tried


def run_baseline(
    kind: str,
    X_train: np.ndarray, y_train: np.ndarray,
    X_val: np.ndarray, y_val: np.ndarray,
    X_test: np.ndarray, y_test: np.ndarray,
    n_classes: int,
    config: BaselineConfig = BaselineConfig(),
    seed: int = 0,
) -> dict:
    """Select on val, report on test: ``{"model", "params", "tried", "top1", "top3", "shifts",
    "n_train", "n_test", "seconds"}`` for ``kind`` in ``{"knn", "svm"}``."""
    t0 = time.perf_counter()
    if kind == "knn":
        cands = [({"k": k, "metric": m}, (lambda k=k, m=m: KNNScorer(k, m)))
                 for m in config.knn_metrics for k in config.knn_ks]
    elif kind == "svm":
        cands = [({"C": c}, (lambda c=c: SVMScorer(c, seed))) for c in config.svm_cs]
    else:
        raise ValueError(f"baseline kind must be 'knn' or 'svm', got {kind!r}")
    est, params, tried = _select(cands, X_train, y_train, X_val, y_val, n_classes)
    scores = est.scores(X_test)
    return {
        "model": kind,
        "params": params,
        "tried": tried,
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "n_test": int(len(y_test)),
        "top1": topk_accuracy(scores, y_test, 1),
        "top3": topk_accuracy(scores, y_test, 3),
        "shifts": shift_accuracy(est.scores, X_test, y_test, config.shifts),
        "seconds": time.perf_counter() - t0,
    }


def align_by_path(raw_paths: Sequence[str], other_paths: Sequence[str]) -> np.ndarray:
    """Row index into ``other`` for every raw row (by file path); -1 where absent."""
    where = {p: i for i, p in enumerate(other_paths)}
    return np.array([where.get(p, -1) for p in raw_paths], dtype=np.int64)


def run_all_baselines(
    data: Any,
    *,
    clean_dataset: str | None = "rruff-clean",
    config: BaselineConfig = BaselineConfig(),
    log: Callable[[str], None] | None = print,
) -> dict:
    """k-NN and SVM on ``data``'s data set and split, then on the clean twin of the same rows.

    ``data`` is a :class:`trainer.run.DataConfig`. Returns ``{"rows": [...], "notes": [...],
    "data": ..., "config": ...}``; each row is a :func:`run_baseline` result with ``"data"``
    set to the data set name.
    """
    from dataclasses import replace

    from trainer.run import SPLITS, load_data, make_or_read_split

    ds = load_data(data, log)
    split = make_or_read_split(ds, data)
    masks = [split == s for s in SPLITS]
    notes: list[str] = []
    rows = []

    def run_on(X: np.ndarray, y: np.ndarray, name: str) -> None:
        for kind in ("knn", "svm"):
            if log is not None:
                log(f"{kind} on {name} ...")
            r = run_baseline(kind, X[masks[0]], y[masks[0]], X[masks[1]], y[masks[1]],
                             X[masks[2]], y[masks[2]], len(ds.labels), config, seed=0)
            r["data"] = name
            rows.append(r)

    run_on(ds.X, ds.y, data.dataset)
    if clean_dataset and clean_dataset != data.dataset:
        cds = load_data(replace(data, dataset=clean_dataset, min_spectra=1, split_file=None),
                        log)
        idx = align_by_path(ds.paths, cds.paths)
        if np.any(idx < 0):
            notes.append(f"{int(np.sum(idx < 0))} of {len(idx)} {data.dataset} spectra have no "
                         f"{clean_dataset} twin; clean rows use the matched spectra only")
        ok = idx >= 0
        Xc = np.zeros_like(ds.X)
        Xc[ok] = cds.X[idx[ok]]
        lab_ok = np.array([cds.labels[cds.y[j]] == ds.labels[ds.y[i]] if j >= 0 else False
                           for i, j in enumerate(idx)])
        if not np.all(lab_ok == ok):
            notes.append("some clean twins carry a different label; they were dropped")
        keep = ok & lab_ok
        masks = [m & keep for m in masks]
        run_on(Xc, ds.y, clean_dataset)
        notes.append(f"{clean_dataset}: the same {int(keep.sum())} files as {data.dataset}, "
                     "baseline removed before max-normalisation; same split")
    return {"rows": rows, "notes": notes, "data": data.to_dict(), "config": config.to_dict()}


def format_table(rows: list[dict], shifts: Sequence[int] = DEFAULT_SHIFTS) -> str:
    """A Markdown table of baseline (or CNN) rows with top-1/top-3 at each shift."""
    head = ["model", "data", "n_train", "n_test"]
    for s in shifts:
        head += [f"top1@{s}", f"top3@{s}"]
    head.append("params")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r.get("data", ""), str(r["n_train"]), str(r["n_test"])]
        for s in shifts:
            sh = r["shifts"][str(s)]
            cells += [f"{100 * sh['top1']:.1f}", f"{100 * sh['top3']:.1f}"]
        cells.append(", ".join(f"{k}={v}" for k, v in r.get("params", {}).items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
