"""Few-label experiment on every RRUFF spectrum: pretraining, FixMatch-style pseudo-labels.

Protocol (issue 17; docs/parts/ssl.md "Pretraining on every RRUFF spectrum"):

* Splits: rruff-raw, grouped split seeds ``--split-seeds``; label fractions ``--fractions``
  (:func:`trainer.ssl.labelled_fraction_mask`, label seed = training seed); training seeds
  ``--seeds``. Test and validation parts are never thinned.
* Baseline ``none-aug``: supervised on the labelled spectra **with** the flight augmentation
  (shift up to 30 cm-1, backgrounds, noise, baseline, intensity ramp, partial-coverage crop).
* ``pre-OBJ``: the backbone of :func:`trainer.pretrain.pretrain` with objective ``OBJ``
  (one pretraining per split seed, architecture and objective, on
  :func:`trainer.pretrain.pretraining_corpus`: every RRUFF spectrum except that split's
  validation/test specimens and the unknown-evaluation minerals), then the same fine-tuning.
* ``+pl`` suffix: FixMatch-style pseudo-labels on the unlabelled training spectra
  (:class:`trainer.train.PseudoLabelConfig`, defaults).
* ``+libplC`` suffix: library pseudo-labels (:func:`trainer.ssl.library_pseudo_labels`):
  before training, the fraction ``C`` of the unlabelled training spectra that the spectral
  library of the labelled ones names with the largest margin get that name as their label.
  With ``--library`` such a run also writes ``METHOD+libP``: the network blended with the
  library of the labelled *and* pseudo-labelled spectra.
* ``+rlD`` suffix: a second naming round (:attr:`trainer.ssl.SSLConfig.relabel`): the first
  network blended with the library of the labelled spectra names the fraction ``D`` of the
  unlabelled spectra it is surest of, and the network trains again on those names.
* ``+rrN`` suffix (with ``+rlD``): N blend rounds instead of one
  (:attr:`trainer.ssl.SSLConfig.relabel_rounds`).
* ``+softS`` suffix (with ``+rlD``): the blend rounds' named spectra train on soft targets
  of weight ``S`` (:attr:`trainer.ssl.SSLConfig.soft_names`).
* ``+kdT`` suffix (with ``+rlD``): the blend rounds distil from T teachers trained on the
  given labels and that round's names (:attr:`trainer.ssl.SSLConfig.teachers`, weight 0.5).
* ``+lpL`` suffix (with ``+rlD``): the blend rounds name by ``(1 - L)`` the blend plus ``L``
  label propagation over the latest network's features
  (:attr:`trainer.ssl.SSLConfig.propagate`).
* ``+lpfL`` suffix (with ``+libplC``): the first round names by ``(1 - L)`` the library's
  softmax plus ``L`` label propagation over the library's view of the spectra
  (:attr:`trainer.ssl.SSLConfig.library_propagate`).
* ``+joint`` suffix (with ``+lpL``): the blend rounds' propagation runs over the network's
  features and the library's view side by side
  (:attr:`trainer.ssl.SSLConfig.propagate_graph` ``"joint"``).
* ``+shipped`` suffix: the naming rounds and the ``+lib`` / ``+libP`` rows use the rover's
  shipped library match of 2026-12-06 (:data:`trainer.ssl.SHIPPED_NAMING_LIBRARY`;
  :attr:`trainer.ssl.SSLConfig.shipped_match`) instead of
  :data:`trainer.ssl.NAMING_LIBRARY`, the match the recipe was measured with.
* ``+spec`` suffix (with ``+libplC`` or ``+rlD``): both rounds name per specimen
  (:attr:`trainer.ssl.SSLConfig.by_specimen`: a specimen's unlabelled spectra share the
  mean of their scores, so one name and one margin).
* ``--library``: per cell a ``library`` row (the lag-tolerant 1-NN over the labelled
  spectra, no training) and ``METHOD+lib`` (the network blended with it as the rover does).
* Fine-tuning recipe for all: :data:`FEWLABEL_TRAIN` (flight augmentation, no teachers, no
  QAT, no outlier exposure), one epoch = as many draws as training spectra.

Every cell appends one JSON line to ``--out`` (restarts skip finished cells)::

    python -m benchmarks.fewlabel pretrain --arch flight --objective barlow --split-seed 0 \\
        --epochs 10 --out runs/fewlabel/pretrain/flight-barlow-s0
    python -m benchmarks.fewlabel run --arch flight --methods none-aug,pre-barlow \\
        --pretrained runs/fewlabel/pretrain --out docs/fewlabel.jsonl
    python -m benchmarks.fewlabel report --results docs/fewlabel.jsonl --plot docs/img/fewlabel.png
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import click
import numpy as np

from benchmarks.common import (
    comma_list,
    format_mean_sd_pct,
    mean_sd_pct,
    one_line_errors,
    read_jsonl,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_FRACTIONS = "0.1,0.05,0.2,0.5,1.0"


ARCHS = ("flight", "flight-ep", "paper")


def model_config(arch: str):
    """The architecture of the experiment: ``flight``, the flight model of its measurements
    (the default until 2026-12-05, :data:`~trainer.model.FLIGHT_LATE_POOL`); ``flight-ep``,
    the network ``ramanedge train`` built 2026-12-05 to 12-07 (early pooling, every position);
    ``paper``, the paper's m=6 network."""
    from trainer.model import FLIGHT_FULL_POSITIONS, FLIGHT_LATE_POOL, ModelConfig

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    return {"flight": FLIGHT_LATE_POOL, "flight-ep": FLIGHT_FULL_POSITIONS,
            "paper": ModelConfig(arch="paper")}[arch]


SCHEDULES = ("bench", "cli")


def fewlabel_train(seed: int, epochs: int, schedule: str = "bench"):
    """The fine-tuning recipe (same for every method). ``bench``: at most ``epochs`` epochs,
    LR patience 4, stop after 10 (cheap); ``cli``: the schedule ``ramanedge train
    --labelled-fraction`` trains with (:func:`trainer.ssl.few_label_train_config` of the
    default :class:`TrainConfig`: at most 200 epochs, LR patience 5, stop after 25;
    ``epochs`` ignored), without its int8-aware fine-tune (the benchmark scores the float
    network)."""
    from trainer.ssl import few_label_train_config
    from trainer.train import TrainConfig

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    cli_config = replace(few_label_train_config(TrainConfig()), qat_epochs=0, seed=seed)
    if schedule == "cli":
        return cli_config
    return replace(cli_config, epochs=epochs, lr_patience=4, early_stop_patience=10)


def new_mineral_pool(data_root: str, known: list[str]) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Spectra of the unknown-*evaluation* minerals with >= 2 specimens: ``(X, minerals,
    specimen ids)``. No supervised run trains on them and ``pretraining_corpus`` leaves them
    out by name and by specimen. Specimens that another RRUFF set files under another name
    (so that a pretraining made before the by-specimen rule may have seen them) are dropped
    from the pool as well, so the pool is new to every backbone compared."""
    from ramanedge.corpus import build_corpus
    from ramanedge.dataset import load_heldout
    from ramanedge.io.rruff import normalise_label
    from ramanedge.splits import specimen_groups, unknown_evaluation

    held = load_heldout(data_root, "rruff-raw")
    evaluation = set(unknown_evaluation(held, known=known)[0])
    corpus = build_corpus(data_root)
    keys = {normalise_label(m) for m in evaluation}
    renamed = {sid for sid, m in zip(corpus.sample_ids, corpus.minerals, strict=True)
               if sid and normalise_label(m) not in keys}
    names = np.array([held.labels[i] for i in held.y])
    ids = specimen_groups(held)
    ok = np.array([n in evaluation and i not in renamed for n, i in zip(names, ids,
                                                                           strict=True)])
    keep = np.array([k and len(set(ids[ok & (names == n)])) >= 2 for k, n in zip(ok, names,
                                                                               strict=True)])
    return held.X[keep], names[keep], ids[keep]


def new_mineral_accuracy(features: np.ndarray, names: np.ndarray, ids: np.ndarray, *,
                         classes: int = 20, draws: int = 10, seed: int = 0) -> float:
    """The onboard head's accuracy on new minerals from one specimen each: ``draws`` times,
    ``classes`` minerals are drawn, a fresh :class:`edge_runtime.head.SoftmaxHead` is fitted
    on the spectra of one specimen per mineral and scored on their other specimens."""
    from edge_runtime.head import SoftmaxHead

    rng = np.random.default_rng(seed)
    minerals = np.unique(names)
    accs = []
    for _ in range(draws):
        pick = rng.choice(minerals, size=min(classes, minerals.size), replace=False)
        tr, te = [], []
        for m in pick:
            rows = np.flatnonzero(names == m)
            first = rng.choice(np.unique(ids[rows]))
            tr += list(rows[ids[rows] == first])
            te += list(rows[ids[rows] != first])
        head = SoftmaxHead().fit(features[tr], names[tr])
        accs.append(head.score(features[te], names[te]))
    return float(np.mean(accs))


def schedule_of(row: dict) -> tuple[str, int]:
    """The training schedule of a trained row, ``(schedule, epoch cap)`` (rows from before
    ``--schedule`` existed are ``bench``; a row without its cap, the bench default 40)."""
    return row.get("schedule", "bench"), int(row.get("max_epochs") or 40)


def _done(path: Path, schedule: tuple[str, int]) -> set[tuple]:
    """The cells ``path`` holds already; :class:`click.UsageError` when its trained rows come
    from another schedule or epoch cap (resuming would pair rows that do not pair)."""
    if not path.is_file():
        return set()
    rows = read_jsonl(path)
    other = {schedule_of(r) for r in rows if r["method"] != "library"} - {schedule}
    if other:
        got = "; ".join(f"{s}, at most {n} epochs" for s, n in sorted(other))
        raise click.UsageError(f"{path} holds rows trained with another schedule ({got}); "
                               "write this one to another --out")
    return {(r["arch"], int(r["split_seed"]), float(r["fraction"]), int(r["seed"]), r["method"])
            for r in rows}


@click.group()
def cli() -> None:
    """Few-label experiment with pretraining on every RRUFF spectrum."""


@cli.command("pretrain")
@one_line_errors
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--arch", type=click.Choice(ARCHS), default="flight", show_default=True)
@click.option("--objective", type=click.Choice(["simclr", "barlow", "masked"]),
              default="barlow", show_default=True)
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--all-minerals", is_flag=True,
              help="Keep the unknown-evaluation minerals in the corpus (~60 % more spectra).")
@click.option("--within-spans", is_flag=True,
              help="Crops and masks stay inside each spectrum's covered span.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def pretrain_cmd(data_root, arch, objective, split_seed, epochs, seed, all_minerals,
                 within_spans, out) -> None:
    """One pretraining (backbone.npz + pretrain.json in --out)."""
    from trainer.pretrain import PretrainConfig, pretrain_run

    pretrain_run(out, data_root, model_config(arch),
                 PretrainConfig(objective=objective, epochs=epochs, seed=seed,
                                within_spans=within_spans),
                 split_seed=split_seed, keep_unknown_evaluation=all_minerals, log=click.echo)


@cli.command("run")
@one_line_errors
@click.option("--data", "data_root", default="../shared/data/rruff", show_default=True)
@click.option("--arch", type=click.Choice(ARCHS), default="flight", show_default=True,
              help="flight: the late-pool flight network of the rows in docs; flight-ep: "
                   "the one 'ramanedge train' builds today; paper: the paper's m=6.")
@click.option("--fractions", default=DEFAULT_FRACTIONS, show_default=True)
@click.option("--methods", default="none-aug,pre-barlow", show_default=True,
              help="Comma-separated: none-aug, pre-OBJ (OBJ = simclr|barlow|masked), each "
                   "optionally with +pl (FixMatch pseudo-labels), +libplC (the "
                   "fraction C of the unlabelled spectra named by the library beforehand), "
                   "+rlD (a second round: the fraction D named by the network + library "
                   "blend, then trained again), +spec (names per specimen), +rrN (N "
                   "blend rounds, with +rlD), +softS (soft names of weight S, with +rlD) and "
                   "+kdT (the blend rounds distil from T teachers, with +rlD), +lpL (label "
                   "propagation of weight L in the blend rounds' naming, with +rlD), "
                   "+lpfL (the same in the first round's library names, with +libplC), "
                   "+joint (the blend rounds propagate over the network's features and the "
                   "library's view side by side, with +lpL) and +shipped (name and blend "
                   "with the rover's shipped library match).")
@click.option("--split-seeds", default="0,1", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epoch cap of the bench schedule  [default: 40]")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="bench", show_default=True,
              help="bench: at most --epochs epochs, LR patience 4, stop after 10; cli: the "
                   "schedule of 'ramanedge train --labelled-fraction' (at most 200 epochs, LR "
                   "patience 5, stop after 25).")
@click.option("--pretrained", "pre_dir", type=click.Path(path_type=Path),
              default=Path("runs/fewlabel/pretrain"), show_default=True,
              help="Folder of pretrainings named ARCH-OBJ-sSPLITSEED.")
@click.option("--library", "with_library", is_flag=True,
              help="Also score the spectral library of the labelled spectra (ramanedge."
                   "library, trainer.ssl.NAMING_LIBRARY, not tuned here): a row 'library' "
                   "(its lag-tolerant 1-NN alone, no training) per cell, and a row "
                   "'METHOD+lib' (each trained network blended with it as the rover does).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSONL results.")
def run(data_root, arch, fractions, methods, split_seeds, seeds, epochs, schedule, pre_dir,
        with_library, out) -> None:
    """Run the grid (fraction-major within each split seed)."""
    if schedule == "cli" and epochs is not None:
        raise click.UsageError("--epochs caps the bench schedule; --schedule cli trains with "
                               "the CLI's own cap (200)")
    epochs = epochs or 40
    from ramanedge.dataset import build_dataset
    from ramanedge.library import SpectralLibrary
    from ramanedge.machine import cpu_model
    from ramanedge.splits import make_split, specimen_groups
    from trainer.evaluate import topk_accuracy
    from trainer.model import features_model
    from trainer.ssl import (
        NAMING_LIBRARY,
        SHIPPED_NAMING_LIBRARY,
        SSLConfig,
        check_backbone,
        check_no_leak,
        hide_labels,
        labelled_fraction_mask,
        train_ssl,
    )
    from trainer.train import PseudoLabelConfig, predict_probs

    split_list = comma_list(split_seeds, "--split-seeds")
    seed_list = comma_list(seeds, "--seeds")
    fraction_list = comma_list(fractions, "--fractions", float)
    method_list = [x.strip() for x in methods.split(",") if x.strip()]
    parsed = {m: parse_method(m) for m in method_list}  # refused before any data is read

    def train_cfg(seed: int):
        return fewlabel_train(seed, epochs, schedule)
    ds = build_dataset(data_root, "rruff-raw")
    groups = specimen_groups(ds)
    K = len(ds.labels)
    # the onboard-head probe on new minerals runs at 100 % labels only
    new_X, new_names, new_ids = (new_mineral_pool(data_root, list(ds.labels))
                                 if max(fraction_list, default=0.0) >= 1.0 else (None,) * 3)
    mc = model_config(arch)
    done = _done(out, (schedule, train_cfg(0).epochs))
    machine = f"{cpu_model()} ({os.cpu_count()} cpu)"
    for ss in split_list:
        split = np.asarray(make_split(ds, "grouped", seed=ss))
        tr, va, te = (split == s for s in ("train", "val", "test"))
        backbones: dict[str, dict] = {}  # checked once per split seed
        for f in fraction_list:
            for seed in seed_list:
                mask = labelled_fraction_mask(ds.y[tr], groups[tr], f, seed)
                y_masked = hide_labels(ds.y[tr], mask)
                lib = None
                if with_library:  # the labelled spectra only, as the rover's library
                    lib = SpectralLibrary.build(ds.X[tr][mask], ds.y[tr][mask], K,
                                                NAMING_LIBRARY)
                    if (arch, ss, f, seed, "library") not in done:
                        t0 = time.perf_counter()
                        every = SpectralLibrary(lib.spectra, lib.y, K,
                                                replace(lib.config, candidates=0),
                                                grid_points=lib.grid_points)
                        s_te = every.similarity_batch(ds.X[te])
                        write_row(out, {
                            "arch": arch, "split_seed": ss, "fraction": f, "seed": seed,
                            "method": "library", "n_labelled": int(mask.sum()),
                            "top1": topk_accuracy(s_te, ds.y[te], 1),
                            "top3": topk_accuracy(s_te, ds.y[te], 3),
                            "val_top1": topk_accuracy(every.similarity_batch(ds.X[va]),
                                                      ds.y[va], 1),
                            "new_mineral_top1": None, "epochs": 0, "best_epoch": None,
                            "pseudo_last": None,
                            "seconds": round(time.perf_counter() - t0, 1),
                            "date": datetime.now(UTC).isoformat(timespec="seconds"),
                            "machine": machine, "max_epochs": 0})
                for m in method_list:
                    (base, pl, libpl, rl, spec, rounds, soft, kd, lp, lpf, joint,
                     shipped) = parsed[m]
                    named_any = libpl is not None or rl is not None
                    if (arch, ss, f, seed, m) in done and (
                            lib is None or (arch, ss, f, seed, f"{m}+lib") in done) and (
                            lib is None or not named_any
                            or (arch, ss, f, seed, f"{m}+libP") in done):
                        continue
                    pseudo = PseudoLabelConfig() if pl else None
                    if (pseudo is not None or named_any) and f >= 1.0:
                        continue  # nothing unlabelled at 100 %
                    # the rover's answer with the method's match (+shipped: the shipped one)
                    match = SHIPPED_NAMING_LIBRARY if shipped else NAMING_LIBRARY
                    lib_m = lib if lib is None or not shipped else SpectralLibrary.build(
                        ds.X[tr][mask], ds.y[tr][mask], K, match)
                    weights = None
                    if base.startswith("pre-"):
                        if base not in backbones:
                            # refuses a backbone for another model, one pretrained with the
                            # unknown-evaluation minerals, or whose corpus held this split's
                            # validation/test specimens
                            obj = base.removeprefix("pre-")
                            weights, meta = check_backbone(pre_dir / f"{arch}-{obj}-s{ss}", mc)
                            check_no_leak(meta, ds, split)
                            backbones[base] = weights
                        weights = backbones[base]
                        cfg = SSLConfig(method="pretrained", labelled_fraction=f,
                                        label_seed=seed, pseudo=pseudo,
                                        library_labels=libpl or 0.0, relabel=rl or 0.0,
                                        by_specimen=spec, relabel_rounds=rounds,
                                        soft_names=soft or 0.0, teachers=kd,
                                        propagate=lp or 0.0,
                                        library_propagate=lpf or 0.0,
                                        propagate_graph="joint" if joint else "features",
                                        shipped_match=shipped)
                    else:
                        cfg = SSLConfig(method="none", labelled_fraction=f, label_seed=seed,
                                        pseudo=pseudo, library_labels=libpl or 0.0,
                                        relabel=rl or 0.0, by_specimen=spec,
                                        relabel_rounds=rounds, soft_names=soft or 0.0,
                                        teachers=kd, propagate=lp or 0.0,
                                        library_propagate=lpf or 0.0,
                                        propagate_graph="joint" if joint else "features",
                                        shipped_match=shipped)
                    t0 = time.perf_counter()
                    res = train_ssl(ds.X[tr], y_masked, ds.X[va], ds.y[va], K, mc,
                                    train_cfg(seed), cfg, pretrained=weights,
                                    groups=groups[tr], log=None)
                    lib_p, pseudo_stats = None, {}
                    if named_any:  # the names train_ssl trained on (its last round)
                        y_train = res.labels
                        named = (y_masked < 0) & (y_train >= 0)
                        lib_p = None if lib is None else SpectralLibrary.build(
                            ds.X[tr][y_train >= 0], y_train[y_train >= 0], K, match)
                        pseudo_stats = {  # the hidden labels only judge, after the fact
                            "n_pseudo": int(named.sum()),
                            "pseudo_acc": float(np.mean(y_train[named] == ds.y[tr][named]))
                            if named.any() else None}
                    probs = predict_probs(res.model, ds.X[te])
                    p_va = predict_probs(res.model, ds.X[va])
                    new_acc = None
                    if f >= 1.0:  # the onboard head on new minerals, over this backbone
                        feat = features_model(res.model)
                        new_acc = new_mineral_accuracy(
                            np.asarray(feat.predict(new_X, verbose=0, batch_size=256)),
                            new_names, new_ids, seed=seed)
                    row = {
                        "arch": arch, "split_seed": ss, "fraction": f, "seed": seed,
                        "method": m, "n_labelled": int(mask.sum()),
                        "top1": topk_accuracy(probs, ds.y[te], 1),
                        "top3": topk_accuracy(probs, ds.y[te], 3),
                        "val_top1": topk_accuracy(p_va, ds.y[va], 1),
                        "new_mineral_top1": new_acc,
                        "epochs": res.epochs_run, "best_epoch": res.best_epoch,
                        "pseudo_last": (res.history.get("pseudo") or [None])[-1],
                        "seconds": round(time.perf_counter() - t0, 1),
                        "date": datetime.now(UTC).isoformat(timespec="seconds"),
                        "machine": machine, "max_epochs": train_cfg(seed).epochs,
                        "schedule": schedule, **pseudo_stats,
                    }
                    if (arch, ss, f, seed, m) not in done:
                        write_row(out, row)
                    for suffix, library in (("+lib", lib_m), ("+libP", lib_p)):
                        if library is None or (arch, ss, f, seed, m + suffix) in done:
                            continue
                        # the same network blended as the rover blends, with the library of
                        # the labelled spectra (+lib) or of those and the named ones (+libP)
                        q_te = library.blend_batch(probs, ds.X[te])
                        write_row(out, {
                            **row, "method": m + suffix, "new_mineral_top1": None,
                            "top1": topk_accuracy(q_te, ds.y[te], 1),
                            "top3": topk_accuracy(q_te, ds.y[te], 3),
                            "val_top1": topk_accuracy(library.blend_batch(p_va, ds.X[va]),
                                                      ds.y[va], 1)})
    click.echo(f"done ({platform.node()})")


class Method(NamedTuple):
    """The parts of a method name (:func:`parse_method`)."""

    base: str
    pl: bool
    libpl: float | None
    rl: float | None
    spec: bool
    rounds: int = 1
    soft: float | None = None
    teachers: int = 0
    propagate: float | None = None
    library_propagate: float | None = None
    joint: bool = False
    shipped: bool = False


def parse_method(m: str) -> Method:
    """The parts of a method name
    ``BASE[+pl][+libplC][+rlD][+spec][+rrN][+softS][+kdT][+lpL][+lpfL][+joint][+shipped]``
    (BASE
    ``none-aug`` or ``pre-OBJ``; C and D fractions in (0, 1]: the library's and the second
    round's coverage; ``+spec`` names per specimen; ``+rrN``: N blend rounds, 2-5, with
    ``+rlD``; ``+softS``: soft names of weight S in (0, 1], with ``+rlD``; ``+kdT``: the
    blend rounds distil from T teachers, 1-8, with ``+rlD``, not with ``+softS``; ``+lpL``:
    label propagation of weight L in (0, 1] in the blend rounds' naming, with ``+rlD``;
    ``+lpfL``: the same in the first round's library names, with ``+libplC``; ``+joint``:
    the blend rounds propagate over the network's features and the library's view side by
    side, with ``+lpL``; ``+shipped``: the naming and the ``+lib`` / ``+libP`` rows use
    the rover's shipped library match instead of :data:`trainer.ssl.NAMING_LIBRARY`);
    :class:`click.UsageError` naming what is allowed."""
    base, *flags = m.split("+")
    usage = (f"unknown method {m!r}; expected none-aug or pre-OBJ, optionally with +pl, "
             "one +libplC (C in (0, 1], the fraction of unlabelled spectra the library "
             "names, e.g. +libpl0.6), one +rlD (D in (0, 1], the fraction a second round "
             "names with the network + library blend, e.g. +rl0.8), +spec (names per "
             "specimen, with +libplC or +rlD), +rrN (N blend rounds, 2-5, with +rlD), "
             "+softS (soft names of weight S in (0, 1] in the blend rounds, with +rlD) and "
             "+kdT (the blend rounds distil from T teachers, 1-8, with +rlD, not +softS) and "
             "+lpL (label propagation of weight L in (0, 1] in the blend rounds' naming, "
             "with +rlD), +lpfL (the same in the first round's library names, with "
             "+libplC), +joint (the blend rounds propagate over the network's features "
             "and the library's view side by side, with +lpL) and +shipped (name and "
             "blend with the rover's shipped library match)")
    prefixes = ("libpl", "rl", "rr", "soft", "kd", "lpf", "lp")  # "lpf" tried before "lp"
    if (base != "none-aug" and not base.startswith("pre-")) or len(set(flags)) != len(flags) \
            or any(f != f.strip() for f in flags):
        raise click.UsageError(usage)
    pl = spec = joint = shipped = False
    got = dict.fromkeys(prefixes)
    for flag in flags:
        if flag in ("pl", "spec", "joint", "shipped"):
            pl, spec = pl or flag == "pl", spec or flag == "spec"
            joint = joint or flag == "joint"
            shipped = shipped or flag == "shipped"
            continue
        # the first prefix that fits: only "lp" starts another ("lpf"), which comes first
        prefix = next((p for p in prefixes if flag.startswith(p)), None)
        try:
            value = float(flag.removeprefix(prefix)) if prefix else None
        except ValueError:
            value = None
        if prefix in ("rr", "kd"):
            ok = value in ((2, 3, 4, 5) if prefix == "rr" else range(1, 9))
        else:
            ok = value is not None and 0.0 < value <= 1.0
        if value is None or not ok or got[prefix] is not None:  # each part at most once
            raise click.UsageError(usage)
        got[prefix] = value
    if (got["lpf"] and not got["libpl"]) or (spec and got["libpl"] is None and
                                               got["rl"] is None) or (
            (got["rr"] or got["soft"] or got["kd"] or got["lp"]) and not got["rl"]) or (
            got["soft"] and got["kd"]) or (joint and not got["lp"]):
        raise click.UsageError(usage)
    return Method(base, pl, got["libpl"], got["rl"], spec, int(got["rr"] or 1), got["soft"],
                  int(got["kd"] or 0), got["lp"], got["lpf"], joint, shipped)


def write_row(out: Path, row: dict) -> None:
    """Append one result line to ``out`` and echo it."""
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    click.echo(f"{row['arch']} split {row['split_seed']} f={row['fraction']:g} "
               f"seed={row['seed']} {row['method']:16s} top-1 {100 * row['top1']:.1f} val "
               f"{100 * row['val_top1']:.1f} ({row['n_labelled']} labelled, "
               f"{row['epochs']} ep, {row['seconds']:.0f} s)", err=False)


def summarise(rows: list[dict]) -> dict[tuple, dict]:
    """Per (arch, fraction, method): its rows, test top-1 as :func:`mean_sd_pct` over (split
    seed, seed), mean labelled spectra and seconds, the split seeds."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["arch"], float(r["fraction"]), r["method"]), []).append(r)
    out = {}
    for key, rs in cells.items():
        out[key] = {"n": len(rs), "rows": rs, "top1": mean_sd_pct(rs, "top1"),
                    "n_labelled": float(np.mean([r["n_labelled"] for r in rs])),
                    "splits": sorted({int(r["split_seed"]) for r in rs}),
                    "seconds": float(np.mean([r["seconds"] for r in rs]))}
    return out


def paired_gains(rows: list[dict], method: str, baseline: str = "none-aug",
                 key: str = "top1") -> dict[tuple, list]:
    """``key`` gain (points; test top-1 by default) of ``method`` over ``baseline`` per
    (arch, fraction), paired on (split seed, seed)."""
    by = {(r["arch"], float(r["fraction"]), r["method"], int(r["split_seed"]), int(r["seed"])):
          100 * r[key] for r in rows}
    out: dict[tuple, list] = {}
    for (a, f, m, ss, s), v in sorted(by.items()):
        if m == method and (a, f, baseline, ss, s) in by:
            out.setdefault((a, f), []).append(v - by[(a, f, baseline, ss, s)])
    return out


def merge_rows(files: list[list[dict]]) -> list[dict]:
    """The rows of several result files, each (arch, split seed, fraction, seed, method)
    once: a cell trained again in a later file must repeat it bit for bit (top-1 and
    validation top-1), else :class:`click.UsageError` (pairing across the files would not
    hold); trained rows of two schedules or epoch caps are refused too (a cell would mix
    them)."""
    kinds = {schedule_of(r) for rows in files for r in rows if r["method"] != "library"}
    if len(kinds) > 1:
        got = "; ".join(f"{s}, at most {n} epochs" for s, n in sorted(kinds))
        raise click.UsageError(f"the result files mix training schedules ({got}); report "
                               "one schedule at a time")
    seen: dict[tuple, dict] = {}
    out = []
    for rows in files:
        for r in rows:
            k = (r["arch"], int(r["split_seed"]), float(r["fraction"]), int(r["seed"]),
                 r["method"])
            if k in seen:
                if (seen[k]["top1"], seen[k]["val_top1"]) != (r["top1"], r["val_top1"]):
                    raise click.UsageError(f"{k[4]} (split seed {k[1]}, seed {k[3]}) differs "
                                           "between the result files: they do not pair")
                continue
            seen[k] = r
            out.append(r)
    return out


@cli.command("report")
@one_line_errors
@click.option("--results", type=click.Path(exists=True, path_type=Path), multiple=True,
              default=(Path("docs/fewlabel.jsonl"),), show_default=True,
              help="Result rows (repeatable: files of one machine, rows of a cell in two "
                   "files must agree and count once).")
@click.option("--reference", default="none-aug+lib", show_default=True,
              help="The method the names table pairs its validation and test gains with.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Write the accuracy-vs-fraction plot here (e.g. docs/img/fewlabel.png).")
def report(results, reference, plot) -> None:
    """Markdown tables (mean ± s.d. over split seeds x seeds) and a plot."""
    rows = merge_rows([read_jsonl(f) for f in results])
    summ = summarise(rows)
    click.echo("| arch | labelled fraction | labelled spectra | method | runs (splits) | "
               "test top-1 % | test top-3 % | val top-1 % | s/run |")
    click.echo("|---|---|---|---|---|---|---|---|---|")
    cols = ("top1", "top3", "val_top1")
    for (a, f, m), c in sorted(summ.items()):
        click.echo(f"| {a} | {100 * f:g}% | {c['n_labelled']:.0f} | {m} | {c['n']} "
                   f"({','.join(map(str, c['splits']))}) | "
                   f"{' | '.join(format_mean_sd_pct(c['rows'], k) for k in cols)} | "
                   f"{c['seconds']:.0f} |")
    click.echo("")
    click.echo("| arch | labelled fraction | method | paired top-1 gain over none-aug "
               "(points, mean ± s.d.) | runs |")
    click.echo("|---|---|---|---|---|")
    for m in sorted({r["method"] for r in rows} - {"none-aug"}):
        for (a, f), g in sorted(paired_gains(rows, m).items()):
            sd = np.std(g, ddof=1) if len(g) > 1 else float("nan")
            click.echo(f"| {a} | {100 * f:g}% | {m} | {np.mean(g):+.1f} ± {sd:.1f} | {len(g)} |")
    named = sorted({r["method"] for r in rows if r.get("n_pseudo") is not None})
    if named:  # library labels: the names, and the validation gains the choice reads
        click.echo("")
        click.echo(f"| arch | labelled fraction | method | names | names right % | paired "
                   f"val top-1 gain over {reference} (points; higher in) | paired test "
                   "top-1 gain | runs |")
        click.echo("|---|---|---|---|---|---|---|---|")

        def gain(g: list[float]) -> str:
            sd = np.std(g, ddof=1) if len(g) > 1 else float("nan")
            return f"{np.mean(g):+.2f} ± {sd:.2f} ({sum(x > 0 for x in g)} of {len(g)})"

        for m in named:
            tests = paired_gains(rows, m, reference)
            for (a, f), g in sorted(paired_gains(rows, m, reference, "val_top1").items()):
                rs = [r for r in rows if (r["arch"], float(r["fraction"]), r["method"]) ==
                      (a, f, m)]
                acc = [r["pseudo_acc"] for r in rs if r["pseudo_acc"] is not None]
                click.echo(f"| {a} | {100 * f:g}% | {m} | "
                           f"{np.mean([r['n_pseudo'] for r in rs]):.0f} | "
                           f"{100 * np.mean(acc) if acc else float('nan'):.1f} | "
                           f"{gain(g)} | {gain(tests[(a, f)])} | {len(g)} |")
    nm: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.get("new_mineral_top1") is not None:
            nm.setdefault((r["arch"], r["method"]), []).append(100 * r["new_mineral_top1"])
    if nm:
        click.echo("")
        click.echo("| arch | backbone (100 % labels) | onboard head on new minerals, top-1 % | "
                   "runs |")
        click.echo("|---|---|---|---|")
        for (a, m), v in sorted(nm.items()):
            sd = np.std(v, ddof=1) if len(v) > 1 else float("nan")
            click.echo(f"| {a} | {m} | {np.mean(v):.1f} ± {sd:.1f} | {len(v)} |")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # one panel per architecture present (the flight and paper ones at least, as in docs)
        archs = [a for a in ARCHS if a in ("flight", "paper") or any(k[0] == a for k in summ)]
        fig, axes = plt.subplots(1, len(archs), figsize=(5 * len(archs), 4), sharey=True)
        for ax, a in zip(axes, archs, strict=True):
            for m in sorted({k[2] for k in summ if k[0] == a}):
                pts = sorted((f, c["top1"]) for (aa, f, mm), c in summ.items()
                             if aa == a and mm == m)
                if not pts:
                    continue
                ax.errorbar([100 * p[0] for p in pts], [p[1][0] for p in pts],
                            yerr=[p[1][1] or 0.0 for p in pts],
                            marker="o", capsize=3, label=m)
            ax.set_xscale("log")
            ax.set_title(f"{a} architecture")
            ax.set_xlabel("labelled fraction (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel("grouped test top-1 (%)")
        fig.tight_layout()
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=110)
        click.echo(f"wrote {plot}")


if __name__ == "__main__":
    cli()
