"""Int8-aware (quantisation-aware) fine-tuning for Keras 3, without TF-MOT or tf-keras.

A full-int8 TFLite model computes a fixed, knowable function of its float weights: BatchNorm
folded into the convs; each weight tensor rounded to symmetric int8 with one scale per output
channel (``max |w| / 127``); each bias rounded to the int32 grid ``input scale x weight
scale``; every activation tensor stored on a 256-level grid (``scale = (max - min) / 255``,
zero point nudged so that 0.0 is a grid value) whose min / max the converter calibrates on
the float graph over the representative spectra. This module writes that function out in
Keras, with straight-through gradients, so a model can be fine-tuned *as* the int8 network:
:class:`QConv1D`, :class:`QDepthwiseConv1D` and :class:`QDense` round their weights and
biases, :class:`ActQuant` rounds a tensor, :func:`fold_to_act_quant` turns a trained flight
model into this form (``ModelConfig(act_quant=True)``), :func:`calibrate_act_quant` sets the
grids the way the converter will, and :func:`quantization_aware_finetune` trains it.

Nothing here reaches the converter: :func:`without_act_quant` gives back the plain float
graph (same names and weights, roundings as identities), which TFLite quantises itself, onto
the same grids. The Keras model the parity gate compares against is then the network the
int8 model computes (measured in ``docs/parts/flight.md``; ``tests/test_qat.py``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

INT8_LEVELS = 256


def weight_scale(kernel, reduce_axes: tuple[int, ...]):
    """TFLite's per-output-channel int8 weight scale ``max |w| / 127`` (keepdims)."""
    return ops.maximum(ops.max(ops.abs(kernel), axis=reduce_axes, keepdims=True), 1e-12) / 127.0


def fake_quant_weights(kernel, reduce_axes: tuple[int, ...]):
    """``kernel`` rounded as TFLite stores it: symmetric int8 in [-127, 127], one scale per
    output channel (``max |w| / 127`` over ``reduce_axes``); straight-through gradient."""
    scale = weight_scale(kernel, reduce_axes)
    q = ops.clip(ops.round(kernel / scale), -127.0, 127.0) * scale
    return kernel + ops.stop_gradient(q - kernel)


class _QuantBias:
    """Mixin: the bias rounded to TFLite's int32 grid ``input scale x weight scale``.

    ``input_quant`` names the :class:`ActQuant` whose grid the layer's input is on (set by
    :func:`trainer.model.build_model`); :func:`calibrate_act_quant` copies its scale into the
    non-trainable weight ``input_scale`` (0 = bias not rounded yet)."""

    def __init__(self, *args: Any, input_quant: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_quant = str(input_quant)

    def build(self, input_shape):
        """Build the layer and its ``input_scale`` weight."""
        super().build(input_shape)
        self.input_scale = self.add_weight(name="input_scale", shape=(), trainable=False,
                                           initializer="zeros")

    def get_config(self) -> dict:
        """The layer's config + ``input_quant``."""
        return {**super().get_config(), "input_quant": self.input_quant}

    def save_own_variables(self, store) -> None:
        """Save every weight, ``input_scale`` included (Keras' conv / dense savers write
        only the kernel and bias)."""
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store) -> None:
        """Inverse of :meth:`save_own_variables`."""
        keras.layers.Layer.load_own_variables(self, store)

    def _bias(self, kernel, reduce_axes: tuple[int, ...]):
        grid = self.input_scale * ops.reshape(weight_scale(kernel, reduce_axes), (-1,))
        safe = ops.where(grid > 0, grid, 1.0)
        q = ops.where(grid > 0, ops.round(self.bias / safe) * safe, self.bias)
        return self.bias + ops.stop_gradient(q - self.bias)


@keras.saving.register_keras_serializable(package="ramanedge")
class QConv1D(_QuantBias, keras.layers.Conv1D):
    """Conv1D computed as TFLite's int8 CONV_2D: kernel rounded per output channel, bias on
    the int32 grid (``padding`` "same" or "valid")."""

    def call(self, inputs):
        """Convolution with the int8-rounded kernel ``(k, c_in, c_out)``, bias, activation."""
        if self.padding == "causal":
            raise ValueError("QConv1D supports padding 'same' or 'valid'")
        x = ops.conv(inputs, fake_quant_weights(self.kernel, (0, 1)),
                     strides=list(self.strides), padding=self.padding,
                     dilation_rate=self.dilation_rate, data_format=self.data_format)
        if self.use_bias:  # channels_last: the bias broadcasts on the last axis
            x = ops.add(x, self._bias(self.kernel, (0, 1)))
        return self.activation(x) if self.activation is not None else x


@keras.saving.register_keras_serializable(package="ramanedge")
class QDepthwiseConv1D(keras.layers.DepthwiseConv1D):
    """DepthwiseConv1D with its kernel rounded per channel like TFLite's DEPTHWISE_CONV_2D
    (no bias: the depthwise half of a separable convolution; TFLite's zero bias is exact)."""

    def call(self, inputs):
        """Depthwise convolution with the int8-rounded kernel ``(k, c_in, multiplier)``."""
        if self.use_bias:
            raise ValueError("QDepthwiseConv1D is built without bias")
        return ops.depthwise_conv(inputs, fake_quant_weights(self.kernel, (0,)),
                                  strides=self.strides, padding=self.padding,
                                  dilation_rate=self.dilation_rate,
                                  data_format=self.data_format)


@keras.saving.register_keras_serializable(package="ramanedge")
class QDense(_QuantBias, keras.layers.Dense):
    """Dense computed as TFLite's int8 FULLY_CONNECTED: kernel ``(in, out)`` rounded per
    output unit (per-channel in TF 2.21, checked in the tests), bias on the int32 grid."""

    def call(self, inputs, training=None):
        """``inputs @ round(kernel) + round(bias)``, then the activation."""
        x = ops.matmul(inputs, fake_quant_weights(self.kernel, (0,)))
        if self.bias is not None:
            x = ops.add(x, self._bias(self.kernel, (0,)))
        return self.activation(x) if self.activation is not None else x


#: quantisation-aware layer -> the plain layer the converter gets
PLAIN = {QConv1D: keras.layers.Conv1D, QDepthwiseConv1D: keras.layers.DepthwiseConv1D,
         QDense: keras.layers.Dense}


@keras.saving.register_keras_serializable(package="ramanedge")
class ActQuant(keras.layers.Layer):
    """Round activations onto the int8 grid of ``[low, high]`` (forward), identity gradient.

    The grid is TFLite's: ``scale = (high - low) / 255`` and the zero point
    ``round(-low / scale)`` (so that 0.0 is a grid value, as the converter does); values
    outside ``[low, high]`` saturate as int8 does. ``low`` and ``high`` are non-trainable
    weights (saved with the model) that :func:`calibrate_act_quant` sets the way the
    converter's calibration does; the constructor's values are the starting range.
    """

    def __init__(self, low: float = 0.0, high: float = 6.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        low, high = float(low), float(high)
        if not low <= 0.0 <= high or not high > low:
            raise ValueError(f"ActQuant needs low <= 0 <= high and high > low, got "
                             f"[{low}, {high}]")
        self.init_low, self.init_high = low, high

    def build(self, input_shape):
        """Create the ``low`` / ``high`` range weights."""
        self.low = self.add_weight(name="low", shape=(), trainable=False,
                                   initializer=keras.initializers.Constant(self.init_low))
        self.high = self.add_weight(name="high", shape=(), trainable=False,
                                    initializer=keras.initializers.Constant(self.init_high))

    def call(self, x):
        """``x`` rounded to the grid (straight-through: the gradient is that of identity)."""
        scale = ops.maximum(self.high - self.low, 1e-8) / (INT8_LEVELS - 1)
        zero = ops.round(-self.low / scale)
        q = ops.clip(ops.round(x / scale) + zero, 0.0, INT8_LEVELS - 1.0)
        y = (q - zero) * scale
        return x + ops.stop_gradient(y - x)

    def compute_output_shape(self, input_shape):
        """Same shape as the input."""
        return input_shape

    def get_config(self) -> dict:
        """Serialisable config (the starting range)."""
        return {**super().get_config(), "low": self.init_low, "high": self.init_high}


def has_act_quant(model: Any) -> bool:
    """True when ``model`` holds :class:`ActQuant` layers."""
    return any(isinstance(layer, ActQuant) for layer in model.layers)


def without_act_quant(model: Any) -> Any:
    """The float graph the TFLite converter gets from a quantisation-aware ``model``: every
    :class:`ActQuant` becomes an identity and every Q-layer its plain Keras layer (same
    names, same float weights), because the converter's int8 quantiser does that rounding
    itself. A model without them is returned unchanged."""
    if not has_act_quant(model):
        return model

    def clone(layer):
        if isinstance(layer, ActQuant):
            return keras.layers.Identity(name=layer.name)
        cls = PLAIN.get(type(layer))
        if cls is None:
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        config.pop("input_quant", None)
        return cls.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        src = model.get_layer(layer.name)
        if not isinstance(src, ActQuant) and src.weights:
            # the Q-layers' own weight (input_scale) comes last: the plain layer has the rest
            layer.set_weights(src.get_weights()[:len(layer.weights)])
    return copy


def calibrate_act_quant(model: Any, X) -> dict[str, tuple[float, float]]:
    """Set every :class:`ActQuant` range of ``model`` as the converter will calibrate it.

    TFLite's calibration runs the *float* graph (:func:`without_act_quant`) over the
    representative spectra ``X`` and records each tensor's min / max (widened to contain
    0); the same is done here for the tensor each ActQuant rounds, so the Keras model then
    rounds on the very grids of the converted model. Returns ``{layer: (low, high)}``.
    """
    import numpy as np

    plain = without_act_quant(model)
    names = [layer.name for layer in model.layers if isinstance(layer, ActQuant)]
    if not names:
        return {}
    probe = keras.Model(plain.inputs, [plain.get_layer(n).output for n in names])
    outs = probe.predict(np.asarray(X, dtype=np.float32), batch_size=256, verbose=0)
    if len(names) == 1:
        outs = [outs]
    ranges = {}
    for name, v in zip(names, outs, strict=True):
        lo, hi = min(float(np.min(v)), 0.0), max(float(np.max(v)), 0.0)
        if hi <= lo:
            hi = lo + 1e-6
        layer = model.get_layer(name)
        layer.low.assign(lo)
        layer.high.assign(hi)
        ranges[name] = (lo, hi)
    for layer in model.layers:
        if isinstance(layer, _QuantBias) and layer.input_quant in ranges:
            lo, hi = ranges[layer.input_quant]
            layer.input_scale.assign((hi - lo) / (INT8_LEVELS - 1))
    return ranges


def _bn_fold(bn_layer: Any) -> tuple[Any, Any]:
    """(per-channel scale, shift) of a BatchNormalization layer in inference mode."""
    import numpy as np

    gamma, beta, mean, var = (np.asarray(w, dtype=np.float64) for w in bn_layer.get_weights())
    s = gamma / np.sqrt(var + bn_layer.epsilon)
    return s, beta - mean * s


def fold_to_act_quant(float_model: Any, config: Any, n_classes: int) -> Any:
    """The quantisation-aware twin of a trained flight ``float_model``: BatchNorm folded into
    the convs (as the converter folds it), separable convs split into their depthwise and
    1x1 halves, Q-layers and :class:`ActQuant` roundings (ranges still to calibrate with
    :func:`calibrate_act_quant`). ``config``: the float model's ``ModelConfig``."""
    import dataclasses

    import numpy as np

    from trainer.model import build_model

    qcfg = dataclasses.replace(config, act_quant=True)
    q = build_model(n_classes, qcfg)
    names = {layer.name for layer in float_model.layers}
    # the float model must be the architecture of ``config``: an early-pool model has its
    # depthwise halves as layers of their own, a late-pool one as SeparableConv1D
    split_dw = "conv2_dw" in names
    if config.separable and not config.branch_kernels and split_dw != config.early_pool:
        raise ValueError(f"the float model {'pools' if split_dw else 'does not pool'} before "
                         f"its 1x1 convs but its config says early_pool={config.early_pool}")

    def folded(bn_name: str, kernel, bias):
        if bn_name not in names:
            return [kernel, bias]
        s, t = _bn_fold(float_model.get_layer(bn_name))
        b = (np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)) * s + t
        return [np.asarray(kernel, np.float64) * s, b]

    for layer in q.layers:
        name = layer.name
        if isinstance(layer, ActQuant) or not layer.weights:
            continue
        if name.endswith("_dw"):  # depthwise half of a separable conv (its own layer with
            # early_pool, else the SeparableConv1D's first weight)
            src = float_model.get_layer(name if name in names else name[:-3])
            layer.set_weights([src.get_weights()[0]])
            continue
        src = float_model.get_layer(name)
        w = src.get_weights()
        if isinstance(src, keras.layers.SeparableConv1D):
            w = w[1:]  # pointwise kernel (+ bias)
        if isinstance(layer, (QConv1D, QDense)):
            bn = "bn_reduce" if name == "reduce" else f"bn{name[4:]}" if name.startswith(
                "conv") else ""
            w = folded(bn, w[0], w[1] if len(w) > 1 else None)
        w = [np.asarray(v, dtype=np.float32) for v in w]
        layer.set_weights(w + layer.get_weights()[len(w):])  # + input_scale (calibrated later)
    return q


def quantization_aware_finetune(
    float_model: Any,
    X_train,
    y_train,
    X_val,
    y_val,
    n_classes: int,
    model_config: Any,
    train_config: Any,
    *,
    negatives: Any = None,
    background_init: Any = None,
    calibration: Any = None,
    epoch_samples: int | None = None,
    schedule: list[float] | None = None,
    log: Any = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Fine-tune a trained float model as the int8 network the rover will run.

    The model is folded (:func:`fold_to_act_quant`), its roundings calibrated on the
    default representative set of the training spectra, and trained
    ``train_config.qat_epochs`` more epochs at ``qat_learning_rate`` with the same
    augmentation, class weights and targets
    ``(1 - distill) * onehot + distill * float model`` (the float network distils into its
    int8 self, on each epoch's augmented views with ``distill_views``; plain labels when
    ``distill`` is 0). The epoch with the best validation
    accuracy is kept (each epoch recalibrated before it is validated, as the export will
    calibrate it). The folded start is not a candidate: the shipped network is always one
    trained with the roundings in the loop (its validation top-1 is reported). ``negatives``:
    outlier-exposure spectra (with ``train_config.outlier_exposure``), as in training;
    ``background_init``: the float run's background unit, which the fine-tune continues
    (with ``train_config.background_class``; see :func:`trainer.train.fit_model`).
    ``calibration``: the spectra the export will calibrate on (default: the draw
    ``ramanedge quantize`` makes from ``X_train`` with labels ``y_train``; a few-label run
    passes the draw over all its training spectra, :func:`ramanedge.splits.calibration_indices`);
    ``epoch_samples``: spectra drawn per epoch (default ``len(X_train)``). ``schedule``: one
    learning rate per epoch; trains exactly those epochs and keeps the last (a refit on
    training + validation, :func:`trainer.run.refit_run`; see :func:`trainer.train.fit_model`).
    Returns ``(TrainResult, act_quant ModelConfig, summary dict)``.
    """
    import dataclasses

    import numpy as np

    from trainer.train import ensemble_fn, predict_probs, train_model

    tc = train_config
    qcfg = dataclasses.replace(model_config, act_quant=True)
    from ramanedge.splits import DEFAULT_CALIB_SIZE, select_calibration

    start = fold_to_act_quant(float_model, model_config, n_classes)
    # the grids `ramanedge quantize` will calibrate by default (same draw, floor-clipped), so
    # the run's own test figures are those of its default int8 export
    if calibration is None:
        calibration = np.asarray(X_train)[select_calibration(y_train, DEFAULT_CALIB_SIZE)]
    calib = np.maximum(np.asarray(calibration, np.float32), np.float32(model_config.input_floor))
    calibrate_act_quant(start, calib)
    start_val = float(np.mean(predict_probs(start, X_val).argmax(1) == y_val))
    soft = predict_probs(float_model, X_train) if tc.distill > 0 else None
    qtc = dataclasses.replace(tc, epochs=tc.qat_epochs, learning_rate=tc.qat_learning_rate,
                              teachers=0, teacher_folds=False, qat_epochs=0)
    res = train_model(X_train, y_train, X_val, y_val, n_classes, qcfg, qtc,
                      init_weights=start.get_weights(), teacher_probs=soft,
                      negatives=negatives, background_init=background_init,
                      teacher_fn=ensemble_fn([float_model]) if tc.distill_views else None,
                      epoch_samples=epoch_samples, schedule=schedule,
                      # the weights moved: so did the grids the converter will find
                      epoch_end=lambda m: calibrate_act_quant(m, calib), log=log)
    calibrate_act_quant(res.model, calib)  # the restored epoch's own grids (a no-op)
    info = {"epochs": res.epochs_run, "best_epoch": res.best_epoch,
            "val_top1_start": start_val,
            # with a schedule the last epoch is kept (and a refit's validation is in-sample)
            "val_top1_best": (max(res.history["val_accuracy"]) if schedule is None
                              else res.history["val_accuracy"][-1]),
            "learning_rate": tc.qat_learning_rate, "seconds": round(res.seconds, 1)}
    if log is not None:
        log(f"int8-aware fine-tune: validation top-1 {100 * start_val:.1f}% (folded, int8 "
            f"roundings) -> {100 * info['val_top1_best']:.1f}% (epoch {res.best_epoch} of "
            f"{res.epochs_run}, {res.seconds:.0f} s)")
    return res, qcfg, info
