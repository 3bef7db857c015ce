"""How small can the unknown rule's reference bank be? (issue 12, the rover's cost)

The ``knn_logit`` rule compares each spectrum's features with every row of the artifact's
exemplar bank (10 herded exemplars per class: 676 x 192 float32 for the flight model, 0.5 MB).
Measured in the classifier's pipeline, that product is the largest cost after the model: the
bank does not stay in the cache across a model invoke. This probe scores smaller banks built
from the *training* spectra's int8 features of each split, with the two-part rule
(``knn_logit``, the weight :data:`edge_runtime.ood.KNN_LOGIT_WEIGHT`, no feature-norm part:
the rule when this probe's figures were taken) and the same calibration as ``ramanedge
quantize`` (95 % of the known validation spectra pass):

- ``herd-j``: the first ``j`` herded exemplars per class (herding is greedy, so ``herd-j`` is
  a subset of the shipped bank ``herd-10``), j = 1, 2, 3, 5, 10;
- ``class-mean``: one row per class, the mean of its training features.

Choice on validation vs the *negatives* half; the evaluation half is reported only. Every
split folder must hold the run's own record of its halves (``run/unknown_minerals.json``)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bank_probe --data ../shared/data/rruff \\
        --eval runs/flight/eval-oe --recipe flight-oe --out docs/bank_probe.json
"""

from __future__ import annotations

import json
import os
import time
import timeit
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import open_set_command

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERD = (1, 2, 3, 5, 10)


def banks(F_train: np.ndarray, y_train: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate banks (rows, D) from the training features."""
    from quantize.exemplars import select_exemplars

    out = {f"herd-{j}": F_train[select_exemplars(F_train, y_train, per_class=j)] for j in HERD}
    out["class-mean"] = np.stack([F_train[y_train == c].mean(axis=0)
                                  for c in np.unique(y_train)]).astype(np.float32)
    return out


def pipeline_us(clf: Any, X: np.ndarray, bank: np.ndarray, repeats: int = 5) -> float:
    """Median-of-repeats microseconds of one model call plus the bank distance, as the
    classifier runs them (the bank as :class:`edge_runtime.ood.Int8Bank` caches it)."""
    from edge_runtime import ood

    b = ood.Int8Bank(np.zeros((0, bank.shape[1]), np.int8), 0.0, bank)
    it, qf = clf.interpreter, clf.artifact.features_q
    from edge_runtime.interpreter import get_output_float

    def run() -> None:
        for x in X:
            clf._invoke(x)
            b.distance(get_output_float(it, qf))

    return float(np.median(timeit.repeat(run, number=1, repeat=repeats))) / len(X) * 1e6


@open_set_command
def main(data_root: Path, eval_dir: Path, recipe: str, out: Path | None) -> None:
    """Score every candidate bank on each grouped split of a multi-split evaluation."""
    from benchmarks.common import open_set_splits
    from benchmarks.transfer_experiment import auroc
    from edge_runtime import ood
    from ramanedge.machine import cpu_model

    rows = []
    for f, clf, F, names, spectra in open_set_splits(data_root, eval_dir, recipe,
                                                     ("train", "val", "test")):
        art = clf.artifact
        lab_id = {m: i for i, m in enumerate(art.labels)}
        y_train = np.array([lab_id[m] for m in names["train"]])
        logits = {k: art.head.logits(v) for k, v in F.items()}
        row: dict[str, Any] = {"folder": f.name, "banks": {}}
        for name, bank in banks(F["train"], y_train).items():
            sec = ood.calibrate_unknown(np.zeros((len(F["val"]), 1)), features=F["val"],
                                        bank=bank, logits=logits["val"], norm_weight=0.0)
            unit = ood.normalise_rows(bank)
            s = {k: ood.score(sec, probs=None, features=v, bank_unit=unit, logits=logits[k])
                 for k, v in F.items() if k != "train"}
            t = sec["threshold"]
            row["banks"][name] = {
                "rows": int(len(bank)), "float32_bytes": int(bank.nbytes),
                "negatives_auroc": auroc(s["val"], s["neg"]),
                "evaluation_auroc": auroc(s["test"], s["eval"]),
                "unseen_flagged": float(np.mean(s["eval"] > t)),
                "known_test_flagged": float(np.mean(s["test"] > t)),
                "model_plus_bank_us": pipeline_us(clf, spectra["test"][:100], bank)}
        row["model_us"] = pipeline_us(clf, spectra["test"][:100],
                                      np.zeros((1, art.feature_dim), np.float32))
        rows.append(row)
        click.echo(f"{f.name}: " + ", ".join(
            f"{k} {v['negatives_auroc']:.3f}/{v['evaluation_auroc']:.3f} "
            f"{v['model_plus_bank_us']:.0f}us" for k, v in row["banks"].items()), err=True)
    table = summary(rows)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                   "cpu": cpu_model(), "eval": str(eval_dir),
                                   "recipe": recipe, "rows": rows, "table": table},
                                  indent=1) + "\n")


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown: per bank, mean +- s.d. over the splits."""
    def ms(vals: list[float], pct: bool = False) -> str:
        a = np.asarray(vals) * (100 if pct else 1)
        sd = a.std(ddof=1) if a.size > 1 else 0.0
        return f"{a.mean():.1f} ± {sd:.1f}" if pct else f"{a.mean():.3f} ± {sd:.3f}"

    out = ["| bank | rows | AUROC val vs negatives (choice) | AUROC test vs evaluation "
           "(reported) | unseen flagged | known test flagged | model + bank, us |",
           "|---|---|---|---|---|---|---|"]
    for name in rows[0]["banks"]:
        b = [r["banks"][name] for r in rows]
        out.append(f"| {name} | {b[0]['rows']} | {ms([x['negatives_auroc'] for x in b])} | "
                   f"{ms([x['evaluation_auroc'] for x in b])} | "
                   f"{ms([x['unseen_flagged'] for x in b], True)} % | "
                   f"{ms([x['known_test_flagged'] for x in b], True)} % | "
                   f"{np.median([x['model_plus_bank_us'] for x in b]):.0f} |")
    out.append(f"| (model alone) | | | | | | {np.median([r['model_us'] for r in rows]):.0f} |")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    main()
