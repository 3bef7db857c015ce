"""Full-int8 TFLite export of a trained model into a rover artifact folder.

:func:`export_artifact` is the core, on in-memory objects (a Keras model, arrays, labels).
It computes everything first, then writes once:

1. convert (:mod:`quantize.convert`): the two-output model ``{"probs", "features"}``, a
   SavedModel with a fixed ``(1, 1392)`` signature, post-training full-integer quantisation
   calibrated on a stratified representative set from the *training* split (plus optional
   float32/float16 comparison variants);
2. gate (:mod:`quantize.gate`): the int8 model, run through the rover's own runtime path
   (:class:`quantize.runner.TFLiteRunner`), against the float model on the held-out *test*
   split; a failing gate raises :class:`ParityGateError` and nothing is written;
3. build every section of the manifest (:mod:`ramanedge.manifest`): quantisation read back
   from the converted model, ``head.npz`` (float ``W``, ``b`` of the ``probs`` layer),
   metrics, the unknown-mineral rule calibrated on the *validation* split and, with
   ``QuantizeConfig.exemplars_per_class``, the exemplars of the training split and the
   ``knn_cosine`` rule over them (:mod:`quantize.exemplars`);
4. write every file and the manifest once into a temporary folder next to ``out_dir`` and
   rename it into place (:mod:`quantize.place`).

:func:`quantize_run` does the same from a training run folder (``ramanedge quantize``).
TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.interpreter import quantize_int8
from ramanedge.errors import DataError, ModelError
from ramanedge.grid import DEFAULT_GRID
from ramanedge.library import LibraryConfig, SpectralLibrary
from ramanedge.manifest import (
    CALIBRATION_FILE,
    EXEMPLARS_FILE,
    HEAD_DTYPES,
    HEAD_FILE,
    LIBRARY_FILE,
    MODEL_FILE,
    VARIANT_FILES,
    Manifest,
    conformal_section,
    head_section,
    library_section,
    manifest_data,
    model_section,
    quantization_section,
    unknown_section,
    variant_entry,
)
from ramanedge.splits import (  # noqa: F401 (select_calibration: re-export)
    DEFAULT_CALIB_SIZE,
    calibration_indices,
    select_calibration,
)

from .convert import convert, dual_output_model, export_saved_model, keras_outputs
from .edgetpu import read_graph
from .exemplars import build_exemplars, knn_unknown_section
from .gate import (
    MAX_TOP1_DROP_POINTS,
    MIN_AGREEMENT,
    ParityGateError,
    ParityReport,
    gate_failure,
    parity_report,
)
from .place import check_destination, write_artifact
from .runner import TFLiteRunner, cosine_rows, head_probs

GATE_PATHS = ("probs", "head")


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of one export.

    ``calib_size``: spectra in the representative set (stratified, from the training split;
    used by :func:`select_calibration`). ``also``: extra TFLite precisions to write for
    comparison (``"float32"``, ``"float16"``). The gate refuses the export when int8 top-1
    drops more than ``max_top1_drop`` points or argmax agreement is below ``min_agreement``,
    unless ``allow_accuracy_drop``. ``overwrite`` lets an existing artifact folder be replaced.
    ``unknown_target_tpr``: share of validation spectra the unknown threshold lets through.
    ``gate_on``: which int8 prediction the gate judges, and so which one the rover uses for
    its base classification (manifest ``head.base_output``): ``"head"`` (the default: the
    float ``head.npz`` applied to the dequantised int8 ``features``, the same path a retrained
    head takes) or ``"probs"`` (the model's own int8 softmax output).
    ``exemplars_per_class``: training spectra per class stored as ``exemplars.npz`` (the
    onboard retrainer's memory and the ``knn_cosine`` unknown rule's bank, which then replaces
    ``max_prob``); 0 = none. :func:`export_artifact` needs the training split for it;
    ``ramanedge quantize --exemplars`` stores 10.
    ``unknown_rule``: the rule written with exemplars: ``"knn_logit_norm"`` (default: cosine
    distance + max logit + feature norm, :mod:`edge_runtime.ood`), ``"knn_logit"`` (without
    the norm part, as exported before 2026-12-05) or ``"knn_cosine"``.
    ``conformal_level``: coverage level of the prediction sets (manifest ``conformal``,
    split-conformal on the validation split, :mod:`edge_runtime.conformal`); 0 = no sets.
    ``head_dtype``: how ``head.npz`` stores ``W``: ``"float16"`` (default: half the bytes on
    a slow uplink; the gate, the unknown calibration and the manifest's figures are computed
    with the rounded head, exactly what the rover loads) or ``"float32"``.
    ``library``: the spectral library blended into the rover's answer
    (:class:`ramanedge.library.LibraryConfig`: ``library.npz`` of the training split and the
    manifest's ``library`` section; the prediction sets are calibrated on the blended
    answer); ``None`` = none. :func:`export_artifact` needs the training split for it;
    ``ramanedge quantize`` adds it unless ``--no-library``.
    ``library_with_validation``: the library also holds the validation spectra (with
    ``val_y``): one more specimen of most minerals for the rover's match (rule (L+'') of
    2026-12-06, ``docs/parts/flight.md``, "More specimens in the library"). The validation
    spectra's own answers (the sets' and the max-prob threshold's calibration,
    ``metrics.library.val_top1``) are made with the training spectra's library, so that none
    matches itself; the rover's answers have the fuller library, so the sets are calibrated
    on answers no better than the rover's. :func:`quantize_run` turns it off for a few-label
    run (its library holds only the labels the run was given).
    """

    calib_size: int = DEFAULT_CALIB_SIZE
    seed: int = 0
    also: tuple[str, ...] = field(default=())
    max_top1_drop: float = MAX_TOP1_DROP_POINTS
    min_agreement: float = MIN_AGREEMENT
    allow_accuracy_drop: bool = False
    overwrite: bool = False
    unknown_target_tpr: float = 0.95
    gate_on: str = "head"
    exemplars_per_class: int = 0
    head_dtype: str = "float16"
    conformal_level: float = 0.95
    unknown_rule: str = "knn_logit_norm"
    library: LibraryConfig | None = None
    library_with_validation: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("head_dtype", HEAD_DTYPES), ("gate_on", GATE_PATHS),
                              ("unknown_rule", UNKNOWN_RULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got "
                                 f"{getattr(self, name)!r}")
        if self.calib_size < 1:
            raise ValueError(f"calib_size must be >= 1, got {self.calib_size}")
        if self.exemplars_per_class < 0:
            raise ValueError(f"exemplars_per_class must be >= 0, got {self.exemplars_per_class}")
        if not (self.conformal_level == 0 or 0.0 < self.conformal_level < 1.0):
            raise ValueError(f"conformal_level must be in (0, 1) (or 0 = no prediction sets), "
                             f"got {self.conformal_level}")
        also = tuple(dict.fromkeys(a.strip().lower() for a in self.also if a.strip()))
        bad = [a for a in also if a not in VARIANT_FILES]
        if bad:
            raise ValueError(
                f"unknown extra precision(s) {', '.join(bad)}; expected any of "
                f"{', '.join(VARIANT_FILES)}"
            )
        object.__setattr__(self, "also", also)


#: unknown rules an export with exemplars can write (``QuantizeConfig.unknown_rule``)
UNKNOWN_RULES = ("knn_logit_norm", "knn_logit", "knn_cosine")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_artifact` wrote and measured."""

    out_dir: Path
    manifest: Manifest
    parity: ParityReport
    gate_reason: str | None
    sizes: dict[str, int]
    seconds: float
    head_parity: ParityReport | None = None


def check_spectra(name: str, X: np.ndarray, n_points: int,
                  allow_empty: bool = False) -> np.ndarray:
    """``X`` as float32 (N, n_points), finite, non-empty; :class:`DataError` naming ``name``."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_points:
        raise DataError(f"{name} must have shape (N, {n_points}), got {X.shape}")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{name} is empty; the export needs at least one spectrum there")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{name} contains NaN or infinite values")
    return X


def _check_labels(name: str, y: Any, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{name} labels must be {n} integers, got {y.shape} {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"{name} labels must be class ids in 0..{n_classes - 1}")
    return y


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def export_artifact(
    model: Any,
    *,
    labels: list[str],
    model_config: Any,
    calib_X: np.ndarray,
    val_X: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    out_dir: str | os.PathLike,
    train_X: np.ndarray | None = None,
    train_y: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    name: str | None = None,
    training_meta: dict[str, Any] | None = None,
    config: QuantizeConfig = QuantizeConfig(),
    calibrated: dict[str, Any] | None = None,
    log: Any = None,
) -> ExportResult:
    """Quantise ``model`` to full int8, gate it against the float model, write the artifact.

    ``calib_X``: the representative set (float32 rows on the model grid, from the training
    split; see :func:`select_calibration`). ``val_X``: validation spectra (unknown-mineral
    threshold). ``test_X``/``test_y``: held-out test split for the parity gate.
    ``train_X``/``train_y``: the training split (spectra and class ids), needed when
    ``config.exemplars_per_class > 0`` (the exemplars are herded from it) and unused
    otherwise. ``val_y``: the validation spectra's class ids; with them (and
    ``config.conformal_level`` > 0) the artifact gets prediction sets calibrated on the
    validation specimens (manifest ``conformal`` + :data:`CALIBRATION_FILE`).
    ``model_config``: the ``trainer.model.ModelConfig`` (stored in the manifest).
    ``training_meta``: the manifest ``training`` section (dataset, split_sha256, run, ...).
    ``log``: optional ``callable(str)`` for progress lines. ``calibrated``: the ``unknown``
    and ``conformal`` sections to ship instead of those calibrated here (a refit network
    trained on the validation spectra, so its own answers to them are in-sample:
    :func:`quantize_run` passes those of the base network, which never saw them); each is
    marked with ``calibrated_by``.

    Every file and the manifest are computed first and written once (a temporary folder
    renamed into place). Raises :class:`ParityGateError` (nothing written, ``out_dir``
    untouched) when the gate fails and ``config.allow_accuracy_drop`` is false;
    :class:`DataError` for unusable inputs or destination; :class:`ModelError` when
    conversion fails.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    name = name or out_dir.name
    labels = [str(s) for s in labels]
    n_points = int(getattr(model_config, "input_points", DEFAULT_GRID.n_points))
    if n_points != DEFAULT_GRID.n_points:
        raise ModelError(f"model expects {n_points} points; the artifact grid has "
                         f"{DEFAULT_GRID.n_points}")
    n_out = int(model.outputs[0].shape[-1])
    if len(labels) != n_out:
        raise DataError(f"{len(labels)} labels given but the model has {n_out} outputs")
    calib_X = check_spectra("calibration set", calib_X, n_points)
    floor = getattr(model_config, "input_floor", None)
    if floor is not None:
        # the model clips its input at the floor: calibrate the int8 input on the same range,
        # so the rover's saturating quantiser clips exactly where the model does
        calib_X = np.maximum(calib_X, np.float32(floor))
    val_X = check_spectra("validation split", val_X, n_points)
    test_X = check_spectra("test split", test_X, n_points)
    test_y = _check_labels("test", test_y, test_X.shape[0], n_out)
    if val_y is not None:
        val_y = _check_labels("validation", val_y, val_X.shape[0], n_out)
    per_class = config.exemplars_per_class
    if per_class or config.library is not None:
        if train_X is None or train_y is None:
            what = (f"exemplars_per_class={per_class}" if per_class
                    else "the spectral library (QuantizeConfig.library)")
            raise DataError(f"{what} needs the training split (train_X, train_y)")
        train_X = check_spectra("training split", train_X, n_points)
        train_y = _check_labels("training", train_y, train_X.shape[0], n_out)
    check_destination(out_dir, config.overwrite)

    from trainer.qat import calibrate_act_quant, has_act_quant

    if has_act_quant(model):
        # an int8-aware model rounds on the grids this calibration gives the converter:
        # set them first, so the gate's reference is the network the int8 model computes
        calibrate_act_quant(model, calib_X)
    dual = dual_output_model(model)
    with tempfile.TemporaryDirectory(prefix="ramanedge-sm-") as smdir:
        say(f"exporting SavedModel ({len(labels)} classes)")
        export_saved_model(dual, smdir, n_points)
        say(f"converting to full int8 (calibration: {calib_X.shape[0]} training spectra)")
        blobs = {"int8": convert(smdir, "int8", calib_X)}
        for p in config.also:
            say(f"converting to {p}")
            blobs[p] = convert(smdir, p)

    graph = read_graph(blobs["int8"])
    float_ops = graph.float_ops()
    if float_ops:
        raise ModelError(
            "the int8 conversion left float ops: "
            + ", ".join(f"#{o.index} {o.op}" for o in float_ops[:5])
        )

    say(f"parity on {test_X.shape[0]} test spectra")
    ref = keras_outputs(dual, test_X)
    runner = TFLiteRunner(blobs["int8"])
    q = runner.run(test_X)
    W, b = (np.asarray(w, dtype=np.float32) for w in model.get_layer("probs").get_weights())
    W_stored = W.astype(config.head_dtype)
    W = W_stored.astype(np.float32)  # everything below judges the head the rover loads
    feat_dim = int(W.shape[0])
    # the float head on the dequantised int8 features (the rover's retrained-head path)
    hprobs = head_probs(q["features"], W, b, labels)
    parity = parity_report(ref["probs"], q["probs"], test_y)
    head_parity = parity_report(ref["probs"], hprobs, test_y)
    gated = parity if config.gate_on == "probs" else head_parity
    reason = gate_failure(gated, max_top1_drop=config.max_top1_drop,
                          min_agreement=config.min_agreement)
    if reason and config.gate_on == "head":
        reason = reason.replace("int8 parity gate", "int8 parity gate (float head on int8 "
                                "features)")
    if reason and not config.allow_accuracy_drop:
        raise ParityGateError(
            f"{reason}; nothing was written (pass --allow-accuracy-drop to write anyway)"
        )
    if reason:
        say(f"WARNING: {reason} (written anyway: --allow-accuracy-drop)")

    metrics = parity.to_metrics()
    top = q["probs"].max(axis=1, keepdims=True)
    metrics["int8_ties"] = float(np.mean(np.sum(q["probs"] == top, axis=1) > 1))
    hm = head_parity.to_metrics()
    cos = cosine_rows(ref["features"], q["features"])
    metrics["head"] = {
        "top1": hm["int8"]["top1"],
        "top3": hm["int8"]["top3"],
        "agreement": hm["agreement"],
        "drop_points": hm["drop_points"],
        "agreement_with_int8_probs": float(
            np.mean(np.argmax(hprobs, 1) == np.argmax(q["probs"], 1))
        ),
    }
    metrics["features"] = {
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
    }
    metrics["gate"] = {
        "passed": reason is None,
        "on": config.gate_on,
        "max_top1_drop": config.max_top1_drop,
        "min_agreement": config.min_agreement,
        "allow_accuracy_drop": bool(config.allow_accuracy_drop),
    }
    variants: dict[str, Any] = {}
    for p in config.also:
        vq = TFLiteRunner(blobs[p]).run(test_X)["probs"]
        variants[p] = variant_entry(
            p,
            top1=float(np.mean(np.argmax(vq, 1) == test_y)),
            agreement=float(np.mean(np.argmax(vq, 1) == np.argmax(ref["probs"], 1))),
        )

    from edge_runtime.ood import calibrate_unknown

    val_q = runner.run(val_X)
    val_probs = (val_q["probs"] if config.gate_on == "probs"
                 else head_probs(val_q["features"], W, b, labels))
    files = {MODEL_FILE: blobs["int8"], HEAD_FILE: _npz_bytes(W=W_stored, b=b)}
    library = None
    if config.library is not None:
        # held as stored (float16 rows): the calibration below sees the rover's numbers
        library = SpectralLibrary.build(train_X, train_y, len(labels), config.library)
        # the rover's answer to a validation spectrum, from a library without it
        val_probs = library.blend_batch(val_probs, val_X)
        parts = ["train"]
        if config.library_with_validation and val_y is not None:
            library = SpectralLibrary.build(np.concatenate([train_X, val_X]),
                                            np.concatenate([train_y, val_y]), len(labels),
                                            config.library)
            parts.append("val")
        files[LIBRARY_FILE] = library.npz_bytes()
        test_answer = library.blend_batch(hprobs if config.gate_on == "head" else q["probs"],
                                          test_X)
        metrics["library"] = {
            "rows": len(library.y),
            "parts": parts,
            "test_top1": float(np.mean(np.argmax(test_answer, 1) == test_y)),
            "val_top1": (None if val_y is None
                         else float(np.mean(np.argmax(val_probs, 1) == val_y)))}
        say(f"spectral library: {len(library.y)} spectra ({' + '.join(parts)}); test top-1 "
            f"of the blended answer {metrics['library']['test_top1']:.1%}")
    unknown = unknown_section(
        calibrate_unknown(val_probs, target_tpr=config.unknown_target_tpr), split="val")
    conformal = None
    if val_y is not None and config.conformal_level:
        from edge_runtime.conformal import calibrate_sets

        rule = calibrate_sets(val_probs, val_y, level=config.conformal_level)
        if calibrated is None:  # else replaced below by the given calibration
            say(f"prediction sets: level {rule['level']:.0%}, threshold "
                f"{rule['threshold']:.4f} ({rule['n_calibration']} validation spectra)")
        conformal = conformal_section(rule, split="val", with_file=True)
    if conformal is not None or (per_class and config.unknown_rule != "knn_cosine"):
        # the validation spectra's int8 features (+ class ids): the rover redoes the sets'
        # and the knn_logit rule's calibration from them after a head retrain
        codes = quantize_int8(val_q["features"], runner.outputs_q["features"])
        arrays = {"features": codes}
        if val_y is not None:
            arrays["y"] = val_y.astype(np.int32)
        files[CALIBRATION_FILE] = _npz_bytes(**arrays)
    if per_class:
        say(f"adding {per_class} exemplars per class and the knn_cosine unknown rule")
        train_features = runner.run(train_X)["features"]
        bank = build_exemplars(train_features, train_y, runner.outputs_q["features"],
                               per_class=per_class)
        logits = (None if config.unknown_rule == "knn_cosine"
                  else val_q["features"] @ W + b)  # the float head, as the rover holds it
        # its max_prob threshold (kept for reference) on the answer the rover gives
        unknown = knn_unknown_section(val_probs if library is not None else val_q["probs"],
                                      val_q["features"], bank,
                                      target_tpr=config.unknown_target_tpr, previous=unknown,
                                      val_logits=logits,
                                      norm=config.unknown_rule == "knn_logit_norm")
        if logits is not None:
            unknown["file"] = CALIBRATION_FILE
        files[EXEMPLARS_FILE] = bank.npz_bytes()
    for p in config.also:
        files[VARIANT_FILES[p]] = blobs[p]
    if calibrated is not None:
        by = calibrated.get("calibrated_by", "another network")
        if calibrated.get("unknown") is not None:
            unknown = {**calibrated["unknown"], "calibrated_by": by}
        if calibrated.get("conformal") is not None and conformal is not None:
            conformal = {**calibrated["conformal"], "calibrated_by": by}
            say(f"prediction sets shipped: threshold {conformal['threshold']:.4f}")
        # this network trained on the validation spectra: its figures on them (the library
        # blend's val_top1) are in-sample, and so are the features CALIBRATION_FILE holds,
        # from which the rover redoes the sets and a knn_logit rule after a head retrain or
        # without the library (not guaranteed then: docs/parts/flight.md, "The network refit")
        metrics["val_in_training"] = True
        say(f"unknown rule and prediction sets as calibrated by {by}")

    cfg_dict = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(
        model_config)
    data = manifest_data(
        name=name,
        labels=labels,
        model=model_section(cfg_dict, ops=graph.op_counts()),
        quantization=quantization_section(
            runner.input_q, runner.outputs_q,
            calibration={"n": int(calib_X.shape[0]), "source": "train split, stratified",
                         "seed": config.seed}),
        head=head_section(feature_dim=feat_dim, n_classes=len(labels),
                          base_output=config.gate_on, exemplars_per_class=per_class,
                          dtype=config.head_dtype),
        training=dict(training_meta or {}),
        metrics=metrics,
        unknown=unknown,
        conformal=conformal,
        library=(None if library is None
                 else library_section(config.library, rows=len(library.y), parts=parts)),
        variants=variants,
        files=list(files),
    )
    manifest = write_artifact(out_dir, files, data)
    sizes = {f: int(meta["bytes"]) for f, meta in manifest.files.items()}
    return ExportResult(out_dir, manifest, parity, reason, sizes, time.perf_counter() - t0,
                        head_parity)


def quantize_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, config: QuantizeConfig,
                 name: str | None = None, data_root: str | os.PathLike | None = None,
                 log: Any = None) -> ExportResult:
    """Load a training run folder (``trainer.run.load_run``) and export it with
    :func:`export_artifact` (what ``ramanedge quantize`` runs).

    The representative set is a stratified draw (``config.calib_size``, ``config.seed``) from
    the run's training split; with ``config.exemplars_per_class > 0`` that many exemplar
    features per class of the training split go into the artifact and the ``knn_cosine``
    unknown rule is calibrated on the validation split, all before the folder is written.
    Of a few-label run only the labels it was given are read (``Run.labelled_mask``): the
    library and the exemplars come from its labelled spectra, and the draw is stratified by
    those labels with the unlabelled spectra as one more group.
    """
    from trainer.run import REFIT_KEY, load_run

    say = log or (lambda _msg: None)
    check_destination(Path(out), config.overwrite)  # fail before the slow loading
    say(f"loading run {run_dir}")
    run = load_run(run_dir, data_root=data_root)
    Xtr, ytr = run.subset("train")
    # only the labels the run was given (a few-label run's labelled spectra) build the
    # library and the exemplars, and stratify the int8 calibration draw (its unlabelled
    # spectra as one more group): a fully labelled run draws as before
    given = run.labelled_mask()
    Xlab, ylab = Xtr[given], ytr[given]
    Xva, yva = run.subset("val")
    Xte, yte = run.subset("test")
    idx = calibration_indices(ytr, given, config.calib_size, seed=config.seed)
    if not given.all() and config.library_with_validation:
        # a few-label run's library holds the labels it was given, not the validation ones
        config = replace(config, library_with_validation=False)
    calibrated = None
    refit = run.config.get(REFIT_KEY)
    # a refit with a calibration holdout calibrates on its own held-out validation part,
    # as any run does; a full refit on its base network (refit_calibration)
    if refit is not None and not refit.get("holdout"):
        calibrated = refit_calibration(run, config, calib_X=Xtr[idx], val=(Xva, yva),
                                       test=(Xte, yte), train=(Xlab, ylab), log=say)
    training = {
        "dataset": run.config["data"].get("dataset"),
        "split_sha256": run.config["split_sha256"],
        "run": Path(run_dir).resolve().name,
        "run_created": run.config.get("created"),
        "n_train": int(len(ytr)),
        "n_val": int(len(Xva)),
        "n_test": int(len(yte)),
        "split": run.config["data"].get("split"),
        "min_spectra": run.config["data"].get("min_spectra"),
    }
    if calibrated is not None:
        training["refit"] = {
            "base": refit.get("base"),
            "trained_on": refit.get("trained_on"),
            "calibration_file": "in-sample: the validation spectra this network trained on "
                                "(a head retrain's recalibrated sets and rule are not "
                                "guaranteed)"}
    elif refit is not None:
        training["refit"] = {
            "base": refit.get("base"), "trained_on": refit.get("trained_on"),
            "holdout": refit.get("holdout"),
            "calibration_file": (
                "held out: validation spectra this network never trained on (a per-spectrum "
                "split: other spectra of the same specimens trained it, as for its test "
                "spectra)"
                if (refit.get("holdout") or {}).get("unit") == "spectrum" else
                "held out: validation specimens this network never trained on")}
    return export_artifact(
        run.model,
        labels=run.labels,
        model_config=run.model_config,
        calib_X=Xtr[idx],
        val_X=Xva,
        test_X=Xte,
        test_y=yte,
        train_X=Xlab,
        train_y=ylab,
        val_y=yva,
        out_dir=out,
        name=name,
        training_meta=training,
        config=config,
        calibrated=calibrated,
        log=log,
    )


def refit_calibration(run: Any, config: QuantizeConfig, *, calib_X: np.ndarray,
                      val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                      train: tuple[np.ndarray, np.ndarray], log: Any = None
                      ) -> dict[str, Any]:
    """The ``unknown`` and ``conformal`` sections of a refit run's artifact
    (:func:`trainer.run.refit_run`): the base network (:data:`trainer.run.BASE_MODEL_FILE`),
    which never saw the validation spectra, is exported the same way (into a temporary
    folder, its gate only reported) and its sections, calibrated on its validation answers,
    are returned with ``calibrated_by``. The refit network trained on those spectra, so its
    own answers to them would make the thresholds too lenient; the base network's are
    held-out answers of a sibling trained on less data (the coverage this gives on test:
    ``docs/parts/flight.md``, "The network refit, built and measured")."""
    from trainer.model import load_keras_model
    from trainer.run import BASE_MODEL_FILE, RunError

    say = log or (lambda _msg: None)
    path = Path(run.path) / BASE_MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run.path} is a refit without its base network {BASE_MODEL_FILE}, "
                       "whose validation answers calibrate the artifact's unknown rule and "
                       "prediction sets; refit the base run again")
    try:
        base = load_keras_model(path)
    except Exception as e:  # noqa: BLE001 - keras raises many types for a bad file
        raise RunError(f"refit run without a loadable base network {path}: {e}") from None
    say(f"calibrating the unknown rule and the prediction sets on the base network "
        f"({BASE_MODEL_FILE}): the refit trained on the validation spectra")
    with tempfile.TemporaryDirectory(prefix=".refit-calibration-") as tmp:
        res = export_artifact(
            base, labels=run.labels, model_config=run.model_config, calib_X=calib_X,
            val_X=val[0], val_y=val[1], test_X=test[0], test_y=test[1], train_X=train[0],
            train_y=train[1], out_dir=Path(tmp) / "base",
            config=replace(config, overwrite=True, allow_accuracy_drop=True, also=()))
        data = res.manifest.data
    say(f"base network: gate {'passed' if res.gate_reason is None else res.gate_reason} "
        "(reported only: it calibrates, it does not fly)")
    say("note: the artifact's calibration spectra are ones the refit trained on; the sets and "
        "the unknown rule redone from them after a head retrain are not guaranteed")
    return {"unknown": data.get("unknown"), "conformal": data.get("conformal"),
            "calibrated_by": f"the base network ({BASE_MODEL_FILE}) on the validation split"}
