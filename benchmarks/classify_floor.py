"""How low can the rover's per-spectrum post-processing go in numpy? (issue 12's 1.3x bound)

``benchmarks.classify_cost`` times what :meth:`edge_runtime.Classifier.classify_grid` costs
on top of the model call. This probe times leaner *variants* of the same path against it,
interleaved in one process (1 thread, the same test spectra), to find the floor of a
numpy/LiteRT implementation:

- ``shipped``: ``classify_grid`` as it is;
- ``one product``: the float head's weights and the bank's unit rows side by side, so one
  (D,) x (D, K + M) product gives logits and cosines; the fewest numpy calls found for the
  same answer (top-k, set, ``knn_logit`` score);
- ``predicted mineral's exemplars``: the bank restricted to the exemplars of the
  predicted mineral (``dcls`` of ``benchmarks.ood_variants``: a contiguous view, no gather);
  a *different* unknown score (AUROC in ``docs/results.md`` section 4);
- ``top 5 minerals' exemplars``: the bank restricted to the exemplars of the 5 most
  probable minerals (``dtop5`` of ``benchmarks.ood_variants``), gathered per spectrum from a
  (minerals, most exemplars, D) array padded with copies of each mineral's own rows;
- ``arithmetic only``: features, the one product and its maximum, nothing else: what any
  Python implementation with this bank must at least spend.

Each variant's answers are checked against ``shipped`` before timing (same labels, set and
flag up to float rounding; the restricted banks: same labels and set)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.classify_floor --data ../shared/data/rruff \\
        --folder runs/flight/eval-ep/flight-early-pool-grouped0 --out docs/classify_floor.json
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import one_line_errors
from ramanedge.cli_options import data_root_option

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def variants(clf: Any) -> dict[str, Any]:
    """name -> ``fn(x)`` for one grid spectrum; each returns ``(labels, set, unknown)``."""
    from edge_runtime import conformal, ood
    from edge_runtime.artifact import softmax_and_max
    from edge_runtime.head import load_exemplars
    from edge_runtime.interpreter import dequantize_int8

    art, it = clf.artifact, clf.interpreter
    head, bank = clf._probs_head, clf._bank_unit
    rule = clf._logit_rule
    if head is None or bank is None or rule is None or bank.unit_columns is None:
        raise click.UsageError("the artifact needs a float head, exemplars and the "
                               "knn_logit rule (a default export)")
    k = head.W.shape[1]
    M = np.ascontiguousarray(np.concatenate([head.W, bank.unit_columns], axis=1))
    ex = load_exemplars(art.exemplars_file, art.features_q, art.labels)
    unit = ood.normalise_rows(ex.features)
    by = np.array([art.labels.index(n) for n in ex.labels])
    blocks = [np.ascontiguousarray(unit[by == c]) for c in range(k)]
    # padded per-mineral banks: a mineral's own rows repeated (the max is unchanged); a
    # mineral without exemplars gets zero rows (cosine 0, as far as the features allow)
    most = max(len(blk) for blk in blocks)
    padded = np.zeros((k, most, unit.shape[1]), np.float32)
    for c, blk in enumerate(blocks):
        if len(blk):
            padded[c] = blk[np.arange(most) % len(blk)]
    fq, b, top_k, labels = art.features_q, head.b, clf.top_k, clf.labels
    set_thr = clf._set_threshold if clf._set_threshold is not None else 0.0
    thr = clf._unknown_threshold

    def answer(probs: np.ndarray, d: float, mx: float, length: float) -> tuple:
        n_set = conformal.set_size(probs, set_thr)
        ranked = np.argsort(-probs, kind="stable")[:max(top_k, n_set)].tolist()
        score = ood.knn_logit_score_1(d, mx, rule, length)
        return (tuple(labels[i] for i in ranked[:top_k]),
                tuple(labels[i] for i in ranked[:n_set]), score > thr)

    def features(x: np.ndarray) -> np.ndarray:
        clf._invoke(x)
        return dequantize_int8(it.get_tensor(fq.index), fq).reshape(-1)

    def one_product(x: np.ndarray) -> tuple:
        f = features(x)
        z = f @ M
        logits = z[:k]
        logits += b
        probs, mx = softmax_and_max(logits)
        length = math.sqrt(float(f @ f))
        d = 1.0 - float(z[k:].max()) / max(length, 1e-12)
        return answer(probs, d, mx, length)

    def head_probs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        f = features(x)
        logits = f @ head.W
        logits += b
        return (f, *softmax_and_max(logits))

    def predicted_class(x: np.ndarray) -> tuple:
        f, probs, mx = head_probs(x)
        blk = blocks[int(probs.argmax())]
        length = math.sqrt(float(f @ f))
        d = 1.0 - float((blk @ f).max()) / max(length, 1e-12) if len(blk) else 2.0
        return answer(probs, d, mx, length)

    def top5(x: np.ndarray) -> tuple:
        f, probs, mx = head_probs(x)
        n_set = conformal.set_size(probs, set_thr)
        ranked = np.argsort(-probs, kind="stable")[:max(top_k, n_set, 5)].tolist()
        cos = float((padded[ranked[:5]] @ f).max())
        length = math.sqrt(float(f @ f))
        d = 1.0 - cos / max(length, 1e-12)
        return (tuple(labels[i] for i in ranked[:top_k]),
                tuple(labels[i] for i in ranked[:n_set]),
                ood.knn_logit_score_1(d, mx, rule, length) > thr)

    def arithmetic_only(x: np.ndarray) -> float:
        return float((features(x) @ M).max())

    def shipped(x: np.ndarray) -> tuple:
        p = clf.classify_grid(x)
        return tuple(lab for lab, _ in p.top), p.set, p.unknown

    return {"shipped": shipped, "one product": one_product,
            "predicted mineral's exemplars": predicted_class,
            "top 5 minerals' exemplars": top5,
            "arithmetic only": arithmetic_only}


@click.command()
@one_line_errors
@data_root_option
@click.option("--folder", type=click.Path(path_type=Path), required=True,
              help="an evaluation folder with run/ (split.csv) and model/")
@click.option("--n", "n_items", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(data_root: Path, folder: Path, n_items: int, repeats: int, out: Path | None) -> None:
    """Time the variants against the model call, interleaved; print their ratios."""
    from benchmarks.common import interleaved, stats_ms
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import get_output_float, set_input_int8
    from ramanedge.dataset import build_dataset
    from ramanedge.machine import cpu_model
    from ramanedge.splits import read_split_csv

    ds = build_dataset(data_root, "rruff-raw", min_spectra=8)
    split = read_split_csv(folder / "run" / "split.csv", ds)
    X = np.ascontiguousarray(ds.X[split == "test"][:n_items], dtype=np.float32)
    clf = Classifier.from_dir(folder / "model", use_head_store=False)
    art, it = clf.artifact, clf.interpreter
    fns = variants(clf)
    same = {name: 0 for name in fns if name not in ("shipped", "arithmetic only")}
    for x in X:  # the variants answer what classify_grid answers
        want = fns["shipped"](x)
        for name in ("one product", "predicted mineral's exemplars",
                     "top 5 minerals' exemplars"):
            got = fns[name](x)
            same[name] += got == want if name == "one product" else got[:2] == want[:2]
    if min(same.values()) < len(X):
        raise click.ClickException(f"a variant answered differently: {same}")

    def model(i: int) -> Any:
        set_input_int8(it, X[i], art.input_q)
        it.invoke()
        return get_output_float(it, art.probs_q)

    methods = {"model (quantise + invoke + dequantise probs)": model,
               **{name: (lambda i, fn=fn: fn(X[i])) for name, fn in fns.items()}}
    runs = []
    for _ in range(repeats):
        t = interleaved(methods, len(X), rounds=3, warmup=20)
        runs.append({k: stats_ms(v)["median"] * 1e3 for k, v in t.items()})
    ref = "model (quantise + invoke + dequantise probs)"
    ratios = {k: float(np.median([r[k] / r[ref] for r in runs])) for k in methods}
    us = {k: float(np.median([r[k] for r in runs])) for k in methods}
    lines = ["| variant | us per spectrum | x model call |", "|---|---|---|"]
    lines += [f"| {k} | {us[k]:.1f} | {ratios[k]:.2f} |" for k in methods]
    table = "\n".join(lines)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "cpu": cpu_model(), "folder": str(folder), "n": len(X),
                                   "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                                   "runs_us": runs, "ratio_median": ratios, "table": table},
                                  indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
