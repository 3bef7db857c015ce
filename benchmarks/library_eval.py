"""The default artifacts re-exported with the spectral library, scored as the rover answers.

For each split folder of one or more multi-split evaluations (:mod:`benchmarks.flight_eval`),
the trained run is exported again with ``ramanedge quantize``'s defaults (10 exemplars per
class, the spectral library: :mod:`ramanedge.library`) into ``OUT/<folder>/model``; the int8
model is the same file (its sha256 is checked against the original export). Then the rover
path's top-1 at 0 / ±15 / ±30 cm⁻¹ (mean of +s and -s) on the split's validation and test
spectra, with the library (``int8_*``, ``val_int8_*``) and without it (``net_*``,
``val_net_*``), and what the artifact as shipped says through the rover's per-spectrum path
(:func:`shipped_answers`: its prediction sets' coverage and size and the known spectra
flagged on test, the unseen-mineral spectra flagged and the unknown AUROC on the evaluation
half; since 2026-12-07), one row per split in ``OUT/eval.jsonl``; ``OUT/<folder>/run`` links to the
split's run, so the open-set probes (:mod:`benchmarks.open_set`, :mod:`benchmarks.conformal`)
read ``OUT`` as they read a :mod:`benchmarks.flight_eval` folder::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.library_eval \\
        --eval runs/flight/eval-ep:flight-early-pool \\
        --eval runs/flight/eval-ep-s1:flight-early-pool-s1 --out runs/flight/eval-lib
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import one_line_errors
from ramanedge.manifest import LIBRARY_SPECTRA

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHIFTS = (0, 15, 30)
#: the kinds of split an export folder may hold (``RECIPE-<kind><seed>``)
SPLIT_KINDS = ("grouped", "random")


def shift_top1(predict, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1 of ``predict`` at each shift of :data:`SHIFTS` (mean of +s and -s)."""
    from ramanedge.grid import shift_spectra

    return {str(s): float(np.mean([np.mean(predict(shift_spectra(X, d)).argmax(1) == y)
                                   for d in ((0,) if s == 0 else (s, -s))]))
            for s in SHIFTS}


def evaluate(folder: Path, recipe: str, out: Path, changes: dict | None = None,
             with_validation: bool = True) -> dict:
    """Re-export one split's run with the library (``changes``: to the default
    :class:`~ramanedge.library.LibraryConfig`; ``with_validation``: it also holds the
    validation spectra, ``QuantizeConfig.library_with_validation``) and score it (one row;
    the validation spectra answered without themselves,
    :func:`benchmarks.common.validation_answerer`)."""
    from benchmarks.common import validation_answerer
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.fsutil import sha256_file
    from ramanedge.library import LibraryConfig
    from ramanedge.manifest import MODEL_FILE
    from trainer.run import load_run

    art_dir = out / folder.name / "model"
    link = out / folder.name / "run"  # the open-set and set probes read the run beside it
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to((folder / "run").resolve(), target_is_directory=True)
    quantize_run(folder / "run", art_dir, config=QuantizeConfig(
        overwrite=True, exemplars_per_class=DEFAULT_PER_CLASS,
        library=replace(LibraryConfig(), **(changes or {})),
        library_with_validation=with_validation, allow_accuracy_drop=True),
        log=lambda _m: None)
    same = sha256_file(art_dir / MODEL_FILE) == sha256_file(folder / "model" / MODEL_FILE)
    art = load_artifact(art_dir)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    net = Classifier(art, clf.interpreter, library=False)
    run = load_run(folder / "run", load_model=False)
    tail = folder.name[len(recipe) + 1:]
    kind = tail.rstrip("0123456789")
    seed = int(tail[len(kind):])
    row = {"recipe": f"{recipe}+library", "split": kind, "split_seed": seed,
           "same_model_tflite": same, "library_bytes": art.library_file.stat().st_size,
           "library_rows": int(art.manifest.data["library"]["rows"]),
           "library_config": LibraryConfig.from_dict(art.manifest.data["library"]).to_dict(),
           "library_parts": list(art.manifest.library_parts),
           "library_spectra": "train+val" if with_validation else "train",
           "date": time.strftime("%Y-%m-%d")}
    Xtr, ytr = run.subset("train")
    answer = {"test": clf, "val": validation_answerer(clf, Xtr, ytr)}
    for part, prefix in (("test", ""), ("val", "val_")):
        X, y = run.subset(part)
        row.update({f"{prefix}int8_{k}": v
                    for k, v in shift_top1(answer[part].predict_proba_batch, X, y).items()})
        row.update({f"{prefix}net_{k}": v
                    for k, v in shift_top1(net.predict_proba_batch, X, y).items()})
    row.update(shipped_answers(clf, *run.subset("test"), unseen=unseen_spectra(run)))
    if json.loads((folder / "run" / "metrics.json").read_text()).get("val_in_training"):
        row["val_in_training"] = True  # a refit: its val_* figures are in-sample
    return row


def unseen_spectra(run: Any) -> np.ndarray:
    """The spectra of the *evaluation* half of the minerals the run's data set drops
    (:func:`ramanedge.splits.unknown_evaluation`): minerals no network or calibration saw."""
    from ramanedge.dataset import load_heldout
    from ramanedge.splits import unknown_evaluation
    from trainer.run import run_data_config

    data = run_data_config(run.config)
    held = load_heldout(data.root, data.dataset, min_spectra=data.min_spectra,
                        cache_dir=data.cache_dir)
    evaluation, _ = unknown_evaluation(held, known=run.labels)
    return held.X[np.isin(np.asarray(held.minerals).astype(str), evaluation)]


def shipped_answers(clf: Any, X: np.ndarray, y: np.ndarray,
                    unseen: np.ndarray | None = None) -> dict[str, float | None]:
    """What the artifact as shipped says about the test spectra (known minerals, no shift),
    through the rover's per-spectrum path (:meth:`~edge_runtime.classify.Classifier.
    classify_grid`): the share whose prediction set holds the true mineral and the mean set
    size (``None`` without sets), and the share flagged unknown; with ``unseen`` (spectra of
    minerals it never saw) also the share of those flagged and the AUROC of the unknown
    score, unseen against the known test spectra."""
    preds = [clf.classify_grid(x) for x in X]
    names = [clf.labels[i] for i in y]
    sets = [p.set for p in preds]
    has = all(s is not None for s in sets)
    out = {"test_set_coverage": (float(np.mean([n in s for n, s in zip(names, sets,
                                                                        strict=True)]))
                                 if has else None),
           "test_set_size": float(np.mean([len(s) for s in sets])) if has else None,
           "test_known_flagged": float(np.mean([p.unknown for p in preds]))}
    if unseen is not None and len(unseen):
        from benchmarks.transfer_experiment import auroc

        other = [clf.classify_grid(x) for x in unseen]
        out["unseen_flagged"] = float(np.mean([p.unknown for p in other]))
        out["unknown_auroc"] = float(auroc(np.array([p.unknown_score for p in preds]),
                                           np.array([p.unknown_score for p in other])))
    return out


def _folder_and_recipe(spec: str) -> tuple[str, str]:
    """``--eval FOLDER:RECIPE`` split in two, or a usage error."""
    folder, sep, recipe = spec.rpartition(":")
    if not sep or not folder or not recipe:
        raise click.UsageError(f"--eval {spec!r}: expected FOLDER:RECIPE")
    return folder, recipe


def parse_changes(text: str) -> dict:
    """``"bin_width=4,step=4,reach=32"`` -> ``{"bin_width": 4, ...}`` (values read as JSON:
    numbers, true/false), checked against :class:`~ramanedge.library.LibraryConfig`."""
    from ramanedge.library import LibraryConfig

    changes = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in LibraryConfig.__dataclass_fields__:
            raise click.UsageError(f"--config {item!r}: expected KEY=VALUE with KEY one of "
                                   f"{', '.join(LibraryConfig.__dataclass_fields__)}")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            raise click.UsageError(f"--config {item!r}: the value must be a number or "
                                   f"true/false") from None
    replace(LibraryConfig(), **changes)  # one-line ModelError for a bad value
    return changes


def probe_scores(folder: Path, make_scorer) -> dict:
    """The probes' shared loop: ``make_scorer(art, run)`` (the split's exported artifact and
    its run) returns ``score(P, X, y) -> {variant: top1}``, called with the network's
    probabilities from the rover's int8 path (``P``, the library left out), the shifted grid
    spectra ``X`` and their class ids, for the validation and test spectra at each shift
    (mean of +s and -s): ``{"val_0": {variant: top1, ...}, ...}``. ``make_scorer`` may
    instead return ``{"val": score, "test": score}``: one scorer per part (a library that
    may hold the validation spectra for test only)."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.grid import shift_spectra
    from trainer.run import load_run

    art = load_artifact(folder / "model")
    net = Classifier(art, make_interpreter(art.model_path, num_threads=1), library=False)
    run = load_run(folder / "run", load_model=False)
    scorers = make_scorer(art, run)
    out: dict[str, dict[str, float]] = {}
    for part in ("val", "test"):
        score = scorers[part] if isinstance(scorers, dict) else scorers
        X0, y = run.subset(part)
        for s in SHIFTS:
            hits: dict[str, list[float]] = {}
            for d in ((0,) if s == 0 else (s, -s)):
                X = shift_spectra(X0, d)
                for k, v in score(net.predict_proba_batch(X), X, y).items():
                    hits.setdefault(k, []).append(v)
            out[f"{part}_{s}"] = {k: float(np.mean(v)) for k, v in hits.items()}
    return out


def _artifact_library(art):
    """The artifact's library, or a usage error naming the folder (none, or one that holds
    the validation spectra: :func:`benchmarks.common.screen_library`)."""
    from benchmarks.common import screen_library

    return screen_library(art)


def _top1(Q: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(Q.argmax(1) == y))


def candidate_scores(folder: Path, counts: tuple[int, ...]) -> dict:
    """Top-1 of the blended answer when the library match is made only for the ``N`` most
    probable minerals of the network (the others get no library share), for each ``N`` of
    ``counts`` (0 = every mineral), keyed ``str(N)`` (:func:`probe_scores`). Computed from
    the whole similarity matrix with the other classes masked: the same numbers as a match
    made only for those classes."""
    from ramanedge.library import blend_rows

    def make(art, run):
        lib = _artifact_library(art)

        def score(P, X, y):
            S = lib.similarity_batch(X)
            return {str(n): _top1(blend_rows(P, S, replace(lib.config, candidates=n)), y)
                    for n in counts}
        return score
    return probe_scores(folder, make)


#: the coarser matches of the 2026-12-05 20:23 UTC rule (bins of grid points summed after
#: the high-pass; lags in grid points), cheapest last, against the grid match then shipped
#: (``"shipped"``: :data:`GRID_MATCH`, LibraryConfig()'s values before 20:37 UTC); every
#: variant on top of :data:`COARSE_BASE`, the rest of the match as it was then
COARSE_BASE = {"power": 1.0, "weight": 0.3, "lag_penalty": 0.0}
GRID_MATCH = {"bin_width": 1, "step": 3, "reach": 30}
COARSE = {"b2-step2": {"bin_width": 2, "step": 2, "reach": 30},
          "b2-step4": {"bin_width": 2, "step": 4, "reach": 32},
          "b3-step3": {"bin_width": 3, "step": 3, "reach": 30},
          "b4-step4": {"bin_width": 4, "step": 4, "reach": 32}}


def coarse_scores(folder: Path, variants: dict[str, dict]) -> dict:
    """Top-1 of the blended answer with the library rebuilt from the run's training spectra
    for each of ``variants`` (name -> :class:`~ramanedge.library.LibraryConfig` changes) and
    for the grid match (``"shipped"``, :data:`GRID_MATCH`) (:func:`probe_scores`)."""
    from ramanedge.library import LibraryConfig, SpectralLibrary

    def make(art, run):
        Xtr, ytr = run.subset("train")
        libs = {name: SpectralLibrary.build(Xtr, ytr, len(run.labels),
                                            replace(LibraryConfig(), **COARSE_BASE,
                                                    **changes))
                for name, changes in {"shipped": GRID_MATCH, **variants}.items()}
        return lambda P, X, y: {name: _top1(lib.blend_batch(P, X), y)
                                for name, lib in libs.items()}
    return probe_scores(folder, make)


#: the log-linear blends of the 2026-12-05 20:48 UTC rule: q ~ p^(1-w) exp(w s / T)
POOL_WEIGHTS = (0.2, 0.3, 0.5, 0.7)
POOL_TEMPERATURES = (0.01, 0.02, 0.05, 0.1)


def pool_scores(folder: Path) -> dict:
    """Top-1 of the shipped blend (``"shipped"``) and of each log-linear blend ``q ~
    p^(1-w) exp(w s / T)`` (:data:`POOL_WEIGHTS` x :data:`POOL_TEMPERATURES`, keyed
    ``"w=..,T=.."``; ``s`` the artifact's match with the non-candidates at -1, as the
    shipped blend sees it) (:func:`probe_scores`)."""
    from ramanedge.library import blend_rows

    def make(art, run):
        lib = _artifact_library(art)
        n = lib.config.candidates

        def score(P, X, y):
            S = lib.similarity_batch(X)
            res = {"shipped": _top1(blend_rows(P, S, lib.config), y)}
            if n and n < S.shape[1]:  # the candidates' mask, as blend_rows applies it
                keep = np.zeros(S.shape, dtype=bool)
                np.put_along_axis(keep, np.argsort(-P, axis=1, kind="stable")[:, :n], True,
                                  axis=1)
                S = np.where(keep, S, -1.0)
            logp = np.log(np.maximum(P, 1e-300))
            for w in POOL_WEIGHTS:
                for t in POOL_TEMPERATURES:
                    res[f"w={w:g},T={t:g}"] = _top1((1 - w) * logp + w * S / t, y)
            return res
        return score
    return probe_scores(folder, make)


#: the test-time shift averages of the 2026-12-06 16:03 UTC screen: the rover's answer
#: averaged over the spectrum shifted by these offsets (grid points = cm-1), each a
#: model call (and a library match) more per answer
SHIFT_AVERAGES = {"none": (0,), "2": (-2, 0, 2), "4": (-4, 0, 4), "8": (-8, 0, 8),
                  "2+4": (-4, -2, 0, 2, 4), "12": (-12, 0, 12)}


def shift_averaged(predict: Callable[[np.ndarray], np.ndarray],
                   offsets: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` (grid spectra -> probabilities) averaged over the spectra shifted by each
    of ``offsets`` grid points (:func:`ramanedge.grid.shift_spectra`, edge-padded)."""
    from ramanedge.grid import shift_spectra

    def averaged(X: np.ndarray) -> np.ndarray:
        return np.mean([predict(shift_spectra(X, t)) for t in offsets], axis=0)
    return averaged


def shift_average_scores(folder: Path, variants: dict[str, tuple[int, ...]]) -> dict:
    """Top-1 of the rover's answer with the library (``"lib:NAME"``) and of the network
    alone (``"net:NAME"``), each averaged over the shifts of every variant (name ->
    offsets, :func:`shift_averaged`) (:func:`probe_scores`)."""
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter

    def make(art, run):
        lib = Classifier(art, make_interpreter(art.model_path, num_threads=1),
                         library=_artifact_library(art))  # none: a usage error
        net = Classifier(art, lib.interpreter, library=False)
        answers = {f"{kind}:{name}": shift_averaged(c.predict_proba_batch, offsets)
                   for kind, c in (("lib", lib), ("net", net))
                   for name, offsets in variants.items()}
        return lambda P, X, y: {k: _top1(f(X), y) for k, f in answers.items()}
    return probe_scores(folder, make)


#: the match variants of the 2026-12-06 17:46 UTC screen (training-free; each with the
#: blend's (w, T) re-chosen from :data:`VARIANT_WEIGHTS` x :data:`VARIANT_TEMPERATURES`):
#: ``power`` raises the grid spectrum (clipped at 0) to that power before the match (both
#: sides, :attr:`~ramanedge.library.LibraryConfig.power`; 0.5 = the square root that
#: spectral search uses to let weak bands count), ``top`` scores a mineral by the mean of
#: its ``top`` best library spectra instead of the best one. ``plain`` (power 1, w 0.3,
#: T 0.02) was the shipped match then; pow0.25 with w 0.5, T 0.02 was adopted.
MATCH_VARIANTS = {"plain": {"power": 1.0, "top": 1}, "sqrt": {"power": 0.5, "top": 1},
                  "pow0.25": {"power": 0.25, "top": 1}, "top2": {"power": 1.0, "top": 2},
                  "sqrt+top2": {"power": 0.5, "top": 2}}
VARIANT_WEIGHTS = (0.2, 0.3, 0.5)
VARIANT_TEMPERATURES = (0.01, 0.02, 0.05)

#: the screens of ``--variants NAME``: variants, the (w, T) grid and the reference key.
#: ``low-power`` (2026-12-06 18:29 UTC rule): the adopted power 0.25 sat at the first
#: grid's edge, so lower powers and a larger library share against it
VARIANT_SCREENS = {
    "power": {"variants": MATCH_VARIANTS, "weights": VARIANT_WEIGHTS,
              "temperatures": VARIANT_TEMPERATURES, "reference": "plain|w=0.3,T=0.02"},
    "low-power": {"variants": {f"pow{p:g}": {"power": p, "top": 1} for p in (0.25, 0.15, 0.1)},
                  "weights": (0.5, 0.7), "temperatures": (0.01, 0.02, 0.05),
                  "reference": "pow0.25|w=0.5,T=0.02"},
    # rule (L3), 2026-12-07 16:50 UTC: the blend's (w, T) again, on the default path's
    # refits (their validation part is the held-out half nothing trained or chose on), the
    # choice made on the other *splits* (a split's training seeds share their held-out half)
    "refit-blend": {"variants": {"pow0.25": {"power": 0.25, "top": 1}},
                    "weights": (0.5, 0.6, 0.7, 0.8, 0.9),
                    "temperatures": (0.02, 0.03, 0.05, 0.1),
                    "reference": "pow0.25|w=0.5,T=0.02", "by_split": True},
    # rule (Y), 2026-12-08 00:16 UTC: a prior for small lags (``lag_penalty``: each lag's
    # cosine lowered by lambda * (d / reach)^2), the shipped match and blend otherwise
    "lag-prior": {"variants": {f"lag{p:g}": {"power": 0.25, "top": 1, "lag_penalty": p}
                               for p in (0.0, 0.01, 0.02, 0.05, 0.1)},
                  "weights": (0.5,), "temperatures": (0.02,),
                  "reference": "lag0|w=0.5,T=0.02"},
    # rule (Y'), 2026-12-08 00:17 UTC: the prior centred on the spectrum's own lag d* (the
    # lag of its best cosine over the candidates' library rows), lambda * ((d - d*) / reach)^2
    "centred-lag-prior": {"variants": {f"c{p:g}": {"power": 0.25, "top": 1, "lag_penalty": p,
                                                   "centred": True}
                                       for p in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)},
                          "weights": (0.5,), "temperatures": (0.02,),
                          "reference": "c0|w=0.5,T=0.02"},
}


def centred_lag_cosine(Q: np.ndarray, L: np.ndarray, reach: int, step: int, penalty: float,
                       rows: np.ndarray | None) -> np.ndarray:
    """Rule (Y')'s match, ``(N, M)``: each lag's cosine (:func:`ramanedge.library.lags`,
    the query moved as :func:`~ramanedge.library.lagged_cosine` moves it) lowered by
    ``penalty * ((d - d*) / reach) ** 2``, then the best over lags; ``d*`` is each query's
    lag of its best cosine over the library rows that ``rows`` (N, M) marks (the
    candidates'); ``rows = None``: ``d* = 0``, rule (Y)'s prior (which the shipped
    :func:`~ramanedge.library.lagged_cosine` computes as ``penalty``)."""
    from ramanedge.library import lags, moved

    ds = lags(reach, step)
    Q = np.asarray(Q, dtype=np.float32)
    C = np.stack([moved(Q, d) @ L.T for d in ds])                     # (lags, N, M)
    if rows is None:
        dstar = np.zeros(C.shape[1])
    else:
        best = np.where(rows[None], C, -np.inf).max(axis=2)            # (lags, N)
        dstar = np.asarray(ds, dtype=np.float64)[best.argmax(axis=0)]  # (N,)
    pen = penalty * ((np.asarray(ds, dtype=np.float64)[:, None] - dstar[None]) / reach) ** 2
    return (C - pen[:, :, None]).max(axis=0)


def class_top_mean(C: np.ndarray, y: np.ndarray, n_classes: int, top: int) -> np.ndarray:
    """``(N, K)``: each class's mean of its ``top`` largest columns of ``C`` (N, M; columns
    labelled ``y``; a class with fewer spectra: the mean of those it has; none: -1)."""
    S = np.full((len(C), n_classes), -1.0)
    for k in np.unique(y):
        block = np.sort(C[:, y == k], axis=1)[:, ::-1][:, :top]
        S[:, int(k)] = block.mean(axis=1)
    return S


def variant_scores(folder: Path, variants: dict[str, dict],
                   weights: tuple[float, ...] = VARIANT_WEIGHTS,
                   temperatures: tuple[float, ...] = VARIANT_TEMPERATURES) -> dict:
    """Top-1 of the blended answer for each match variant (name -> ``{"power", "top"}``,
    :data:`MATCH_VARIANTS`, and optionally ``"lag_penalty"``, the ``penalty`` of
    :func:`~ramanedge.library.lagged_cosine`; absent: 0, every lag alike, as the screens
    before 2026-12-08 were measured, whatever the artifact's own ``lag_penalty``) and each
    blend ``(w, T)`` of ``weights`` x ``temperatures``, keyed ``"NAME|w=..,T=.."``: the
    library rebuilt from the run's training spectra with the artifact's config, the blend
    made for the artifact's candidates (:func:`probe_scores`)."""
    from ramanedge.library import SpectralLibrary, blend_rows, lagged_cosine, match_view

    def make(art, run):
        cfg = _artifact_library(art).config
        b = cfg.bin_width
        Xtr, ytr = run.subset("train")
        cfgs = {p: replace(cfg, power=p) for p in {v["power"] for v in variants.values()}}
        libs = {p: SpectralLibrary.build(Xtr, ytr, len(run.labels), c)
                for p, c in cfgs.items()}

        def score(P, X, y):
            res = {}
            for name, v in variants.items():
                lib = libs[v["power"]]
                V = match_view(X, cfgs[v["power"]])
                if v.get("centred"):
                    cand = np.argsort(-P, axis=1, kind="stable")[:, :cfg.candidates]
                    mine = np.zeros(P.shape, dtype=bool)
                    np.put_along_axis(mine, cand, True, axis=1)
                    C = centred_lag_cosine(V, lib.spectra, cfg.reach // b, cfg.step // b,
                                           v["lag_penalty"], mine[:, lib.y])
                else:
                    C = lagged_cosine(V, lib.spectra, cfg.reach // b, cfg.step // b,
                                      v.get("lag_penalty", 0.0))
                S = class_top_mean(C, lib.y, lib.n_classes, v["top"])
                for w in weights:
                    for t in temperatures:
                        Q = blend_rows(P, S, replace(cfg, weight=w, temperature=t))
                        res[f"{name}|w={w:g},T={t:g}"] = _top1(Q, y)
            return res
        return score
    return probe_scores(folder, make)


def held_out_rows(res: dict[str, dict], choices: list[str], reference: str,
                  others_of: Callable[[str], list[str]]) -> list[str]:
    """The held-out choice table of the probes' rules: each run's choice among ``choices``
    by the mean validation top-1 at 0 over ``others_of(run)``, its paired deltas against
    ``reference`` at every shift, validation and test; then their mean ± s.d. and how many
    runs are higher / lower (markdown rows)."""
    parts = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    lines, deltas = [], {k: [] for k in parts}
    for name in sorted(res):
        others = others_of(name)
        best = max(choices, key=lambda v: np.mean([res[m]["val_0"][v] for m in others]))
        row = [name, best]
        for key in parts:
            d = 100 * (res[name][key][best] - res[name][key][reference])
            deltas[key].append(d)
            row.append(f"{d:+.2f}")
        lines.append("| " + " | ".join(row) + " |")
    head = ("| run | held-out choice | " + " | ".join(parts) + " |\n|---|---|"
            + "---|" * len(parts))
    mean = ("| mean ± s.d. | | " + " | ".join(
        f"{np.mean(v):+.2f} ± {np.std(v, ddof=1):.2f}" for v in deltas.values()) + " |")
    higher = ("| higher / lower | | " + " | ".join(
        f"{sum(x > 0 for x in v)} / {sum(x < 0 for x in v)}" for v in deltas.values()) + " |")
    return [head, *lines, mean, higher]


def split_folders(folder: Path, recipe: str, kinds: tuple[str, ...] = SPLIT_KINDS) -> list[Path]:
    """The split folders of ``recipe`` in ``folder`` (``RECIPE-groupedN``,
    ``RECIPE-randomN``; only the ``kinds`` given), in name order."""
    pattern = re.compile(rf"{re.escape(recipe)}-({'|'.join(kinds)})\d+")
    return sorted(p for p in folder.glob(f"{recipe}-*") if pattern.fullmatch(p.name))


def probe_folders(out: Path, recipe: str, split: str = "grouped") -> list[Path]:
    """The exported split folders of ``recipe`` in ``out`` the probes score: one kind of
    split at a time (``"grouped"``: ``RECIPE-groupedN``; ``"random"``: ``RECIPE-randomN``),
    since a run's held-out choice reads the other runs of the same kind."""
    return split_folders(out, recipe, (split,))


def _split_of(name: str) -> str:
    """The split of a ``RECIPE-groupedS`` or ``RECIPE-randomS`` folder name (``"grouped0"``,
    ``"random3"``); the name itself when it ends in neither."""
    m = re.search(r"(grouped|random)\d+$", name)
    return m.group(0) if m else name


def variant_report(res: dict[str, dict], reference: str, by_split: bool = False) -> str:
    """The 17:46 rule (and the later screens'): each run's variant and (w, T) chosen on
    the other runs' validation top-1 at 0 (mean; ``by_split``: the runs of the other
    splits only), its held-out paired deltas against ``reference`` (the shipped match and
    blend) at every shift, validation and test; then every variant's best mean validation
    (w, T) over all runs."""
    names = sorted(res)
    keys = list(res[names[0]]["val_0"])
    parts = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]

    def others_of(n: str) -> list[str]:
        return [m for m in names if (_split_of(m) != _split_of(n) if by_split else m != n)]

    table = [*held_out_rows(res, keys, reference, others_of),
             "", "| variant (best mean validation w, T) | " + " | ".join(parts) + " |",
             "|---|" + "---|" * len(parts)]
    for variant in dict.fromkeys(k.partition("|")[0] for k in keys):
        mine = [k for k in keys if k.partition("|")[0] == variant]
        best = max(mine, key=lambda v: np.mean([res[m]["val_0"][v] for m in names]))
        table.append(f"| {best} | " + " | ".join(
            f"{100 * np.mean([res[m][key][best] for m in names]):.2f}" for key in parts)
            + " |")
    return "\n".join(table)


def pool_report(res: dict[str, dict]) -> str:
    """The 20:48 rule: (w, T) chosen leave-one-split-out on validation at 0 (the other
    splits, every training seed), its held-out paired deltas against the shipped blend."""
    names = sorted(res)
    variants = [k for k in res[names[0]]["val_0"] if k != "shipped"]
    return "\n".join(held_out_rows(
        res, variants, "shipped",
        lambda n: [m for m in names if _split_of(m) != _split_of(n)]))


@click.command()
@click.option("--eval", "evals", multiple=True, required=True,
              help="FOLDER:RECIPE of a multi-split evaluation (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--candidates", default="", metavar="N,N,...",
              help="Instead: score the library match restricted to the network's N most "
                   "probable minerals, on OUT's exported folders; JSON to --json-out.")
@click.option("--config", "config_changes", default="", metavar="KEY=VALUE,...",
              help="Export with these changes to the default library config (e.g. "
                   "bin_width=4,step=4,reach=32).")
@click.option("--pool", is_flag=True,
              help="Instead: score the log-linear blends (POOL_WEIGHTS x POOL_TEMPERATURES) "
                   "against the shipped blend on OUT's exported folders, chosen "
                   "leave-one-split-out; JSON to --json-out.")
@click.option("--coarse", is_flag=True,
              help="Instead: score the coarser library matches (COARSE) against the shipped "
                   "one on OUT's exported folders; JSON to --json-out.")
@click.option("--shift-average", is_flag=True,
              help="Instead: score the rover's answer averaged over shifted copies of the "
                   "spectrum (SHIFT_AVERAGES), with and without the library, on OUT's "
                   "exported folders; JSON to --json-out.")
@click.option("--variants", "variant_screen", type=click.Choice(sorted(VARIANT_SCREENS)),
              default=None,
              help="Instead: score that screen's library-match variants (VARIANT_SCREENS, "
                   "each with the blend's w and T re-chosen) against its reference, chosen "
                   "leave-one-split-out; JSON to --json-out.")
@click.option("--library-spectra", type=click.Choice(LIBRARY_SPECTRA),
              default=LIBRARY_SPECTRA[0], show_default=True,
              help="What the exported library holds (ramanedge quantize's option); the "
                   "probes, which choose on validation, need 'train'.")
@click.option("--split", "probe_split", type=click.Choice(SPLIT_KINDS), default="grouped",
              show_default=True,
              help="The probes score OUT's folders of this kind of split only.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def main(evals: tuple[str, ...], out: Path, candidates: str, config_changes: str,
         pool: bool, coarse: bool, shift_average: bool, variant_screen: str | None,
         library_spectra: str, probe_split: str, json_out: Path | None) -> None:
    """Re-export and score every split folder; rows in OUT/eval.jsonl (resumable)."""
    from ramanedge.library import LibraryConfig

    changes = parse_changes(config_changes)
    variants = variant_screen is not None
    flags = (pool, coarse, shift_average, variants, bool(candidates))
    probes = any(flags)
    if probes and changes:
        raise click.UsageError("--config applies to the export; --pool, --coarse, "
                               "--shift-average, --variants and --candidates score OUT's "
                               "exported folders as they are")
    if sum(flags) > 1:
        raise click.UsageError("--pool, --coarse, --shift-average, --variants and "
                               "--candidates are separate probes: give one of them")
    if probes:
        from benchmarks.common import comma_list

        if pool:
            probe, extra = pool_scores, {}
        elif coarse:
            probe, extra = partial(coarse_scores, variants=COARSE), {"variants": COARSE}
        elif variants:
            screen = VARIANT_SCREENS[variant_screen]
            probe = partial(variant_scores, variants=screen["variants"],
                            weights=screen["weights"], temperatures=screen["temperatures"])
            extra = {"screen": variant_screen, **screen}
        elif shift_average:
            probe = partial(shift_average_scores, variants=SHIFT_AVERAGES)
            extra = {"variants": {k: list(v) for k, v in SHIFT_AVERAGES.items()}}
        else:
            counts = (0, *comma_list(candidates, "--candidates"))
            probe, extra = partial(candidate_scores, counts=counts), {"counts": counts}
        res = {}
        for spec in evals:
            recipe = _folder_and_recipe(spec)[1]
            folders = probe_folders(out, recipe, probe_split)
            if not folders:
                raise click.UsageError(f"no {recipe}-{probe_split}<N> folders in {out} (export "
                                       f"them first: the same command without the probe "
                                       f"flag)")
            for f in folders:
                res[f.name] = probe(f)
                click.echo(f"{f.name}: " + "  ".join(
                    f"{k}: {100 * v:.1f}" for k, v in res[f.name]["val_0"].items()), err=True)
        if pool or variants:
            extra["table"] = (pool_report(res) if pool
                              else variant_report(res, screen["reference"],
                                                  screen.get("by_split", False)))
            click.echo(extra["table"])
        if json_out is not None:
            from ramanedge.machine import cpu_model

            json_out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                            "cpu": cpu_model(), **extra, "runs": res},
                                           indent=1) + "\n")
        return
    out.mkdir(parents=True, exist_ok=True)
    jl = out / "eval.jsonl"
    # a split is exported once per OUT: its row (and OUT/<folder>/model, which the probes
    # read) must hold the config asked for
    want = replace(LibraryConfig(), **changes).to_dict()
    # rows from before --library-spectra were exported with the training spectra alone
    done = {(r["recipe"], r["split"], r["split_seed"]):
            (r.get("library_config"), r.get("library_spectra") or (
                "train+val" if "val" in r.get("library_parts", ["train"]) else "train"))
            for r in (json.loads(x) for x in (jl.read_text().splitlines()
                                               if jl.is_file() else []) if x)}
    for spec in evals:
        folder, recipe = _folder_and_recipe(spec)
        folders = [p for p in split_folders(Path(folder), recipe)
                   if (p / "run").is_dir() and (p / "model").is_dir()]
        if not folders:
            raise click.UsageError(f"no {recipe}-<split> folders with run/ and model/ in "
                                   f"{folder}")
        for f in folders:
            tail = f.name[len(recipe) + 1:]
            kind = tail.rstrip("0123456789")
            key = (f"{recipe}+library", kind, int(tail[len(kind):]))
            if key in done:
                config, spectra = done[key]
                if config not in (None, want):
                    raise click.UsageError(f"{out} already holds {f.name} exported with "
                                           f"another library config ({config}); use "
                                           f"another --out")
                if spectra != library_spectra:
                    raise click.UsageError(f"{out} already holds {f.name} exported with "
                                           f"--library-spectra {spectra}, not "
                                           f"{library_spectra}; give --library-spectra "
                                           f"{spectra} to resume it, or another --out")
                continue
            row = evaluate(f, recipe, out, changes, library_spectra == "train+val")
            with jl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            click.echo(f"{f.name}: library {row['int8_0']:.1%} / {row['int8_15']:.1%} / "
                       f"{row['int8_30']:.1%}  network {row['net_0']:.1%} / "
                       f"{row['net_15']:.1%} / {row['net_30']:.1%}  (validation "
                       f"{row['val_int8_0']:.1%} vs {row['val_net_0']:.1%})", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
