"""Full-int8 TFLite export of a trained model into a rover artifact folder.

:func:`export_artifact` is the core, on in-memory objects (a Keras model, arrays, labels):

1. wrap the trained model in a two-output Keras model ``{"probs", "features"}`` sharing its
   layers (one invoke on the rover gives the class probabilities and the 2048-d features the
   onboard head retrainer needs);
2. export it as a SavedModel with a fixed ``(1, 1392)`` float32 signature and convert it with
   post-training full-integer quantisation (int8 input, int8 outputs, int8 builtins only),
   calibrated on a stratified representative set from the *training* split;
3. run the int8 model on the held-out *test* split next to the float model and apply the
   parity gate (:mod:`quantize.gate`); a failing gate raises :class:`ParityGateError` and
   nothing is written;
4. write ``model.tflite``, ``head.npz`` (float ``W``, ``b`` of the ``probs`` layer), optional
   float32/float16 TFLite variants, and ``manifest.json`` (quantisation parameters read back
   from the converted interpreter, metrics, the unknown-mineral threshold calibrated on the
   *validation* split) into a temporary folder next to ``out_dir``, then rename it into place.

TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import DataError, ModelError
from ramanedge.grid import DEFAULT_GRID
from ramanedge.manifest import (
    HEADSTORE_DIR,
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    write_manifest,
)
from ramanedge.splits import DEFAULT_CALIB_SIZE, select_calibration  # noqa: F401 (re-export)

from .edgetpu import read_graph
from .gate import (
    MAX_TOP1_DROP_POINTS,
    MIN_AGREEMENT,
    ParityGateError,
    ParityReport,
    gate_failure,
    parity_report,
)

MODEL_FILE = "model.tflite"
HEAD_FILE = "head.npz"
PRECISIONS = ("int8", "float32", "float16")
VARIANT_FILES = {"float32": "model_float32.tflite", "float16": "model_float16.tflite"}
OUTPUT_NAMES = ("probs", "features")
GATE_PATHS = ("probs", "head")
INPUT_NAME = "spectrum"


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

    def __post_init__(self) -> None:
        if self.gate_on not in GATE_PATHS:
            raise ValueError(f"gate_on must be one of {', '.join(GATE_PATHS)}, got "
                             f"{self.gate_on!r}")
        if self.calib_size < 1:
            raise ValueError(f"calib_size must be >= 1, got {self.calib_size}")
        also = tuple(dict.fromkeys(a.strip().lower() for a in self.also if a.strip()))
        bad = [a for a in also if a not in VARIANT_FILES]
        if bad:
            raise ValueError(
                f"unknown extra precision(s) {', '.join(bad)}; expected any of "
                f"{', '.join(VARIANT_FILES)}"
            )
        object.__setattr__(self, "also", also)


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


# ----------------------------------------------------------------------------- selection


# ----------------------------------------------------------------------------- conversion


def dual_output_model(model: Any) -> Any:
    """Keras model with outputs ``{"probs", "features"}`` sharing ``model``'s layers."""
    import keras

    try:
        probs = model.get_layer("probs").output
        features = model.get_layer("features").output
    except ValueError as e:
        raise ModelError(
            f"the model has no layers named 'probs' and 'features' (built by "
            f"trainer.model.build_model?): {e}"
        ) from None
    return keras.Model(model.inputs[0], {"probs": probs, "features": features},
                       name="raman_cnn_dual")


def export_saved_model(dual: Any, directory: str | os.PathLike, n_points: int) -> None:
    """Export ``dual`` as a SavedModel with one fixed ``(1, n_points)`` float32 input.

    A quantisation-aware model's rounding layers (:class:`trainer.qat.ActQuant`) become
    identities first: the converter's int8 quantiser rounds the same tensors on the same grid.
    """
    import tensorflow as tf

    from trainer.qat import without_act_quant

    without_act_quant(dual).export(
        os.fspath(directory),
        input_signature=[tf.TensorSpec((1, n_points), tf.float32, name=INPUT_NAME)],
        verbose=False,
    )


def convert(saved_model_dir: str | os.PathLike, precision: str = "int8",
            representative: np.ndarray | None = None) -> bytes:
    """Convert a SavedModel to TFLite bytes in ``precision`` (``int8``/``float32``/``float16``).

    ``int8`` is full-integer: int8 input and outputs, ``TFLITE_BUILTINS_INT8`` only, activation
    ranges calibrated on the rows of ``representative`` (float32, ``(N, n_points)``).
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    conv = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved_model_dir))
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if representative is None or len(representative) == 0:
            raise ModelError("int8 conversion needs a non-empty representative data set")
        rep = np.asarray(representative, dtype=np.float32)

        def gen():
            for row in rep:
                yield [row[None, :]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    try:
        return bytes(conv.convert())
    except Exception as e:  # the converter raises many unrelated types
        msg = str(e).strip().splitlines()
        raise ModelError(f"TFLite {precision} conversion failed: "
                         f"{msg[-1] if msg else type(e).__name__}") from None


# ----------------------------------------------------------------------------- running


class TFLiteRunner:
    """A converted TFLite model (file or bytes) run exactly as the rover runs it.

    The interpreter comes from :func:`edge_runtime.interpreter.make_interpreter` and full-int8
    models go through :func:`edge_runtime.interpreter.run_int8_batch` (the rover's
    quantise / invoke / dequantise code), so the parity gate judges the flight path itself.
    Float comparison variants (``model_float32.tflite``, ground only) take float input.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, num_threads: int = 1) -> None:
        from edge_runtime.interpreter import make_interpreter

        self.interpreter = make_interpreter(model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.integer = np.dtype(self.input["dtype"]).kind != "f"
        if self.integer:
            from edge_runtime.interpreter import model_tensors

            self.input_q, self.outputs_q = model_tensors(self.interpreter, OUTPUT_NAMES)
        else:
            outs = self.interpreter.get_signature_runner().get_output_details()
            self.float_outputs = {k: int(outs[k]["index"]) for k in OUTPUT_NAMES}

    def run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for every row of ``X`` (N, n_points): ``{"probs": (N,K), "features": ...}``."""
        X = np.asarray(X, dtype=np.float32)
        if self.integer:
            from edge_runtime.interpreter import run_int8_batch

            return run_int8_batch(self.interpreter, X, self.input_q, self.outputs_q)
        it = self.interpreter
        res: dict[str, list[np.ndarray]] = {k: [] for k in self.float_outputs}
        for row in X:
            it.set_tensor(self.input["index"], row[None, :])
            it.invoke()
            for k, idx in self.float_outputs.items():
                res[k].append(np.array(it.get_tensor(idx)[0], dtype=np.float32))
        return {k: np.stack(v) for k, v in res.items()}

    def quantization_section(self) -> dict[str, Any]:
        """``{"input": {...}, "outputs": {"probs": {...}, "features": {...}}}``: the
        manifest's entries, read back from the converted model."""
        if not self.integer:
            raise ModelError("only a full-int8 model has a quantization section")

        def entry(q: Any) -> dict[str, Any]:
            return {"index": q.index, "name": q.name, "shape": list(q.shape), "dtype": q.dtype,
                    "scale": q.scale, "zero_point": q.zero_point}

        return {"input": entry(self.input_q),
                "outputs": {k: entry(q) for k, q in self.outputs_q.items()}}


# ----------------------------------------------------------------------------- placement


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse early (before any work) when ``out_dir`` cannot be (re)placed safely."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} exists and is not a folder; not replacing it")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST_NAME).is_file():
            raise DataError(
                f"--out {out_dir} is a non-empty folder that is not a model artifact; "
                f"choose another --out"
            )
        if not overwrite:
            raise DataError(
                f"--out {out_dir} already holds an artifact; pass --overwrite to replace it"
            )


def _place(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` to ``out_dir``; the old one is removed only after.

    The onboard head store of the old artifact (``out_dir/headstore``: labelled samples are
    mission data) then moves into the new artifact; its heads belong to the old model file
    and stay unused, its samples serve the new model (see :mod:`edge_runtime.headstore`).
    The old folder is deleted only once its head store has moved; if that move fails, the
    old folder is kept and the error says where the samples are.
    """
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    from ramanedge.fsutil import fsync_dir

    fsync_dir(out_dir.parent)
    if old is None:
        return
    kept = old / HEADSTORE_DIR
    if kept.is_dir() and not kept.is_symlink():
        try:
            os.replace(kept, out_dir / HEADSTORE_DIR)
            fsync_dir(out_dir)
        except OSError as e:
            raise DataError(f"wrote {out_dir}, but its onboard head store could not be moved "
                            f"({e.strerror or e}); the samples are kept in {kept}: move that "
                            f"folder to {out_dir / HEADSTORE_DIR}") from None
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- export


def _check_array(name: str, X: np.ndarray, n_points: int, allow_empty: bool = False) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_points:
        raise DataError(f"{name} must have shape (N, {n_points}), got {X.shape}")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{name} is empty; the export needs at least one spectrum there")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{name} contains NaN or infinite values")
    return X


def _keras_outputs(dual: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    out = dual.predict(X, batch_size=256, verbose=0)
    return {k: np.asarray(out[k], dtype=np.float32) for k in OUTPUT_NAMES}


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.maximum(na * nb, 1e-12)
    return np.sum(a * b, axis=1) / denom


def _head_probs(features: np.ndarray, W: np.ndarray, b: np.ndarray,
                labels: list[str] | None) -> np.ndarray:
    """The rover's base classification: its float head (``HeadWeights.probs``) on features."""
    from edge_runtime.artifact import HeadWeights

    names = labels if labels is not None else [str(i) for i in range(W.shape[1])]
    return HeadWeights(W=W, b=b, labels=tuple(names)).probs(features)


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
    name: str | None = None,
    training_meta: dict[str, Any] | None = None,
    config: QuantizeConfig = QuantizeConfig(),
    log: Any = None,
    finalize: Callable[[Path], Any] | None = None,
) -> ExportResult:
    """Quantise ``model`` to full int8, gate it against the float model, write the artifact.

    ``calib_X``: the representative set (float32 rows on the model grid, from the training
    split; see :func:`select_calibration`). ``val_X``: validation spectra (unknown-mineral
    threshold). ``test_X``/``test_y``: held-out test split for the parity gate.
    ``model_config``: the ``trainer.model.ModelConfig`` (stored in the manifest).
    ``training_meta``: the manifest ``training`` section (dataset, split_sha256, run, ...).
    ``log``: optional ``callable(str)`` for progress lines. ``finalize``: optional
    ``callable(folder)`` run on the finished temporary folder (manifest written) before it is
    renamed into place, e.g. ``edge_runtime.head.attach_exemplars``; if it raises, nothing is
    placed.

    Raises :class:`ParityGateError` (nothing written, ``out_dir`` untouched) when the gate
    fails and ``config.allow_accuracy_drop`` is false; :class:`DataError` for unusable
    inputs or destination; :class:`ModelError` when conversion fails.
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
    calib_X = _check_array("calibration set", calib_X, n_points)
    floor = getattr(model_config, "input_floor", None)
    if floor is not None:
        # the model clips its input at the floor: calibrate the int8 input on the same range,
        # so the rover's saturating quantiser clips exactly where the model does
        calib_X = np.maximum(calib_X, np.float32(floor))
    val_X = _check_array("validation split", val_X, n_points)
    test_X = _check_array("test split", test_X, n_points)
    test_y = np.asarray(test_y)
    if test_y.shape != (test_X.shape[0],) or not np.issubdtype(test_y.dtype, np.integer):
        raise DataError(f"test labels must be {test_X.shape[0]} integers, got {test_y.shape} "
                        f"{test_y.dtype}")
    if test_y.min() < 0 or test_y.max() >= n_out:
        raise DataError(f"test labels must be class ids in 0..{n_out - 1}")
    _check_destination(out_dir, config.overwrite)

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
    ref = _keras_outputs(dual, test_X)
    runner = TFLiteRunner(blobs["int8"])
    q = runner.run(test_X)
    W, b = (np.asarray(w, dtype=np.float32) for w in model.get_layer("probs").get_weights())
    feat_dim = int(W.shape[0])
    # the float head on the dequantised int8 features (the rover's retrained-head path)
    head_probs = _head_probs(q["features"], W, b, labels)
    parity = parity_report(ref["probs"], q["probs"], test_y)
    head_parity = parity_report(ref["probs"], head_probs, test_y)
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
    cos = _cosine_rows(ref["features"], q["features"])
    metrics["head"] = {
        "top1": hm["int8"]["top1"],
        "top3": hm["int8"]["top3"],
        "agreement": hm["agreement"],
        "drop_points": hm["drop_points"],
        "agreement_with_int8_probs": float(
            np.mean(np.argmax(head_probs, 1) == np.argmax(q["probs"], 1))
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
        variants[p] = {
            "file": VARIANT_FILES[p],
            "precision": p,
            "input_dtype": "float32",
            "top1": float(np.mean(np.argmax(vq, 1) == test_y)),
            "agreement": float(np.mean(np.argmax(vq, 1) == np.argmax(ref["probs"], 1))),
        }

    from edge_runtime.ood import calibrate_unknown

    val_q = runner.run(val_X)
    val_probs = (val_q["probs"] if config.gate_on == "probs"
                 else _head_probs(val_q["features"], W, b, labels))
    unknown = calibrate_unknown(val_probs, target_tpr=config.unknown_target_tpr)
    unknown["split"] = "val"

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; an artifact is a normal folder
        (tmp / MODEL_FILE).write_bytes(blobs["int8"])
        np.savez(tmp / HEAD_FILE, W=W, b=b)
        files = [MODEL_FILE, HEAD_FILE]
        for p in config.also:
            (tmp / VARIANT_FILES[p]).write_bytes(blobs[p])
            files.append(VARIANT_FILES[p])
        written = TFLiteRunner(tmp / MODEL_FILE)
        cfg_dict = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(
            model_config)
        data = {
            "name": name,
            "labels": labels,
            "grid": DEFAULT_GRID.to_dict(),
            "normalisation": {"method": "max"},
            "model": {
                "file": MODEL_FILE,
                "precision": "int8",
                "config": cfg_dict,
                "ops": graph.op_counts(),
            },
            "quantization": {
                **written.quantization_section(),
                "calibration": {
                    "n": int(calib_X.shape[0]),
                    "source": "train split, stratified",
                    "seed": config.seed,
                },
            },
            "head": {"file": HEAD_FILE, "feature_dim": feat_dim, "n_classes": len(labels),
                     "base_output": config.gate_on},
            "training": dict(training_meta or {}),
            "metrics": metrics,
            "unknown": unknown,
            "variants": variants,
            "files": {f: {} for f in files},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest = write_manifest(tmp, data)
        if finalize is not None:
            finalize(tmp)
            manifest = read_manifest(tmp)
        sizes = {f: (tmp / f).stat().st_size for f in manifest.files}
        _place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out_dir, manifest, parity, reason, sizes, time.perf_counter() - t0,
                        head_parity)


# ----------------------------------------------------------------------------- measuring


def calibration_sweep(
    model: Any,
    *,
    train_X: np.ndarray,
    train_y: np.ndarray,
    test_X: np.ndarray,
    test_y: np.ndarray,
    sizes: tuple[int | None, ...] = (20, 50, 100, 200, None),
    seeds: tuple[int, ...] = (0, 1, 2),
    log: Any = None,
) -> list[dict[str, Any]]:
    """Measure the int8 parity for several calibration-set sizes and draws; writes nothing.

    ``sizes``: representative-set sizes (``None`` = the whole training split, drawn once).
    For every size and seed the model is converted with a stratified draw from
    ``train_X``/``train_y`` and compared with the float model on ``test_X``/``test_y`` (an
    int8-aware model is recalibrated on each draw first, as :func:`export_artifact` does).
    Returns one row per conversion: ``size``, ``seed``, ``n``, ``float_top1``, ``int8_top1``,
    ``drop_points``, ``agreement``, ``head_agreement`` (float head on int8 features),
    ``ties`` (share of int8 outputs with a tied top probability), ``input_scale``,
    ``convert_s``.
    """
    say = log or (lambda _msg: None)
    n_points = int(np.asarray(train_X).shape[1])
    train_X = _check_array("training split", train_X, n_points)
    test_X = _check_array("test split", test_X, n_points)
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    from trainer.qat import calibrate_act_quant, has_act_quant

    aware = has_act_quant(model)
    dual = dual_output_model(model)
    ref = _keras_outputs(dual, test_X)
    W, b = (np.asarray(w, dtype=np.float64) for w in model.get_layer("probs").get_weights())
    rows = []
    with tempfile.TemporaryDirectory(prefix="ramanedge-sm-") as smdir:
        export_saved_model(dual, smdir, n_points)
        for size in sizes:
            for seed in (seeds if size is not None and size < len(train_y) else seeds[:1]):
                idx = (np.arange(len(train_y)) if size is None
                       else select_calibration(train_y, size, seed=seed))
                t = time.perf_counter()
                blob = convert(smdir, "int8", train_X[idx])
                sec = time.perf_counter() - t
                if aware:  # its reference rounds on this draw's grids
                    calibrate_act_quant(model, train_X[idx])
                    ref = _keras_outputs(dual, test_X)
                runner = TFLiteRunner(blob)
                q = runner.run(test_X)
                p = parity_report(ref["probs"], q["probs"], test_y)
                head = _head_probs(q["features"], W, b, None)
                top = q["probs"].max(axis=1, keepdims=True)
                row = {
                    "size": "all" if size is None else int(size),
                    "seed": int(seed),
                    "n": int(idx.size),
                    "float_top1": p.float_top1,
                    "int8_top1": p.int8_top1,
                    "drop_points": p.drop_points,
                    "agreement": p.agreement,
                    "head_agreement": float(np.mean(head.argmax(1) == ref["probs"].argmax(1))),
                    "ties": float(np.mean(np.sum(q["probs"] == top, axis=1) > 1)),
                    "input_scale": float(runner.input_q.scale),
                    "convert_s": sec,
                }
                say(f"calib {row['size']} seed {seed}: agreement {100 * p.agreement:.1f}%, "
                    f"drop {p.drop_points:.2f} pts, head agreement "
                    f"{100 * row['head_agreement']:.1f}%")
                rows.append(row)
    return rows


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`calibration_sweep` rows, one line per size (over seeds)."""
    out = ["| calib size | draws | agreement % (min-max, mean) | top-1 drop pts (mean) | "
           "head agreement % (mean) | int8 ties % | convert s |",
           "|---|---|---|---|---|---|---|"]
    sizes: list[Any] = list(dict.fromkeys(r["size"] for r in rows))
    for size in sizes:
        rs = [r for r in rows if r["size"] == size]
        ag = [100 * r["agreement"] for r in rs]

        def mean(key: str, scale: float = 1.0, rs=rs) -> float:
            return scale * float(np.mean([r[key] for r in rs]))

        out.append(
            f"| {size} | {len(rs)} | {min(ag):.1f}-{max(ag):.1f}, {np.mean(ag):.1f} | "
            f"{mean('drop_points'):.2f} | {mean('head_agreement', 100):.1f} | "
            f"{mean('ties', 100):.1f} | {mean('convert_s'):.1f} |"
        )
    return "\n".join(out)
