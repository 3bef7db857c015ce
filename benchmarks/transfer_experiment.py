"""The transfer experiment, TF-free part: teach a pretrained int8 model new minerals.

Given an artifact trained on a *subset* of the ``rruff-raw`` minerals (pretraining, done on
the ground by :mod:`benchmarks.transfer`) and the whole data set with its grouped split:

* **old** minerals = the artifact's labels; **new pool** = data-set minerals the artifact
  never saw that have at least ``max(ks)`` train-split spectra and some val/test spectra;
* for ``repeats`` random draws of ``c`` new minerals (``c`` in ``cs``) and ``k`` support
  spectra each (``k`` in ``ks``, from the train split): fit a new head with
  :class:`~edge_runtime.head.SoftmaxHead` on the artifact's exemplars + the supports, then
  measure top-1 on the new minerals' val+test spectra and on the old minerals' test spectra
  (argmax over *all* classes); the same without exemplars (anchor only);
* baseline: 1-nearest-neighbour (cosine) over stored reference spectra (every old train
  spectrum + the supports) on the preprocessed spectra, and the same on the int8 features;
* latency: one classification with the base head, with retrained heads of K classes, and
  the k-NN as the number of stored references grows;
* unknown-mineral detection on minerals the model never saw (new pool + ``heldout``):
  AUROC, FPR at 95 % TPR and the confident-wrong rate at a threshold calibrated on val.

Everything here is numpy + the TFLite runtime through the rover's own code
(``edge_runtime``), no TensorFlow. ``python -m benchmarks.transfer_experiment --model DIR
--split-csv FILE`` runs it on an existing artifact.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import ood
from edge_runtime.artifact import HeadWeights, load_artifact, softmax
from edge_runtime.classify import Classifier
from edge_runtime.head import SoftmaxHead, load_exemplars
from edge_runtime.interpreter import make_interpreter

Log = Callable[[str], None]
#: head-retraining variants compared: name -> (fit on exemplars too, SoftmaxHead.prior_weights)
HEAD_VARIANTS = {
    "head+exemplars": (True, "frozen"),
    "head+exemplars, anchored": (True, "anchored"),
    "head, no exemplars": (False, "frozen"),
}
METHODS = (*HEAD_VARIANTS, "knn spectra", "knn features")


@dataclass(frozen=True)
class TransferConfig:
    """Grid and settings of the experiment."""

    cs: tuple[int, ...] = (5, 10, 20)
    ks: tuple[int, ...] = (1, 3, 5)
    repeats: int = 5
    seed: int = 0
    alpha: float = 3e-3
    latency_classes: tuple[int, ...] = (63, 68, 83, 100)
    latency_repeats: int = 300
    knn_refs: tuple[int, ...] = (100, 1000, 5000)
    target_tpr: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _cosine_1nn(Q: np.ndarray, R: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Label and cosine similarity of the nearest reference row for each query row."""
    Qn = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    Rn = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)
    S = Qn @ Rn.T
    j = np.argmax(S, axis=1)
    return labels[j], S[np.arange(S.shape[0]), j]


def _median_ms(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    for _ in range(10):
        fn()
    t = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    t *= 1e3
    return {"median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90))}


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Area under the ROC curve for telling ``out`` (positive, higher score) from ``in``.

    Mann-Whitney statistic with ties counted half.
    """
    a = np.asarray(scores_in, dtype=np.float64)
    b = np.asarray(scores_out, dtype=np.float64)
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sv = allv[order]
    i = 0
    while i < sv.size:  # average ranks of ties
        j = i
        while j + 1 < sv.size and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    rb = ranks[a.size:].sum()
    return float((rb - b.size * (b.size + 1) / 2) / (a.size * b.size))


def ood_report(scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
               correct_in: np.ndarray, target_tpr: float) -> dict[str, Any]:
    """Per score: AUROC, FPR@TPR, and rates at the threshold calibrated on validation.

    ``scores[name] = (val scores, in-distribution test scores, unseen-mineral scores)``,
    higher = more unknown. The threshold lets ``target_tpr`` of the validation spectra pass.
    ``confident_wrong_unseen``: share of unseen-mineral spectra *not* flagged (every such
    answer names a wrong mineral); ``confident_wrong_known``: share of known-mineral test
    spectra misclassified and not flagged; ``flagged_known``: share of known test spectra
    flagged (lost answers).
    """
    out = {}
    for name, (val, s_in, s_out) in scores.items():
        thr = float(np.quantile(val, target_tpr))
        thr_test = float(np.quantile(s_in, target_tpr))
        out[name] = {
            "auroc": auroc(s_in, s_out),
            "fpr_at_tpr": float(np.mean(s_out <= thr_test)),
            "threshold": thr,
            "flagged_unseen": float(np.mean(s_out > thr)),
            "confident_wrong_unseen": float(np.mean(s_out <= thr)),
            "flagged_known": float(np.mean(s_in > thr)),
            "confident_wrong_known": float(np.mean((s_in <= thr) & ~correct_in)),
        }
    return out


def extract(clf: Classifier, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base-head probabilities (N, K; the network's, without the artifact's spectral
    library) and dequantised features (N, D) of grid spectra."""
    X = np.asarray(X, dtype=np.float32)
    P = np.empty((len(X), len(clf.artifact.labels)))
    F = np.empty((len(X), clf.artifact.feature_dim), dtype=np.float32)
    base = clf.with_head(None, library=False)  # the network's own answer
    for i, x in enumerate(X):
        P[i], F[i] = base.scores(x)
    return P, F


def gaussian_scores(F_train: np.ndarray, y_train: np.ndarray, *, shrink: float = 1e-3
                    ) -> tuple[Callable[[np.ndarray], np.ndarray],
                               Callable[[np.ndarray], np.ndarray]]:
    """Mahalanobis and relative Mahalanobis scores on the penultimate features.

    Class means and one shared covariance (Lee et al. 2018) from the training features;
    the relative score subtracts the distance under one background Gaussian of all training
    features (Ren et al. 2021). Both return the smallest (over classes) squared distance of
    each row, higher = more unknown. ``shrink``: ridge on the covariances (share of the mean
    variance) so that they invert.
    """
    F_train = np.asarray(F_train, dtype=np.float64)
    classes, idx = np.unique(np.asarray(y_train), return_inverse=True)
    means = np.stack([F_train[idx == k].mean(0) for k in range(len(classes))])

    def precision(X: np.ndarray) -> np.ndarray:
        cov = X.T @ X / len(X)
        cov += shrink * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        return np.linalg.inv(cov)

    prec = precision(F_train - means[idx])
    mu0 = F_train.mean(0)
    prec0 = precision(F_train - mu0)
    mpm = np.einsum("kd,de,ke->k", means, prec, means)

    def maha(Fm: np.ndarray) -> np.ndarray:
        Fm = np.asarray(Fm, dtype=np.float64)
        d = np.einsum("nd,de,ne->n", Fm, prec, Fm)[:, None] - 2 * Fm @ prec @ means.T + mpm
        return d.min(1)

    def relative(Fm: np.ndarray) -> np.ndarray:
        Fm = np.asarray(Fm, dtype=np.float64)
        c = Fm - mu0
        return maha(Fm) - np.einsum("nd,de,ne->n", c, prec0, c)

    return maha, relative


def unknown_experiment(art: Any, P: np.ndarray, F: np.ndarray, labels: np.ndarray,
                       split: np.ndarray, P_out: np.ndarray, F_out: np.ndarray, *,
                       target_tpr: float = 0.95,
                       keep_scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """Unknown-mineral detection scores on known (the artifact's labels) vs unseen spectra.

    ``P``, ``F``: base probabilities and features of the data set, ``labels``/``split`` per
    row; rows whose label is one of the artifact's are the known minerals (val: threshold,
    test: evaluation, train: reference bank). ``P_out``, ``F_out``: spectra of minerals the
    model never saw. Scores (higher = more unknown): ``1 - max prob`` (int8 output and float
    head), energy, negative max logit, cosine distance to the nearest exemplar / train
    feature vector, and (relative) Mahalanobis distance on the features
    (:func:`gaussian_scores`).
    """
    labels = np.asarray(labels).astype(str)
    known = np.isin(labels, list(art.labels))
    val, test, train = (known & (split == s) for s in ("val", "test", "train"))
    names = np.array(list(art.labels))
    correct_in = names[P[test].argmax(1)] == labels[test]
    ex = load_exemplars(art.exemplars_file, art.features_q, art.labels) \
        if art.exemplars_file is not None else None

    def energy(Fm: np.ndarray) -> np.ndarray:
        z = art.head.logits(Fm).astype(np.float64)
        m = z.max(1)
        return -(m + np.log(np.exp(z - m[:, None]).sum(1)))

    sets = (F[val], F[test], F_out)
    scores = {
        "max_prob (int8 probs)": (1 - P[val].max(1), 1 - P[test].max(1), 1 - P_out.max(1)),
        "max_prob (float head)": tuple(1 - art.head.probs(Fm).max(1) for Fm in sets),
        "energy (float head)": tuple(energy(Fm) for Fm in sets),
        "max_logit (float head)": tuple(-art.head.logits(Fm).max(1) for Fm in sets),
    }
    if ex is not None:
        scores["1-NN cosine to exemplars"] = tuple(
            1 - _cosine_1nn(Fm, ex.features, ex.labels)[1] for Fm in sets)
        # the rover's knn_logit rule, calibrated on the validation spectra as quantize does
        sec = ood.calibrate_unknown(P[val], features=F[val], bank=ex.features,
                                    logits=art.head.logits(F[val]), target_tpr=target_tpr)
        unit = ood.normalise_rows(ex.features)
        norm = (f" + feature norm (v = {sec['norm_weight']:g})" if sec.get("norm_weight")
                else "")
        scores[f"knn + max logit{norm} ({sec['method']}, w = {sec['weight']:g})"] = tuple(
            ood.score(sec, probs=None, features=Fm, bank_unit=unit,
                      logits=art.head.logits(Fm)) for Fm in sets)
    scores["1-NN cosine to all train features"] = tuple(
        1 - _cosine_1nn(Fm, F[train], labels[train])[1] for Fm in sets)
    maha, rel = gaussian_scores(F[train], labels[train])
    scores["Mahalanobis (class means, shared covariance)"] = tuple(maha(Fm) for Fm in sets)
    scores["relative Mahalanobis"] = tuple(rel(Fm) for Fm in sets)
    if keep_scores is not None:  # the raw (val, test, unseen) scores, e.g. for ROC curves
        keep_scores.update(scores)
    out: dict[str, Any] = {
        "n_known_test": int(test.sum()),
        "n_known_val": int(val.sum()),
        "n_unseen": int(len(F_out)),
        "target_tpr": target_tpr,
        "known_test_top1": float(np.mean(correct_in)),
        "scores": ood_report(scores, correct_in, target_tpr),
    }
    if art.unknown:  # the manifest's own rule, as shipped
        bank = None if ex is None else ood.normalise_rows(ex.features)
        s_in = ood.score(art.unknown, probs=P[test], features=F[test], bank_unit=bank,
                         logits=art.head.logits(F[test]))
        s_out = ood.score(art.unknown, probs=P_out, features=F_out, bank_unit=bank,
                          logits=art.head.logits(F_out))
        thr = ood.threshold_score(art.unknown)
        out["manifest_rule"] = {
            "section": art.unknown,
            "flagged_unseen": float(np.mean(s_out > thr)),
            "flagged_known": float(np.mean(s_in > thr)),
            "confident_wrong_known": float(np.mean((s_in <= thr) & ~correct_in)),
        }
    return out


def knn_logit_weights(model_dir: str | os.PathLike, X: np.ndarray, labels: np.ndarray,
                      split: np.ndarray, negatives_X: np.ndarray, evaluation_X: np.ndarray, *,
                      weights: tuple[float, ...] = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0),
                      target_tpr: float = 0.95) -> dict[str, Any]:
    """The ``knn_logit`` weight, chosen without the evaluation half: per weight, AUROC of
    known *validation* spectra vs the *negatives* half (the choice) and of known *test*
    spectra vs the *evaluation* half (reported, never chosen on)."""
    from edge_runtime.head import load_exemplars

    art = load_artifact(model_dir)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    ex = load_exemplars(art.exemplars_file, art.features_q, art.labels)
    labels = np.asarray(labels).astype(str)
    known = np.isin(labels, list(art.labels))
    F = {part: extract(clf, X[known & (split == part)])[1] for part in ("val", "test")}
    F["neg"], F["eval"] = extract(clf, negatives_X)[1], extract(clf, evaluation_X)[1]
    unit = ood.normalise_rows(ex.features)
    rows = {}
    for w in weights:
        sec = ood.calibrate_unknown(np.zeros((len(F["val"]), 1)), features=F["val"],
                                    bank=ex.features, logits=art.head.logits(F["val"]),
                                    weight=w, target_tpr=target_tpr)
        s = {k: ood.score(sec, probs=None, features=v, bank_unit=unit,
                          logits=art.head.logits(v)) for k, v in F.items()}
        rows[f"{w:g}"] = {"negatives_auroc": auroc(s["val"], s["neg"]),
                          "evaluation_auroc": auroc(s["test"], s["eval"])}
    chosen = max(rows, key=lambda k: rows[k]["negatives_auroc"])
    return {"weights": rows, "chosen": float(chosen)}


def run_unknown(model_dir: str | os.PathLike, X: np.ndarray, labels: np.ndarray,
                split: np.ndarray, unseen_X: np.ndarray, *,
                target_tpr: float = 0.95,
                keep_scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`unknown_experiment` for an artifact trained on (part of) a data set.

    ``X``/``labels``/``split``: the data set and the split the artifact was trained with;
    ``unseen_X``: spectra of minerals it never saw (e.g. :func:`ramanedge.dataset.load_heldout`).
    """
    art = load_artifact(model_dir)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    labels = np.asarray(labels).astype(str)
    P, F = extract(clf, X)
    unseen = ~np.isin(labels, list(art.labels))
    Pu, Fu = extract(clf, unseen_X)
    res = unknown_experiment(art, P, F, labels, np.asarray(split).astype(str),
                             np.concatenate([P[unseen], Pu]), np.concatenate([F[unseen], Fu]),
                             target_tpr=target_tpr, keep_scores=keep_scores)
    res["artifact"] = str(model_dir)
    res["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return res


def run_transfer(
    model_dir: str | os.PathLike,
    X: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    *,
    config: TransferConfig = TransferConfig(),
    heldout_X: np.ndarray | None = None,
    log: Log | None = print,
) -> dict[str, Any]:
    """Run the whole experiment on an artifact; returns a JSON-ready result dict.

    ``X`` (N, 1392) preprocessed spectra of the data set, ``labels`` (N,) mineral names,
    ``split`` (N,) ``train``/``val``/``test`` (the split the artifact was trained with).
    ``heldout_X``: extra spectra of minerals outside the data set (never seen), for the
    unknown-mineral measurement.
    """
    say = log or (lambda _m: None)
    cfg = config
    art = load_artifact(model_dir)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    labels = np.asarray(labels).astype(str)
    split = np.asarray(split).astype(str)
    X = np.asarray(X, dtype=np.float32)
    old_labels = list(art.labels)
    is_old = np.isin(labels, old_labels)

    t0 = time.perf_counter()
    P, F = extract(clf, X)
    say(f"features of {len(X)} spectra in {time.perf_counter() - t0:.1f} s")
    ex = load_exemplars(art.exemplars_file, art.features_q, art.labels) \
        if art.exemplars_file is not None else None

    old_test = is_old & (split == "test")
    old_train = is_old & (split == "train")
    y_old_test = labels[old_test]
    base = {
        "n_old_classes": len(old_labels),
        "n_old_test": int(old_test.sum()),
        "top1_int8_probs": float(np.mean(np.array(old_labels)[P[old_test].argmax(1)]
                                         == y_old_test)),
        "top1_float_head": float(np.mean(
            np.array(old_labels)[art.head.logits(F[old_test]).argmax(1)] == y_old_test)),
        "n_exemplars": 0 if ex is None else int(ex.features.shape[0]),
    }
    say(f"base: {base}")

    kmax = max(cfg.ks)
    pool = []
    for lab in sorted(set(labels[~is_old].tolist())):
        m = labels == lab
        if np.sum(m & (split == "train")) >= kmax and np.sum(m & (split != "train")) >= 1:
            pool.append(lab)
    if len(pool) < max(cfg.cs):
        raise ValueError(f"only {len(pool)} unseen minerals with >= {kmax} train spectra; "
                         f"need {max(cfg.cs)}")
    say(f"new-mineral pool: {len(pool)} minerals")

    rows = []
    rng = np.random.default_rng(cfg.seed)
    Xref_old = X[old_train]
    yref_old = labels[old_train]
    Fref_old = F[old_train]
    for r in range(cfg.repeats):
        for c in cfg.cs:
            chosen = sorted(rng.choice(pool, size=c, replace=False).tolist())
            query = np.isin(labels, chosen) & (split != "train")
            for k in cfg.ks:
                sup = np.concatenate([
                    rng.choice(np.flatnonzero((labels == lab) & (split == "train")), size=k,
                               replace=False) for lab in chosen])
                row: dict[str, Any] = {"repeat": r, "c": c, "k": k,
                                       "n_query_new": int(query.sum())}
                for name, (use_ex, mode) in HEAD_VARIANTS.items():
                    if use_ex and ex is None:
                        continue
                    Xf = np.concatenate([ex.features, F[sup]]) if use_ex else F[sup]
                    yf = np.concatenate([ex.labels, labels[sup]]) if use_ex else labels[sup]
                    head = SoftmaxHead(alpha=cfg.alpha, prior=art.head,
                                       prior_weights=mode).fit(Xf, yf)
                    row[name] = {
                        "new_top1": float(np.mean(head.predict(F[query]) == labels[query])),
                        "old_top1": float(np.mean(head.predict(F[old_test]) == y_old_test)),
                        "fit_s": head.fit_seconds_,
                    }
                Rx = np.concatenate([Xref_old, X[sup]])
                Ry = np.concatenate([yref_old, labels[sup]])
                Rf = np.concatenate([Fref_old, F[sup]])
                row["knn spectra"] = {
                    "new_top1": float(np.mean(_cosine_1nn(X[query], Rx, Ry)[0] == labels[query])),
                    "old_top1": float(np.mean(_cosine_1nn(X[old_test], Rx, Ry)[0] == y_old_test)),
                    "n_refs": int(len(Ry)),
                }
                row["knn features"] = {
                    "new_top1": float(np.mean(_cosine_1nn(F[query], Rf, Ry)[0] == labels[query])),
                    "old_top1": float(np.mean(_cosine_1nn(F[old_test], Rf, Ry)[0] == y_old_test)),
                    "n_refs": int(len(Ry)),
                }
                rows.append(row)
                say(json.dumps({k2: (v if not isinstance(v, dict) else
                                     {a: round(b, 3) for a, b in v.items()})
                                for k2, v in row.items()}))

    # ---- latency (one thread) ------------------------------------------------------------
    x0 = X[old_test][0]
    plain = Classifier(art, clf.interpreter, unknown=None)
    latency: dict[str, Any] = {"base head (int8 probs), no unknown rule": _median_ms(
        lambda: plain.classify_grid(x0), cfg.latency_repeats)}
    if art.unknown:
        n_bank = art.unknown.get("n_bank")
        latency[f"base head + manifest unknown rule ({art.unknown['method']}"
                + (f", bank {n_bank})" if n_bank else ")")] = _median_ms(
            lambda: clf.classify_grid(x0), cfg.latency_repeats)
    rng_l = np.random.default_rng(1)
    for K in cfg.latency_classes:
        W = rng_l.normal(0, 0.01, size=(art.feature_dim, K)).astype(np.float32)
        h = HeadWeights(W, np.zeros(K, np.float32), tuple(f"c{i}" for i in range(K)),
                        version=f"K{K}")
        c2 = plain.with_head(h)
        latency[f"retrained head, {K} classes, no unknown rule"] = _median_ms(
            lambda c2=c2: c2.classify_grid(x0), cfg.latency_repeats)
    feats0 = F[old_test][:1]
    for K in cfg.latency_classes:
        W = rng_l.normal(0, 0.01, size=(art.feature_dim, K)).astype(np.float32)
        b = np.zeros(K, np.float32)
        latency[f"head only (matmul+softmax), {K} classes"] = _median_ms(
            lambda W=W, b=b: softmax(feats0 @ W + b), cfg.latency_repeats)
    for n in cfg.knn_refs:
        R = np.resize(X[old_train], (n, X.shape[1]))
        Ry = np.resize(labels[old_train], n)
        latency[f"knn spectra, {n} refs"] = _median_ms(
            lambda R=R, Ry=Ry: _cosine_1nn(x0[None, :], R, Ry), max(20, cfg.latency_repeats // 5))

    # ---- unknown minerals ----------------------------------------------------------------
    unseen = ~is_old
    P_out, F_out = P[unseen], F[unseen]
    if heldout_X is not None and len(heldout_X):
        Ph, Fh = extract(clf, heldout_X)
        P_out, F_out = np.concatenate([P_out, Ph]), np.concatenate([F_out, Fh])
    unknown = unknown_experiment(art, P, F, labels, split, P_out, F_out,
                                 target_tpr=cfg.target_tpr)
    unknown["n_unseen_from_pool"] = int(unseen.sum())
    unknown["n_unseen_heldout"] = 0 if heldout_X is None else int(len(heldout_X))

    return {
        "config": cfg.to_dict(),
        "artifact": str(model_dir),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "base": base,
        "pool": pool,
        "rows": rows,
        "summary": summarise(rows),
        "latency": latency,
        "unknown": unknown,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std over repeats of every method's new/old top-1 per (c, k)."""
    out = []
    keys = sorted({(r["c"], r["k"]) for r in rows})
    methods = [m for m in METHODS if any(m in r for r in rows)]
    for c, k in keys:
        sel = [r for r in rows if r["c"] == c and r["k"] == k]
        entry: dict[str, Any] = {"c": c, "k": k, "repeats": len(sel)}
        for m in methods:
            vals = [r[m] for r in sel if m in r]
            entry[m] = {f"{q}_{s}": float(getattr(np, s)([v[q] for v in vals]))
                        for q in ("new_top1", "old_top1") for s in ("mean", "std")}
        out.append(entry)
    return out


def markdown(res: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run_transfer` result."""
    b = res["base"]
    lines = [
        f"Base model: {b['n_old_classes']} old minerals, old test top-1 "
        f"{100 * b['top1_int8_probs']:.1f} % (int8 probs output), "
        f"{100 * b['top1_float_head']:.1f} % (float head on int8 features); "
        f"{b['n_exemplars']} exemplars; new-mineral pool {len(res['pool'])} minerals.",
        "",
        "| c | k | " + " | ".join(f"{m} new / old" for m in METHODS) + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for e in res["summary"]:
        cells = []
        for m in METHODS:
            if m in e:
                v = e[m]
                cells.append(f"{100 * v['new_top1_mean']:.1f}±{100 * v['new_top1_std']:.1f} / "
                             f"{100 * v['old_top1_mean']:.1f}±{100 * v['old_top1_std']:.1f}")
            else:
                cells.append("-")
        lines.append(f"| {e['c']} | {e['k']} | " + " | ".join(cells) + " |")
    lines += ["", "| latency (1 thread) | median ms | p10 | p90 |", "|---|---|---|---|"]
    for name, v in res["latency"].items():
        lines.append(f"| {name} | {v['median_ms']:.4f} | {v['p10_ms']:.4f} | "
                     f"{v['p90_ms']:.4f} |")
    lines += ["", markdown_unknown(res["unknown"])]
    return "\n".join(lines) + "\n"


def markdown_unknown(u: dict[str, Any]) -> str:
    """Markdown table of an :func:`unknown_experiment` result."""
    src = ""
    if "n_unseen_from_pool" in u:
        src = (f" ({u['n_unseen_from_pool']} of data-set minerals left out of pretraining, "
               f"{u['n_unseen_heldout']} of the rare held-out minerals)")
    lines = [f"Unknown minerals: {u['n_known_test']} known test spectra (top-1 "
             f"{100 * u['known_test_top1']:.1f} %) vs {u['n_unseen']} spectra of minerals the "
             f"model never saw{src}; thresholds let {100 * u['target_tpr']:.0f} % of the "
             f"{u['n_known_val']} known *val* spectra pass.", "",
             "| score | AUROC | FPR@95%TPR | unseen flagged | unseen confidently wrong "
             "| known flagged | known confidently wrong |",
             "|---|---|---|---|---|---|---|"]
    for name, v in u["scores"].items():
        lines.append(f"| {name} | {v['auroc']:.3f} | {100 * v['fpr_at_tpr']:.1f} % | "
                     f"{100 * v['flagged_unseen']:.1f} % | "
                     f"{100 * v['confident_wrong_unseen']:.1f} % | "
                     f"{100 * v['flagged_known']:.1f} % | "
                     f"{100 * v['confident_wrong_known']:.1f} % |")
    if "manifest_rule" in u:
        m = u["manifest_rule"]
        lines += ["", f"Manifest rule as shipped ({m['section'].get('method')}, threshold "
                      f"{m['section'].get('threshold')}): unseen flagged "
                      f"{100 * m['flagged_unseen']:.1f} %, known flagged "
                      f"{100 * m['flagged_known']:.1f} %, known confidently wrong "
                      f"{100 * m['confident_wrong_known']:.1f} %."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.transfer_experiment --model DIR --split-csv FILE [--unknown-only]``.

    Runs on an existing artifact: the full experiment for a model pretrained on a subset
    of the data set's minerals, or (``--unknown-only``) just the unknown-mineral measurement
    (e.g. for the production model: unseen = the rare held-out minerals).
    """
    import argparse

    from ramanedge.dataset import build_dataset, load_heldout
    from ramanedge.paths import default_data_root
    from ramanedge.splits import read_split_csv

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="artifact folder")
    ap.add_argument("--split-csv", required=True, help="split CSV (path,split) of the data set")
    ap.add_argument("--data", default=None, help="RRUFF data root")
    ap.add_argument("--min-spectra", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--unknown-only", action="store_true")
    ap.add_argument("--unseen-half", choices=("all", "negatives", "evaluation"), default="all",
                    help="unseen minerals: all rare held-out minerals, or one half of "
                         "ramanedge.splits.unknown_halves (issue 12: 'evaluation', the half "
                         "no training or calibration touched)")
    ap.add_argument("--out", default=None, help="write the result JSON (+ .md) here")
    a = ap.parse_args(argv)
    root = Path(a.data) if a.data else default_data_root()
    ds = build_dataset(root, "rruff-raw", min_spectra=a.min_spectra)
    split = read_split_csv(a.split_csv, ds)
    held = load_heldout(root, "rruff-raw", min_spectra=a.min_spectra)
    halves = None
    if a.unseen_half != "all":
        from ramanedge.splits import unknown_halves

        names = np.asarray(held.minerals).astype(str)
        halves = {k: held.subset(np.isin(names, v)) for k, v in
                  unknown_halves(names, known=ds.labels).items()}
        held = halves[a.unseen_half]
    if a.unknown_only:
        res = run_unknown(a.model, ds.X, np.array(ds.minerals), split, held.X)
        res["unseen_half"] = a.unseen_half
        md = markdown_unknown(res)
        if a.unseen_half == "evaluation":
            res["knn_logit_weights"] = kw = knn_logit_weights(
                a.model, ds.X, np.array(ds.minerals), split, halves["negatives"].X, held.X)
            md += ("\nknn_logit weight (chosen on validation vs the negatives half): "
                   + ", ".join(f"{w}: {v['negatives_auroc']:.3f} / {v['evaluation_auroc']:.3f}"
                               for w, v in kw["weights"].items())
                   + f" (negatives / evaluation AUROC); chosen {kw['chosen']:g}\n")
    else:
        res = run_transfer(a.model, ds.X, np.array(ds.minerals), split,
                           config=TransferConfig(repeats=a.repeats), heldout_X=held.X)
        md = markdown(res)
    print(md)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
        Path(a.out).with_suffix(".md").write_text(md)


if __name__ == "__main__":  # pragma: no cover
    main()
