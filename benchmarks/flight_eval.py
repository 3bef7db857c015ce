"""Multi-split evaluation of a training recipe through the rover's int8 path.

For every split (grouped split seeds, plus the per-spectrum ``random`` split for comparison
with the paper) the driver does exactly what a user does: ``train_run`` with the recipe
(teacher runs first when the recipe distils), ``quantize_run`` with the *default* gate
settings (no ``--allow-accuracy-drop``; a refused export is recorded and then re-exported with
the override only so that the split can still be measured), and then evaluates the written
artifact on the test part through ``edge_runtime`` (quantise / invoke / dequantise, float head
on the int8 features, as the rover classifies) at 0 / +-15 / +-30 cm-1. One JSON line per
split goes to ``<out>/eval.jsonl``; ``--summary`` prints mean +- s.d.

A refit recipe (:data:`REFIT_OF`) trains nothing from scratch: it refits the run its base recipe
left in the same ``--out`` folder on that split (:func:`trainer.run.refit_run`), so run the base
recipe first; its validation figures are in-sample (``val_in_training``), except a refit's
with a calibration holdout (:data:`REFIT_HOLDOUT`), whose validation part is held out.

It measures the *network*: its exports carry no spectral library (``QuantizeConfig``'s
default), which ``ramanedge quantize`` adds since 2026-12-05 evening. The network plus the
library, as ``ramanedge quantize`` exports it, is :mod:`benchmarks.library_eval` over these
folders.

The default recipe ``flight`` differs from ``flight-ptq`` only by its final int8-aware
fine-tune, so when ``flight-ptq`` has run on a split its float run is reused and only the
fine-tune runs (:data:`FLOAT_OF`; equal to training again on the same machine).

    python -m benchmarks.flight_eval --data ../shared/data/rruff --recipe flight-ptq \\
        --grouped 0,1,2,3,4 --random 0 --out runs/flight/eval
    python -m benchmarks.flight_eval --data ../shared/data/rruff --recipe flight \\
        --grouped 0,1,2,3,4 --random 0 --out runs/flight/eval
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import comma_list, format_mean_sd_pct, one_line_errors
from ramanedge.cli_options import data_root_option
from ramanedge.manifest import MODEL_FILE
from trainer.model import (
    FLIGHT_FULL_POSITIONS,
    FLIGHT_HALF_POSITIONS,
    FLIGHT_LATE_POOL,
    FLIGHT_MODEL,
    FLIGHT_QUARTER_POSITIONS,
    PAPER_DEFAULT,
    ModelConfig,
    count_macs,
    count_params,
)
from trainer.train import FLIGHT_AUGMENT_V1, PAPER_FAMILY_TRAIN, TEACHER_AUGMENT, TrainConfig

#: recipe -> (model, training). ``flight`` is the project default (``ramanedge train`` with
#: no options: it trains its teachers first, then the student with outlier exposure, then
#: fine-tunes int8-aware); ``flight-ptq`` the
#: same without the int8-aware step (plain post-training quantisation of the float model);
#: ``flight-v1`` / ``flight-v1-ptq`` the flight recipe before partial-coverage (crop)
#: training, whose 5-split figures docs/results.md section 0 quotes; ``paper-m6`` the former
#: default.
_NO_OE = replace(TrainConfig(), outlier_exposure=0.0)
RECIPES: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "flight": (FLIGHT_MODEL, TrainConfig()),
    "flight-ptq": (FLIGHT_MODEL, replace(TrainConfig(), qat_epochs=0)),
    # the default before outlier exposure (issue 12): the "flight" rows of
    # runs/flight/eval-f16, written when this was the default
    "flight-v2": (FLIGHT_LATE_POOL, _NO_OE),
    "flight-v1": (FLIGHT_LATE_POOL, replace(_NO_OE, augment=FLIGHT_AUGMENT_V1)),
    "flight-v1-ptq": (FLIGHT_LATE_POOL, replace(_NO_OE, augment=FLIGHT_AUGMENT_V1,
                                            qat_epochs=0)),
    "paper-m6": (PAPER_DEFAULT, PAPER_FAMILY_TRAIN),
    # outlier exposure on the negatives half of the rare minerals (weight 0.5, Hendrycks et
    # al. 2019's value; not tuned): the name its 5-split rows were measured under
    # (runs/flight/eval-oe) before it became the default; the same recipe as "flight"
    "flight-oe": (FLIGHT_LATE_POOL, replace(TrainConfig(), outlier_exposure=0.5)),
    # issue 11's latency target: the fastest candidate of benchmarks.latency_probe (0.75x the
    # m=6 model's int8 call, 1.06 M MACs, 76 KB), same recipe as the default
    "flight-fast": (replace(FLIGHT_LATE_POOL, filters=(16, 32, 48, 64, 96), reduce_channels=16,
                            pool_size=3), TrainConfig()),
    # the 2026-12-04 architecture screen's pick (benchmarks.flight_search screen-*): kernel 11
    # instead of 7 in every conv, same recipe as the default
    "flight-k11": (replace(FLIGHT_LATE_POOL, kernel_size=11), TrainConfig()),
    # issue 11's latency: the 1x1 convs at the pooled positions (2.97 M MACs), same recipe
    "flight-early-pool": (replace(FLIGHT_LATE_POOL, early_pool=True), TrainConfig()),
    # ... the same with training seed 1 (weights, order, augmentation and its teachers): the
    # spread a new training draw gives on the same splits
    "flight-early-pool-s1": (replace(FLIGHT_LATE_POOL, early_pool=True),
                             replace(TrainConfig(), seed=1)),
    # ... and training seed 2: fresh draws for confirming a post-hoc choice (2026-12-06)
    "flight-early-pool-s2": (replace(FLIGHT_LATE_POOL, early_pool=True),
                             replace(TrainConfig(), seed=2)),
    # issue 11's latency after the op profile (docs/op_profile.json): the first conv strided
    # instead of pooled and 3-tap depthwise convs, early pooling, same recipe as the default
    # (trained: 0.98x the m=6 model's int8 call in the frontier's run, docs/frontier.json)
    "flight-ss-dw3": (replace(FLIGHT_LATE_POOL, early_pool=True, strided_stem=True,
                              depthwise_kernel=3), TrainConfig()),
    # ... the 3-tap depthwise convs alone (the op profile: 29.5 -> 14.7 us of the default's
    # 83 us; the first conv unchanged)
    "flight-dw3": (replace(FLIGHT_LATE_POOL, early_pool=True, depthwise_kernel=3),
                   TrainConfig()),
    # ... and narrower blocks (16-32-48-64-96, 1x1 reduction to 16) with early pooling
    # (trained: 0.94x in the same run)
    "flight-narrow": (replace(FLIGHT_LATE_POOL, early_pool=True, filters=(16, 32, 48, 64, 96),
                              reduce_channels=16), TrainConfig()),
    # issue 12's objectosphere loss (Dhamija et al. 2018) on top of outlier exposure: the
    # negatives' features pulled to length 0, the known ones' pushed to >= 15 (the default's
    # mean known validation length, 15.1 on grouped split 0); weight 1 or 0.25. Trained
    # 2026-12-05 and rejected on validation (docs/results.md section 4)
    "flight-obj1": (replace(FLIGHT_LATE_POOL, early_pool=True),
                    replace(TrainConfig(), objectosphere=1.0, objectosphere_xi=15.0)),
    "flight-obj025": (replace(FLIGHT_LATE_POOL, early_pool=True),
                      replace(TrainConfig(), objectosphere=0.25, objectosphere_xi=15.0)),
    # issue 12's third open-set loss: the negatives as a background class (a (K+1)-th
    # output beside the K-class head, Dhamija et al. 2018's baseline) instead of the uniform
    # target; the unit is kept in the run (background_unit.json) for the open-set probes.
    # Trained 2026-12-05 and rejected on validation (docs/results.md section 4)
    "flight-bg": (replace(FLIGHT_LATE_POOL, early_pool=True),
                  replace(TrainConfig(), background_class=True)),
    # issue 11's distillation with honest teacher targets: the default's three teachers
    # cross-fitted over the training specimens (each trains on two thirds, each training
    # spectrum gets the answer of the teacher that never saw its specimen)
    "flight-kd-oof": (replace(FLIGHT_LATE_POOL, early_pool=True),
                      replace(TrainConfig(), teacher_folds=True)),
    # issue 11's accuracy: half the drawn training spectra mixed with another spectrum of the
    # same mineral (TrainConfig.mix_same), a stand-in for the specimens the data lack
    "flight-mix": (replace(FLIGHT_LATE_POOL, early_pool=True),
                   replace(TrainConfig(), mix_same=0.5)),
    # function matching: the teachers answer each epoch's augmented views (shift undone)
    # instead of the clean spectra once (measured 2026-12-05 afternoon: docs/parts/flight.md)
    "flight-fm": (replace(FLIGHT_LATE_POOL, early_pool=True),
                  replace(TrainConfig(), distill_views=True)),
    # ... with the teachers seeing each view before its crop (they never trained on crops)
    "flight-fm-full": (replace(FLIGHT_LATE_POOL, early_pool=True),
                       replace(TrainConfig(), distill_views=True, distill_uncropped=True)),
    # the probe's candidate nearest the target (1.03x): pool 3 over 4 blocks
    "flight-p3x4": (replace(FLIGHT_LATE_POOL, pool_size=3, pool_layers=4, filters=(24, 48, 64, 96)),
                    TrainConfig()),
    # issue 11's network refit (trainer.run.refit_run, 2026-12-07): the default's run on the
    # same split trained again on training + validation, every network following the epochs
    # and learning rates it chose on validation (REFIT_OF)
    "flight-early-pool-refit": (replace(FLIGHT_LATE_POOL, early_pool=True), TrainConfig()),
    # issue 11's latency (2026-12-07): the first conv at every second point and one pool
    # fewer, so every conv up to block 5's depthwise runs at half the positions of the
    # default of that day and the features keep its 44 (the same weights, 1.94 M MACs); same
    # recipe as the default (the default that morning, rule (S'): FLIGHT_HALF_POSITIONS)
    "flight-stem2": (FLIGHT_HALF_POSITIONS, TrainConfig()),
    # ... with training seed 1: its second training draw on the same splits
    "flight-stem2-s1": (FLIGHT_HALF_POSITIONS, replace(TrainConfig(), seed=1)),
    # 2026-12-07 rule (Q): the first conv at every 4th point and 3 pools (44 feature
    # positions, the same weights, 1.57 M MACs): every conv up to block 4's depthwise at
    # half the stride-2 default's positions; same recipe as the default (the default since
    # rule (Q) adopted it: FLIGHT_MODEL)
    "flight-stem4": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    # ... with training seeds 1 and 2: its second and third training draws on the same splits
    "flight-stem4-s1": (FLIGHT_QUARTER_POSITIONS, replace(TrainConfig(), seed=1)),
    "flight-stem4-s2": (FLIGHT_QUARTER_POSITIONS, replace(TrainConfig(), seed=2)),
    # rule (W), 2026-12-07: the stride-4 model's latency headroom spent on width (blocks
    # 32-64-96-128-160, dense 176: 250,969 weights, 2.49 M MACs; the same 44 positions)
    "flight-wide4": (replace(FLIGHT_QUARTER_POSITIONS, filters=(32, 64, 96, 128, 160),
                             dense_units=176), TrainConfig()),
    # the stride-4 default's run refitted on training + validation (a measurement of the
    # opt-in `ramanedge refit` on the default, 2026-12-07; REFIT_OF)
    "flight-stem4-refit": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    # ... with a calibration holdout (rule (R'), 2026-12-07): a third of the validation
    # specimens stay out of the refit and calibrate its artifact (REFIT_HOLDOUT)
    "flight-stem4-refit-h3": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    # ... with half of them held out (rule (R''), 2026-12-07)
    "flight-stem4-refit-h2": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    # rule (R3), 2026-12-07: the stride-4 default trained with half of its validation
    # specimens kept out of its epoch choice (CALIBRATION_HOLDOUT), and its refit holding
    # out the same half: the two compare on specimens neither chose on
    "flight-stem4-ch2": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    "flight-stem4-ch2-refit": (FLIGHT_QUARTER_POSITIONS, TrainConfig()),
    # ... with training seeds 1 and 2
    **{f"flight-stem4-ch2{t}": (FLIGHT_QUARTER_POSITIONS, replace(TrainConfig(), seed=s))
       for s in (1, 2) for t in (f"-s{s}", f"-s{s}-refit")},
    # rule (E), 2026-12-07 evening: the default path (rule (R3)) with an exponential moving
    # average of the weights (decay 0.99 a step, about 4 epochs), teachers, student, fine-tune
    # and refit alike (passed its rule, not the default: docs/parts/flight.md), with training
    # seeds 1 and 2 too
    **{f"flight-stem4-ch2-ema{t}": (FLIGHT_QUARTER_POSITIONS, replace(TrainConfig(), ema=0.99))
       for t in ("", "-refit")},
    **{f"flight-stem4-ch2-ema{t}": (FLIGHT_QUARTER_POSITIONS,
                                    replace(TrainConfig(), seed=s, ema=0.99))
       for s in (1, 2) for t in (f"-s{s}", f"-s{s}-refit")},
}

#: refit recipe -> the recipe whose run (in the same --out folder, same split) it refits
REFIT_OF = {"flight-early-pool-refit": "flight-early-pool",
            "flight-stem4-refit": "flight-stem4", "flight-stem4-refit-h3": "flight-stem4",
            "flight-stem4-refit-h2": "flight-stem4",
            **{f"flight-stem4-ch2{t}-refit": f"flight-stem4-ch2{t}"
               for t in ("", "-s1", "-s2", "-ema", "-ema-s1", "-ema-s2")}}
#: refit recipe -> the share of the validation specimens it holds out for calibration
#: (``trainer.run.refit_run(holdout=...)``; seed 0); absent = none (a full refit)
REFIT_HOLDOUT = {"flight-stem4-refit-h3": 1 / 3, "flight-stem4-refit-h2": 1 / 2,
                 **{f"flight-stem4-ch2{t}-refit": 1 / 2
                    for t in ("", "-s1", "-s2", "-ema", "-ema-s1", "-ema-s2")}}
#: recipe -> the share of the validation specimens kept out of its epoch choice
#: (``trainer.run.train_run(calibration_holdout=...)``; seed 0); absent = none
CALIBRATION_HOLDOUT = {f"flight-stem4-ch2{t}": 1 / 2
                       for t in ("", "-s1", "-s2", "-ema", "-ema-s1", "-ema-s2")}


def flight_teachers(train_config: TrainConfig, model_config: ModelConfig,
                    n: int = 3) -> tuple[tuple[ModelConfig, TrainConfig], ...]:
    """The ``n`` teachers a run of ``(model_config, train_config)`` trains inside
    (:func:`trainer.train.train_teachers`: same model, :data:`TEACHER_AUGMENT`, seeds
    ``seed * 1000 + 1 + i``, no negatives, no int8-aware step) as recipes of runs of their
    own: distilling from those runs gives the run's own teacher targets."""
    return tuple((model_config, replace(train_config, teachers=0, teacher_folds=False,
                                        distill=0.0, distill_views=False,
                                        distill_uncropped=False,
                                        augment=TEACHER_AUGMENT,
                                        seed=train_config.seed * 1000 + 1 + i,
                                        outlier_exposure=0.0, qat_epochs=0))
                 for i in range(n))


#: the most accurate float model of the paper family (m = 2, kernel 15; 83.5 % on grouped
#: split 0, 23 MB as int8): a teacher, never a flight model
PAPER_M2_K15 = replace(PAPER_DEFAULT, pool_size=2, kernel_size=15)
_EARLY = FLIGHT_FULL_POSITIONS

#: recipe -> teacher recipes trained first, each as a run of the split
#: (``<folder>/teacher<i>``), and distilled through ``train_run(teachers=...)`` (the mean of
#: their probabilities on the clean training spectra). ``flight-kd-m2``: issue 11's "stronger
#: teacher": the default's own three teachers plus the paper m = 2 kernel-15 model (trained
#: 2026-12-05 and rejected on validation: docs/parts/flight.md, "A stronger teacher")
TEACHER_RUNS: dict[str, tuple[tuple[ModelConfig, TrainConfig], ...]] = {
    "flight-kd-m2": (*flight_teachers(TrainConfig(), _EARLY),
                     (PAPER_M2_K15, PAPER_FAMILY_TRAIN)),
}
# the student as train_run records it when given teacher runs (teachers=0, distill kept)
RECIPES["flight-kd-m2"] = (_EARLY, replace(TrainConfig(), teachers=0))

#: recipe -> pretraining objective: the run (its teachers and student) starts from the
#: split's self-supervised backbone ``<--backbones>/flight-OBJ-s<split seed>``
#: (``ramanedge pretrain --objective OBJ --split-seed S``; grouped splits only).
#: ``flight-pre``: issue 11's accuracy from every RRUFF spectrum, the default recipe from
#: the Barlow Twins backbone of issue 17 (15 epochs)
BACKBONE_OF = {"flight-pre": "barlow"}
RECIPES["flight-pre"] = (_EARLY, TrainConfig())

#: a recipe whose float training is another recipe's: its float run is reused (training is
#: deterministic on one machine, so this equals training it again) and only the int8-aware
#: fine-tuning runs on top
FLOAT_OF = {"flight": "flight-ptq", "flight-v1": "flight-v1-ptq"}
# a recipe from a backbone trains its float run itself, teachers inside: it neither reuses
# another recipe's float run nor takes teacher runs (neither would start from the backbone)
if set(BACKBONE_OF) & (set(TEACHER_RUNS) | set(FLOAT_OF) | set(FLOAT_OF.values())):
    raise RuntimeError("a BACKBONE_OF recipe must not be in TEACHER_RUNS or FLOAT_OF")


def finetune_from_float_run(float_run: Path, out: Path, train_config: TrainConfig) -> Path:
    """Write the run ``train_run`` would write with ``train_config`` (int8-aware fine-tune on)
    from the finished float run ``float_run`` of the same recipe without it."""
    from trainer.run import (
        DataConfig,
        background_files,
        int8_finetune,
        load_run,
        read_background_unit,
        run_negatives,
        write_run,
    )
    from trainer.train import TrainResult

    r = load_run(float_run)
    metrics = json.loads((float_run / "metrics.json").read_text())
    history = json.loads((float_run / "history.json").read_text())
    result = TrainResult(model=r.model, history=history, best_epoch=metrics["best_epoch"],
                         epochs_run=metrics["epochs_run"], seconds=metrics["train_seconds"],
                         teachers=r.config.get("teachers", []),
                         background=read_background_unit(float_run))
    d = r.config["data"]
    data = DataConfig(root=d["root"], dataset=d["dataset"], min_spectra=d["min_spectra"],
                      split=d["split"], split_seed=d["split_seed"], cache_dir=d.get("cache_dir"),
                      minerals=d.get("minerals"))
    extra: dict = {}
    # as train_run does: the fine-tune sees the negatives too
    negatives, files = run_negatives(data, r.dataset, train_config, extra)
    qres, qcfg, models, info = int8_finetune(result, r.dataset, r.split, r.model_config,
                                             train_config, negatives=negatives, log=None)
    files.update(background_files(qres, train_config, extra))
    extra.update({"qat": info, "float_run": str(float_run.resolve())})
    if r.config.get("teachers"):
        extra["teachers"] = r.config["teachers"]
    write_run(out, r.dataset, r.split, data, qcfg, train_config, qres, extra_config=extra,
              extra_models=models, extra_files=files)
    return out


def trained_with(run: Path, model_config: ModelConfig, train_config: TrainConfig,
                 backbone: Path | None = None, holdout: float | None = None) -> bool:
    """Whether the run folder ``run`` was trained as ``model_config`` with ``train_config``
    from ``backbone``, keeping the share ``holdout`` of its validation specimens out of its
    choices (:data:`CALIBRATION_HOLDOUT`; ``None``: none) (a finished run of another recipe,
    e.g. from before a default changed, must not be reported as this one; the int8-aware
    run records its folded twin, ``act_quant``)."""
    from trainer.run import HOLDOUT_KEY

    saved = json.loads((run / "config.json").read_text())
    if (saved.get(HOLDOUT_KEY) or {}).get("share") != holdout:
        return False
    model = replace(ModelConfig.from_dict(saved["model"]), act_quant=False)
    source = saved.get("backbone") or {}
    if backbone is None:
        same_start = not source
    else:  # the same folder, holding the same weights as when the run started
        from ramanedge.fsutil import sha256_file

        same_start = (source.get("folder") == str(backbone.resolve())
                      and source.get("sha256") == sha256_file(backbone / "backbone.npz"))
    return (model == model_config and TrainConfig.from_dict(saved["train"]) == train_config
            and same_start)


def rover_shift_top1(artifact: Path, X: np.ndarray, y: np.ndarray,
                     shifts: tuple[int, ...] = (0, 15, 30)) -> dict[str, float]:
    """Top-1 of the artifact's rover path (the network alone) at each shift (mean of +s and
    -s)."""
    from benchmarks.accuracy import tflite_predict
    from edge_runtime.artifact import load_artifact

    art = load_artifact(artifact)
    # the network's rows: no spectral library (this benchmark exports none; a library that
    # held the validation spectra would answer them with themselves)
    predict = tflite_predict(art.model_path, artifact=artifact, library=False)
    from ramanedge.grid import shift_spectra

    out = {}
    for s in shifts:
        dirs = [0] if s == 0 else [s, -s]
        out[str(s)] = float(np.mean([np.mean(predict(shift_spectra(X, d)).argmax(1) == y)
                                     for d in dirs]))
    return out


def recipe_backbone(recipe: str, kind: str, seed: int, backbones: Path) -> Path | None:
    """The pretraining folder a split of ``recipe`` starts from (``None``: from scratch)."""
    obj = BACKBONE_OF.get(recipe)
    if obj is None:
        return None
    if kind != "grouped":
        raise click.ClickException(f"recipe {recipe} starts from a backbone pretrained for a "
                                   f"grouped split; got the {kind} split (pass --random '')")
    folder = backbones / f"{_EARLY.arch}-{obj}-s{seed}"
    if not (folder / "pretrain.json").is_file():
        raise click.ClickException(f"{folder} is not a pretraining (no pretrain.json); run "
                                   f"ramanedge pretrain --objective {obj} --epochs 15 "
                                   f"--stem-stride {_EARLY.stem_stride} "
                                   f"--split-seed {seed} --out {folder}")
    return folder


def evaluate_split(data_root: Path, kind: str, seed: int, recipe: str, out: Path,
                   log=click.echo, backbones: Path = Path("runs/pretrain")) -> dict:
    """Train, export (default gate) and measure one split; returns its JSON row."""
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run
    from quantize.gate import ParityGateError
    from trainer.run import DataConfig, load_run, train_run

    mc, tc = RECIPES[recipe]
    backbone = recipe_backbone(recipe, kind, seed, backbones)
    data = DataConfig(root=str(data_root), split=kind, split_seed=seed)
    folder = out / f"{recipe}-{kind}{seed}"
    t0 = time.perf_counter()
    run = folder / "run"
    base = out / f"{FLOAT_OF.get(recipe, '')}-{kind}{seed}" / "run"
    if recipe in REFIT_OF and not (run / "metrics.json").is_file():
        from trainer.run import refit_run

        base = out / f"{REFIT_OF[recipe]}-{kind}{seed}" / "run"
        if not (base / "metrics.json").is_file():
            raise click.ClickException(f"{recipe} refits the {REFIT_OF[recipe]} run of the "
                                       f"same split, and {base} has none; run --recipe "
                                       f"{REFIT_OF[recipe]} into {out} first")
        if not trained_with(base, *RECIPES[REFIT_OF[recipe]][:2], backbone,
                            CALIBRATION_HOLDOUT.get(REFIT_OF[recipe])):
            raise click.ClickException(f"{base} was trained with another recipe than today's "
                                       f"{REFIT_OF[recipe]!r}; remove it or choose another "
                                       "--out")
        refit_run(base, run, data_root=data_root, overwrite=True, log=None,
                  holdout=REFIT_HOLDOUT.get(recipe, 0.0))
    elif (run / "metrics.json").is_file():
        from trainer.run import REFIT_KEY

        refit = json.loads((run / "config.json").read_text()).get(REFIT_KEY)
        held = ((refit or {}).get("holdout") or {})
        if (not trained_with(run, mc, tc, backbone, CALIBRATION_HOLDOUT.get(recipe))
                or (refit is not None) != (recipe in REFIT_OF)
                or held.get("share") != REFIT_HOLDOUT.get(recipe)
                or held.get("seed", 0) != 0):
            raise click.ClickException(f"{run} was trained with another recipe than today's "
                                       f"{recipe!r}; remove it or choose another --out")
    elif (recipe in FLOAT_OF and (base / "metrics.json").is_file()
          and trained_with(base, mc, replace(tc, qat_epochs=0))):
        finetune_from_float_run(base, run, tc)
    else:
        teachers = []
        for i, (tmc, ttc) in enumerate(TEACHER_RUNS.get(recipe, ())):
            t = folder / f"teacher{i}"
            if not ((t / "metrics.json").is_file() and trained_with(t, tmc, ttc)):
                train_run(t, data, tmc, ttc, overwrite=True, log=None)
            teachers.append(t)
        train_run(run, data, mc, tc, teachers=tuple(teachers), backbone=backbone,
                  overwrite=True, log=None,
                  calibration_holdout=CALIBRATION_HOLDOUT.get(recipe, 0.0))
    train_s = time.perf_counter() - t0
    art = folder / "model"
    gate_error = None
    try:
        res = quantize_run(run, art, config=QuantizeConfig(
            overwrite=True, exemplars_per_class=DEFAULT_PER_CLASS), log=lambda _m: None)
    except ParityGateError as e:
        gate_error = str(e)
        res = quantize_run(run, art, config=QuantizeConfig(
            overwrite=True, allow_accuracy_drop=True, exemplars_per_class=DEFAULT_PER_CLASS),
            log=lambda _m: None)
    metrics = json.loads((run / "metrics.json").read_text())
    r = load_run(run, load_model=False)
    Xte, yte = r.subset("test")
    rover = rover_shift_top1(art, Xte, yte)
    rover_val = rover_shift_top1(art, *r.subset("val"))  # what a choice may look at
    head = res.manifest.data["metrics"]["head"]
    n_classes = len(r.labels)
    float_model = metrics.get("extra_models", {}).get("model_float.keras", {})
    agree_float = None
    if (run / "model_float.keras").is_file():  # int8 vs the float model before fine-tuning
        from benchmarks.accuracy import tflite_predict
        from trainer.model import load_keras_model
        from trainer.train import predict_probs

        before = predict_probs(load_keras_model(run / "model_float.keras"), Xte).argmax(1)
        int8 = tflite_predict(art / MODEL_FILE, artifact=art, library=False)(Xte).argmax(1)
        agree_float = float(np.mean(before == int8))
    row = {
        "recipe": recipe, "split": kind, "split_seed": seed, "n_test": int(len(yte)),
        "float_before_qat": float_model.get("test_top1"),
        "agreement_with_float_before_qat": agree_float,
        "float_top1": metrics["test"]["top1"],
        "float_15": metrics["test"]["shifts"]["15"]["top1"],
        "float_30": metrics["test"]["shifts"]["30"]["top1"],
        "val_top1": metrics["val"]["top1"],
        "int8_0": rover["0"], "int8_15": rover["15"], "int8_30": rover["30"],
        **{f"val_int8_{k}": v for k, v in rover_val.items()},
        "gate_passed_default": gate_error is None, "gate_error": gate_error,
        "agreement": head["agreement"], "drop_points": head["drop_points"],
        "tflite_bytes": (art / MODEL_FILE).stat().st_size,
        "flight_bytes": sum((art / f).stat().st_size for f in res.manifest.flight_files),
        "params": count_params(mc, n_classes), "macs": count_macs(mc, n_classes),
        "train_s": round(train_s, 1), "date": time.strftime("%Y-%m-%d"),
    }
    if metrics.get("val_in_training"):
        row["val_in_training"] = True  # a full refit: its validation spectra trained it
    log(f"{recipe} {kind}{seed}: float {100 * row['float_top1']:.1f}  int8 "
        f"{100 * rover['0']:.1f} / {100 * rover['15']:.1f} / {100 * rover['30']:.1f}  "
        f"agreement {100 * row['agreement']:.2f}%  gate "
        f"{'passed' if gate_error is None else 'FAILED'}  ({train_s:.0f} s)")
    return row


def backfill_val_shifts(out: Path, log: Callable[[str], Any] = click.echo) -> int:
    """Add ``val_int8_0/15/30`` (the rover path's validation top-1 at 0 / ±15 / ±30 cm-1,
    written by :func:`evaluate_split` since 2026-12-05) to the rows of ``out/eval.jsonl``
    that lack them, from each split's folder; the file is replaced whole, only once every
    row is computed. Returns the number of rows filled."""
    from ramanedge.fsutil import atomic_write_text
    from trainer.run import load_run

    jl = out / "eval.jsonl"
    if not jl.is_file():
        raise click.ClickException(f"no evaluation rows in {out} (expected {jl.name}, "
                                   "written by a run of this command)")
    rows = [json.loads(line) for line in jl.read_text().splitlines() if line]
    todo = [(r, out / f"{r['recipe']}-{r['split']}{r['split_seed']}") for r in rows
            if "val_int8_30" not in r]
    for _r, folder in todo:  # every folder checked before minutes of work on the first
        for part in ("model", "run/split.csv"):
            if not (folder / part).exists():
                raise click.ClickException(f"{folder / part} is missing: cannot add the "
                                           "validation shifts of that row")
    n = 0
    for r, folder in todo:
        run = load_run(folder / "run", load_model=False)
        r.update({f"val_int8_{k}": v
                  for k, v in rover_shift_top1(folder / "model", *run.subset("val")).items()})
        n += 1
        log(f"{folder.name}: validation @0/15/30 "
            f"{r['val_int8_0']:.1%} / {r['val_int8_15']:.1%} / {r['val_int8_30']:.1%}")
    if n:
        atomic_write_text(jl, "".join(json.dumps(r) + "\n" for r in rows))
    return n


def summary(rows: list[dict]) -> str:
    """Markdown: mean +- s.d. per recipe and split kind."""
    out = ["| recipe | split | n splits | float top-1 | int8 top-1 @0 | @15 | @30 | agreement "
           "(min) | max drop pts | gate passed (default) | model.tflite B |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        for kind in ("grouped", "random"):
            rs = [r for r in rows if r["recipe"] == recipe and r["split"] == kind]
            if not rs:
                continue
            ms = partial(format_mean_sd_pct, rs)
            out.append(
                f"| {recipe} | {kind} | {len(rs)} | {ms('float_top1')} | {ms('int8_0')} | "
                f"{ms('int8_15')} | {ms('int8_30')} | "
                f"{100 * min(r['agreement'] for r in rs):.2f} % | "
                f"{max(r['drop_points'] for r in rs):.2f} | "
                f"{sum(r['gate_passed_default'] for r in rs)}/{len(rs)} | "
                f"{rs[0]['tflite_bytes']:,} |")
    return "\n".join(out)


@click.command()
@one_line_errors
@data_root_option
@click.option("--recipe", type=click.Choice(list(RECIPES)), default="flight", show_default=True)
@click.option("--grouped", default="0,1,2,3,4", show_default=True, help="Grouped split seeds.")
@click.option("--random", "random_seeds", default="0", show_default=True,
              help="Random (per-spectrum) split seeds ('' for none).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/flight/eval"), show_default=True)
@click.option("--summary", "only_summary", is_flag=True, help="Print the table of --out only.")
@click.option("--backbones", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/pretrain"), show_default=True,
              help="Folder of the pretrainings a recipe starts from (flight-pre: "
                   "flight-barlow-sSEED).")
@click.option("--val-shifts", "val_shifts", is_flag=True,
              help="Add the validation top-1 at 0/15/30 cm-1 to the rows of --out that "
                   "lack it (written before 2026-12-05), then print the table.")
def main(data_root, recipe, grouped, random_seeds, out, only_summary, backbones,
         val_shifts) -> None:
    """Train + export + rover-path evaluation of a recipe over several splits."""
    jl = out / "eval.jsonl"
    if val_shifts:
        backfill_val_shifts(out)
    if not (only_summary or val_shifts):
        todo = [("grouped", s) for s in comma_list(grouped, "--grouped")]
        todo += [("random", s) for s in comma_list(random_seeds, "--random")]
        out.mkdir(parents=True, exist_ok=True)
        done = set()
        if jl.is_file():  # resume: a split already measured is not trained again
            done = {(r["recipe"], r["split"], r["split_seed"])
                    for r in (json.loads(line) for line in jl.read_text().splitlines() if line)}
        for kind, seed in todo:  # every backbone found before the first split trains
            if (recipe, kind, seed) not in done:
                recipe_backbone(recipe, kind, seed, backbones)
        for kind, seed in todo:
            if (recipe, kind, seed) in done:
                click.echo(f"{recipe} {kind}{seed}: already in {jl}, kept")
                continue
            row = evaluate_split(data_root, kind, seed, recipe, out, backbones=backbones)
            with jl.open("a") as f:
                f.write(json.dumps(row) + "\n")
    if not jl.is_file():
        raise click.ClickException(f"no evaluation rows in {out} (expected {jl.name}; run "
                                   "without --summary first)")
    rows = [json.loads(line) for line in jl.read_text().splitlines() if line]
    click.echo(summary(rows))


if __name__ == "__main__":
    main()
