"""Unknown-mineral detection over the splits of a multi-split evaluation (issue 12).

For every grouped split folder of ``benchmarks.flight_eval`` (``<eval>/<recipe>-grouped<seed>/
{run,model}``): :func:`benchmarks.transfer_experiment.run_unknown` against the *evaluation*
half of the rare minerals (:func:`ramanedge.splits.unknown_halves`; the *negatives* half may
be used in training and calibration, the evaluation half only here), and the ``knn_logit``
weight sweep (:func:`benchmarks.transfer_experiment.knn_logit_weights`: chosen on validation vs
negatives, reported on test vs evaluation). Prints mean +- s.d. per score.

    python -m benchmarks.open_set --data ../shared/data/rruff --eval runs/flight/eval-f16 \\
        --recipe flight --out docs/open_set-flight.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ramanedge.cli_options import data_root_option


def _ms(vals: list[float], pct: bool) -> str:
    v = np.array(vals, dtype=float) * (100 if pct else 1)
    if len(v) == 1:
        return f"{v[0]:.1f}" if pct else f"{v[0]:.3f}"
    return (f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if pct
            else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}")


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown: per score, mean +- s.d. over the splits; then the weight sweep."""
    names = list(rows[0]["scores"])
    out = ["| score (higher = more unknown) | AUROC | FPR at 95 % TPR | unseen flagged | "
           "known flagged |", "|---|---|---|---|---|"]
    for n in names:
        s = [r["scores"][n] for r in rows]
        out.append(f"| {n} | {_ms([x['auroc'] for x in s], False)} | "
                   f"{_ms([x['fpr_at_tpr'] for x in s], True)} % | "
                   f"{_ms([x['flagged_unseen'] for x in s], True)} % | "
                   f"{_ms([x['flagged_known'] for x in s], True)} % |")
    m = [r["manifest_rule"] for r in rows if "manifest_rule" in r]
    if m:
        out.append(f"| **the artifact's own rule as shipped** ({m[0]['section']['method']}) | "
                   f"| | {_ms([x['flagged_unseen'] for x in m], True)} % | "
                   f"{_ms([x['flagged_known'] for x in m], True)} % |")
    ws = [r["knn_logit_weights"] for r in rows]
    keys = list(ws[0]["weights"])
    out += ["", "| knn_logit weight on the distance | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
            "| AUROC, validation vs negatives half (the choice) | " + " | ".join(
                _ms([w["weights"][k]["negatives_auroc"] for w in ws], False) for k in keys)
            + " |",
            "| AUROC, test vs evaluation half (reported) | " + " | ".join(
                _ms([w["weights"][k]["evaluation_auroc"] for w in ws], False) for k in keys)
            + " |",
            "| chosen per split | " + ", ".join(f"{w['chosen']:g}" for w in ws) + " |"]
    return "\n".join(out)


#: scores drawn in the ROC plot (names of ``unknown_experiment``'s rows, by prefix)
ROC_SCORES = ("max_prob (float head)", "max_logit (float head)", "1-NN cosine to exemplars",
              "knn + max logit")


def roc_curve(s_in: np.ndarray, s_out: np.ndarray, fpr_grid: np.ndarray) -> np.ndarray:
    """True-positive rate (unseen flagged) at each false-positive rate (known flagged) of
    ``fpr_grid``, thresholding the score (higher = unknown)."""
    thr = np.quantile(s_in, 1.0 - fpr_grid)
    return np.array([np.mean(s_out > t) for t in thr])


def plot_roc(curves: dict[str, list[np.ndarray]], fpr_grid: np.ndarray, aucs: dict[str, str],
             path: Path, title: str) -> None:
    """Mean ROC curve per score over the splits (shaded: min..max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=120)
    for name, cs in curves.items():
        c = np.array(cs)
        ax.plot(fpr_grid, c.mean(0), label=f"{name} (AUROC {aucs[name]})")
        ax.fill_between(fpr_grid, c.min(0), c.max(0), alpha=0.15)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.axvline(0.05, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("known test spectra flagged (false-positive rate)")
    ax.set_ylabel("unseen-mineral spectra flagged")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@click.command()
@data_root_option
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="a benchmarks.flight_eval output folder")
@click.option("--recipe", default="flight", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the rows and the table (JSON) here")
@click.option("--roc", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the ROC plot (PNG) here")
def main(data_root: Path, eval_dir: Path, recipe: str, out: Path | None,
         roc: Path | None) -> None:
    """Unknown-mineral scores of every grouped split of a multi-split evaluation."""
    from benchmarks.common import grouped_eval_folders, known_and_rare
    from benchmarks.transfer_experiment import knn_logit_weights, run_unknown
    from ramanedge.machine import cpu_model
    from ramanedge.splits import read_split_csv, unknown_halves

    folders = grouped_eval_folders(eval_dir, recipe)
    ds, held = known_and_rare(data_root)
    names = np.asarray(held.minerals).astype(str)
    labels = np.array(ds.minerals)

    def halves_of(folder: Path) -> dict[str, list[str]]:
        """The run's own record of its negatives (outlier exposure), else the default
        partition of the same rare minerals."""
        f = folder / "run" / "unknown_minerals.json"
        if f.is_file():
            return json.loads(f.read_text())
        return unknown_halves(names, known=ds.labels)

    rows = []
    fpr_grid = np.linspace(0.0, 1.0, 101)
    curves: dict[str, list[np.ndarray]] = {}
    for f in folders:
        halves = halves_of(f)
        Xneg = held.X[np.isin(names, halves["negatives"])]
        Xev = held.X[np.isin(names, halves["evaluation"])]
        split = read_split_csv(f / "run" / "split.csv", ds)
        raw: dict[str, Any] = {}
        row = run_unknown(f / "model", ds.X, labels, split, Xev, keep_scores=raw)
        for name, (_val, s_in, s_out) in raw.items():
            if name.startswith(ROC_SCORES):
                curves.setdefault(name, []).append(roc_curve(s_in, s_out, fpr_grid))
        row["knn_logit_weights"] = knn_logit_weights(f / "model", ds.X, labels, split, Xneg, Xev)
        row["folder"] = f.name
        rows.append(row)
        click.echo(f"{f.name}: done", err=True)
    table = summary(rows)
    click.echo(table)
    if roc is not None:
        aucs = {n: _ms([r["scores"][n]["auroc"] for r in rows], False) for n in curves}
        plot_roc(curves, fpr_grid, aucs, roc,
                 f"{recipe}: {len(rows)} grouped splits, known test spectra vs\n"
                 f"{len(Xev):,} spectra of {len(halves['evaluation'])} unseen minerals "
                 "(evaluation half)")
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                                   "eval": str(eval_dir), "recipe": recipe,
                                   "n_evaluation_minerals": len(halves["evaluation"]),
                                   "n_evaluation_spectra": int(len(Xev)), "rows": rows,
                                   "table": table}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
