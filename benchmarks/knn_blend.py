"""A nearest-exemplar blend in the rover's answer (issue 11; post-hoc, no training).

The rover already computes the cosine between a spectrum's int8 features and every row of
the artifact's exemplar bank (the unknown rule's distance). This probe asks whether that
product also helps to *name* the mineral: the head's softmax ``p`` is blended with a class
similarity ``s_c`` (the largest cosine to one of class ``c``'s exemplars),

    q = (1 - w) p + w softmax(s / T),

over a small grid of ``(w, T)``; ``w = 1`` is the 1-NN classifier alone. Scored through the
rover's int8 path on each grouped split of one or more multi-split evaluations, at 0 and
±15 / ±30 cm⁻¹ (mean of +s and -s) on validation and test. The variant is chosen
leave-one-split-out on validation (for each split, the best mean validation top-1 on the
other splits of every evaluation given), so the judged delta is never the one it was
chosen on; test figures are reported only. Decision rule: ``runs/flight/decision_rule.txt``
(2026-12-05 12:25 UTC)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.knn_blend --data ../shared/data/rruff \\
        --eval runs/flight/eval-ep:flight-early-pool \\
        --eval runs/flight/eval-ep-s1:flight-early-pool-s1 --out docs/knn_blend.json
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import one_line_errors
from ramanedge.library import softmax_rows

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WEIGHTS = (0.1, 0.2, 0.3, 0.5)
TEMPERATURES = (0.01, 0.02, 0.05, 0.1)
SHIFTS = (0, 15, 30)


def class_similarity(F: np.ndarray, bank_unit: np.ndarray, bank_y: np.ndarray,
                     n_classes: int) -> np.ndarray:
    """``(N, K)``: the largest cosine between each feature row and the exemplars of each
    class (``-1`` for a class without exemplars). ``bank_unit``: unit-length bank rows."""
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    return class_best((F / np.maximum(norms, 1e-12)) @ bank_unit.T, bank_y, n_classes)


def class_best(C: np.ndarray, row_y: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, K)``: each row's largest cosine ``C`` (N, M) among the reference rows of each
    class (class ids ``row_y`` (M,); ``-1`` for a class without rows)."""
    S = np.full((len(C), n_classes), -1.0)
    for k in range(n_classes):
        rows = row_y == k
        if rows.any():
            S[:, k] = C[:, rows].max(axis=1)
    return S


def variants() -> list[tuple[float, float]]:
    """The ``(w, T)`` grid of the rule, ``(0, 0)`` (the shipped head) and ``(1, 0)`` (1-NN)."""
    return [(0.0, 0.0)] + [(w, t) for w in WEIGHTS for t in TEMPERATURES] + [(1.0, 0.0)]


def blend(P: np.ndarray, S: np.ndarray, w: float, t: float) -> np.ndarray:
    """``(1 - w) P + w softmax(S / t)``; ``w = 0``: ``P``; ``w = 1``: ``S`` itself (1-NN)."""
    if w == 0:
        return P
    if w == 1:
        return S
    return (1 - w) * P + w * softmax_rows(S / t)


def open_split(folder: Path, ds: Any) -> tuple[Any, Any, list[str], np.ndarray, np.ndarray,
                                                np.ndarray]:
    """One split folder of a multi-split evaluation: ``(artifact, classifier (the network
    alone: no spectral library), labels, the exemplar bank's class ids and unit rows, the
    split of ``ds``)``; a usage error for an artifact without exemplars."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.head import load_exemplars
    from edge_runtime.interpreter import make_interpreter
    from edge_runtime.ood import normalise_rows
    from ramanedge.splits import read_split_csv

    art = load_artifact(folder / "model")
    if art.exemplars_file is None:
        raise click.UsageError(f"{folder / 'model'} has no exemplars.npz")
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1), library=False)
    ex = load_exemplars(art.exemplars_file, art.features_q, art.labels)
    names = list(art.labels)
    bank_y = np.array([names.index(n) for n in ex.labels])
    return (art, clf, names, bank_y, normalise_rows(ex.features),
            read_split_csv(folder / "run" / "split.csv", ds))


def split_scores(folder: Path, ds, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Top-1 of every variant on one split's validation and test parts at every shift:
    ``{"val_0": {"w=..,T=..": top1, ...}, "test_15": ...}``."""
    from benchmarks.transfer_experiment import extract
    from ramanedge.grid import shift_spectra

    art, clf, names, bank_y, bank_unit, split = open_split(folder, ds)
    out: dict[str, dict[str, float]] = {}
    for part in ("val", "test"):
        rows = (split == part) & np.isin(labels, names)
        X = ds.X[rows]
        y = np.array([names.index(n) for n in labels[rows]])
        for s in SHIFTS:
            res: dict[str, list[float]] = {}
            for d in ((0,) if s == 0 else (s, -s)):
                F = extract(clf, shift_spectra(X, d))[1]
                P = art.head.probs(F).astype(np.float64)
                S = class_similarity(F, bank_unit, bank_y, len(names))
                for w, t in variants():
                    hit = float(np.mean(blend(P, S, w, t).argmax(1) == y))
                    res.setdefault(f"w={w:g},T={t:g}", []).append(hit)
            out[f"{part}_{s}"] = {k: float(np.mean(v)) for k, v in res.items()}
    return out


def leave_one_out(runs: list[dict]) -> list[dict]:
    """For each run, the variant with the best mean validation top-1 at 0 cm⁻¹ over the runs
    of the *other* splits, and its paired deltas against the shipped head on this run."""
    names = list(runs[0]["scores"]["val_0"])
    base = "w=0,T=0"
    candidates = [n for n in names if n not in (base, "w=1,T=0")]  # 1-NN: reported only
    out = []
    for r in runs:
        others = [o for o in runs if o["split"] != r["split"]]
        pick = max(candidates,
                   key=lambda n: np.mean([o["scores"]["val_0"][n] for o in others]))
        out.append({"run": r["run"], "pick": pick,
                    **{f"d_{k}": 100 * (v[pick] - v[base]) for k, v in r["scores"].items()}})
    return out


def report(runs: list[dict], loo: list[dict]) -> str:
    """Markdown: every variant's mean over runs, then the leave-one-split-out deltas."""
    keys = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    lines = ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for n in runs[0]["scores"]["val_0"]:
        cells = [f"{100 * np.mean([r['scores'][k][n] for r in runs]):.1f}" for k in keys]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", *delta_table(loo, keys)])


def delta_table(loo: list[dict], keys: list[str]) -> list[str]:
    """Markdown rows of leave-one-split-out choices: each run's pick and its paired deltas
    (``d_<key>``, points), then their mean ± s.d. and how many runs were higher / lower."""
    lines = ["| run | chosen on the other splits | " + " | ".join(f"Δ {k}" for k in keys)
             + " |", "|---|---" + "|---" * len(keys) + "|"]
    for x in loo:
        lines.append(f"| {x['run']} | {x['pick']} | "
                     + " | ".join(f"{x[f'd_{k}']:+.1f}" for k in keys) + " |")
    d = {k: np.array([x[f"d_{k}"] for x in loo]) for k in keys}
    lines.append("| mean ± s.d. | | " + " | ".join(
        f"{v.mean():+.2f} ± {v.std(ddof=1):.2f}" for v in d.values()) + " |")
    lines.append("| higher / lower | | " + " | ".join(
        f"{int((v > 0).sum())} / {int((v < 0).sum())}" for v in d.values()) + " |")
    return lines


def grouped_runs(evals: tuple[str, ...], option: str = "--eval"
                 ) -> Iterator[tuple[dict[str, str], Path]]:
    """For each ``FOLDER:RECIPE`` of ``evals``, its grouped split folders, with the run's
    names (``{"run": "RECIPE/groupedS", "split": "S"}``); a usage error naming ``option``
    for a bad spec."""
    from benchmarks.common import grouped_eval_folders

    for spec in evals:
        folder, sep, recipe = spec.rpartition(":")
        if not sep or not folder or not recipe:
            raise click.UsageError(f"{option} {spec!r}: expected FOLDER:RECIPE")
        for f in grouped_eval_folders(Path(folder), recipe):
            yield ({"run": f"{recipe}/{f.name.rsplit('-', 1)[-1]}",
                    "split": f.name.rsplit("grouped", 1)[-1]}, f)


def probe_command(fn: Callable[..., Any]) -> Any:
    """The command line of a post-hoc probe over trained multi-split evaluations: ``--data``,
    ``--eval FOLDER:RECIPE`` (repeatable, :func:`grouped_runs`), ``--out`` (JSON); the
    project's errors end it with one line."""
    fn = one_line_errors(fn)
    for opt in reversed((
            click.option("--data", "data_root", type=click.Path(path_type=Path),
                         required=True),
            click.option("--eval", "evals", multiple=True, required=True,
                         help="FOLDER:RECIPE of a multi-split evaluation (repeatable)."),
            click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                         default=None))):
        fn = opt(fn)
    return click.command()(fn)


@probe_command
def main(data_root: Path, evals: tuple[str, ...], out: Path | None) -> None:
    """Score the blend grid on every grouped split; print both tables."""
    from benchmarks.common import known_and_rare

    ds, _ = known_and_rare(data_root)
    labels = np.asarray(ds.minerals).astype(str)
    runs = []
    for names, f in grouped_runs(evals):
        runs.append({**names, "scores": split_scores(f, ds, labels)})
        click.echo(f"{f}: done", err=True)
    loo = leave_one_out(runs)
    table = report(runs, loo)
    click.echo(table)
    write_probe(out, evals, runs, table, leave_one_split_out=loo)


def write_probe(out: Path | None, evals: tuple[str, ...], runs: Any, table: str,
                **results: Any) -> None:
    """The probe's JSON (date, CPU, the evaluations, every run's scores, its ``results``
    by name (leave-one-split-out choices, a rule's verdict), the printed table) to ``out``,
    when given."""
    from ramanedge.machine import cpu_model

    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                   "cpu": cpu_model(), "evals": list(evals), "runs": runs,
                                   **results, "table": table}, indent=1) + "\n")

if __name__ == "__main__":  # pragma: no cover
    main()
