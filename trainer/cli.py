"""``ramanedge train``, ``ramanedge refit``, ``ramanedge evaluate`` and ``ramanedge baselines``.

Defaults come from :class:`~trainer.model.ModelConfig` and :class:`~trainer.train.TrainConfig`;
an option left out keeps the dataclass default. Bad input (missing data folder, unknown
activation, bad split file, existing output folder) gives one line and exit status 2.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import click

from ramanedge.cli_options import FiniteFloatRange
from ramanedge.errors import RamanEdgeError
from ramanedge.paths import default_data_root
from trainer.model import ACTIVATIONS, ARCHS, ModelConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class OptionError(RamanEdgeError, ValueError):
    """A command-line option value is invalid."""


def _echo(line: str) -> None:
    click.echo(line, err=False)


def _data_options(f):
    f = click.option("--split-seed", type=int, default=0, show_default=True,
                     help="Seed of the generated split (and of the val part carved from a "
                          "split file that has none).")(f)
    f = click.option("--split-file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None,
                     help="Use this split CSV (path,split) instead of --split; it may "
                     "name a subset (the rest is not used) and may lack a val part (carved "
                     "from its train part, grouped by specimen).")(f)
    f = click.option("--split", "split_kind", type=click.Choice(["grouped", "random"]),
                     default="grouped", show_default=True,
                     help="grouped: by RRUFF sample id (default); random: per spectrum.")(f)
    f = click.option("--min-spectra", type=int, default=8, show_default=True,
                     help="Keep minerals with at least this many spectra.")(f)
    f = click.option("--dataset", default="rruff-raw", show_default=True,
                     help="Data set name (rruff-raw or rruff-clean).")(f)
    f = click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
                     help="RRUFF data root [default: $RAMANEDGE_DATA or ../shared/data/rruff].")(f)
    f = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Data set cache folder [default: .cache/ramanedge].")(f)
    return f


def _data_config(data_root, dataset, min_spectra, split_kind, split_file, split_seed, cache_dir):
    from trainer.run import DataConfig

    root = Path(data_root) if data_root is not None else default_data_root()
    if not root.is_dir():
        raise OptionError(f"data folder {root} does not exist; pass --data DIR with the RRUFF "
                          "data root (e.g. ../shared/data/rruff)")
    if split_file is not None and not Path(split_file).is_file():
        raise OptionError(f"split file {split_file} does not exist; expected a CSV with "
                          "columns path,split")
    if min_spectra < 2:
        raise OptionError(f"--min-spectra must be >= 2, got {min_spectra}")
    if split_seed < 0:
        raise OptionError(f"--split-seed must be >= 0, got {split_seed}")
    return DataConfig(root=str(root), dataset=dataset, min_spectra=min_spectra,
                      split=split_kind, split_seed=split_seed,
                      split_file=None if split_file is None else str(split_file),
                      cache_dir=None if cache_dir is None else str(cache_dir))


@click.command("train")
@_data_options
@click.option("--arch", type=click.Choice(ARCHS), default=None,
              help="flight: the flight architecture (default); paper: the paper's LeNet-like "
                   "CNN (Flatten -> Dense(2048)), dialled with -m/-n.")
@click.option("--filters", default=None, metavar="C1,C2,...",
              help="Channels of the conv blocks, e.g. 16,32,48,64,96.")
@click.option("--reduce-channels", type=int, default=None,
              help="flight: channels of the 1x1 conv before Flatten (0 = none).")
@click.option("--separable/--no-separable", default=None,
              help="flight: depthwise-separable convs after the first block.")
@click.option("--batch-norm/--no-batch-norm", default=None, help="flight: BatchNorm after convs.")
@click.option("--early-pool/--no-early-pool", default=None,
              help="flight: separable blocks pool before their 1x1 conv (fewer MACs).")
@click.option("--stem-stride", type=int, default=None,
              help="flight: the first conv at every s-th point (the blocks after it at 1/s "
                   "of the positions); default 4. Without -n the pools keep the default's 44 "
                   "feature positions: 5 at 1 (the model before 2026-12-07), 4 at 2, 3 at 4.")
@click.option("--teacher", "teachers", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Run folder of a teacher trained on the same split (repeatable: the mean of "
                   "several is the teacher); distils its answers into this model.")
@click.option("--teachers", "n_teachers", type=int, default=None,
              help="Teacher models to train first and distil (mean of N; default 3 for the "
                   "flight recipe, 0 = no distillation).")
@click.option("--distill", type=float, default=None,
              help="Weight of the teachers' probabilities in the targets [default 0.5].")
@click.option("--distill-views/--no-distill-views", default=None,
              help="Function matching: the teachers answer every epoch's augmented views "
                   "(shift undone) instead of the clean spectra once [default: off].")
@click.option("--pool-size", "-m", type=int, default=None, help="Pooling size m.")
@click.option("--pool-layers", "-n", type=int, default=None, help="Number of pooling layers n.")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
              help="Activation (leaky_relu as in the paper; relu/prelu for the Edge TPU).")
@click.option("--kernel-size", type=int, default=None, help="Conv1D kernel size.")
@click.option("--dense-units", type=int, default=None, help="Width of the features layer.")
@click.option("--dropout", type=float, default=None, help="Dropout before the softmax.")
@click.option("--augment", default=None,
              help="Training augmentation, e.g. 'shift=5,noise=0.01,baseline=0.1,scale=0.1' "
                   "or 'none' (the paper's setting).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs (early stopping).")
@click.option("--batch-size", type=int, default=None, help="Batch size.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Adam learning rate.")
@click.option("--monitor", type=click.Choice(["val_loss", "val_accuracy"]), default=None,
              help="Validation metric for the LR schedule, early stopping and best weights.")
@click.option("--class-weights/--no-class-weights", default=None,
              help="Class-weighted cross-entropy (default on, as in the paper).")
@click.option("--seed", type=int, default=None, help="Random seed (weights, order, augmentation).")
@click.option("--outlier-exposure", type=float, default=None,
              help="Weight of the outlier-exposure loss on the negatives half of the rare "
                   "minerals (default recipe: 0.5; 0 = off).")
@click.option("--objectosphere", type=float, default=None,
              help="Weight of the objectosphere loss (needs outlier exposure): negatives' "
                   "features pulled to length 0, known ones pushed to at least "
                   "--objectosphere-xi (default recipe: 0 = off).")
@click.option("--objectosphere-xi", type=float, default=None,
              help="Target feature length of known spectra for --objectosphere (default 10; "
                   "the flight default's known lengths average about 15).")
@click.option("--background-class", is_flag=True, default=None,
              help="Train outlier exposure's negatives as a background class (a (K+1)-th "
                   "output kept beside the K-class head, written to background_unit.json) "
                   "instead of towards a flat answer (needs outlier exposure; not with "
                   "--objectosphere).")
@click.option("--qat-epochs", type=int, default=None,
              help="Epochs of int8-aware fine-tuning after training (default recipe: 10, "
                   "flight models; 0 = off).")
@click.option("--ema", type=float, default=None,
              help="Per-step decay of a moving average of the weights that validation, the "
                   "epoch choice and the saved model then use, in [0, 1) (default 0 = off; "
                   "0.99, about four epochs of full RRUFF training, passed its validation "
                   "rule for one training seed, not for another; the average warms up and "
                   "is bias-corrected, so short runs keep working).")
@click.option("--recipe", type=click.Choice(["default", "paper", "paper-family"]),
              default="default", show_default=True,
              help="Base recipe: the project default (flight architecture and training), "
                   "the paper's exactly (m=8, kernel 5, patience 3/5 on val loss, no "
                   "augmentation), or paper-family (the paper's network at the former default "
                   "m=6, kernel 11, trained with +-12 cm-1 shifts and backgrounds, no "
                   "teachers); other options override it.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Run folder to write, e.g. runs/NAME.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder at --out.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress lines; the test result and the run folder are still printed.")
@click.option("--labelled-fraction", type=float, default=1.0, show_default=True,
              help="Keep labels of this fraction of training specimens (trainer.ssl).")
@click.option("--ssl", type=click.Choice(["none", "contrastive", "sgan"]), default="none",
              show_default=True, help="Use the unlabelled rest: contrastive pretraining or SGAN.")
@click.option("--backbone", type=click.Path(path_type=Path), default=None,
              help="Start from a pretrained backbone (a `ramanedge pretrain` folder): "
                   "alone, the whole recipe (teachers, student) starts from it; with "
                   "--labelled-fraction below 1 (and optionally --pseudo-label), few-label "
                   "fine-tuning.")
@click.option("--pseudo-label", is_flag=True,
              help="FixMatch-style pseudo-labels on the unlabelled training spectra.")
@click.option("--library-labels", type=float, default=0.0,
              help="Before training, name this fraction (0-1) of the unlabelled training "
                   "spectra with the spectral library of the labelled ones, the most "
                   "confident first, and train on them as labelled (0.6 chosen on "
                   "validation at 10 % labels; default off).")
@click.option("--relabel", type=float, default=0.0,
              help="A second naming round: once the network has trained, name this fraction "
                   "(0-1) of the unlabelled training spectra with the network blended with "
                   "the library of the labelled ones, the surest first, and train the "
                   "network again on them (with --library-labels 0.6: 1.0 chosen on "
                   "validation at 10 % labels; default off).")
@click.option("--propagate", type=float, default=None,
              help="With --library-labels / --relabel: each naming round mixes W x label "
                   "propagation (the given labels spread over nearest neighbours: of the "
                   "library's view in the first round; in the second, of the first "
                   "network's features and the library's view side by side) into its "
                   "score, (1 - W) x the library or the network + library blend (0 = off)  "
                   "[default: 0.5, adopted on validation with --library-labels 0.6 "
                   "--relabel 1.0]")
@click.option("--names-per-spectrum", is_flag=True,
              help="With --library-labels / --relabel: name each unlabelled spectrum on its "
                   "own; by default the spectra of one specimen (RRUFF sample id) share one "
                   "name, from the mean of their scores (chosen on validation with "
                   "--library-labels 0.6 --relabel 1.0; other settings not measured).")
@click.option("--calibration-holdout", type=FiniteFloatRange(0.0, 1.0, max_open=True),
              default=None,
              help="Share of the validation specimens (of the validation spectra on a "
                   "per-spectrum split; drawn with seed 0) kept out of every epoch choice, "
                   "for the 'ramanedge refit' that follows: it trains on the rest and is "
                   "calibrated on these, which neither network chose on (0 = none). "
                   "Default: 0.5 for the default recipe on a split that keeps specimens "
                   "apart (grouped), else 0 (also with --teacher or --backbone, "
                   "whose runs are not refitted).")
def train(data_root, dataset, min_spectra, split_kind, split_file, split_seed, cache_dir,
          arch, filters, reduce_channels, separable, batch_norm, early_pool, stem_stride,
          teachers,
          n_teachers, distill, distill_views,
          pool_size, pool_layers, activation, kernel_size, dense_units, dropout, augment,
          epochs, batch_size, learning_rate, monitor, class_weights, seed, outlier_exposure,
          objectosphere, objectosphere_xi, background_class, qat_epochs, ema, recipe, out,
          overwrite, quiet,
          labelled_fraction=1.0, ssl="none", backbone=None, pseudo_label=False,
          library_labels=0.0, relabel=0.0, propagate=None, names_per_spectrum=False,
          calibration_holdout=None) -> None:
    """Train a 1D CNN (flight default, or the paper's) and write a run folder."""
    from trainer.augment import AugmentConfig
    from trainer.model import PAPER_DEFAULT, PAPER_MODEL
    from trainer.run import check_output_folder, train_run
    from trainer.train import RECIPES

    data = _data_config(data_root, dataset, min_spectra, split_kind, split_file, split_seed,
                        cache_dir)
    try:
        filt = None if filters is None else tuple(int(f) for f in filters.split(","))
    except ValueError:
        raise OptionError(f"--filters must be comma-separated integers, got {filters!r}") \
            from None
    model_kw = {k: v for k, v in dict(pool_size=pool_size, pool_layers=pool_layers,
                                      activation=activation, kernel_size=kernel_size,
                                      dense_units=dense_units, dropout=dropout, filters=filt,
                                      reduce_channels=reduce_channels, separable=separable,
                                      batch_norm=batch_norm, early_pool=early_pool,
                                      stem_stride=stem_stride).items()
                if v is not None}
    train_kw = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size,
                                      learning_rate=learning_rate, monitor=monitor,
                                      class_weighting=class_weights, seed=seed,
                                      distill=distill, distill_views=distill_views,
                                      teachers=n_teachers,
                                      outlier_exposure=outlier_exposure,
                                      objectosphere=objectosphere,
                                      objectosphere_xi=objectosphere_xi,
                                      background_class=background_class,
                                      qat_epochs=qat_epochs, ema=ema).items()
                if v is not None}
    # options that train on outlier exposure's negatives, which few-label training lacks
    open_set_flags = (("--objectosphere", objectosphere), ("--background-class", background_class))
    try:
        if recipe == "paper":
            if arch == "flight":
                raise ValueError("--recipe paper is the paper's network; it takes no "
                                 "--arch flight")
            base = PAPER_MODEL
        elif recipe == "paper-family":
            if arch == "flight":
                raise ValueError("--recipe paper-family is the paper's network; it takes no "
                                 "--arch flight")
            base = PAPER_DEFAULT
        else:
            base = None
        # the default architecture is built from the options, so that ModelConfig resolves
        # what they leave open (e.g. the pool count of a --stem-stride); a paper recipe's
        # network is its base with the options on top
        mc = (ModelConfig(arch=arch or "flight", **model_kw) if base is None
              else ModelConfig.from_dict({**base.to_dict(), **model_kw}) if model_kw else base)
        tc = replace(RECIPES[recipe], **train_kw)
        for flag, on in open_set_flags:
            if on and not tc.outlier_exposure > 0:
                raise ValueError(f"{flag} needs outlier exposure (its negatives); got "
                                 f"--outlier-exposure {tc.outlier_exposure:g}")
        if n_teachers == 0 and distill is None and not teachers:
            # no teachers: no distillation (an explicit --distill-views then says why not)
            tc = replace(tc, distill=0.0)
        if augment is not None:
            tc = replace(tc, augment=AugmentConfig.parse(augment))
    except ValueError as e:
        raise OptionError(str(e)) from None
    # --backbone alone starts the whole recipe from it; with a few-label option it is
    # few-label fine-tuning (trainer.ssl)
    few = (labelled_fraction != 1.0 or ssl != "none" or pseudo_label or library_labels != 0.0
           or relabel != 0.0 or propagate is not None or names_per_spectrum)
    for flag, on in (*open_set_flags, ("--calibration-holdout", bool(calibration_holdout)),
                     ("--ema", bool(ema))):
        # few-label training: no negatives, no refit, no moving average (trainer.ssl)
        if few and on:
            raise OptionError(f"{flag} is not used by few-label training (--labelled-fraction, "
                              "--ssl, --pseudo-label, --library-labels, --relabel, "
                              "--propagate, --names-per-spectrum): drop one of them")
    check_output_folder(Path(out), overwrite)
    if few:
        from trainer.ssl import ssl_cli_train

        return ssl_cli_train(out, data, mc, tc, labelled_fraction, ssl, overwrite=overwrite,
                             backbone=backbone, pseudo_label=pseudo_label,
                             library_labels=library_labels, relabel=relabel,
                             propagate=propagate, by_specimen=not names_per_spectrum,
                             log=None if quiet else _echo, report=_echo)
    train_run(out, data, mc, tc, teachers=tuple(teachers), backbone=backbone,
              overwrite=overwrite, log=None if quiet else _echo, report=_echo,
              # unset: the default recipe's (auto), the paper's recipes none (as published)
              calibration_holdout=(calibration_holdout if calibration_holdout is not None
                                   else None if recipe == "default" else 0.0))


@click.command("refit")
@click.argument("base", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output run folder.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="Data root, if not the one recorded in the base run.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder at --out.")
@click.option("--calibration-holdout", "holdout", type=FiniteFloatRange(0.0, 1.0, max_open=True),
              default=None,
              help="Share of BASE's validation specimens (spectra, on a per-spectrum split) "
                   "kept out of the refit to calibrate it (drawn with seed 0; 0 = none). "
                   "Default: the share BASE kept out of its epoch choice ('ramanedge train "
                   "--calibration-holdout'), else 0.")
@click.option("--quiet", "-q", is_flag=True,
              help="Only the final test result and where the run was written.")
def refit(base, out, data_root, overwrite, holdout, quiet) -> None:
    """Train BASE's recipe again on its training + validation spectra.

    Every network follows the epochs and learning rates BASE chose on validation; the test
    part is untouched. 'ramanedge quantize' of the result calibrates the unknown rule and the
    prediction sets on BASE's network, which never saw the validation spectra; with
    --calibration-holdout (the default for a BASE trained with one, as 'ramanedge train'
    trains the default recipe), on the held-out validation specimens with the refit network
    itself (they are the refit run's validation part).
    """
    from trainer.run import check_output_folder, read_run_config, refit_run

    read_run_config(base)  # fail fast, before TensorFlow is imported
    check_output_folder(Path(out), overwrite)
    refit_run(base, out, data_root=data_root, overwrite=overwrite,
              log=None if quiet else _echo, report=_echo, holdout=holdout)


def _print_metrics(res: dict, title: str) -> None:
    click.echo(title)
    click.echo(f"  spectra: {res['n']}   top-1 {100 * res['top1']:.1f}%   "
               f"top-3 {100 * res['top3']:.1f}%   balanced {100 * res['balanced_accuracy']:.1f}%")
    for s, row in res["shifts"].items():
        extra = ""
        if "top1_plus" in row:
            extra = (f"   (+{s}: {100 * row['top1_plus']:.1f}%, "
                     f"-{s}: {100 * row['top1_minus']:.1f}%)")
        click.echo(f"  shift {s:>3} cm-1: top-1 {100 * row['top1']:.1f}%  "
                   f"top-3 {100 * row['top3']:.1f}%{extra}")
    rec = res["per_class_recall"]
    worst = sorted(rec.items(), key=lambda kv: kv[1])[:5]
    click.echo("  lowest recall: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in worst))


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", "part", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True, help="Which part of the run's split to evaluate.")
@click.option("--shifts", default="0,15,30", show_default=True,
              help="Comma-separated shifts in cm-1 (each evaluated as +s and -s).")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="Data root, if not the one recorded in the run.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir, part, shifts, data_root, as_json) -> None:
    """Evaluate a run: top-1/top-3, per-class recall, confusion PNG, accuracy under shifts."""
    from trainer.run import evaluate_run, read_run_config

    read_run_config(run_dir)  # fail fast, before TensorFlow is imported
    try:
        shift_list = tuple(abs(int(s)) for s in shifts.split(",") if s.strip())
    except ValueError:
        raise OptionError(f"--shifts must be comma-separated integers, got {shifts!r}") from None
    if not shift_list:
        raise OptionError(f"--shifts must name at least one shift in cm-1 (e.g. 0,15,30), got "
                          f"{shifts!r}")
    res = evaluate_run(run_dir, part=part, shifts=shift_list, data_root=data_root)
    if as_json:
        click.echo(json.dumps({k: v for k, v in res.items() if k != "confusion"}, indent=2))
    else:
        _print_metrics(res, f"{run_dir} ({part})")
        if part == "test":
            click.echo(f"  wrote {Path(run_dir) / 'metrics.json'} and confusion.png")


@click.command("baselines")
@_data_options
@click.option("--run", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Use the data set and split of this run (overrides the data options).")
@click.option("--clean-dataset", default="rruff-clean", show_default=True,
              help="Baseline-corrected data set for the 'clean' rows ('none' to skip).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON to this file.")
def baselines(data_root, dataset, min_spectra, split_kind, split_file, split_seed, cache_dir,
              run_dir, clean_dataset, out) -> None:
    """k-NN and SVM baselines on raw (and clean) spectra, on the CNN's split."""
    from trainer.baselines import format_table, run_all_baselines

    if run_dir is not None:
        from trainer.run import DataConfig, read_run_config

        cfg = read_run_config(run_dir)
        d = cfg["data"]
        data = DataConfig(root=str(data_root or d["root"]), dataset=d["dataset"],
                          min_spectra=int(d["min_spectra"]), split="grouped",
                          split_file=str(Path(run_dir) / "split.csv"),
                          cache_dir=d.get("cache_dir"), minerals=d.get("minerals"))
    else:
        data = _data_config(data_root, dataset, min_spectra, split_kind, split_file,
                            split_seed, cache_dir)
    clean = None if clean_dataset.lower() in ("", "none") else clean_dataset
    result = run_all_baselines(data, clean_dataset=clean, log=_echo)
    click.echo(format_table(result["rows"]))
    for note in result.get("notes", []):
        click.echo(f"note: {note}")
    if out is not None:
        from ramanedge.fsutil import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        click.echo(f"wrote {out}")


@click.command("pretrain")
@_data_options
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="PretrainConfig as JSON (e.g. configs/pretrain.json); the "
                                 "options below override it.")
@click.option("--objective", type=click.Choice(["simclr", "barlow", "masked"]), default=None,
              help="Self-supervised objective [default: the config's, else barlow].")
@click.option("--epochs", type=int, default=None, help="Passes over the corpus.")
@click.option("--arch", type=click.Choice(ARCHS), default="flight", show_default=True,
              help="Architecture whose backbone is pretrained (its default configuration).")
@click.option("--stem-stride", type=int, default=None,
              help="flight: the first conv's stride (default 4; 1 = the architecture "
                   "before 2026-12-07, with its 5 pools; 2 = that morning's, 4 pools).")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]),
              default="default", show_default=True,
              help="tf.distribute strategy; multiworker reads TF_CONFIG on every worker.")
@click.option("--all-minerals", is_flag=True,
              help="Keep the unknown-evaluation minerals (ramanedge.splits.unknown_halves) in "
                   "the corpus; such a backbone must not feed unknown-mineral figures.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for backbone.npz and pretrain.json.")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder at --out.")
def pretrain(data_root, dataset, min_spectra, split_kind, split_file, split_seed, cache_dir,
             config_file, objective, epochs, arch, stem_stride, strategy, all_minerals, out,
             overwrite) -> None:
    """Self-supervised pretraining on every RRUFF spectrum except the split's val/test
    specimens; `ramanedge train --backbone OUT` fine-tunes from it."""
    from trainer.pretrain import PretrainConfig, pretrain_run

    data = _data_config(data_root, dataset, min_spectra, split_kind, split_file, split_seed,
                        cache_dir)
    if split_file is not None:
        raise OptionError("pretrain excludes the specimens of a generated split; --split-file "
                          "is not supported (use --split and --split-seed)")
    try:
        cfg = PretrainConfig.from_file(config_file) if config_file else PretrainConfig()
        kw = {k: v for k, v in dict(objective=objective, epochs=epochs).items()
              if v is not None}
        cfg = replace(cfg, **kw) if kw else cfg
        model_config = ModelConfig(arch=arch, stem_stride=stem_stride)
    except (ValueError, TypeError) as e:
        raise OptionError(str(e)) from None
    from trainer.run import check_output_folder

    check_output_folder(Path(out), overwrite)
    pretrain_run(out, data.root, model_config, cfg, split_seed=split_seed,
                 split_kind=split_kind, strategy=strategy, dataset=dataset,
                 min_spectra=min_spectra, cache_dir=data.cache_dir,
                 keep_unknown_evaluation=all_minerals, log=_echo)
