"""The shipped library match as a part of the unknown rule (issue 12; post-hoc, no training).

Rule (B'') of ``runs/flight/decision_rule.txt`` (2026-12-06, written before it was scored).
The rule (B') of ``benchmarks.library_match`` tried the lagged match of 2026-12-05 (power 1,
the grid) and lost; this probe asks the same of the match the artifacts ship since
2026-12-06 (the fourth root, bins of 4 cm⁻¹; the artifact's own ``library.npz`` and
``LibraryConfig``). The part is the library distance ``1 - max similarity``, standardised on
known validation, over

- ``cand``: the head's 20 candidate minerals, the similarities the blend computes anyway
  (free on the rover), or
- ``all``: every library spectrum (the whole match, about 5x its cost),

mixed into the shipped ``knn_logit_norm`` score ``S`` as ``(1 - u) S + u z``. The (part, u)
is chosen by mean choice-half AUROC (known validation against the negatives half) over the
runs; the evaluation half is reported only::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.unknown_library --data ../shared/data/rruff \\
        --eval runs/flight/eval-m17-p25:flight-early-pool \\
        --eval runs/flight/eval-m17-s1-p25:flight-early-pool-s1 --out docs/unknown_library.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from benchmarks.common import screen_library
from benchmarks.knn_blend import open_split, probe_command, write_probe
from benchmarks.library_match import known_rare_runs, rule_figures, shipped_rule
from benchmarks.ood_variants import _standardised as _z

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

UNKNOWN_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.6)
SHIPPED = "shipped (knn_logit_norm)"


def library_distance(library, P: np.ndarray, X: np.ndarray, candidates: bool) -> np.ndarray:
    """``1 - max similarity`` of each grid spectrum ``X`` (N, points) to ``library`` (a
    :class:`~ramanedge.library.SpectralLibrary`): over the head's candidate minerals (given
    its probabilities ``P``) when ``candidates``, else over every library spectrum."""
    S = library.similarity_batch(X)
    if candidates:
        keep = np.zeros(S.shape, dtype=bool)
        np.put_along_axis(keep, np.argsort(-P, axis=1, kind="stable")
                          [:, :library.config.candidates], True, axis=1)
        S = np.where(keep, S, -1.0)
    return 1.0 - S.max(axis=1)


def split_scores(folder: Path, ds, labels: np.ndarray, held, rare: np.ndarray) -> dict:
    """One split: AUROC and flagged shares of the shipped rule and of every (part, u)."""
    from benchmarks.ood_variants import parts
    from benchmarks.transfer_experiment import extract

    art, clf, names, bank_y, bank_unit, split = open_split(folder, ds)
    library = screen_library(art)
    known = np.isin(labels, names)
    halves = json.loads((folder / "run" / "unknown_minerals.json").read_text())
    X = {p: ds.X[known & (split == p)] for p in ("val", "test")}
    X["neg"] = held.X[np.isin(rare, halves["negatives"])]
    X["eval"] = held.X[np.isin(rare, halves["evaluation"])]
    F = {k: extract(clf, v)[1] for k, v in X.items()}
    L = {k: art.head.logits(v) for k, v in F.items()}
    S = {k: parts(F[k], L[k], bank_unit, bank_y) for k in X}
    shipped = shipped_rule(S)
    P = {k: art.head.probs(v).astype(np.float64) for k, v in F.items()}
    rules = {SHIPPED: shipped}
    for part in ("cand", "all"):
        zl = _z({k: library_distance(library, P[k], X[k], part == "cand") for k in X})
        rules[f"{part}, library alone"] = zl
        for u in UNKNOWN_WEIGHTS:
            rules[f"{part}, u={u:g}"] = {k: (1 - u) * shipped[k] + u * zl[k] for k in X}
    return rule_figures(rules)


def report(runs: list[dict]) -> tuple[str, dict]:
    """The table (mean over runs; paired choice-half gain over the shipped rule) and the
    rule's verdict."""
    names = list(runs[0]["unknown"])
    base = np.array([r["unknown"][SHIPPED]["negatives"] for r in runs])
    lines = ["| rule | choice-half AUROC | paired gain (higher / runs) | evaluation AUROC | "
             "unseen flagged | known flagged |", "|---|---|---|---|---|---|"]
    gains = {}
    for n in names:
        a = np.array([r["unknown"][n]["negatives"] for r in runs])
        g = a - base
        gains[n] = g
        mean = {k: float(np.mean([r["unknown"][n][k] for r in runs]))
                for k in ("evaluation", "unseen_flagged", "known_flagged")}
        lines.append(f"| {n} | {a.mean():.4f} | {g.mean():+.4f} ± {g.std(ddof=1):.4f} "
                     f"({int((g > 0).sum())} / {len(g)}) | {mean['evaluation']:.4f} | "
                     f"{100 * mean['unseen_flagged']:.1f} % | "
                     f"{100 * mean['known_flagged']:.1f} % |")
    mixed = [n for n in names if ", u=" in n]
    best = {p: max((n for n in mixed if n.startswith(p)), key=lambda n: gains[n].mean())
            for p in ("cand", "all")}
    pick = best["cand"]
    if gains[best["all"]].mean() > gains[best["cand"]].mean() + 0.005:
        pick = best["all"]
    g = gains[pick]
    adopt = bool(g.mean() > 0.005 and (g > 0).sum() >= 8)
    verdict = {"best_cand": best["cand"], "best_all": best["all"], "pick": pick,
               "gain": float(g.mean()), "higher": int((g > 0).sum()), "adopt": adopt}
    lines.append("")
    lines.append(f"rule (B''): pick {pick}, choice-half gain {g.mean():+.4f}, higher on "
                 f"{int((g > 0).sum())} of {len(g)}: {'adopt' if adopt else 'reject'}")
    return "\n".join(lines), verdict


@probe_command
def main(data_root: Path, evals: tuple[str, ...], out: Path | None) -> None:
    """Score the shipped library distance as a part of the unknown rule; print the table."""
    runs = [{**names, "unknown": scores} for names, scores in known_rare_runs(
        data_root, evals, split_scores)]
    table, verdict = report(runs)
    click.echo(table)
    write_probe(out, evals, runs, table, verdict=verdict)

if __name__ == "__main__":  # pragma: no cover
    main()
