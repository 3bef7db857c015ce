"""Rule (Z) of issue 12: does a temperature on the set's probabilities make smaller sets?

The prediction set is LAC on the rover's blended answer ``p``; LAC gives the smallest mean
set when the probabilities are calibrated, and the blend (the library's softmax at a low
temperature) may be over-confident. A variant computes the set from
``q = p ** (1 / tau) / sum(p ** (1 / tau))`` (same ranking, same top-1), calibrated on ``q``
exactly as the shipped sets are on ``p``.

Choice data only (test spectra are not read): each run's *validation* spectra, answered as
``ramanedge quantize`` calibrates: the shipped library settings (:class:`~ramanedge.library.
LibraryConfig` defaults) over the run's training spectra alone. Per run,
``--halvings`` seeded random halvings of the validation spectra by specimen; calibrate at
``--level`` on one half, measure mean set size and coverage on the other (both directions)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.set_temperature --data ../shared/data/rruff \\
        --eval runs/flight/eval-ch2:flight-stem4-ch2 --out docs/set_temperature.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import comma_list, one_line_errors
from ramanedge.cli_options import data_root_option

TAUS = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)


def tempered(P: np.ndarray, tau: float) -> np.ndarray:
    """Rows of ``P`` (N, K) raised to ``1 / tau`` and normalised (``tau = 1``: ``P``)."""
    P = np.asarray(P, dtype=np.float64)
    if tau == 1.0:
        return P
    # in logs, so that the power of a tiny probability does not underflow before the sum
    Z = np.log(np.maximum(P, 1e-300)) / tau
    Z -= Z.max(axis=1, keepdims=True)
    Q = np.exp(Z)
    return Q / Q.sum(axis=1, keepdims=True)


def cross_fit(P: np.ndarray, y: np.ndarray, groups: np.ndarray, *, level: float,
              halvings: int, seed: int) -> dict[str, float]:
    """Mean set size and coverage on one half of the spectra with the threshold of the
    other half, over ``halvings`` random halvings of the ``groups`` (both directions)."""
    from edge_runtime.conformal import calibrate_sets, covered, set_sizes

    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    sizes, covs = [], []
    for _ in range(halvings):
        pick = rng.permutation(uniq)[: len(uniq) // 2]
        a = np.isin(groups, pick)
        for cal, other in ((a, ~a), (~a, a)):
            thr = calibrate_sets(P[cal], y[cal], level=level)["threshold"]
            sizes.append(float(set_sizes(P[other], thr).mean()))
            covs.append(float(covered(P[other], y[other], thr).mean()))
    return {"mean_size": float(np.mean(sizes)), "coverage": float(np.mean(covs))}


def evaluate_folder(folder: Path, data_root: Path, *, taus: list[float], level: float,
                    halvings: int, seed: int) -> dict[str, Any]:
    """One run's validation figures for every ``tau``."""
    from edge_runtime import Classifier
    from edge_runtime.artifact import load_artifact
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.library import LibraryConfig, SpectralLibrary
    from ramanedge.splits import specimen_groups
    from trainer.run import load_run

    run = load_run(folder / "run", data_root=data_root, load_model=False)
    art = load_artifact(folder / "model")
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1), unknown=None)
    Xva, yva = run.subset("val")
    Xtr, ytr = run.subset("train")
    given = run.labelled_mask()
    # the shipped library settings over the training spectra alone, whatever library the
    # folder's artifact holds (base networks were exported with older settings or none)
    lib = SpectralLibrary.build(Xtr[given], ytr[given], len(art.labels), LibraryConfig())
    P = clf.with_head(None, library=lib).predict_proba_batch(Xva)
    groups = specimen_groups(run.dataset)[run.split == "val"]
    row: dict[str, Any] = {"folder": folder.name, "n_val": int(yva.size),
                           "n_specimens": int(len(np.unique(groups))),
                           "val_top1": float(np.mean(P.argmax(1) == yva))}
    for tau in taus:
        row[f"tau={tau:g}"] = cross_fit(tempered(P, tau), yva, groups, level=level,
                                        halvings=halvings, seed=seed)
    return row


def summary(rows: list[dict[str, Any]], taus: list[float]) -> str:
    """Markdown table: mean size, coverage, and paired size change against tau = 1."""
    out = ["| tau | mean set size (other half) | coverage (other half) | size vs tau = 1 "
           "(smaller on) |", "|---|---|---|---|"]
    base = np.array([r["tau=1"]["mean_size"] for r in rows]) if "tau=1" in rows[0] else None
    for tau in taus:
        k = f"tau={tau:g}"
        s = np.array([r[k]["mean_size"] for r in rows])
        c = np.array([r[k]["coverage"] for r in rows]) * 100
        d = "" if base is None else (f"{(s.mean() / base.mean() - 1) * 100:+.1f} % "
                                     f"({int(np.sum(s < base))} of {len(s)})")
        out.append(f"| {tau:g} | {s.mean():.2f} ± {s.std(ddof=1) if len(s) > 1 else 0:.2f} | "
                   f"{c.mean():.1f} ± {c.std(ddof=1) if len(c) > 1 else 0:.1f} | {d} |")
    return "\n".join(out)


@click.command()
@one_line_errors
@data_root_option
@click.option("--eval", "evals", multiple=True, required=True, metavar="FOLDER:RECIPE",
              help="a benchmarks.flight_eval output folder and its recipe (repeatable)")
@click.option("--taus", default=",".join(f"{t:g}" for t in TAUS), show_default=True)
@click.option("--level", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=0.95, show_default=True, help="coverage level of the sets, in (0, 1)")
@click.option("--halvings", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(data_root: Path, evals: tuple[str, ...], taus: str, level: float, halvings: int,
         seed: int, out: Path | None) -> None:
    """Set size and coverage on validation halves for each set temperature."""
    from benchmarks.knn_blend import grouped_runs
    from ramanedge.machine import cpu_model

    tau_list = comma_list(taus, "--taus", float)
    if not tau_list or not all(np.isfinite(t) and t > 0 for t in tau_list):
        raise click.UsageError(f"--taus must be numbers > 0, got {taus!r}")
    rows = []
    for _, f in grouped_runs(evals):
        rows.append({"eval": str(f.parent), **evaluate_folder(
            f, data_root, taus=tau_list, level=level, halvings=halvings, seed=seed)})
        click.echo(f"{f}: " + ", ".join(
            f"{t:g}: {rows[-1][f'tau={t:g}']['mean_size']:.2f}" for t in tau_list), err=True)
    table = summary(rows, tau_list)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                   "cpu": cpu_model(), "level": level, "halvings": halvings,
                                   "rows": rows, "table": table}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
