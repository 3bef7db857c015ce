"""Variants of the ``knn_logit`` unknown score, chosen on the negatives half (issue 12).

The shipped rule mixes the cosine distance to the nearest exemplar (``d1``) with the
negative largest logit (``mlogit``), each standardised on the known validation spectra.
This probe scores the same family with other parts, on each grouped split of a multi-split
evaluation (int8 features of the shipped artifacts, their exemplar banks):

- distance: ``d1`` (nearest exemplar), ``d3`` (mean of the 3 nearest), ``dcls`` (nearest
  exemplar of the predicted class), ``dtop2`` / ``dtop3`` / ``dtop5`` (nearest exemplar of
  the 2 / 3 / 5 most probable classes: a product with a few dozen rows instead of the
  whole bank, the rover's cost);
- head part: ``mlogit`` (largest logit) or ``energy`` (log-sum-exp of the logits);
- weight on the distance 0.4 / 0.5 / 0.6;
- ``fnorm``: minus the feature norm (unknown spectra may excite fewer features), alone and as
  a third part of the shipped score with weight 0.1 to 0.5 (the larger ones for models
  trained with the objectosphere loss, which makes the norm a stronger signal).
- ``bg`` / ``bgmargin`` (runs trained with a background class, whose
  ``run/background_unit.json`` holds the unit beside the K-class head): log p(background)
  of the K + 1 softmax and the background logit minus the largest known one, alone, and
  ``bg`` as a fourth part of the shipped score with weight 0.2 to 0.8;
- post-hoc feature transforms of the shipped score (:func:`transformed`): the distance on
  centred (CL2N) or square-rooted features, the head part on ReAct-clipped features.

AUROC of known validation vs the *negatives* half (the choice) and of known test vs the
*evaluation* half (reported only). Every split folder must hold the run's own record of its
halves (``run/unknown_minerals.json``)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.ood_variants --data ../shared/data/rruff \\
        --eval runs/flight/eval-oe --recipe flight-oe --out docs/ood_variants.json
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from benchmarks.common import open_set_command

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WEIGHTS = (0.4, 0.5, 0.6)
NORM_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5)
BG_WEIGHTS = (0.2, 0.4, 0.6, 0.8)


def parts(F: np.ndarray, logits: np.ndarray, bank_unit: np.ndarray,
          bank_y: np.ndarray, unit: tuple[np.ndarray, float] | None = None
          ) -> dict[str, np.ndarray]:
    """Every score part of feature rows ``F`` (N, D), higher = more unknown; with a
    background unit ``(w (D,), b)`` (a background-class run) also ``bg`` (log p(background)
    of the K + 1 softmax) and ``bgmargin`` (its logit minus the largest known one)."""
    from edge_runtime import ood

    L = np.asarray(logits, dtype=np.float64)
    C = ood.normalise_rows(F) @ bank_unit.T
    best = np.sort(C, axis=1)[:, ::-1]
    top = L.argmax(axis=1)
    own = np.where(bank_y[None, :] == top[:, None], C, -np.inf).max(axis=1)
    own = np.where(np.isfinite(own), own, -1.0)  # a class without exemplars: farthest
    ranked = np.argsort(-L, axis=1, kind="stable")
    tops = {}
    for m_ in (2, 3, 5):
        member = (bank_y[None, :, None] == ranked[:, None, :m_]).any(axis=2)
        near = np.where(member, C, -np.inf).max(axis=1)
        tops[f"dtop{m_}"] = 1 - np.where(np.isfinite(near), near, -1.0)
    m = L.max(axis=1)
    extra = {}
    if unit is not None:
        g = np.asarray(F, dtype=np.float64) @ unit[0] + unit[1]
        top_ = np.maximum(m, g)
        lse = top_ + np.log(np.exp(L - top_[:, None]).sum(axis=1) + np.exp(g - top_))
        extra = {"bg": g - lse, "bgmargin": g - m}
    return {**extra, "d1": 1 - best[:, 0], "d3": 1 - best[:, :3].mean(axis=1), "dcls": 1 - own,
            **tops, "mlogit": -m, "energy": -(m + np.log(np.exp(L - m[:, None]).sum(axis=1))),
            "fnorm": -np.linalg.norm(np.asarray(F, dtype=np.float64), axis=1)}


def _standardised(S: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``S`` (one score per part of the data) standardised on its known validation part."""
    mu, sd = S["val"].mean(), max(float(S["val"].std()), 1e-9)
    return {k: (v - mu) / sd for k, v in S.items()}


def transformed(F: dict[str, np.ndarray], bank: np.ndarray, logits: Callable,
                Z: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """The shipped three-part score with post-hoc feature transforms, by name.

    Distance part on transformed features (the bank transformed alike): ``centred`` (minus
    the bank's mean feature before the cosine: CL2N, Wang et al. 2019), ``power`` (square
    root of the ReLU6 features: damps the few large activations, Hu et al. 2021), ``power
    centred`` (both). Head part on clipped features (ReAct, Sun et al. 2021: activations
    above the ``q``-th percentile of the known validation activations cut to it), as the
    largest logit or the energy. ``Z`` holds the shipped parts, standardised on validation.
    """
    from edge_runtime import ood

    def d1(X: np.ndarray, B: np.ndarray) -> np.ndarray:
        return 1 - (ood.normalise_rows(X) @ ood.normalise_rows(B).T).max(axis=1)

    def three(zd: dict, zh: dict) -> dict[str, np.ndarray]:
        return {k: 0.8 * (0.6 * zd[k] + 0.4 * zh[k]) + 0.2 * Z[k]["fnorm"] for k in Z}

    sq_bank = np.sqrt(np.maximum(bank, 0))
    maps: dict[str, Callable[[np.ndarray, bool], np.ndarray]] = {
        "centred": lambda X, _b: X - bank.mean(axis=0),
        "power": lambda X, _b: np.sqrt(np.maximum(X, 0)),
        "power centred": lambda X, _b: np.sqrt(np.maximum(X, 0)) - sq_bank.mean(axis=0),
    }
    out: dict[str, dict[str, np.ndarray]] = {}
    zd = {}
    for t, fn in maps.items():
        zd[t] = _standardised({k: d1(fn(v, False), fn(bank, True)) for k, v in F.items()})
        out[f"shipped, distance {t}"] = three(zd[t], {k: Z[k]["mlogit"] for k in Z})
    for q in (90, 95, 99):
        c = float(np.percentile(F["val"], q))
        L = {k: np.asarray(logits(np.minimum(v, c)), dtype=np.float64) for k, v in F.items()}
        m = {k: v.max(axis=1) for k, v in L.items()}
        zm = _standardised({k: -m[k] for k in L})
        ze = _standardised({k: -(m[k] + np.log(np.exp(L[k] - m[k][:, None]).sum(axis=1)))
                            for k in L})
        zdist = {k: Z[k]["d1"] for k in Z}
        out[f"shipped, mlogit ReAct p{q}"] = three(zdist, zm)
        out[f"shipped, energy ReAct p{q}"] = three(zdist, ze)
        for t in ("centred", "power"):
            out[f"shipped, distance {t}, mlogit ReAct p{q}"] = three(zd[t], zm)
    return out


@open_set_command
def main(data_root: Path, eval_dir: Path, recipe: str, out: Path | None) -> None:
    """Score every variant on each grouped split; print the table, best choice first."""
    from benchmarks.common import open_set_splits
    from benchmarks.transfer_experiment import auroc
    from edge_runtime import ood
    from edge_runtime.head import load_exemplars
    from ramanedge.machine import cpu_model
    from trainer.run import read_background_unit

    res: dict[str, dict[str, list[float]]] = {}
    folders = []
    has_unit: bool | None = None
    for f, clf, F, _names, _spectra in open_set_splits(data_root, eval_dir, recipe):
        art = clf.artifact
        folders.append(f)
        if art.exemplars_file is None:
            raise click.UsageError(f"{f / 'model'} has no exemplars.npz")
        ex = load_exemplars(art.exemplars_file, art.features_q, art.labels)
        unit = ood.normalise_rows(ex.features)
        bank_y = np.array([art.labels.index(n) for n in ex.labels])
        bgu = read_background_unit(f / "run")
        if has_unit is None:
            has_unit = bgu is not None
        elif (bgu is not None) != has_unit:
            raise click.UsageError(f"{f / 'run'}: background unit present on some splits and "
                                   "not on others; the probe needs it on all or none")
        if bgu is not None and bgu[0].size != F["val"].shape[1]:
            raise click.UsageError(f"{f / 'run'}: background unit of {bgu[0].size} weights for "
                                   f"{F['val'].shape[1]} features")
        S = {k: parts(v, art.head.logits(v), unit, bank_y, bgu) for k, v in F.items()}

        # each part standardised on the known validation spectra, as the shipped rule is
        by_part = {p: _standardised({k: v[p] for k, v in S.items()}) for p in S["val"]}
        Z = {k: {p: by_part[p][k] for p in by_part} for k in S}

        def add(name: str, s: dict[str, np.ndarray]) -> None:
            """One split's AUROCs of score ``s`` (per part of the data) under ``name``."""
            r = res.setdefault(name, {"negatives": [], "evaluation": []})
            r["negatives"].append(auroc(s["val"], s["neg"]))
            r["evaluation"].append(auroc(s["test"], s["eval"]))

        for a in ("d1", "d3", "dcls", "dtop2", "dtop3", "dtop5"):
            for b in ("mlogit", "energy"):
                for w in WEIGHTS:
                    add(f"{a} + {b}, w = {w:g}", {k: w * Z[k][a] + (1 - w) * Z[k][b] for k in Z})
        # the feature norm (small = unknown: what objectosphere training enforces, Dhamija
        # et al. 2018) alone, and as a third part of the shipped score
        add("fnorm alone", {k: S[k]["fnorm"] for k in S})
        two_part = {k: 0.6 * Z[k]["d1"] + 0.4 * Z[k]["mlogit"] for k in Z}
        for v in NORM_WEIGHTS:
            add(f"d1 + mlogit (w = 0.6) + fnorm, v = {v:g}",
                {k: (1 - v) * two_part[k] + v * Z[k]["fnorm"] for k in Z})
        for name, s in transformed(F, ex.features, art.head.logits, Z).items():
            add(name, s)
        if bgu is not None:  # a background-class run: its unit alone and as a fourth part
            for part in ("bg", "bgmargin"):
                add(f"{part} alone", {k: S[k][part] for k in S})
            shipped = {k: 0.8 * two_part[k] + 0.2 * Z[k]["fnorm"] for k in Z}  # v = 0.2
            for u in BG_WEIGHTS:
                add(f"d1 + mlogit (w = 0.6) + fnorm (v = 0.2) + bg, u = {u:g}",
                    {k: (1 - u) * shipped[k] + u * Z[k]["bg"] for k in Z})
        click.echo(f"{f.name}: done", err=True)
    table = summary(res)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                   "cpu": cpu_model(), "eval": str(eval_dir),
                                   "recipe": recipe, "splits": [f.name for f in folders],
                                   "aurocs": res, "table": table}, indent=1) + "\n")


def summary(res: dict[str, dict[str, list[float]]]) -> str:
    """Markdown, best choice (mean AUROC on the negatives half) first; mean ± sample s.d."""
    order = sorted(res, key=lambda k: -np.mean(res[k]["negatives"]))
    lines = ["| score (distance + head part, weight on the distance) | AUROC val vs negatives "
             "(choice) | AUROC test vs evaluation (reported) |", "|---|---|---|"]
    for k in order:
        n, e = np.asarray(res[k]["negatives"]), np.asarray(res[k]["evaluation"])
        shipped = (" (shipped: knn_logit_norm)"
                   if k == "d1 + mlogit (w = 0.6) + fnorm, v = 0.2" else
                   " (knn_logit, shipped until 2026-12-05)" if k == "d1 + mlogit, w = 0.6"
                   else "")
        lines.append(f"| {k}{shipped} | {n.mean():.3f} ± {n.std(ddof=1):.3f} | "
                     f"{e.mean():.3f} ± {e.std(ddof=1):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main()
