"""Keras -> SavedModel -> TFLite bytes: the conversion step of an export.

:func:`dual_output_model` wraps a trained network in a two-output model
``{"probs", "features"}`` sharing its layers (one invoke on the rover gives the class
probabilities and the features the onboard head retrainer needs);
:func:`export_saved_model` writes it with a fixed ``(1, n_points)`` float32 signature and
:func:`convert` turns that SavedModel into TFLite bytes (full int8 calibrated on a
representative set, or the float32/float16 comparison variants). :func:`keras_outputs` is
the float reference the parity gate compares with.

TensorFlow and Keras are imported lazily, inside the functions that need them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ramanedge.errors import ModelError

PRECISIONS = ("int8", "float32", "float16")
OUTPUT_NAMES = ("probs", "features")
INPUT_NAME = "spectrum"


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


def keras_outputs(dual: Any, X: np.ndarray) -> dict[str, np.ndarray]:
    """The float reference: ``{"probs", "features"}`` float32 of ``dual`` on the rows of ``X``."""
    out = dual.predict(X, batch_size=256, verbose=0)
    return {k: np.asarray(out[k], dtype=np.float32) for k in OUTPUT_NAMES}


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
