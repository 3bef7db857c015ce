"""A spectral library match beside the network (issues 11 and 12; post-hoc, no training).

A mineralogist names a Raman spectrum by matching it against a reference library. k-NN on
RRUFF's baseline-corrected spectra is nearly as accurate as the CNN on the grouped split
(`docs/results.md` section 1: 79.2 vs 80.5 %), from a different view of the data (the
spectrum itself, not features learnt from the known minerals). This probe asks whether
that view adds to the flight model's answer and to its unknown rule, computed the way a
rover could: the incoming grid spectrum, high-pass filtered (minus its moving average over
``2h + 1`` grid points, ``h`` = 10 / 25 / 50 cm⁻¹; ``raw`` = unfiltered), cosine against the
same transform of every training spectrum of the split (the library).

- **Answer**: ``q = (1 - w) p + w softmax(s / T)`` with ``s_c`` the best cosine to a library
  spectrum of class ``c``, the (transform, w, T) chosen leave-one-split-out on validation
  top-1 at 0 cm⁻¹; judged on the held-out split's validation at 0 / ±15 / ±30 cm⁻¹. Two
  candidate sets, two rules: the plain library (rule (A)), and the *lagged* library (rule
  (A')): the cosine is the best over lags ``-R .. R`` grid points in steps of 3
  (:func:`ramanedge.library.lagged_cosine`), so a calibration shift of up to ``R`` cm⁻¹
  costs the match nothing; the lagged library alone (1-NN) is a candidate there too.
- **Unknown rule**: the shipped ``knn_logit_norm`` score ``S`` plus the library distance
  ``1 - max cosine`` (standardised on known validation): ``(1 - u) S + u z``, the
  (transform, u) chosen by mean AUROC of validation vs the negatives half over all runs;
  the evaluation half reported only. Plain (rule (B)) and lagged (rule (B'), 18:30 UTC).

Decision rules: ``runs/flight/decision_rule.txt`` (2026-12-05: (A) and (B) 18:02 UTC, (A')
18:05 UTC; (A') adopted, ``docs/parts/flight.md``)::

    OPENBLAS_NUM_THREADS=2 python -m benchmarks.library_match --data ../shared/data/rruff \\
        --eval runs/flight/eval-ep:flight-early-pool \\
        --eval runs/flight/eval-ep-s1:flight-early-pool-s1 --out docs/library_match.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from benchmarks.knn_blend import (
    TEMPERATURES,
    WEIGHTS,
    blend,
    class_best,
    delta_table,
    grouped_runs,
    open_split,
    probe_command,
    write_probe,
)
from benchmarks.ood_variants import _standardised as _z
from ramanedge.library import high_pass, lagged_cosine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HALF_WIDTHS = (0, 10, 25, 50)  # 0: the raw grid spectrum
LAGGED = ((25, 30), (25, 45), (50, 30), (50, 45))  # (h, R): best cosine over lags |d| <= R
LAG_STEP = 3  # grid points (cm-1) between the lags tried (ramanedge.library.lags)
ANSWER_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7)
UNKNOWN_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.6)
SHIFTS = (0, 15, 30)
SHIPPED = "shipped (knn_logit_norm)"


def split_scores(folder: Path, ds, labels: np.ndarray, held, rare: np.ndarray) -> dict:
    """One split: top-1 of every answer variant on validation / test at every shift, and
    AUROC / flagged share of every unknown-rule variant."""
    from benchmarks.ood_variants import parts
    from benchmarks.transfer_experiment import extract
    from ramanedge.grid import shift_spectra

    art, clf, names, bank_y, bank_unit, split = open_split(folder, ds)
    known = np.isin(labels, names)
    train = known & (split == "train")
    lib_y = np.array([names.index(n) for n in labels[train]])
    libs = {h: high_pass(ds.X[train], h) for h in HALF_WIDTHS}
    matches = [(h, 0) for h in HALF_WIDTHS] + list(LAGGED)

    answer: dict[str, dict[str, float]] = {}
    for part in ("val", "test"):
        rows = known & (split == part)
        y = np.array([names.index(n) for n in labels[rows]])
        for s in SHIFTS:
            res: dict[str, list[float]] = {}
            for d in ((0,) if s == 0 else (s, -s)):
                X = shift_spectra(ds.X[rows], d)
                P = art.head.probs(extract(clf, X)[1]).astype(np.float64)
                res.setdefault("shipped", []).append(float(np.mean(P.argmax(1) == y)))
                Q = {h: high_pass(X, h) for h in libs}
                for h, r in matches:
                    S = class_best(lagged_cosine(Q[h], libs[h], r, LAG_STEP), lib_y, len(names))
                    key = f"h={h}" if r == 0 else f"h={h},R={r}"
                    res.setdefault(f"{key},1-NN", []).append(float(np.mean(S.argmax(1) == y)))
                    for w in ANSWER_WEIGHTS if r else WEIGHTS:
                        for t in TEMPERATURES:
                            hit = float(np.mean(blend(P, S, w, t).argmax(1) == y))
                            res.setdefault(f"{key},w={w:g},T={t:g}", []).append(hit)
            answer[f"{part}_{s}"] = {k: float(np.mean(v)) for k, v in res.items()}

    halves = json.loads((folder / "run" / "unknown_minerals.json").read_text())
    X = {p: ds.X[known & (split == p)] for p in ("val", "test")}
    X["neg"] = held.X[np.isin(rare, halves["negatives"])]
    X["eval"] = held.X[np.isin(rare, halves["evaluation"])]
    F = {k: extract(clf, v)[1] for k, v in X.items()}
    S = {k: parts(v, art.head.logits(v), bank_unit, bank_y) for k, v in F.items()}
    shipped = shipped_rule(S)
    rules = {SHIPPED: shipped}
    for h, r in matches:  # rule (B): the plain library; (B'): the lagged one
        zl = _z({k: 1 - lagged_cosine(high_pass(v, h), libs[h], r, LAG_STEP).max(axis=1)
                 for k, v in X.items()})
        key = f"h={h}" if r == 0 else f"h={h},R={r}"
        rules[f"{key}, library alone"] = zl
        for u in UNKNOWN_WEIGHTS:
            rules[f"{key}, u={u:g}"] = {k: (1 - u) * shipped[k] + u * zl[k] for k in X}
    return {"answer": answer, "unknown": rule_figures(rules)}


def shipped_rule(S: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The shipped ``knn_logit_norm`` score of each data part from its score parts ``S``
    (``benchmarks.ood_variants.parts`` of ``"val"``, ``"test"``, ``"neg"``, ``"eval"``), each
    part standardised on known validation."""
    Z = {p: _z({k: v[p] for k, v in S.items()}) for p in ("d1", "mlogit", "fnorm")}
    return {k: 0.8 * (0.6 * Z["d1"][k] + 0.4 * Z["mlogit"][k]) + 0.2 * Z["fnorm"][k]
            for k in S}


def rule_figures(rules: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Each unknown rule's AUROC (known validation vs the negatives half: the choice;
    known test vs the evaluation half: reported) and, at the threshold that 95 % of known
    validation spectra pass, the unseen and known test shares flagged."""
    from benchmarks.transfer_experiment import auroc

    out = {}
    for name, r in rules.items():
        thr = float(np.quantile(r["val"], 0.95))  # 95 % of known validation spectra pass
        out[name] = {"negatives": auroc(r["val"], r["neg"]),
                     "evaluation": auroc(r["test"], r["eval"]),
                     "unseen_flagged": float(np.mean(r["eval"] > thr)),
                     "known_flagged": float(np.mean(r["test"] > thr))}
    return out


def leave_one_out(runs: list[dict], lagged: bool) -> list[dict]:
    """For each run, the answer variant with the best mean validation top-1 at 0 cm⁻¹ over
    the runs of the *other* splits, and its paired deltas against the shipped head.
    Candidates: ``lagged=False``: the plain library's blends (rule (A), 2026-12-05 18:02
    UTC); ``lagged=True``: the lagged library's blends and the lagged library alone
    (1-NN; rule (A'), 18:05 UTC)."""
    names = [n for n in runs[0]["answer"]["val_0"]
             if ("R=" in n) == lagged and ("w=" in n or lagged)]
    out = []
    for r in runs:
        others = [o for o in runs if o["split"] != r["split"]]
        pick = max(names, key=lambda n: np.mean([o["answer"]["val_0"][n] for o in others]))
        out.append({"run": r["run"], "pick": pick,
                    **{f"d_{k}": 100 * (v[pick] - v["shipped"])
                       for k, v in r["answer"].items()}})
    return out


def report(runs: list[dict], looes: dict[str, list[dict]]) -> str:
    """Markdown: the unknown-rule variants (best choice first), the 1-NN rows, then the
    answer's leave-one-split-out deltas."""
    lines = ["| unknown rule | AUROC val vs negatives (choice) | paired Δ, higher on | "
             "AUROC test vs evaluation (reported) | unseen flagged | known test flagged |",
             "|---|---|---|---|---|---|"]
    base = np.array([r["unknown"][SHIPPED]["negatives"] for r in runs])
    for n in sorted(runs[0]["unknown"],
                    key=lambda n: -np.mean([r["unknown"][n]["negatives"] for r in runs])):
        v = {k: np.array([r["unknown"][n][k] for r in runs]) for k in runs[0]["unknown"][n]}
        d = v["negatives"] - base
        lines.append(f"| {n} | {v['negatives'].mean():.3f} ± {v['negatives'].std(ddof=1):.3f}"
                     f" | {d.mean():+.4f}, {int((d > 0).sum())}/{len(d)} | "
                     f"{v['evaluation'].mean():.3f} ± {v['evaluation'].std(ddof=1):.3f} | "
                     f"{100 * v['unseen_flagged'].mean():.1f} % | "
                     f"{100 * v['known_flagged'].mean():.1f} % |")
    keys = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    lines += ["", "| answer | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for n in ["shipped"] + [n for n in runs[0]["answer"]["val_0"] if "1-NN" in n]:
        lines.append(f"| {n} | " + " | ".join(
            f"{100 * np.mean([r['answer'][k][n] for r in runs]):.1f}" for k in keys) + " |")
    for title, loo in looes.items():
        lines += ["", f"{title}:", "", *delta_table(loo, keys)]
    return "\n".join(lines)


def known_rare_runs(data_root: Path, evals: tuple[str, ...], score):
    """``(names, score(folder, ds, labels, held, rare))`` for each grouped split folder of
    ``evals``: the known minerals' data set ``ds`` and their names ``labels``, the rare
    minerals' ``held`` and theirs ``rare`` (:func:`benchmarks.common.known_and_rare`)."""
    from benchmarks.common import known_and_rare

    ds, held = known_and_rare(data_root)
    labels = np.asarray(ds.minerals).astype(str)
    rare = np.asarray(held.minerals).astype(str)
    for names, f in grouped_runs(evals):
        yield names, score(f, ds, labels, held, rare)
        click.echo(f"{f}: done", err=True)


@probe_command
def main(data_root: Path, evals: tuple[str, ...], out: Path | None) -> None:
    """Score the answer and unknown-rule variants on every grouped split; print the tables."""
    runs = [{**names, **scores} for names, scores in known_rare_runs(data_root, evals,
                                                                      split_scores)]
    looes = {"plain library, rule (A)": leave_one_out(runs, lagged=False),
             "lagged library, rule (A')": leave_one_out(runs, lagged=True)}
    table = report(runs, looes)
    click.echo(table)
    write_probe(out, evals, runs, table, leave_one_split_out=looes)


if __name__ == "__main__":  # pragma: no cover
    main()
