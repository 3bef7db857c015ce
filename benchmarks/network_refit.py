"""Is refitting the *network* on training + validation worth building? (issue 11; rule (N+)).

The library refit (``benchmarks.library_refit``, rule (L+'')) put the validation spectra
into the shipped library: one more specimen a mineral was worth about +3 validation points
to the library. The same lever for the network (trained again on training + validation once
its epochs are fixed) cannot be measured on validation, which it would have trained on; and
it costs cross-fitted calibration of the gate, the sets and the unknown rule. Rule (N+) of
``runs/flight/decision_rule.txt`` (2026-12-06, written before any of these networks trained)
asks the question the other way, as (L+'') did for the library: each grouped split's
training spectra *without* one specimen a mineral (:func:`benchmarks.library_refit.held_aside`,
seed 0) train the same recipe again (``train``); then both networks answer the *validation*
spectra through the int8 rover path, blended with one and the same library of the full
training spectra (``score``). The gain (full network minus reduced network) is what one more
training specimen a mineral is worth to the network when the library already holds it::

    python -m benchmarks.network_refit train --data ../shared/data/rruff \\
        --base runs/flight/eval-intel:flight-early-pool --out runs/flight/refit-minus1
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.network_refit score \\
        --base runs/flight/eval-intel:flight-early-pool --reduced runs/flight/refit-minus1 \\
        --out docs/network_refit.json

Verdict: worth building when the mean validation gain at 0 cm⁻¹ is at least +0.5 points and
positive on at least 4 of 5 splits ("incomplete" while a base split has no reduced twin).
Test is reported only. Measured 2026-12-07 on the default (Intel Xeon, training seed 0):
+1.76 ± 1.49 points, worth building (``docs/parts/flight.md``, "Refitting the network").

Built the same day (``ramanedge refit``, :func:`trainer.run.refit_run`; flight_eval's recipe
``flight-early-pool-refit``). ``built`` (rule (R)) pairs the refits' ``library_eval`` rows with
their bases' on test and says whether the refit may ship (every export passed the gate with
default settings, mean set coverage on test at least 93.5 %)::

    python -m benchmarks.network_refit built --base runs/flight/eval-intel-b-lv/eval.jsonl \
        --refit runs/flight/eval-intel-b-refit-lv/eval.jsonl \
        --gates runs/flight/eval-intel-b/eval.jsonl --out docs/network_refit-built.json

A refit with a calibration holdout (``ramanedge refit --calibration-holdout``, rule (R')) keeps
part of the validation specimens out, so both networks can answer those on validation:
``holdout`` pairs the refit's answers to its held-out validation spectra with its base
network's answers to the same spectra (each blended with the library of its own training
spectra, as ``library_eval`` answers validation; :func:`holdout_scores`)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.network_refit holdout \
        --base runs/flight/eval-stem4-lv --refit runs/flight/eval-stem4-refit-h3-lv \
        --out docs/network_refit-holdout.json
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import comma_list, one_line_errors

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHIFTS = (0, 15, 30)
#: the folder name of a reduced split (beside the base recipe's ``RECIPE-groupedS``)
REDUCED = "{recipe}-grouped{seed}-minus1"


def reduced_split(run: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(split, aside)`` of a loaded base run: its split with one training specimen a
    mineral (:func:`~benchmarks.library_refit.held_aside`, seed 0) left unused (``""``), and
    the mask of those spectra over the whole data set."""
    from benchmarks.library_refit import held_aside
    from ramanedge.splits import UNUSED

    split = np.asarray(run.split).astype("<U5")
    train = np.flatnonzero(split == "train")
    ids = [run.dataset.sample_ids[i] for i in train]
    aside = np.zeros(len(split), dtype=bool)
    aside[train[held_aside(ids, np.asarray(run.dataset.y)[train])]] = True
    out = split.copy()
    out[aside] = UNUSED
    return out, aside


def base_folders(spec: str, seeds: list[int] | None = None) -> list[tuple[int, Path]]:
    """``(split seed, folder)`` of each grouped split of ``FOLDER:RECIPE`` (a usage error
    for a bad spec or a split not trained there)."""
    from benchmarks.knn_blend import grouped_runs

    found = [(int(n["split"]), f) for n, f in grouped_runs((spec,), option="--base")]
    if seeds is not None:
        have = {s for s, _ in found}
        missing = sorted(set(seeds) - have)
        if missing:
            raise click.UsageError(f"--base {spec}: no trained grouped split(s) {missing}")
        found = [(s, f) for s, f in found if s in seeds]
    return sorted(found)


def train_reduced(data_root: Path, base: Path, recipe: str, seed: int, out: Path,
                  log: Callable[[str], Any] = click.echo) -> Path:
    """Train and export ``recipe`` on the base split ``seed`` without its held-aside
    specimens; returns the reduced folder. A finished run there is resumed when it was
    trained as ``recipe`` on that very split, and refused (one line) otherwise."""
    from benchmarks.flight_eval import BACKBONE_OF, RECIPES, TEACHER_RUNS, trained_with
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run
    from quantize.gate import ParityGateError
    from ramanedge.splits import write_split_csv
    from trainer.run import DataConfig, load_run, train_run

    if recipe in TEACHER_RUNS or recipe in BACKBONE_OF:
        raise click.UsageError(f"recipe {recipe} trains separate teacher runs or starts from a "
                               "pretrained backbone; not supported here")
    mc, tc = RECIPES[recipe]
    base_run = load_run(base / "run", load_model=False)
    folder = out / REDUCED.format(recipe=recipe, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    split, aside = reduced_split(base_run)
    csv = folder / "split-minus1.csv"
    sha = write_split_csv(csv, base_run.dataset, split)
    run = folder / "run"
    t0 = time.perf_counter()
    trained = False
    if (run / "metrics.json").is_file():
        saved = json.loads((run / "config.json").read_text())
        if not (trained_with(run, mc, tc) and saved.get("split_sha256") == sha):
            raise click.ClickException(f"{run} was trained with another recipe or split than "
                                       f"{recipe!r} on {base}'s split without its held-aside "
                                       "specimens; remove it or choose another --out")
    else:
        data = DataConfig(root=str(data_root), split="grouped", split_seed=seed,
                          split_file=str(csv))
        train_run(run, data, mc, tc, overwrite=True, log=None)
        trained = True
    train_s = time.perf_counter() - t0
    gate_error = None
    cfg = {"overwrite": True, "exemplars_per_class": DEFAULT_PER_CLASS,
           "library_with_validation": False}
    try:
        quantize_run(run, folder / "model", config=QuantizeConfig(**cfg), log=lambda _m: None)
    except ParityGateError as e:
        gate_error = str(e)
        quantize_run(run, folder / "model", config=QuantizeConfig(
            **cfg, allow_accuracy_drop=True), log=lambda _m: None)
    (folder / "reduced.json").write_text(json.dumps({
        "base": str(base.resolve()), "recipe": recipe, "split_seed": seed,
        "held_aside_spectra": int(aside.sum()),
        "held_aside_specimens": len({base_run.dataset.sample_ids[i]
                                     for i in np.flatnonzero(aside)}),
        "gate_passed_default": gate_error is None, "gate_error": gate_error,
        "trained_now": trained, "train_s": round(train_s, 1) if trained else None,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }, indent=1) + "\n")
    log(f"{folder}: {int(aside.sum())} spectra aside, gate "
        f"{'passed' if gate_error is None else 'FAILED'} "
        f"({time.perf_counter() - t0:.0f} s)")
    return folder


def split_scores(base: Path, reduced: Path) -> dict:
    """One split: validation and test top-1 at every shift of the full (``"full"``) and the
    reduced (``"minus1"``) network, blended with the library of the full training spectra
    (``"lib|..."``; the base export's library settings, or the shipped default
    :class:`~ramanedge.library.LibraryConfig` when it has none) and alone (``"net|..."``),
    through :func:`benchmarks.library_eval.probe_scores`'s loop."""
    from benchmarks.library_eval import probe_scores
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.library import LibraryConfig, SpectralLibrary, blend_rows
    from trainer.run import load_run

    red = load_run(reduced / "run", load_model=False)
    red_art = load_artifact(reduced / "model")
    red_net = Classifier(red_art, make_interpreter(red_art.model_path, num_threads=1),
                         library=False)
    held = {}

    def make_scorer(art, run):
        _, aside = reduced_split(run)
        held["spectra"] = int(aside.sum())
        expected = np.where(aside, "", np.asarray(run.split).astype("<U5"))
        if not np.array_equal(np.asarray(red.split).astype("<U5"), expected):
            raise click.UsageError(f"{reduced} was not trained on {base}'s split without "
                                   "its held-aside specimens")
        if red.model_config != run.model_config or red.train_config != run.train_config:
            raise click.UsageError(f"{reduced} was trained with another recipe than {base}")
        lib0 = art.load_library()
        # the base export's library settings; flight_eval exports none: the shipped default
        # as rule (N+) measured it (every lag alike: before the lag prior of 2026-12-08)
        config = (replace(LibraryConfig(), lag_penalty=0.0) if lib0 is None
                  else lib0.config)
        # one library for both networks: the full training spectra (no validation spectrum)
        lib = SpectralLibrary.build(*run.subset("train"), len(run.labels), config)

        def score(P, X, y):
            S = lib.similarity_batch(X)
            out = {}
            for name, probs in (("full", P), ("minus1", red_net.predict_proba_batch(X))):
                out[f"net|{name}"] = float(np.mean(probs.argmax(1) == y))
                out[f"lib|{name}"] = float(np.mean(blend_rows(probs, S, config).argmax(1) == y))
            return out
        return score

    out = probe_scores(base, make_scorer)
    out["held_aside_spectra"] = held["spectra"]
    return out


def _sd(a: np.ndarray) -> float:
    """Sample standard deviation (0 for one run)."""
    return float(a.std(ddof=1)) if len(a) > 1 else 0.0


def report(res: dict[str, dict], expected: int | None = None) -> tuple[str, dict]:
    """Mean top-1 per answer and shift, the paired gains (full minus reduced, points) and
    the rule (N+) verdict; with fewer runs than ``expected`` (the base splits) the verdict
    is "incomplete" (never "worth building")."""
    keys = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    runs = list(res.values())
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    gains = {}
    for kind, label in (("lib", "network + library (train)"), ("net", "network alone")):
        for name in ("minus1", "full"):
            lines.append(f"| {label}, {name}, top-1 % | " + " | ".join(
                f"{100 * np.mean([r[k][f'{kind}|{name}'] for r in runs]):.2f}"
                for k in keys) + " |")
        g = {k: np.array([100 * (r[k][f"{kind}|full"] - r[k][f"{kind}|minus1"])
                          for r in runs]) for k in keys}
        gains[kind] = g
        lines.append(f"| {label}: full - minus1, paired | " + " | ".join(
            f"{g[k].mean():+.2f} ± {_sd(g[k]):.2f}" for k in keys) + " |")
        lines.append("| higher / lower | " + " | ".join(
            f"{int((g[k] > 0).sum())} / {int((g[k] < 0).sum())}" for k in keys) + " |")
    g0 = gains["lib"]["val_0"]
    complete = expected is None or len(runs) >= expected
    verdict = {"val_gain_0": float(g0.mean()), "higher": int((g0 > 0).sum()),
               "lower": int((g0 < 0).sum()), "runs": len(runs), "complete": complete,
               "per_split": [round(float(v), 2) for v in g0],
               "worth_building": bool(complete and g0.mean() >= 0.5 and (g0 > 0).sum() >= 4)}
    said = ("incomplete" if not complete else
            "worth building" if verdict["worth_building"] else "not worth building")
    lines += ["", f"rule (N+): validation {verdict['val_gain_0']:+.2f} at 0 (higher on "
              f"{verdict['higher']} of {len(runs)}): {said}"]
    return "\n".join(lines), verdict


@click.group()
def main() -> None:
    """Rule (N+): one training specimen a mineral fewer for the network, on validation; rule
    (R): the built refit on test."""


@main.command("train")
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True)
@click.option("--base", required=True, help="FOLDER:RECIPE of the trained full splits.")
@click.option("--splits", default="0,1,2,3,4", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@one_line_errors
def train_cmd(data_root: Path, base: str, splits: str, out: Path) -> None:
    """Train the reduced split of each base split (resumes finished ones)."""
    recipe = base.rpartition(":")[2]
    for seed, f in base_folders(base, comma_list(splits, "--splits")):
        train_reduced(data_root, f, recipe, seed, out)


@main.command("score")
@click.option("--base", required=True, help="FOLDER:RECIPE of the trained full splits.")
@click.option("--reduced", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def score_cmd(base: str, reduced: Path, out: Path | None) -> None:
    """Score every base split that has a reduced twin; print the table and the verdict."""
    from benchmarks.knn_blend import write_probe

    recipe = base.rpartition(":")[2]
    res = {}
    bases = base_folders(base)
    for seed, f in bases:
        r = reduced / REDUCED.format(recipe=recipe, seed=seed)
        if not (r / "model").is_dir():
            click.echo(f"{r}: not trained (the verdict will say incomplete)", err=True)
            continue
        res[f"{recipe}/grouped{seed}"] = split_scores(f, r)
        click.echo(f"{r}: done", err=True)
    if not res:
        raise click.UsageError(f"{reduced} holds no reduced split of {base}")
    table, verdict = report(res, expected=len(bases))
    click.echo(table)
    write_probe(out, (base, str(reduced)), res, table, verdict=verdict)


#: the figures ``built`` pairs: top-1 with the library and of the network alone at each
#: shift, and what the shipped artifact says on test (set coverage / size, flagged share)
BUILT_KEYS = (*(f"int8_{s}" for s in SHIFTS), *(f"net_{s}" for s in SHIFTS),
              "test_set_coverage", "test_set_size", "test_known_flagged", "unseen_flagged",
              "unknown_auroc")
#: rule (R)'s floor for the refit artifact's mean set coverage on test (the issue's
#: 95 +- 1.5 % band at level 95 %)
MIN_COVERAGE = 0.935


def _rows(path: Path, kind: str = "grouped") -> dict[int, dict]:
    """The rows of split kind ``kind`` (grouped or random) of a ``library_eval`` /
    ``flight_eval`` ``eval.jsonl`` by split seed."""
    return {int(r["split_seed"]): r for r in _read(path) if r.get("split") == kind}


def _read(path: Path) -> list[dict]:
    """:func:`benchmarks.common.read_jsonl`, a usage error naming ``path`` if it fails."""
    from benchmarks.common import read_jsonl

    try:
        return read_jsonl(path)
    except (OSError, ValueError) as e:
        raise click.UsageError(f"{path}: not a readable eval.jsonl ({e})") from None


def built_report(base: dict[int, dict], refit: dict[int, dict],
                 gates: dict[int, bool], kind: str = "grouped") -> tuple[str, dict]:
    """Rule (R): the refit against its base on the splits both have (test, paired, points;
    set size in minerals), the gate of each refit export, and whether the refit may ship
    (every export passed the gate with default settings and its mean set coverage on test
    is at least :data:`MIN_COVERAGE`). Top-1 is reported, not deciding: nothing is left to
    choose on once validation is trained on."""
    seeds = sorted(set(base) & set(refit))
    if not seeds:
        raise click.UsageError(f"no {kind} split in both the base and the refit rows")
    keys = [k for k in BUILT_KEYS if all(base[s].get(k) is not None
                                          and refit[s].get(k) is not None for s in seeds)]
    scale = {k: 1.0 if k in ("test_set_size", "unknown_auroc") else 100.0 for k in keys}
    lines = ["| figure (test) | base | refit | refit - base, paired | higher / lower |",
             "|---|---|---|---|---|"]
    res: dict[str, Any] = {"splits": seeds}
    for k in keys:
        b = np.array([scale[k] * base[s][k] for s in seeds])
        r = np.array([scale[k] * refit[s][k] for s in seeds])
        d = r - b
        res[k] = {"base": float(b.mean()), "base_sd": _sd(b), "refit": float(r.mean()),
                  "refit_sd": _sd(r), "gain": float(d.mean()), "gain_sd": _sd(d),
                  "per_split": [round(float(v), 2 if scale[k] == 100.0 else 4) for v in d]}
        n = 2 if scale[k] == 100.0 else 3
        lines.append(f"| {k} | {b.mean():.{n}f} ± {_sd(b):.{n}f} | {r.mean():.{n}f} ± "
                     f"{_sd(r):.{n}f} | {d.mean():+.{n}f} ± {_sd(d):.{n}f} | "
                     f"{int((d > 0).sum())} / {int((d < 0).sum())} |")
    passed = [bool(gates.get(s, False)) for s in seeds]
    cov = res.get("test_set_coverage", {}).get("refit")
    ok_cov = cov is not None and cov >= 100 * MIN_COVERAGE
    res["verdict"] = {"gate_passed": int(sum(passed)), "runs": len(seeds),
                      "coverage_ok": bool(ok_cov),
                      "may_ship": bool(all(passed) and ok_cov and len(seeds) >= 5)}
    lines += ["", f"rule (R): gate passed on {sum(passed)} of {len(seeds)} refit exports; mean "
              f"set coverage {'n/a' if cov is None else f'{cov:.2f} %'} (floor "
              f"{100 * MIN_COVERAGE:.1f} %): "
              f"{'may ship' if res['verdict']['may_ship'] else 'may not ship'}"]
    return "\n".join(lines), res


@main.command("built")
@click.option("--base", "base_rows", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="library_eval eval.jsonl of the base runs.")
@click.option("--refit", "refit_rows", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="library_eval eval.jsonl of their refits.")
@click.option("--gates", "gate_rows", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="flight_eval eval.jsonl holding the refit recipe's rows.")
@click.option("--recipe", default="flight-early-pool-refit", show_default=True,
              help="The refit recipe's name in --gates.")
@click.option("--split", "kind", type=click.Choice(["grouped", "random"]), default="grouped",
              show_default=True, help="Which splits' rows to compare.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def built_cmd(base_rows: Path, refit_rows: Path, gate_rows: Path, recipe: str, kind: str,
              out: Path | None) -> None:
    """Rule (R): the built refit against its base on test (``trainer.run.refit_run``)."""
    gates = {int(r["split_seed"]): bool(r["gate_passed_default"]) for r in _read(gate_rows)
             if r.get("recipe") == recipe and r.get("split") == kind}
    table, res = built_report(_rows(base_rows, kind), _rows(refit_rows, kind), gates, kind)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"command": "python -m benchmarks.network_refit built",
                                   "base": str(base_rows), "refit": str(refit_rows),
                                   "gates": str(gate_rows), "split": kind,
                                   "date": time.strftime("%Y-%m-%d"),
                                   **res}, indent=1) + "\n")


def holdout_scores(base: Path, refit: Path) -> dict[str, float]:
    """Top-1 on a holdout refit's validation spectra (its held-out specimens, or spectra on a
    per-spectrum split) at each shift
    of :data:`SHIFTS`, answered by the refit artifact and by its base artifact (``base``,
    ``refit``: ``library_eval`` split folders with ``model`` and ``run``), each with the
    library of its own run's training spectra (``lib|base``, ``lib|refit``) and alone
    (``net|...``); and the base network with the library of the *refit's* training spectra
    (``lib|base+``): the base's shipped library holds the absorbed validation specimens too
    (``quantize`` puts the training and validation spectra in it), so ``lib|base+`` against
    ``lib|refit`` is the comparison in which only the network differs."""
    from benchmarks.common import validation_answerer
    from benchmarks.library_eval import shift_top1
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.library import SpectralLibrary
    from trainer.run import REFIT_KEY, load_run

    r_run = load_run(refit / "run", load_model=False)
    info = r_run.config.get(REFIT_KEY) or {}
    if not info.get("holdout"):
        raise click.UsageError(f"{refit / 'run'} is not a refit with a calibration holdout")
    if Path(str(info.get("base"))).resolve() != (base / "run").resolve():
        raise click.UsageError(f"{base / 'run'} is not the base of {refit / 'run'} (its base: "
                               f"{info.get('base')})")
    X, y = r_run.subset("val")
    out: dict[str, float] = {"n": int(len(y))}
    for name, folder in (("base", base), ("refit", refit)):
        art = load_artifact(folder / "model")
        clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
        if clf.library is None:
            raise click.UsageError(f"{folder / 'model'} has no spectral library: export the "
                                   "runs with benchmarks.library_eval first")
        run = r_run if name == "refit" else load_run(folder / "run", load_model=False)
        answer = validation_answerer(clf, *run.subset("train"))
        net = Classifier(art, clf.interpreter, library=False)
        for k, v in shift_top1(answer.predict_proba_batch, X, y).items():
            out[f"lib|{name}|{k}"] = v
        for k, v in shift_top1(net.predict_proba_batch, X, y).items():
            out[f"net|{name}|{k}"] = v
        if name == "base":  # the same network, the library the refit's answer has
            lib = SpectralLibrary.build(*r_run.subset("train"), clf.library.n_classes,
                                        clf.library.config)
            fair = clf.with_head(None, library=lib)
            for k, v in shift_top1(fair.predict_proba_batch, X, y).items():
                out[f"lib|base+|{k}"] = v
    return out


def holdout_report(res: dict[int, dict]) -> tuple[str, dict]:
    """Rule (R') (a) and (b): the refit's answer minus its base's on the held-out validation
    spectra, paired over splits (points), and whether (a) mean gain at 0 >= +0.5 with >= 3
    of 5 higher and (b) at 30 >= -1 hold."""
    runs = [res[s] for s in sorted(res)]
    lines = ["| held-out validation spectra | " + " | ".join(f"@{s}" for s in SHIFTS) + " |",
             "|---|" + "---|" * len(SHIFTS)]
    gains = {}
    for kind, label in (("lib", "answer with the library"), ("net", "network alone")):
        for name in ("base", "refit"):
            lines.append(f"| {label}, {name}, top-1 % | " + " | ".join(
                f"{100 * np.mean([r[f'{kind}|{name}|{s}'] for r in runs]):.2f}"
                for s in SHIFTS) + " |")
        # rounded so that float noise between equal answers (means of +s and -s) does not
        # count as higher or lower
        g = {s: np.round([100 * (r[f"{kind}|refit|{s}"] - r[f"{kind}|base|{s}"])
                          for r in runs], 9) for s in SHIFTS}
        gains[kind] = g
        lines.append(f"| {label}: refit - base, paired | " + " | ".join(
            f"{g[s].mean():+.2f} ± {_sd(g[s]):.2f} ({int((g[s] > 0).sum())}/"
            f"{int((g[s] < 0).sum())})" for s in SHIFTS) + " |")
    fair = "lib|base+|0" in runs[0]  # rows scored before 2026-12-07 13:30 UTC lack it
    if fair:
        lines.append("| answer with the library, base network with the refit's library, "
                     "top-1 % | " + " | ".join(
                         f"{100 * np.mean([r[f'lib|base+|{s}'] for r in runs]):.2f}"
                         for s in SHIFTS) + " |")
        g = {s: np.round([100 * (r[f"lib|refit|{s}"] - r[f"lib|base+|{s}"]) for r in runs], 9)
             for s in SHIFTS}
        gains["fair"] = g
        lines.append("| same library, only the network differs: refit - base, paired | "
                     + " | ".join(f"{g[s].mean():+.2f} ± {_sd(g[s]):.2f} ({int((g[s] > 0).sum())}"
                                  f"/{int((g[s] < 0).sum())})" for s in SHIFTS) + " |")

    def holds(g0: np.ndarray, g30: np.ndarray) -> bool:
        return bool(len(runs) >= 5 and g0.mean() >= 0.5 and (g0 > 0).sum() >= 3
                    and g30.mean() >= -1.0)

    g0, g30 = gains["lib"][0], gains["lib"][30]
    verdict = {"gain_0": float(g0.mean()), "gain_30": float(g30.mean()),
               "higher": int((g0 > 0).sum()), "lower": int((g0 < 0).sum()), "runs": len(runs),
               "per_split": [round(float(v), 2) for v in g0],
               "spectra": [int(r["n"]) for r in runs], "a_b_hold": holds(g0, g30)}
    lines += ["", f"rule (R') (a)-(b): held-out validation {verdict['gain_0']:+.2f} at 0 "
              f"(higher on {verdict['higher']} of {len(runs)}), {verdict['gain_30']:+.2f} at "
              f"30: {'hold' if verdict['a_b_hold'] else 'do not hold'}"]
    if fair:
        f0, f30 = gains["fair"][0], gains["fair"][30]
        verdict["same_library"] = {
            "gain_0": float(f0.mean()), "gain_30": float(f30.mean()),
            "higher": int((f0 > 0).sum()), "lower": int((f0 < 0).sum()),
            "per_split": [round(float(v), 2) for v in f0], "a_b_hold": holds(f0, f30)}
        lines.append(f"the same with one library (only the network differs): {f0.mean():+.2f} "
                     f"at 0 (higher on {int((f0 > 0).sum())} of {len(runs)}), "
                     f"{f30.mean():+.2f} at 30: "
                     f"{'hold' if verdict['same_library']['a_b_hold'] else 'do not hold'}")
    return "\n".join(lines), verdict


@main.command("holdout")
@click.option("--base", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="library_eval folder of the base runs (RECIPE-groupedS/model, /run).")
@click.option("--refit", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="library_eval folder of their holdout refits.")
@click.option("--split", "kind", type=click.Choice(["grouped", "random"]), default="grouped",
              show_default=True, help="Which splits' folders (RECIPE-<split>S) to compare.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def holdout_cmd(base: Path, refit: Path, kind: str, out: Path | None) -> None:
    """Rule (R'): holdout refits against their bases on the held-out validation spectra."""
    import re

    res = {}
    for folder in sorted(refit.glob(f"*-{kind}*")):
        m = re.fullmatch(rf"(.+)-{kind}(\d+)", folder.name)
        if m is None or not (folder / "model").is_dir():
            continue
        seed = int(m.group(2))
        twins = [f for f in base.glob(f"*-{kind}{seed}") if (f / "model").is_dir()]
        if len(twins) != 1:
            raise click.UsageError(f"{base} holds {len(twins)} {kind}{seed} folders; one "
                                   "base per split is needed")
        res[seed] = holdout_scores(twins[0], folder)
        click.echo(f"{kind}{seed}: {res[seed]['n']} held-out spectra, answer "
                   f"{100 * res[seed]['lib|base|0']:.1f} -> {100 * res[seed]['lib|refit|0']:.1f}%")
    if not res:
        raise click.UsageError(f"{refit} holds no RECIPE-{kind}S folder with a model")
    table, verdict = holdout_report(res)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"command": "python -m benchmarks.network_refit holdout",
                                   "base": str(base), "refit": str(refit), "split": kind,
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "splits": {str(k): v for k, v in res.items()},
                                   "verdict": verdict, "table": table}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
