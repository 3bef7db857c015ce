"""Run folders: train a model on a data set and split, write it, and load it back.

A run folder (``runs/NAME/``) holds ``model.keras``, ``labels.json`` (output order),
``config.json`` (``{"model", "train", "data", "split_sha256", ...}``), ``split.csv``
(``path,split`` as written by :mod:`ramanedge.splits`), ``metrics.json``, ``history.json`` and
``confusion.png``. :func:`train_run` writes it atomically (built in a temporary sibling folder
and renamed into place, so a failed or interrupted run never leaves a half-written run and
never destroys an existing one). :func:`load_run` gives everything back, including the data
set and the split, which ``quantize`` uses for calibration (train) and parity (test).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import DataError, ModelError
from ramanedge.fsutil import atomic_write_text
from ramanedge.splits import UNUSED, specimen_groups
from trainer.model import ModelConfig, count_params, flatten_size, load_keras_model
from trainer.train import TrainConfig

RUN_FILES = ("model.keras", "labels.json", "config.json", "split.csv")
SPLITS = ("train", "val", "test")
LABELLED_FILE = "labelled.csv"
"""Run file of a few-label run (:func:`trainer.ssl.ssl_train_run`): ``path,labelled`` (1 or
0) for each training spectrum; read back by :meth:`Run.labelled_mask`."""
SPLIT_KINDS = ("grouped", "random")


class RunError(ModelError):
    """A run folder is missing, incomplete, or does not match its data."""


@dataclass(frozen=True)
class DataConfig:
    """Which data set and split a run trains on (stored under ``"data"`` in config.json)."""

    root: str
    dataset: str = "rruff-raw"
    min_spectra: int = 8
    split: str = "grouped"
    split_seed: int = 0
    split_file: str | None = None
    cache_dir: str | None = None
    minerals: tuple[str, ...] | None = None
    """Keep only these minerals (tests, small experiments); ``None`` = all."""

    def __post_init__(self) -> None:
        if self.split_file is None and self.split not in SPLIT_KINDS:
            raise ValueError(f"split must be one of {', '.join(SPLIT_KINDS)}, got {self.split!r}")
        if self.minerals is not None:
            object.__setattr__(self, "minerals", tuple(self.minerals))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["minerals"] = None if self.minerals is None else list(self.minerals)
        return d


@dataclass(frozen=True)
class Run:
    """A trained run, loaded back: model, labels, configs, data set and split."""

    path: Path
    model: Any = field(repr=False)
    labels: list[str] = field(repr=False)
    model_config: ModelConfig
    train_config: TrainConfig
    config: dict = field(repr=False)
    dataset: Any = field(repr=False)
    split: np.ndarray = field(repr=False)

    def subset(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of the ``"train"``, ``"val"`` or ``"test"`` part of the split."""
        if name not in SPLITS:
            raise ValueError(f"split name must be one of {', '.join(SPLITS)}, got {name!r}")
        mask = self.split == name
        return self.dataset.X[mask], self.dataset.y[mask]

    def labelled_mask(self) -> np.ndarray:
        """Which training spectra (in :meth:`subset` ``"train"`` order) the run was given
        labels for: all, or, for a few-label run (``labelled.csv``, written by
        :func:`trainer.ssl.ssl_train_run`), the labelled ones. :class:`RunError` if
        ``labelled.csv`` does not mark each of this split's training spectra 0 or 1."""
        paths = [str(q) for q in np.asarray(self.dataset.paths, dtype=object)[
            self.split == "train"]]
        p = self.path / LABELLED_FILE
        if not p.is_file():
            return np.ones(len(paths), dtype=bool)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()[1:]
            flags = {path: int(v) for path, v in (ln.rsplit(",", 1) for ln in lines if ln)}
        except (OSError, ValueError) as e:
            raise RunError(f"{p} is not a path,labelled table: {e}") from None
        if set(paths) != set(flags) or not set(flags.values()) <= {0, 1}:
            raise RunError(f"{p} does not mark each of the split's {len(paths)} training "
                           "spectra 0 or 1; was the run folder modified?")
        return np.array([flags[q] == 1 for q in paths], dtype=bool)


# ---------------------------------------------------------------- data and split helpers

def load_data(data: DataConfig, log: Callable[[str], None] | None = None):
    """Build (or read from cache) the data set named in ``data``."""
    from ramanedge.dataset import build_dataset

    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; expected the "
                        "RRUFF data root (e.g. ../shared/data/rruff)")
    kw: dict[str, Any] = {"min_spectra": data.min_spectra}
    if data.cache_dir is not None:
        kw["cache_dir"] = data.cache_dir
    if data.minerals is not None:
        kw["minerals"] = list(data.minerals)
    ds = build_dataset(root, data.dataset, **kw)
    if log is not None:
        log(f"data set {data.dataset}: {len(ds.y)} spectra, {len(ds.labels)} minerals "
            f"(>= {data.min_spectra} spectra each)")
    return ds


def make_or_read_split(ds, data: DataConfig,
                       log: Callable[[str], None] | None = None) -> np.ndarray:
    """The split array (``"train"/"val"/"test"`` per spectrum, ``""`` = ``UNUSED``) for ``ds``.

    A split file may name a subset of the data set and may lack a ``val`` part: then one is
    carved from its train part (grouped by specimen, seed ``data.split_seed``;
    :func:`ramanedge.splits.complete_split`), and ``log`` gets one line saying so.
    """
    from ramanedge.splits import complete_split, make_split, read_split_csv

    if data.split_file is not None:
        p = Path(data.split_file)
        if not p.is_file():
            raise DataError(f"split file {p} does not exist; expected a CSV with columns "
                            "path,split")
        split, notes = complete_split(ds, read_split_csv(p, ds), seed=data.split_seed)
        for note in notes:
            if log is not None:
                log(note)
    else:
        split = np.asarray(make_split(ds, kind=data.split, seed=data.split_seed))
    check_split(split, ds.y)
    return split


def check_split(split: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`DataError` unless the split has one valid entry per spectrum (``""`` =
    not used), non-empty train/val/test parts, and no test class that is absent from
    training."""
    split = np.asarray(split)
    if split.shape != (len(y),):
        raise DataError(f"split has {split.shape[0] if split.ndim else 0} entries but the data "
                        f"set has {len(y)} spectra")
    bad = sorted(set(map(str, np.unique(split))) - set(SPLITS) - {UNUSED})
    if bad:
        raise DataError(f"split contains unknown parts {bad}; expected train/val/test")
    for name in SPLITS:
        if not np.any(split == name):
            raise DataError(f"split has no '{name}' spectra")
    unseen = set(np.unique(y[split == "test"])) - set(np.unique(y[split == "train"]))
    if unseen:
        raise DataError(f"{len(unseen)} test classes have no training spectrum")


# ---------------------------------------------------------------- training a run

def check_output_folder(out: Path, overwrite: bool) -> None:
    """Raise :class:`RunError` unless ``out`` is absent, empty, or may be overwritten."""
    if out.exists() and not out.is_dir():
        raise RunError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunError(f"output folder {out} already exists and is not empty; choose another "
                       "--out or pass --overwrite")


def start_run(out: str | os.PathLike, data: DataConfig, *, overwrite: bool,
              log: Callable[[str], None] | None = None,
              report: Callable[[str], None] | None = None) -> tuple[Path, Any, np.ndarray]:
    """The start of every run (:func:`train_run`, :func:`trainer.ssl.ssl_train_run`):
    ``(out, data set, split)``.

    Checks the output folder first (:func:`check_output_folder`, before any work), then
    loads the data set (``log`` gets its size) and makes or reads the split (``report``,
    default ``log``, gets what a split file changed: a quiet CLI still says it).
    """
    out = Path(out)
    check_output_folder(out, overwrite)
    ds = load_data(data, log)
    split = make_or_read_split(ds, data, log=report if report is not None else log)
    return out, ds, split


def say_written(say: Callable[[str], None] | None, out: Path, test: dict[str, Any],
                result: Any) -> None:
    """The end of every run: its test top-1/top-3 (and at 15 and 30 cm-1 shifts), epochs,
    training time, and where it was written, as two lines to ``say``."""
    if say is None:
        return
    sh = test["shifts"]
    say(f"test: top-1 {100 * test['top1']:.1f}%  top-3 {100 * test['top3']:.1f}%  "
        f"shift 15: {100 * sh['15']['top1']:.1f}%  shift 30: {100 * sh['30']['top1']:.1f}%  "
        f"(n={test['n']}, {result.epochs_run} epochs, {result.seconds:.0f} s)")
    say(f"run written to {out}")


def _install(tmp: Path, out: Path) -> None:
    """Move the finished run folder ``tmp`` to ``out`` (replacing an old run only now)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def train_run(
    out: str | os.PathLike,
    data: DataConfig,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    teachers: tuple[str | os.PathLike, ...] = (),
    backbone: str | os.PathLike | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
    report: Callable[[str], None] | None = None,
    calibration_holdout: float | None = 0.0,
) -> Path:
    """Train on ``data``'s train split (val for early stopping), evaluate on test, write the run.

    ``log`` receives the progress lines; ``report`` (default: ``log``) the final test result
    and where the run was written, so a quiet CLI still says what it produced.

    ``teachers``: run folders trained on the *same* split (same data set and split hash);
    their mean probabilities on the clean training spectra become the distillation targets
    (``train_config.distill``, 0.5 when left at 0). ``backbone``: a ``ramanedge pretrain``
    folder; the student and the teachers this run trains start from its weights (the
    int8-aware fine-tune continues the student as always), and ``config.json["backbone"]``
    records its source. Its corpus must have left out this split's validation and test
    specimens (:class:`trainer.ssl.SSLOptionError` otherwise). Returns the run folder. Raises
    :class:`RunError` when ``out`` is a non-empty folder and ``overwrite`` is false (checked
    before any work) or a teacher does not match, :class:`DataError` for unusable data.

    ``calibration_holdout`` (0 <= h < 1): the validation specimens a later ``refit_run(...,
    holdout=h)`` of this run will hold out (:func:`refit_holdout`, seed 0) stay out of every
    choice this run makes on validation (the epochs each network keeps), so that the refit's
    held-out specimens are ones neither network chose on: the two can be compared there, and
    the refit calibrated there, without a selection advantage for this run. They stay in the
    run's validation part (``split.csv``, the figures in ``metrics.json``, ``ramanedge
    quantize``'s calibration); ``config.json["calibration_holdout"]`` records them. ``None``
    (``ramanedge train``'s default for the default recipe): :func:`auto_calibration_holdout`,
    and none for a run given ``teachers`` or a ``backbone`` (:func:`refit_run` refuses both).
    """
    from trainer.train import train_model

    if calibration_holdout is not None and not (
            isinstance(calibration_holdout, (int, float)) and 0.0 <= calibration_holdout < 1.0):
        raise RunError(f"calibration_holdout must be a share of the validation specimens in "
                       f"[0, 1), got {calibration_holdout!r}")
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    say = report if report is not None else log
    if teachers and train_config.teacher_folds:  # before start_run touches ``out``
        raise RunError("teacher_folds cross-fits the teachers a run trains itself; "
                       "teacher runs given with --teacher cannot be cross-fitted")
    weights = meta = None
    if backbone is not None:  # checked before the data load
        from trainer.ssl import check_backbone

        weights, meta = check_backbone(backbone, model_config)
    out, ds, split = start_run(out, data, overwrite=overwrite, log=log, report=say)
    n_classes = len(ds.labels)
    tr, va, te = (split == s for s in SPLITS)
    extra: dict[str, Any] = {}
    chooses_on = split  # the split every choice on validation reads
    if calibration_holdout is None and (teachers or backbone is not None):
        calibration_holdout = 0.0  # refit_run refuses such runs: nothing to hold out for
    if calibration_holdout is None or calibration_holdout > 0:
        groups = specimen_groups(ds)  # what a holdout draws whole
    if calibration_holdout is None:
        calibration_holdout, why = auto_calibration_holdout(split, groups)
        if why is not None and log is not None:
            log(why)
    if calibration_holdout > 0:
        held = refit_holdout(split, groups, calibration_holdout, seed=0)
        chooses_on = np.where(held, UNUSED, split)
        va = chooses_on == "val"
        extra[HOLDOUT_KEY] = {"share": float(calibration_holdout), "seed": 0,
                              "unit": holdout_unit(split, groups),
                              "specimens": int(len(set(groups[held]))),
                              "spectra": int(held.sum())}
    if meta is not None:
        from trainer.ssl import check_no_leak

        check_no_leak(meta, ds, split)
        extra["backbone"] = meta["source"]
    if log is not None:
        log(f"split: {int(tr.sum())} train / {int(va.sum())} val / {int(te.sum())} test; model "
            f"{model_config.describe()}, flatten {flatten_size(model_config)}, "
            f"{count_params(model_config, n_classes):,} parameters"
            f"{'' if meta is None else f', from the backbone {backbone}'}"
            + ("" if HOLDOUT_KEY not in extra else
               f"; {extra[HOLDOUT_KEY]['spectra']} validation spectra of "
               f"{extra[HOLDOUT_KEY]['specimens']} specimens kept out of the epoch choice "
               "(calibration holdout)"))
    teacher = None
    given: list[Any] = []  # the teacher runs' models, for function matching
    if teachers:
        teacher = teacher_probabilities(teachers, ds, split, models=given, log=log)
        train_config = replace(train_config, teachers=0,
                               distill=train_config.distill or 0.5)
        extra["teachers"] = [str(Path(t).resolve()) for t in teachers]
    elif train_config.distill and not train_config.teachers:
        raise RunError("distill > 0 needs teachers: --teachers N or --teacher RUN_DIR")
    negatives, files = run_negatives(data, ds, train_config, extra, log=log, say=say)
    from trainer.train import ensemble_fn

    result = train_model(ds.X[tr], ds.y[tr], ds.X[va], ds.y[va], n_classes,
                         model_config, train_config, teacher_probs=teacher,
                         teacher_fn=ensemble_fn(given) if given else None,
                         negatives=negatives, backbone=weights, log=log,
                         groups=specimen_groups(ds)[tr] if train_config.teacher_folds else None)
    if result.teachers:
        extra["teachers"] = result.teachers
    models = {}
    if train_config.qat_epochs:
        result, model_config, models, extra["qat"] = int8_finetune(
            result, ds, chooses_on, model_config, train_config, negatives=negatives, log=log)
    files.update(background_files(result, train_config, extra, say=say))
    test = write_run(out, ds, split, data, model_config, train_config, result,
                     extra_config=extra, extra_models=models, extra_files=files)
    if HOLDOUT_KEY in extra and say is not None:
        say(f"next, the default path: ramanedge refit {out} --out {out}-refit (trains again "
            f"on the validation specimens it chose on; the held-out ones calibrate it)")
    say_written(say, out, test, result)
    return out


DEFAULT_CALIBRATION_HOLDOUT = 0.5
"""The default recipe's calibration holdout (``ramanedge train`` then ``ramanedge refit``;
rule (R3), 2026-12-07, ``docs/parts/flight.md``): half of the validation specimens."""


def auto_calibration_holdout(split: np.ndarray, groups: np.ndarray) -> tuple[float, str | None]:
    """``(share, why not)``: :data:`DEFAULT_CALIBRATION_HOLDOUT` where :func:`refit_holdout`
    can draw it on a split that keeps each validation specimen out of training (with at
    least 2 validation specimens); otherwise 0 and its reason, in one line. A per-spectrum
    split gets none: its holdout (by spectrum) was not chosen for the default path."""
    if holdout_unit(split, groups) == "spectrum":
        return 0.0, ("no calibration holdout: a per-spectrum split (the default path holds out "
                     "validation specimens of a grouped split only)")
    try:
        refit_holdout(split, groups, DEFAULT_CALIBRATION_HOLDOUT, seed=0)
    except RunError as e:
        return 0.0, f"no calibration holdout: {e}"
    return DEFAULT_CALIBRATION_HOLDOUT, None


HOLDOUT_KEY = "calibration_holdout"
"""``config.json`` section of a run trained with a calibration holdout (:func:`train_run`):
the share and seed of the validation specimens kept out of its choices, and their count."""
REFIT_KEY = "refit"
"""``config.json`` section of a refit run (:func:`refit_run`): its base run, the parts it
trained on and the learning rates every network followed."""
BASE_MODEL_FILE = "model_base.keras"
"""Run file of a refit run: the base run's network, kept because it never saw the
validation spectra: ``ramanedge quantize`` calibrates the refit artifact's unknown rule and
prediction sets on its validation answers (:func:`quantize.export.quantize_run`)."""


def refit_schedules(config: dict, history: dict[str, list[float]], metrics: dict,
                    where: str | os.PathLike = "the base run") -> dict[str, Any]:
    """The learning rates a refit follows, from a validated run's ``config.json``,
    ``history.json`` and ``metrics.json``: ``{"teachers": [[lr per epoch], ...],
    "student": [...], "qat": [...] or None}``, each network's rates up to (and including)
    the epoch whose weights the run kept. :class:`RunError` names what is missing (``where``:
    the base run, for the message)."""
    try:
        return _refit_schedules(config, history, metrics, where)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise RunError(f"{where}: its config.json / history.json / metrics.json do not "
                       f"record a schedule that can be followed ({type(e).__name__}: {e})"
                       ) from None


def _refit_schedules(config: dict, history: dict[str, list[float]], metrics: dict,
                     where: str | os.PathLike) -> dict[str, Any]:
    qat = config.get("qat") or {}
    qat_ran = bool(qat) and "skipped" not in qat
    best = int(qat["float_best_epoch"]) if qat_ran else int(metrics.get("best_epoch", 0))
    lr = list(history.get("lr", []))
    if not 1 <= best <= len(lr):
        raise RunError(f"{where}: history.json holds {len(lr)} learning rates, the kept epoch "
                       f"is {best}; cannot follow its schedule")
    out: dict[str, Any] = {"student": [float(v) for v in lr[:best]], "teachers": [],
                           "qat": None}
    for i, t in enumerate(config.get("teachers") or []):
        if not isinstance(t, dict):
            raise RunError(f"{where} distilled from teacher runs (--teacher); a refit trains "
                           "its teachers itself: refit a run that trained its own (--teachers N)")
        if "lr" not in t or "best_epoch" not in t:
            raise RunError(f"{where}: teacher {i + 1} has no recorded learning rates (runs "
                           "trained before 2026-12-07 keep only their epoch counts); train the "
                           "base run again")
        t_best = int(t["best_epoch"])
        if not 1 <= t_best <= len(t["lr"]):
            raise RunError(f"{where}: teacher {i + 1} kept epoch {t_best} of {len(t['lr'])}")
        out["teachers"].append([float(v) for v in t["lr"][:t_best]])
    if qat_ran:
        q_lr, q_best = list(history.get("qat_lr", [])), int(qat.get("best_epoch", 0))
        if not 1 <= q_best <= len(q_lr):
            raise RunError(f"{where}: the int8-aware fine-tune kept epoch {q_best} of "
                           f"{len(q_lr)} recorded")
        out["qat"] = [float(v) for v in q_lr[:q_best]]
    return out


def refit_run(
    base: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
    report: Callable[[str], None] | None = None,
    holdout: float | None = 0.0,
    holdout_seed: int = 0,
) -> Path:
    """Train a validated run's recipe again on its training *and* validation spectra.

    Every network the base run trained (its teachers, the float student, the int8-aware
    fine-tune) is trained again from the same seeds for exactly the epochs, and with the
    learning rates, that its counterpart chose on validation (:func:`refit_schedules`);
    nothing is chosen on the validation spectra, which are now training spectra (their
    figures in the logs and ``metrics.json["val"]`` are in-sample). The run folder has the
    base run's split (``split.csv``: test untouched; ``config.json["refit"]`` says the
    network trained on train + val) and keeps the base network as :data:`BASE_MODEL_FILE`,
    whose validation answers calibrate the refit artifact's unknown rule and prediction
    sets. The measured worth: ``docs/parts/flight.md``, "The network refit, built and measured".

    ``holdout`` (0 <= h < 1): that share of the validation specimens (of the validation
    spectra on a per-spectrum split; :func:`refit_holdout`, seeded by ``holdout_seed``) stays
    out of the refit. The refit
    then trains on the training spectra and the rest of the validation ones; its split marks
    those as training and keeps the held-out ones as its validation part, so ``ramanedge
    quantize`` calibrates its unknown rule, prediction sets and calibration spectra on
    spectra this network never saw, with this network, as for any run (no base network is
    kept or needed), and its validation figures are held-out ones.

    Refused (:class:`RunError`, before any training): a base run that is itself a refit, a
    few-label run, one started from a pretrained backbone, one distilled from ``--teacher``
    runs, or one that did not record its teachers' learning rates; a ``holdout`` outside
    [0, 1), or one on a split with fewer than 2 validation specimens (spectra, per
    spectrum; :func:`refit_holdout`). ``holdout=None`` (the
    CLI's default): the base's own calibration holdout (:func:`train_run`) with its seed,
    or 0 (a full refit) for a base without one.
    """
    from trainer.train import ensemble_fn, train_model, train_teachers

    base, out = Path(base), Path(out)
    say = report if report is not None else log
    if holdout is not None and not (isinstance(holdout, (int, float))
                                    and 0.0 <= holdout < 1.0):
        raise RunError(f"holdout must be a share of the validation specimens in [0, 1), got "
                       f"{holdout!r}")
    if out.resolve() == base.resolve():
        raise RunError(f"--out {out} is the base run itself; write the refit elsewhere")
    config = read_run_config(base)
    kept = config.get(HOLDOUT_KEY) or {}  # what the base kept out of its choices
    if holdout is None:  # the base's own, or none
        holdout, holdout_seed = float(kept.get("share", 0.0)), int(kept.get("seed", 0))
    if REFIT_KEY in config:
        raise RunError(f"{base} is itself a refit; refit its base run "
                       f"{config[REFIT_KEY].get('base')}")
    if (base / LABELLED_FILE).is_file():
        raise RunError(f"{base} is a few-label run ({LABELLED_FILE}); a refit needs every "
                       "training label")
    if config.get("backbone"):
        raise RunError(f"{base} started from a pretrained backbone; refitting such a run is "
                       "not supported")
    try:
        history = json.loads((base / "history.json").read_text(encoding="utf-8"))
        metrics = json.loads((base / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"{base}: cannot read its history.json / metrics.json: {e}") from None
    if not (isinstance(history, dict) and isinstance(metrics, dict)):
        raise RunError(f"{base}: history.json and metrics.json must each hold a JSON object")
    schedules = refit_schedules(config, history, metrics, where=base)
    try:
        base_tc = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{base / 'config.json'} has an invalid train config: {e}") from None
    if base_tc.ema and not base_tc.ema_warmup:
        raise RunError(f"{base} averaged its weights as before 2026-12-07 night (a fixed decay "
                       "from the initial weights), which is no longer trained, so its refit "
                       "cannot follow it; train the run again ('ramanedge train --ema')")
    n_teachers = base_tc.teachers if base_tc.distill > 0 else 0
    if len(schedules["teachers"]) != n_teachers:
        raise RunError(f"{base}: {len(schedules['teachers'])} teachers recorded, the recipe "
                       f"trains {n_teachers}")
    if kept and holdout > 0 and not (math.isclose(holdout, kept.get("share", -1))
                                     and holdout_seed == kept.get("seed")):
        raise RunError(f"{base} kept {kept.get('share')} of its validation "
                       f"{kept.get('unit', 'specimen')}s (seed "
                       f"{kept.get('seed')}) out of its epoch choice; refit it with that "
                       f"calibration holdout (or 0, a full refit), got {holdout:g} (seed "
                       f"{holdout_seed})")
    check_output_folder(out, overwrite)
    # the base network is kept only by a full refit (it calibrates that artifact)
    run = load_run(base, data_root=data_root, load_model=holdout == 0)
    ds, split = run.dataset, run.split
    data = run_data_config(config, data_root=data_root)
    tc = run.train_config
    mc = replace(run.model_config, act_quant=False)  # the float network trains first
    n_classes = len(ds.labels)
    tr = split == "train"
    held_info: dict[str, Any] | None = None
    unit = "specimen"
    if holdout > 0:
        va, groups = split == "val", specimen_groups(ds)
        held = refit_holdout(split, groups, holdout, seed=holdout_seed)
        unit = holdout_unit(split, groups)
        split = np.where(va & ~held, "train", split)  # what the refit trains on, as training
        held_info = {"share": float(holdout), "seed": int(holdout_seed), "unit": unit,
                     "specimens": int(len(set(groups[held]))),
                     "of_specimens": int(len(set(groups[va]))),
                     "spectra": int(held.sum()), "absorbed_spectra": int((va & ~held).sum()),
                     # whether the base chose its epochs without them (train_run's
                     # calibration_holdout): then the two compare there on equal terms
                     "base_chose_without": bool(kept)}
        if kept and kept.get("spectra") != held_info["spectra"]:
            raise RunError(f"{base} kept {kept.get('spectra')} validation spectra out of its "
                           f"choices, the holdout now draws {held_info['spectra']}: was its "
                           "split.csv or the data changed?")
    va = split == "val"  # a holdout refit: the held-out specimens only
    fit = tr | va if held_info is None else split == "train"
    n_val = int(fit.sum() - tr.sum())  # the validation spectra it trains on
    X, y, Xv, yv = ds.X[fit], ds.y[fit], ds.X[va], ds.y[va]
    if log is not None:
        log(f"refit of {base}: {int(fit.sum())} spectra (train {int(tr.sum())} + val "
            f"{n_val}); student {len(schedules['student'])} epochs, teachers "
            f"{[len(s) for s in schedules['teachers']]}, int8-aware "
            f"{0 if schedules['qat'] is None else len(schedules['qat'])} "
            + ("(validation figures below are in-sample)" if held_info is None else
               f"({held_info['spectra']} validation spectra of {held_info['specimens']} "
               f"specimens held out{'' if unit == 'specimen' else ' by spectrum'}: the "
               "figures below are theirs)"))
    extra: dict[str, Any] = {}
    negatives, files = run_negatives(data, ds, tc, extra, log=log, say=say)
    teacher, own, info = None, [], []
    if tc.distill > 0:
        groups = specimen_groups(ds)[fit] if tc.teacher_folds else None
        teacher, info = train_teachers(X, y, Xv, yv, n_classes, mc, tc, groups=groups,
                                       models=own if tc.distill_views else None,
                                       schedules=schedules["teachers"], log=log)
    result = train_model(X, y, Xv, yv, n_classes, mc, tc, teacher_probs=teacher,
                         teacher_fn=ensemble_fn(own) if own else None, negatives=negatives,
                         schedule=schedules["student"], log=log)
    result.teachers = info
    extra["teachers"] = info
    models: dict[str, Any] = {}
    if schedules["qat"] is not None:
        result, mc, models, extra["qat"] = int8_finetune(
            result, ds, split, mc, tc, negatives=negatives, schedule=schedules["qat"],
            refit_validation=held_info is None, log=log)
    files.update(background_files(result, tc, extra, say=say))
    extra[REFIT_KEY] = {"base": str(base.resolve()), "trained_on": ["train", "val"],
                        "n_fit": int(fit.sum()), "schedules": schedules}
    if held_info is None:
        models[BASE_MODEL_FILE] = run.model
    else:  # the held-out specimens calibrate this network itself: no base network needed
        extra[REFIT_KEY].update(trained_on=["train", f"val without the held-out {unit}s"],
                                holdout=held_info)
    test = write_run(out, ds, split, data, mc, tc, result, extra_config=extra,
                     extra_models=models, extra_files=files,
                     extra_metrics={"val_in_training": True} if held_info is None else None)
    say_written(say, out, test, result)
    return out


def holdout_unit(split: np.ndarray, groups: np.ndarray) -> str:
    """What a calibration holdout of ``split`` draws whole: ``"specimen"`` on a split that
    keeps each validation specimen out of its training part (a grouped split), otherwise
    ``"spectrum"`` (a per-spectrum split, which trains on spectra of its validation and test
    specimens alike, so a held-out spectrum stands where a test spectrum does)."""
    split, groups = np.asarray(split), np.asarray(groups)
    leaks = np.isin(groups[split == "train"], np.unique(groups[split == "val"])).any()
    return "spectrum" if leaks else "specimen"


def refit_holdout(split: np.ndarray, groups: np.ndarray, share: float, *,
                  seed: int = 0) -> np.ndarray:
    """Which spectra of ``split``'s validation part a refit with a calibration holdout
    leaves out (bool, one per spectrum): ``share`` of its validation units (rounded half up,
    at least one and at least one left to train on), drawn with ``seed``. The unit is
    :func:`holdout_unit`'s: on a grouped split a specimen (``groups``:
    :func:`ramanedge.splits.specimen_groups`), whose spectra stay together, so that no
    held-out specimen trains the refit; on a per-spectrum split a spectrum, drawn as that
    split draws its test spectra (a held-out spectrum's siblings may train the refit, as a
    test spectrum's train the network)."""
    split, groups = np.asarray(split), np.asarray(groups)
    if groups.shape != split.shape:
        raise RunError(f"one specimen per spectrum needed ({split.shape[0]}), got "
                       f"{groups.shape[0]}")
    va = split == "val"
    if holdout_unit(split, groups) == "spectrum":
        units, of = np.flatnonzero(va), "validation spectra (a per-spectrum split)"
        unit_of = np.arange(split.shape[0])
    else:
        units, of = np.unique(groups[va]), "validation specimens"
        unit_of = groups
    if len(units) < 2:
        raise RunError(f"a calibration holdout needs at least 2 {of}, the split has "
                       f"{len(units)}")
    n = min(max(1, int(np.floor(share * len(units) + 0.5))), len(units) - 1)
    chosen = np.random.default_rng(seed).choice(units, size=n, replace=False)
    return va & np.isin(unit_of, chosen)


UNKNOWN_MINERALS_FILE = "unknown_minerals.json"
"""Run file of an outlier-exposure run: which rare minerals were its negatives and which are
kept for the unknown-mineral evaluation (:func:`ramanedge.splits.unknown_halves`)."""


BACKGROUND_UNIT_FILE = "background_unit.json"
"""Run file of a background-class run (:attr:`TrainConfig.background_class`): the background
unit beside the K-class head, ``{"kernel": [D floats], "bias": float}``; its logit on the
head's input ``f`` (the ``features`` layer) is ``f @ kernel + bias``."""


def background_unit_json(kernel: np.ndarray, bias: float) -> str:
    """The text of :data:`BACKGROUND_UNIT_FILE` for a background unit ``(kernel (D,), bias)``."""
    return json.dumps({"kernel": [float(v) for v in np.asarray(kernel).reshape(-1)],
                       "bias": float(bias)}, indent=1) + "\n"


def background_files(result: Any, train_config: TrainConfig, extra: dict[str, Any],
                     *, say: Callable[[str], None] | None = None) -> dict[str, str]:
    """The run file of a finished ``TrainResult``'s background unit (empty without one);
    records it in ``extra["background_class"]``, or why there is none although
    ``train_config.background_class`` asked for one (then ``say`` gets it too)."""
    if result.background is None:
        if train_config.background_class:
            why = "no outlier-exposure negatives, so no background class was trained"
            extra["background_class"] = {"skipped": why}
            if say is not None:
                say(f"background class off: {why}")
        return {}
    extra["background_class"] = {"file": BACKGROUND_UNIT_FILE}
    return {BACKGROUND_UNIT_FILE: background_unit_json(*result.background)}


def read_background_unit(run: str | os.PathLike) -> tuple[np.ndarray, float] | None:
    """The background unit ``(kernel (D,) float64, bias)`` of a run folder, ``None`` when
    the run has none; :class:`RunError` (one line) when its file is unreadable."""
    path = Path(run) / BACKGROUND_UNIT_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        kernel = np.asarray(d["kernel"], dtype=np.float64)
        bias = float(d["bias"])
        if kernel.ndim != 1 or kernel.size == 0 or not np.all(np.isfinite(kernel)):
            raise ValueError("kernel must be a non-empty list of finite numbers")
        if not math.isfinite(bias):
            raise ValueError(f"bias must be a finite number, got {bias}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: not a background unit ({type(e).__name__}: {e}); expected "
                       '{"kernel": [numbers], "bias": number}') from None
    return kernel, bias


def run_negatives(data: DataConfig, ds: Any, train_config: TrainConfig,
                  extra: dict[str, Any], *, log: Callable[[str], None] | None = None,
                  say: Callable[[str], None] | None = None
                  ) -> tuple[np.ndarray | None, dict[str, str]]:
    """A run's outlier-exposure negatives (``None`` when ``train_config.outlier_exposure`` is
    0 or the data set has no rare minerals: then ``say`` gets why) and its run files
    (:data:`UNKNOWN_MINERALS_FILE`); records what was used in ``extra["outlier_exposure"]``."""
    if not train_config.outlier_exposure > 0:
        return None, {}
    try:
        negatives, halves = load_negatives(data, ds, log=log)
    except DataError as e:  # e.g. a data set whose every mineral is a training class
        extra["outlier_exposure"] = {"skipped": str(e)}
        if say is not None:
            say(f"outlier exposure off: {e}")
        return None, {}
    extra["outlier_exposure"] = {"file": UNKNOWN_MINERALS_FILE,
                                 "n_negative_spectra": int(len(negatives))}
    return negatives, {UNKNOWN_MINERALS_FILE: json.dumps(halves, indent=1) + "\n"}


def load_negatives(data: DataConfig, ds: Any, *, log: Callable[[str], None] | None = None
                   ) -> tuple[np.ndarray, dict[str, Any]]:
    """The outlier-exposure negatives of a run: the spectra of the *negatives* half of the
    minerals ``data``'s ``min_spectra`` drops (:func:`ramanedge.dataset.load_heldout`,
    :func:`ramanedge.splits.unknown_halves`), and the record of both halves (written to
    :data:`UNKNOWN_MINERALS_FILE`). A mineral of the training labels is never a negative."""
    from ramanedge.dataset import load_heldout
    from ramanedge.splits import UNKNOWN_HALVES_SEED, unknown_halves

    held = load_heldout(data.root, data.dataset, min_spectra=data.min_spectra,
                        cache_dir=data.cache_dir)
    names = np.asarray(held.minerals).astype(str)
    halves = unknown_halves(names, known=ds.labels)
    if not np.isin(names, halves["negatives"]).any():
        raise DataError("no spectra of minerals outside the training labels")
    mask = np.isin(names, halves["negatives"])
    if log is not None:
        log(f"outlier exposure: {int(mask.sum())} spectra of {len(halves['negatives'])} "
            f"negative minerals ({len(halves['evaluation'])} kept for evaluation)")
    record = {"seed": UNKNOWN_HALVES_SEED, "dataset": data.dataset,
              "min_spectra": data.min_spectra, **halves}
    return held.X[mask], record


def int8_finetune(result: Any, ds: Any, split: np.ndarray, model_config: ModelConfig,
                  train_config: TrainConfig, *, negatives: np.ndarray | None = None,
                  labels: np.ndarray | None = None, given: np.ndarray | None = None,
                  schedule: list[float] | None = None,
                  refit_validation: bool = True,
                  log: Callable[[str], None] | None = print
                  ) -> tuple[Any, ModelConfig, dict[str, Any], dict[str, Any]]:
    """The int8-aware fine-tuning step of a run (``train_config.qat_epochs`` > 0).

    ``result`` is the float ``TrainResult``. For a model with bounded ranges (flight:
    ReLU6 and an input floor) it returns ``(fine-tuned result, act_quant ModelConfig,
    {"model_float.keras": the float model}, summary)``, see
    :func:`trainer.qat.quantization_aware_finetune`; the float model is kept beside the run's
    model for comparison. Other models (no bounded ranges, or the screen's attention /
    depthwise branches) are returned unchanged with the reason in the summary.

    A few-label run (:func:`trainer.ssl.ssl_train_run`) passes ``labels``, the labels its
    model was fitted to per training spectrum (``-1``: seen unlabelled; the default is every
    training label), and ``given``, which of them the run was given (bool; both or neither):
    the fine-tune trains on the spectra with a label, an epoch drawing as many spectra as
    the training part holds (as few-label training does), and calibrates its grids on the
    draw ``ramanedge quantize`` will make (stratified by the given labels only,
    :func:`ramanedge.splits.calibration_indices`). The hidden labels are never read.

    ``schedule`` (a refit, :func:`refit_run`): one learning rate per epoch; the fine-tune
    trains on the training *and* validation spectra for exactly those epochs (validation is
    then only logged) and calibrates its grids on the draw ``ramanedge quantize`` makes from
    the training part alone, as for any run. ``refit_validation=False`` (a refit with a
    calibration holdout, whose ``split`` already marks what it trains on as training): the
    fine-tune trains on the training part only and its validation part is only logged.
    """
    why = None
    if model_config.activation != "relu6" or model_config.input_floor is None:
        why = ("int8-aware fine-tuning needs ReLU6 and an input floor (the flight default); "
               f"skipped for {model_config.describe()}")
    elif model_config.attention != "none" or model_config.branch_kernels:
        why = ("int8-aware fine-tuning has no form of attention or depthwise branches; "
               f"skipped for {model_config.describe()} (post-training quantisation applies)")
    if why is not None:
        if log is not None:
            log(why)
        return result, model_config, {}, {"skipped": why}
    from ramanedge.splits import DEFAULT_CALIB_SIZE, calibration_indices, select_calibration
    from trainer.qat import quantization_aware_finetune

    tr, va = split == "train", split == "val"
    float_model = result.model
    Xtr = ds.X[tr]
    fit: dict[str, Any] = {}
    if schedule is not None:
        if labels is not None:
            raise ValueError("a refit (schedule) of a few-label run is not supported")
        fit = {"calibration": Xtr[select_calibration(ds.y[tr], DEFAULT_CALIB_SIZE)],
               "schedule": list(schedule)}
        if refit_validation:
            tr = tr | va  # the refit trains on both parts
        Xtr = ds.X[tr]
    if (labels is None) != (given is None):
        raise ValueError("labels and given go together: a few-label run passes both")
    if labels is not None:  # a few-label run: its own labels, never ds.y[tr]
        y, g = np.asarray(labels), np.asarray(given)
        if y.shape != (len(Xtr),) or g.shape != (len(Xtr),) or g.dtype != bool:
            raise ValueError(f"labels and given must hold one label / one bool per training "
                             f"spectrum ({len(Xtr)}), got shapes {y.shape} and {g.shape}")
        keep = y >= 0
        fit = {"calibration": Xtr[calibration_indices(y, g, DEFAULT_CALIB_SIZE)],
               "epoch_samples": len(Xtr)}
        Xtr, ytr = Xtr[keep], y[keep]
    else:
        ytr = ds.y[tr]
    qres, qcfg, info = quantization_aware_finetune(
        float_model, Xtr, ytr, ds.X[va], ds.y[va], len(ds.labels), model_config,
        train_config, negatives=negatives, background_init=result.background, log=None,
        **fit)
    if log is not None:
        log(f"int8-aware fine-tune: validation top-1 {100 * info['val_top1_start']:.1f}% "
            f"(folded, int8 roundings) -> {100 * info['val_top1_best']:.1f}% (epoch "
            f"{info['best_epoch']} of {info['epochs']}, {info['seconds']:.0f} s)")
    qres.history = {**result.history, **{f"qat_{k}": v for k, v in qres.history.items()}}
    qres.seconds += result.seconds
    qres.teachers = result.teachers
    qres.labels = result.labels  # what the float network was fitted to (few-label runs)
    info["float_best_epoch"], info["float_epochs"] = result.best_epoch, result.epochs_run
    qres.epochs_run += result.epochs_run  # run totals; the fine-tune's own are in the summary
    qres.best_epoch = result.best_epoch
    return qres, qcfg, {"model_float.keras": float_model}, info


def teacher_probabilities(teachers: tuple[str | os.PathLike, ...], ds: Any, split: np.ndarray,
                          *, models: list[Any] | None = None,
                          log: Callable[[str], None] | None = None) -> np.ndarray:
    """Mean probabilities of the teacher runs on the training part of ``split`` (N_train, K);
    their Keras models are appended to ``models`` when given (function matching,
    :attr:`trainer.train.TrainConfig.distill_views`).

    Each teacher must have been trained on the same data set (labels) and split (sha256):
    a teacher that saw the student's validation or test spectra would leak them.
    """
    from ramanedge.splits import split_sha256
    from trainer.train import predict_probs

    want = split_sha256(ds, split)
    tr = split == "train"
    probs = []
    for t in teachers:
        t = Path(t)
        cfg = read_run_config(t)
        if REFIT_KEY in cfg:
            raise RunError(f"teacher {t} is a refit: it trained on this split's validation "
                           "spectra, which choose the student's epochs; use its base run")
        if cfg.get("split_sha256") != want or read_labels(t) != list(ds.labels):
            raise RunError(f"teacher {t} was trained on another split or label set than this "
                           "run; train teachers with the same data options and split")
        try:
            model = load_keras_model(t / "model.keras")
        except Exception as e:  # noqa: BLE001 - keras raises many types for a bad file
            raise RunError(f"cannot load teacher {t / 'model.keras'}: {e}") from None
        probs.append(predict_probs(model, ds.X[tr]))
        if models is not None:
            models.append(model)
        if log is not None:
            acc = float(np.mean(probs[-1].argmax(1) == ds.y[tr]))
            log(f"teacher {t}: train top-1 {100 * acc:.1f}%")
    return np.mean(probs, axis=0).astype(np.float32)


def write_run(
    out: Path,
    ds: Any,
    split: np.ndarray,
    data: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    result: Any,
    *,
    extra_config: dict[str, Any] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    extra_models: dict[str, Any] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Evaluate a trained model on the split's test part and write the run folder ``out``.

    The folder is built aside and renamed into place (an existing run is replaced only once
    the new one is complete). ``result`` is a ``TrainResult`` (model, history, seconds,
    epochs_run, best_epoch). The ``extra_*`` arguments let variants (e.g. semi-supervised
    runs) add config sections, metrics and text files (``extra_models``: Keras models saved
    under the given file names, e.g. the float model beside an int8-aware one and its test
    top-1 in the metrics); ``title`` heads the confusion plot
    (default ``"<dataset> test"``). Returns the test metrics.
    """
    from ramanedge.splits import split_sha256, write_split_csv
    from trainer.evaluate import evaluate_predictions, plot_confusion, topk_accuracy
    from trainer.train import predict_probs

    model = result.model
    tr, va, te = (split == s for s in SPLITS)

    def predict(X: np.ndarray) -> np.ndarray:
        return predict_probs(model, X)

    t0 = time.perf_counter()
    test = evaluate_predictions(predict, ds.X[te], ds.y[te], ds.labels)
    val_probs = predict(ds.X[va])
    metrics = {
        "split": "test",
        "test": test,
        "val": {"n": int(va.sum()), "top1": topk_accuracy(val_probs, ds.y[va], 1),
                "top3": topk_accuracy(val_probs, ds.y[va], 3)},
        "train_seconds": result.seconds,
        "eval_seconds": time.perf_counter() - t0,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "n_params": int(model.count_params()),
        "flatten_size": flatten_size(model_config),
        **(extra_metrics or {}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save(tmp / "model.keras")
        _write_json(tmp / "labels.json", list(ds.labels))
        write_split_csv(tmp / "split.csv", ds, split)
        for name, text in (extra_files or {}).items():
            atomic_write_text(tmp / name, text)
        for name, other in (extra_models or {}).items():
            other.save(tmp / name)
            metrics.setdefault("extra_models", {})[name] = {
                "test_top1": topk_accuracy(predict_probs(other, ds.X[te]), ds.y[te], 1),
                "val_top1": topk_accuracy(predict_probs(other, ds.X[va]), ds.y[va], 1)}
        data_dict = data.to_dict()
        data_dict["root"] = str(Path(data.root).resolve())
        if data.cache_dir is None:
            from ramanedge.paths import default_cache_dir

            data_dict["cache_dir"] = str(default_cache_dir().resolve())
        if data.split_file is not None:
            data_dict["split_file"] = str(Path(data.split_file).resolve())
        data_dict.update(n_spectra=int(len(ds.y)), n_classes=len(ds.labels),
                         n_train=int(tr.sum()), n_val=int(va.sum()), n_test=int(te.sum()))
        config = {
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "data": data_dict,
            "split_sha256": split_sha256(ds, split),
            **(extra_config or {}),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}",
            "versions": _versions(),
        }
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "history.json", result.history)
        _write_json(tmp / "metrics.json", metrics)
        plot_confusion(np.asarray(test["confusion"]), ds.labels, tmp / "confusion.png",
                       title=f"{title or data.dataset + ' test'}, "
                             f"top-1 {100 * test['top1']:.1f}%")
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return test


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__}


# ---------------------------------------------------------------- loading a run

def read_run_config(run_dir: str | os.PathLike) -> dict:
    """Read and check ``config.json`` of a run folder (no TensorFlow needed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} "
                       f"{'is a file' if run_dir.exists() else 'does not exist'}; expected the "
                       "output folder of 'ramanedge train'")
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a training run: missing {', '.join(missing)} "
                       "(expected the output folder of 'ramanedge train')")
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{run_dir / 'config.json'} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or not all(k in config for k in
                                               ("model", "train", "data", "split_sha256")):
        raise RunError(f"{run_dir / 'config.json'} lacks model/train/data/split_sha256")
    return config


def read_labels(run_dir: str | os.PathLike) -> list[str]:
    """The label list (model output order) of a run."""
    p = Path(run_dir) / "labels.json"
    try:
        labels = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{p} is not valid JSON: {e}") from None
    if not (isinstance(labels, list) and labels and all(isinstance(s, str) for s in labels)):
        raise RunError(f"{p} must be a non-empty JSON list of strings")
    return labels


def run_data_config(config: dict, *, data_root: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None) -> DataConfig:
    """The :class:`DataConfig` a run's ``config.json`` (``config``) records, its root and
    cache replaced by ``data_root`` / ``cache_dir`` when given (the split is read back from
    the run's ``split.csv``, so no split file is named)."""
    d = dict(config["data"])
    root = Path(data_root) if data_root is not None else Path(d.get("root", ""))
    return DataConfig(root=str(root), dataset=d.get("dataset", "rruff-raw"),
                      min_spectra=int(d.get("min_spectra", 8)),
                      split=d.get("split", "grouped"), split_seed=int(d.get("split_seed", 0)),
                      split_file=None,
                      cache_dir=(str(cache_dir) if cache_dir is not None
                                 else d.get("cache_dir")),
                      minerals=d.get("minerals"))


def load_run(
    run_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_model: bool = True,
) -> Run:
    """Load a run folder: the Keras model, labels, configs, the data set and the split.

    ``data_root`` overrides the data root recorded in config.json (e.g. on another machine).
    The data set is rebuilt (from cache) with the recorded name and ``min_spectra``; its
    labels must equal ``labels.json`` and the stored split must hash to ``split_sha256``,
    otherwise :class:`RunError` says what differs.
    """
    from ramanedge.splits import read_split_csv, split_sha256

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    labels = read_labels(run_dir)
    try:
        model_config = ModelConfig.from_dict(config["model"])
        train_config = TrainConfig.from_dict(config["train"])
    except (TypeError, ValueError, KeyError) as e:
        raise RunError(f"{run_dir / 'config.json'} has an invalid model/train config: {e}") \
            from None
    data = run_data_config(config, data_root=data_root, cache_dir=cache_dir)
    root = Path(data.root)
    ds = load_data(data)
    if list(ds.labels) != labels:
        raise RunError(f"the data set {data.dataset} at {root} has {len(ds.labels)} minerals "
                       f"that differ from the run's {len(labels)} labels (labels.json); was it "
                       "built with other data or options?")
    split = np.asarray(read_split_csv(run_dir / "split.csv", ds))
    sha = split_sha256(ds, split)
    if sha != config["split_sha256"]:
        raise RunError(f"split.csv of {run_dir} hashes to {sha[:12]}..., config.json records "
                       f"{str(config['split_sha256'])[:12]}...; the run folder was modified")
    model = None
    if load_model:
        try:
            model = load_keras_model(run_dir / "model.keras")
        except Exception as e:  # noqa: BLE001 - keras raises many types for a bad file
            raise RunError(f"cannot load {run_dir / 'model.keras'}: {e}") from None
        if int(model.output_shape[-1]) != len(labels):
            raise RunError(f"model has {model.output_shape[-1]} outputs but labels.json lists "
                           f"{len(labels)} minerals")
    return Run(path=run_dir, model=model, labels=labels, model_config=model_config,
               train_config=train_config, config=config, dataset=ds, split=split)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    part: str = "test",
    shifts: tuple[int, ...] = (0, 15, 30),
    data_root: str | os.PathLike | None = None,
    write: bool = True,
) -> dict:
    """Evaluate a run's model on one part of its split.

    With ``write`` (and ``part == "test"``), ``metrics.json`` is updated in place (the
    training-time keys and the stored figures of shifts not evaluated now are kept) and
    ``confusion.png`` redrawn. Returns the metrics dict.
    """
    from trainer.evaluate import evaluate_predictions, plot_confusion
    from trainer.train import predict_probs

    run = load_run(run_dir, data_root=data_root)
    X, y = run.subset(part)
    if len(y) == 0:
        raise RunError(f"the run's split has no '{part}' spectra")
    res = evaluate_predictions(lambda a: predict_probs(run.model, a), X, y, run.labels, shifts)
    if write and part == "test":
        p = run.path / "metrics.json"
        try:
            metrics = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        # shifts not asked for this time keep their stored figures (the same model)
        old = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
        kept = old.get("shifts") if isinstance(old.get("shifts"), dict) else {}
        metrics["test"] = {**res, "shifts": {**kept, **res.get("shifts", {})}}
        metrics["split"] = "test"
        _write_json(p, metrics)
        plot_confusion(np.asarray(res["confusion"]), run.labels, run.path / "confusion.png",
                       title=f"{run.config['data'].get('dataset', '')} test, "
                             f"top-1 {100 * res['top1']:.1f}%")
    return res


def runs_table(run_dirs: list[str | os.PathLike], shifts: tuple[int, ...] = (0, 15, 30)) -> str:
    """Markdown table of finished runs from their ``metrics.json``/``config.json`` (no TF).

    Columns: run folder name, m, n, kernel size, parameters, flatten size, top-1/top-3 at each
    shift (mean of +s and -s), epochs run, training seconds.
    """
    head = ["run", "m", "n", "k", "params", "flatten"]
    for s in shifts:
        head += [f"top-1 @{s}", f"top-3 @{s}"]
    head += ["epochs", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in run_dirs:
        d = Path(d)
        cfg = read_run_config(d)
        try:
            m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RunError(f"{d / 'metrics.json'} is missing or invalid: {e}") from None
        mc = cfg["model"]
        test = m["test"]
        cells = [d.name, str(mc["pool_size"]), str(mc["pool_layers"]), str(mc["kernel_size"]),
                 f"{m['n_params']:,}", str(m.get("flatten_size", ""))]
        for s in shifts:
            row = test["shifts"].get(str(s))
            cells += ["" if row is None else f"{100 * row['top1']:.1f}",
                      "" if row is None else f"{100 * row['top3']:.1f}"]
        cells += [str(m["epochs_run"]), f"{m['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
