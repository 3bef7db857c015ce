"""Screens of the few-label recipe (issue 17; docs/parts/ssl.md): the names it trains on, and
the recipe end to end through the rover.

A screen reads the hidden labels of the *training* spectra only to count how many names are
right; nothing here chooses on test, and a screen only decides which candidate a validation
grid (``benchmarks.fewlabel run``) then adopts or rejects.

* ``names --round first``: the first round's names (no training): the library of the labelled
  spectra, mixed with label propagation over its own view at each weight of
  ``--propagate`` (:func:`trainer.ssl.library_pseudo_labels`, the function that trains), at
  each coverage of ``--coverages``.
* ``names --round second``: trains the first round once per label draw (the CLI's schedule
  by default), then scores the second round's names (:func:`trainer.ssl.blend_round_names`,
  the namer that trains) at each weight of ``--propagate``; ``--graph`` adds variants of
  the graph its propagation runs over (:data:`trainer.ssl.PROPAGATE_GRAPHS`).
* ``e2e``: rows of ``ramanedge train`` + ``ramanedge quantize`` runs read from each
  artifact's manifest, per arm, paired with the first arm on (split seed, seed); with
  ``--library-weights`` the rover's int8 answers (network alone, ``edge_runtime``) are
  blended again with the artifact's library at each weight, validation and test.

::

    python -m benchmarks.fewlabel_screens names --round first --coverages 0.6 \\
        --propagate 0,0.5,0.6,0.7,0.8
    python -m benchmarks.fewlabel_screens names --round second --propagate 0,0.5
    python -m benchmarks.fewlabel_screens e2e --arm base 'runs/e2e6/base-*-art' \\
        --arm recipe3 'runs/e2e6/recipe3-*-art' --library-weights 0.4,0.5 \\
        --out runs/e2e6/rows.jsonl
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from benchmarks.common import comma_list, format_mean_sd_pct, one_line_errors
from benchmarks.fewlabel import ARCHS, SCHEDULES, fewlabel_train, model_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def names_right(y_named: np.ndarray, y_masked: np.ndarray, y_true: np.ndarray
                ) -> tuple[int, float | None]:
    """``(n, fraction right)`` of the spectra a naming round named: unlabelled in
    ``y_masked`` (-1), labelled in ``y_named``; the fraction is ``None`` when none was named.
    ``y_true`` (the hidden labels) only judges."""
    named = (np.asarray(y_masked) < 0) & (np.asarray(y_named) >= 0)
    if not named.any():
        return 0, None
    return int(named.sum()), float(np.mean(np.asarray(y_named)[named] ==
                                           np.asarray(y_true)[named]))


def unit_list(text: str, option: str) -> list[float]:
    """A comma-separated list of numbers in [0, 1]; one usage line otherwise."""
    values = comma_list(text, option, float)
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise click.UsageError(f"{option} takes comma-separated numbers in [0, 1], e.g. "
                               f"0,0.5, got {text!r}")
    return values


def paired(values: list[float], reference: list[float]) -> str:
    """Paired gain in points ``mean ± s.d. (higher in k of n)``."""
    g = 100 * (np.asarray(values, dtype=float) - np.asarray(reference, dtype=float))
    sd = f"{np.std(g, ddof=1):.2f}" if len(g) > 1 else "n/a"
    return f"{np.mean(g):+.2f} ± {sd} ({int(np.sum(g > 0))} of {len(g)})"


def write_rows(out: Path | None, rows: list[dict]) -> None:
    """Append ``rows`` to ``out`` (JSON lines), when given."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


@click.group()
def cli() -> None:
    """Screens of the few-label recipe's names, and the recipe end to end."""


@cli.command("names")
@one_line_errors
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--round", "which", type=click.Choice(["first", "second"]), default="first",
              show_default=True, help="first: the library's names (no training); second: "
              "the blend round's names after one first-round training per label draw.")
@click.option("--split-seeds", default="0,1", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Label seeds (= training seeds, as in benchmarks.fewlabel run).")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=0.1, show_default=True, help="Labelled fraction.")
@click.option("--coverages", default="0.6", show_default=True,
              help="First round: the fractions of the unlabelled spectra named (each "
              "scored); second round: the first round's one coverage.")
@click.option("--propagate", "weights", default="0,0.5", show_default=True,
              help="Weights of label propagation in the screened round's naming score.")
@click.option("--first-propagate", type=click.FloatRange(0.0, 1.0), default=0.5,
              show_default=True, help="Second round: the first round's propagation weight.")
@click.option("--relabel", type=click.FloatRange(0.0, 1.0, min_open=True), default=1.0,
              show_default=True, help="Second round: the fraction it names.")
@click.option("--graph", "graphs", default="features", show_default=True,
              help="Second round: the graphs its propagation runs over, comma-separated "
                   "(trainer.ssl.PROPAGATE_GRAPHS; features is the graph of the namer "
                   "before 2026-12-06 10:56 UTC, joint the CLI's since).")
@click.option("--arch", type=click.Choice(ARCHS), default="flight-ep", show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default="cli", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=40, show_default=True,
              help="Epoch cap of the bench schedule.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Append one JSON line per (draw, coverage, weight) here.")
def names(data_root, which, split_seeds, seeds, fraction, coverages, weights,
          first_propagate, relabel, graphs, arch, schedule, epochs, out) -> None:
    """Names right (hidden training labels) of one naming round, per coverage and weight."""
    split_list = comma_list(split_seeds, "--split-seeds")
    seed_list = comma_list(seeds, "--seeds")
    cov_list = unit_list(coverages, "--coverages")
    if 0.0 in cov_list:
        raise click.UsageError("--coverages: a coverage of 0 names nothing; give fractions "
                               "in (0, 1], e.g. 0.6")
    w_list = unit_list(weights, "--propagate")
    if which == "second" and len(cov_list) != 1:
        raise click.UsageError("--round second takes one --coverages (the first round's)")
    from trainer.ssl import PROPAGATE_GRAPHS as GRAPHS  # here: TensorFlow loads with it

    graph_list = [g.strip() for g in graphs.split(",") if g.strip()]
    if not graph_list or any(g not in GRAPHS for g in graph_list):
        raise click.UsageError(f"--graph takes comma-separated graphs of the second round "
                               f"({', '.join(GRAPHS)}), got {graphs!r}")
    if which == "first":  # its propagation runs over the library's view, nothing else
        if graph_list != ["features"]:
            raise click.UsageError("--graph applies to --round second; the first round "
                                   "propagates over the library's view")
        graph_list = ["library"]
    from ramanedge.dataset import build_dataset
    from ramanedge.machine import cpu_model
    from ramanedge.splits import make_split, specimen_groups
    from trainer.ssl import (
        SSLConfig,
        blend_round_names,
        check_groups,
        hide_labels,
        labelled_fraction_mask,
        library_pseudo_labels,
        train_ssl,
    )

    ds = build_dataset(data_root, "rruff-raw")
    groups = specimen_groups(ds)
    K = len(ds.labels)
    machine = f"{cpu_model()} ({os.cpu_count()} cpu)"
    rows: list[dict] = []
    for ss in split_list:
        split = np.asarray(make_split(ds, "grouped", seed=ss))
        tr, va = split == "train", split == "val"
        X, y_true = ds.X[tr], ds.y[tr]
        per = check_groups(groups[tr], len(X))
        for seed in seed_list:
            given = hide_labels(y_true, labelled_fraction_mask(y_true, groups[tr], fraction,
                                                               seed))
            base = {"round": which, "split_seed": ss, "seed": seed, "fraction": fraction,
                    "n_unlabelled": int((given < 0).sum())}
            if which == "first":
                for c in cov_list:
                    for w in w_list:
                        y, _ = library_pseudo_labels(X, given, K, coverage=c, groups=per,
                                                     propagate=w)
                        rows.append({**base, "coverage": c, "graph": "library",
                                     "propagate": w,
                                     **dict(zip(("n_named", "names_right"),
                                                names_right(y, given, y_true),
                                                strict=True))})
            else:
                cfg = SSLConfig(method="none", labelled_fraction=fraction, label_seed=seed,
                                library_labels=cov_list[0], library_propagate=first_propagate,
                                by_specimen=True)
                res = train_ssl(X, given, ds.X[va], ds.y[va], K, model_config(arch),
                                fewlabel_train(seed, epochs, schedule), cfg,
                                groups=groups[tr], log=None)
                _, first_right = names_right(res.labels, given, y_true)
                for graph, w in itertools.product(graph_list, w_list):
                    y2, _ = blend_round_names(res.model, X, given, K, coverage=relabel,
                                              groups=per, propagate=w, graph=graph)
                    rows.append({**base, "coverage": cov_list[0], "graph": graph,
                                 "first_propagate": first_propagate, "relabel": relabel,
                                 "propagate": w, "first_names_right": first_right,
                                 "epochs": res.epochs_run, "schedule": schedule,
                                 **dict(zip(("n_named", "names_right"),
                                            names_right(y2, given, y_true), strict=True))})
            draw = [r for r in rows if (r["split_seed"], r["seed"]) == (ss, seed)]
            for r in draw:
                r.update(date=datetime.now(UTC).isoformat(timespec="seconds"), machine=machine)
            write_rows(out, draw)  # each draw as it ends: a long screen keeps what it did
            click.echo(f"split {ss} seed {seed}: " + ", ".join(
                f"{r['graph']} C {r['coverage']:g} W {r['propagate']:g} "
                + ("none named" if r["names_right"] is None
                   else f"{100 * r['names_right']:.1f}") for r in draw))
    click.echo(f"\n| round | graph | coverage | propagation weight | named | names right % "
               f"(mean ± s.d.) | paired with weight {w_list[0]:g} | runs |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for graph, c in itertools.product(graph_list, cov_list):
        cell = [r for r in rows if r["graph"] == graph and r["coverage"] == c]
        ref = {(r["split_seed"], r["seed"]): r["names_right"] for r in cell
               if r["propagate"] == w_list[0]}
        for w in w_list:
            rs = [r for r in cell if r["propagate"] == w and r["names_right"] is not None]
            both = [(r["names_right"], ref[(r["split_seed"], r["seed"])]) for r in rs
                    if ref.get((r["split_seed"], r["seed"])) is not None]
            gain = paired(*zip(*both, strict=True)) if w != w_list[0] and both else ""
            click.echo(f"| {which} | {graph} | {c:g} | {w:g} | "
                       f"{np.mean([r['n_named'] for r in rs]) if rs else 0:.0f} | "
                       f"{format_mean_sd_pct(rs, 'names_right') if rs else 'none named'} | "
                       f"{gain} | {len(rs)} |")


def read_arm(name: str, pattern: str, runs: Path | None) -> list[dict]:
    """One row per artifact folder matching ``pattern``: its manifest's gate and top-1
    figures, and the split seed, seed and labelled fraction of the run it was exported from
    (``RUNS/<manifest training.run>``, by default beside the artifact); the run's split hash
    must be the manifest's."""
    from ramanedge.errors import DataError
    from ramanedge.manifest import MANIFEST_NAME

    folders = sorted(Path(p) for p in glob.glob(pattern))
    if not folders:
        raise DataError(f"--arm {name}: no artifact folder matches {pattern!r}")
    rows = []
    for art in folders:
        try:
            m = json.loads((art / MANIFEST_NAME).read_text(encoding="utf-8"))
            run = (runs or art.parent) / m["training"]["run"]
            cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
            met = m["metrics"]
            if cfg.get("split_sha256") != m["training"].get("split_sha256"):
                raise DataError(f"--arm {name}: {art} was exported from another split than "
                                f"{run}")
            if not met.get("library"):
                raise DataError(f"--arm {name}: {art} holds no spectral library (exported "
                                "with --no-library?); the table reads the answer with it")
            rows.append({
                "recipe": name, "split_seed": int(cfg["data"]["split_seed"]),
                "seed": int(cfg["train"]["seed"]),
                "labelled_fraction": (cfg.get("ssl") or {}).get("labelled_fraction", 1.0),
                "gate": met["gate"]["passed"], "agreement": met["head"]["agreement"],
                "drop": met["head"]["drop_points"], "float_top1": met["float"]["top1"],
                "rover_top1": met["head"]["top1"],
                "rover_lib_top1": met["library"]["test_top1"],
                "rover_lib_val": met["library"]["val_top1"], "n_test": met["n_test"],
                "artifact": str(art), "run": str(run)})
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"--arm {name}: {art} is not an artifact of a run beside it "
                            f"({exc.__class__.__name__}: {exc})") from None
    keys = [(r["split_seed"], r["seed"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise DataError(f"--arm {name}: two artifacts of one (split seed, seed)")
    return rows


def reweigh_library(row: dict, weights: list[float]) -> dict:
    """Validation and test top-1 of the artifact's int8 network (the rover's path, no
    library: ``{part}_net``) blended with its library at each weight (``{part}_wW``) and at
    the artifact's own weight (``{part}_shipped``, ``shipped_weight``). A library that holds
    the validation spectra (``library.parts``) answers validation as ``quantize`` did: the
    library of the run's (labelled) training spectra alone, so that none matches itself."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.library import SpectralLibrary, blend_rows
    from trainer.run import load_run

    art = load_artifact(row["artifact"])
    net = Classifier(art, make_interpreter(art.model_path, num_threads=1), library=False)
    lib = art.load_library()
    if lib is None:
        from ramanedge.errors import DataError

        raise DataError(f"{row['artifact']} holds no spectral library to weigh")
    run = load_run(row["run"], load_model=False)
    out: dict = {"shipped_weight": lib.config.weight}
    libs = {"val": lib, "test": lib}
    if "val" in art.manifest.library_parts:
        Xtr, ytr = run.subset("train")
        given = run.labelled_mask()
        libs["val"] = SpectralLibrary.build(Xtr[given], ytr[given], lib.n_classes, lib.config)
    for part in ("val", "test"):
        X, y = run.subset(part)
        P = net.predict_proba_batch(X)
        S = libs[part].similarity_batch(X)
        out[f"{part}_net"] = float(np.mean(P.argmax(1) == y))
        for key, w in (("shipped", lib.config.weight), *((f"w{w:g}", w) for w in weights)):
            q = blend_rows(P, S, replace(lib.config, weight=w))
            out[f"{part}_{key}"] = float(np.mean(q.argmax(1) == y))
    return out


@cli.command("e2e")
@one_line_errors
@click.option("--arm", "arms", nargs=2, multiple=True, required=True,
              metavar="NAME GLOB", help="An arm and the glob of its artifact folders "
              "(repeatable; the first arm is the reference of the paired gains).")
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the run folders (default: each artifact's parent).")
@click.option("--library-weights", default=None,
              help="Also blend the rover's int8 answers with the library at these weights "
                   "(e.g. 0.3,0.4,0.5), validation and test.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the rows here (JSON lines, replacing the file).")
def e2e(arms, runs, library_weights, out) -> None:
    """The recipe end to end: gate and top-1 from each artifact's manifest, paired gains."""
    weights = unit_list(library_weights, "--library-weights") if library_weights else []
    names_seen = [a for a, _ in arms]
    if len(set(names_seen)) != len(names_seen):
        raise click.UsageError("each --arm NAME once")
    rows = [r for name, pattern in arms for r in read_arm(name, pattern, runs)]
    for r in rows:
        if weights:
            r.update(reweigh_library(r, weights))
    if out is not None:
        out.unlink(missing_ok=True)
        write_rows(out, rows)
    ref_name = arms[0][0]
    ref = {(r["split_seed"], r["seed"]): r for r in rows if r["recipe"] == ref_name}
    click.echo("| arm | runs | gate | min agreement | trained network | rover network | "
               "rover answer (with library) | validation (with library) | answer paired "
               f"with {ref_name}'s answer | with {ref_name}'s network |")
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    for name, _ in arms:
        rs = [r for r in rows if r["recipe"] == name]
        both = [r for r in rs if (r["split_seed"], r["seed"]) in ref]
        pair = ["", ""]
        if name != ref_name and both:
            keys = [(r["split_seed"], r["seed"]) for r in both]
            ans = [r["rover_lib_top1"] for r in both]
            pair = [paired(ans, [ref[k]["rover_lib_top1"] for k in keys]),
                    paired(ans, [ref[k]["rover_top1"] for k in keys])]
        click.echo(f"| {name} | {len(rs)} | {sum(r['gate'] for r in rs)} of {len(rs)} | "
                   f"{100 * min(r['agreement'] for r in rs):.2f} % | "
                   f"{format_mean_sd_pct(rs, 'float_top1')} | "
                   f"{format_mean_sd_pct(rs, 'rover_top1')} | "
                   f"{format_mean_sd_pct(rs, 'rover_lib_top1')} | "
                   f"{format_mean_sd_pct(rs, 'rover_lib_val')} | {pair[0]} | {pair[1]} |")
    if weights:
        click.echo("\n| arm | part | network alone | " + " | ".join(
            f"w {w:g}" for w in weights) + " | paired with the artifact's own weight |")
        click.echo("|---|---|---|" + "---|" * len(weights) + "---|")
        for name, _ in arms:
            rs = [r for r in rows if r["recipe"] == name]
            for part in ("val", "test"):
                own = [r[f"{part}_shipped"] for r in rs]
                gains = "; ".join(f"w {w:g}: {paired([r[f'{part}_w{w:g}'] for r in rs], own)}"
                                  for w in weights
                                  if any(w != r["shipped_weight"] for r in rs))
                click.echo(f"| {name} | {part} | {format_mean_sd_pct(rs, f'{part}_net')} | "
                           + " | ".join(format_mean_sd_pct(rs, f"{part}_w{w:g}")
                                        for w in weights) + f" | {gains} |")


if __name__ == "__main__":
    cli()
