"""Conformal prediction sets of the flight artifacts: coverage and size, before and after a head
retrain (issue 12).

For every split folder of a multi-split evaluation (``benchmarks.flight_eval``: ``<eval>/
<recipe>-<split><seed>/{run,model}``) the sets are calibrated exactly as ``ramanedge quantize``
does (:func:`edge_runtime.conformal.calibrate_sets` on the validation specimens' rover-path
probabilities) and judged on the test specimens: coverage (share of test spectra whose set
holds the true mineral), mean / median set size, the share of singleton sets, and coverage
when the top-1 answer is wrong. Levels 0.90 and 0.95; the test spectra are also shifted by
+-15 cm-1 (a miscalibrated instrument: no longer exchangeable with the calibration spectra,
so no guarantee; measured to show what happens).

Head retrain: ``--teach`` rare held-out minerals (the *evaluation* half of
:func:`ramanedge.splits.unknown_halves`, minerals with >= 4 spectra, seeded choice) are taught
to a new head from two spectra each (:class:`edge_runtime.head.SoftmaxHead` on the artifact's
exemplars + those samples, as the head store does); the classifier for that head recalibrates
its sets from the artifact's calibration spectra (:func:`edge_runtime.conformal.recalibrate`).
Reported: coverage on the known test spectra (guaranteed) and on the taught minerals' other
spectra (not guaranteed: no held-out spectra of them exist on the rover).

    python -m benchmarks.conformal --data ../shared/data/rruff --eval runs/flight/eval-f16 \\
        --recipe flight --out docs/conformal.json
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ramanedge.cli_options import data_root_option

LEVELS = (0.90, 0.95)


def set_figures(P: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """Coverage, set sizes and coverage of wrong top-1 answers of ``P`` (N, K) at
    ``threshold``."""
    from edge_runtime.conformal import covered, set_sizes

    cov = covered(P, y, threshold)
    size = set_sizes(P, threshold)
    wrong = P.argmax(1) != y
    return {"coverage": float(cov.mean()), "mean_size": float(size.mean()),
            "median_size": float(np.median(size)), "singleton": float(np.mean(size == 1)),
            "coverage_top1_wrong": float(cov[wrong].mean()) if wrong.any() else None,
            "top1": float(np.mean(~wrong)), "n": int(y.size)}


def rank_figures(P: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """What any set built from the model's ranking must pay: top-k accuracy, and the mean
    size of an *oracle* set that knows which spectra to cover (the top-r set of the
    ``level`` share with the best true-class rank r, size 1 elsewhere) - a lower bound."""
    rank = (P[np.arange(y.size), y][:, None] < P).sum(axis=1) + 1
    r = np.sort(rank)
    out: dict[str, Any] = {"topk": {str(k): float(np.mean(rank <= k)) for k in (1, 2, 3, 5, 10)}}
    for level in LEVELS:
        m = int(np.ceil(level * r.size))
        out[f"oracle_size_{round(100 * level)}"] = float((r[:m].sum() + (r.size - m)) / r.size)
    return out


def teach_minerals(data_root: Path, ds_labels: list[str], n: int, seed: int,
                   per_mineral: int = 2, run_dir: Path | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` rare minerals of the *evaluation* half (the run's ``unknown_minerals.json`` when
    it has one: minerals its training never saw, not even as negatives) with >= 4 spectra:
    (taught X, labels, held-out X, labels); the first ``per_mineral`` spectra of each
    (sorted by path) are taught, the rest held out."""
    from ramanedge.dataset import load_heldout
    from ramanedge.splits import unknown_halves

    held = load_heldout(data_root, "rruff-raw", min_spectra=8)
    names = np.asarray(held.minerals).astype(str)
    f = None if run_dir is None else run_dir / "unknown_minerals.json"
    half = (json.loads(f.read_text()) if f is not None and f.is_file()
            else unknown_halves(names, known=ds_labels))["evaluation"]
    counts = {m: int(np.sum(names == m)) for m in half}
    pool = sorted(m for m, c in counts.items() if c >= per_mineral + 2)
    chosen = np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False)
    tx, ty, hx, hy = [], [], [], []
    for m in sorted(chosen):
        idx = sorted(np.flatnonzero(names == m), key=lambda i: held.paths[i])
        tx.append(held.X[idx[:per_mineral]])
        ty += [m] * per_mineral
        hx.append(held.X[idx[per_mineral:]])
        hy += [m] * (len(idx) - per_mineral)
    return np.concatenate(tx), np.array(ty), np.concatenate(hx), np.array(hy)


def evaluate_folder(folder: Path, data_root: Path, *, teach: int, seed: int) -> dict[str, Any]:
    """The figures of one split folder (``run`` + ``model``)."""
    from benchmarks.common import validation_answerer
    from edge_runtime import Classifier
    from edge_runtime.artifact import load_artifact
    from edge_runtime.conformal import calibrate_sets, recalibrate
    from edge_runtime.head import SoftmaxHead, load_exemplars
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.grid import shift_spectra
    from trainer.run import load_run

    run = load_run(folder / "run", data_root=data_root, load_model=False)
    art = load_artifact(folder / "model")
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1), unknown=None)
    Xva, yva = run.subset("val")
    Xte, yte = run.subset("test")
    Xtr, ytr = run.subset("train")
    given = run.labelled_mask()
    # validation answered as quantize calibrated: never by a library holding itself
    Pva = validation_answerer(clf, Xtr[given], ytr[given]).predict_proba_batch(Xva)
    Pte = clf.predict_proba_batch(Xte)
    Psh = [clf.predict_proba_batch(shift_spectra(Xte, d)) for d in (15, -15)]
    row: dict[str, Any] = {"folder": folder.name, "n_val": int(yva.size),
                           "val_top1": float(np.mean(Pva.argmax(1) == yva)),
                           **rank_figures(Pte, yte)}
    for level in LEVELS:
        rule = calibrate_sets(Pva, yva, level=level)
        key = f"{round(100 * level)}"
        row[f"threshold_{key}"] = rule["threshold"]
        row[f"test_{key}"] = set_figures(Pte, yte, rule["threshold"])
        sh = [set_figures(P, yte, rule["threshold"]) for P in Psh]
        row[f"shift15_{key}"] = {k: float(np.mean([s[k] for s in sh]))
                                 for k in ("coverage", "mean_size")}
    if teach:
        tx, ty, hx, hy = teach_minerals(data_root, list(art.labels), teach, seed,
                                        run_dir=folder / "run")
        ex = load_exemplars(art.exemplars_file, art.features_q, art.labels)
        X = np.concatenate([ex.features, clf.features_batch(tx)])
        y = np.concatenate([np.asarray(ex.labels).astype(str), ty])
        head = SoftmaxHead(prior=art.head).fit(X, y).to_head("bench")
        clf2 = clf.with_head(head)
        # what the rover's classifier does for a retrained head (Classifier._conformal_rule):
        # the calibration spectra's int8 features under the new head
        rule2 = recalibrate(calibrate_sets(Pva, yva, level=0.95),
                            clf2.predict_proba_batch(Xva), head.labels,
                            [art.labels[i] for i in yva])
        P2 = clf2.predict_proba_batch(Xte)
        idx = {lab: i for i, lab in enumerate(head.labels)}
        y2 = np.array([idx[art.labels[i]] for i in yte])
        Ph = clf2.predict_proba_batch(hx)
        yh = np.array([idx[m] for m in hy])
        row["retrain"] = {
            "taught_minerals": sorted(set(ty.tolist())), "samples_per_mineral": 2,
            "threshold_95": rule2["threshold"],
            "known_test_95": set_figures(P2, y2, rule2["threshold"]),
            "taught_heldout_95": set_figures(Ph, yh, rule2["threshold"]),
        }
    return row


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean +- s.d. over the grouped splits, and the random split alone."""
    def ms(vals: list[float], pct: bool = True) -> str:
        v = np.array(vals, dtype=float) * (100 if pct else 1)
        return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"

    groups = {"grouped (5 split seeds)": [r for r in rows if "grouped" in r["folder"]],
              "random (per spectrum)": [r for r in rows if "random" in r["folder"]]}
    out = ["| split | level | coverage (test) | mean set size | median | singleton sets | "
           "coverage when top-1 wrong | coverage at ±15 cm⁻¹ | size at ±15 |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, rs in groups.items():
        if not rs:
            continue
        for key in ("90", "95"):
            t = [r[f"test_{key}"] for r in rs]
            s = [r[f"shift15_{key}"] for r in rs]
            out.append(
                f"| {name} | {key} % | {ms([x['coverage'] for x in t])} | "
                f"{ms([x['mean_size'] for x in t], False)} | "
                f"{np.median([x['median_size'] for x in t]):.0f} | "
                f"{ms([x['singleton'] for x in t])} | "
                f"{ms([x['coverage_top1_wrong'] for x in t])} | "
                f"{ms([x['coverage'] for x in s])} | {ms([x['mean_size'] for x in s], False)} |")
    g = groups["grouped (5 split seeds)"]
    if g:
        out += ["", "| grouped test, 5 split seeds | top-1 | top-2 | top-3 | top-5 | top-10 | "
                "oracle set size at 90 % | at 95 % |", "|---|---|---|---|---|---|---|---|",
                "| mean ± s.d. | " + " | ".join(ms([r["topk"][k] for r in g])
                                                for k in ("1", "2", "3", "5", "10"))
                + f" | {ms([r['oracle_size_90'] for r in g], False)} | "
                f"{ms([r['oracle_size_95'] for r in g], False)} |"]
    rt = [r["retrain"] for r in rows if "retrain" in r]
    if rt:
        out += ["", "| after teaching 5 minerals (2 spectra each), level 95 % | coverage | "
                "mean set size |", "|---|---|---|"]
        for key, what in (("known_test_95", "known minerals, test specimens (guaranteed)"),
                          ("taught_heldout_95", "taught minerals, their other spectra "
                                                "(not guaranteed)")):
            out.append(f"| {what} | {ms([r[key]['coverage'] for r in rt])} | "
                       f"{ms([r[key]['mean_size'] for r in rt], False)} |")
    return "\n".join(out)


@click.command()
@data_root_option
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="a benchmarks.flight_eval output folder")
@click.option("--recipe", default="flight", show_default=True)
@click.option("--teach", type=int, default=5, show_default=True,
              help="rare minerals taught to a retrained head (0 = skip the retrain part)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write the rows and the table (JSON) here")
def main(data_root: Path, eval_dir: Path, recipe: str, teach: int, seed: int,
         out: Path | None) -> None:
    """Coverage and size of the prediction sets over the splits of a multi-split evaluation."""
    # RECIPE-grouped<seed> / RECIPE-random<seed> only: not another recipe whose name
    # extends this one (flight-early-pool-s1-grouped0 is not a split of flight-early-pool)
    folders = sorted(p for p in eval_dir.glob(f"{recipe}-*")
                     if re.fullmatch(rf"{re.escape(recipe)}-(grouped|random)\d+", p.name)
                     and (p / "run").is_dir() and (p / "model").is_dir())
    if not folders:
        raise click.UsageError(f"no {recipe}-<split> folders with run/ and model/ in {eval_dir}")
    rows = []
    for f in folders:
        rows.append(evaluate_folder(f, data_root, teach=teach, seed=seed))
        r = rows[-1]["test_95"]
        click.echo(f"{f.name}: coverage {100 * r['coverage']:.1f}%  mean size "
                   f"{r['mean_size']:.2f}", err=True)
    table = summary(rows)
    click.echo(table)
    if out is not None:
        from ramanedge.machine import cpu_model

        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(),
                                   "eval": str(eval_dir), "recipe": recipe, "rows": rows,
                                   "table": table}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
