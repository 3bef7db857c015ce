"""The latency floor: a trivial one-op full-int8 TFLite model built at bench time.

Its invoke time (set the ``[1, 1392]`` int8 input, invoke, read the output) is the runtime's
per-call overhead: no model with the same input can be faster through the same Python API,
so the int8 CNN's time divided by it says how much of the CNN's time is actual compute.
Needs TensorFlow (build side only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ramanedge.grid import GRID_POINTS

FLOOR_FILE = "floor_add_int8.tflite"


def build_floor_model(path: str | os.PathLike, n_points: int = GRID_POINTS) -> dict:
    """Write a full-int8 TFLite model computing ``x + 1`` on an int8 ``[1, n_points]`` input.

    One builtin ADD op (int8 in, int8 out, calibrated on uniform [0, 1] data like
    max-normalised spectra). Returns ``{"path", "bytes", "ops"}``; raises ``RuntimeError`` if
    the converter did not produce exactly one op.
    """
    import tensorflow as tf

    from quantize.edgetpu import read_graph

    @tf.function(input_signature=[tf.TensorSpec([1, n_points], tf.float32, name="spectrum")])
    def add_one(x):
        return {"y": tf.add(x, tf.constant(1.0, tf.float32))}

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [add_one.get_concrete_function()], add_one)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.uniform(0.0, 1.0, (1, n_points)).astype(np.float32)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    ops = read_graph(blob).op_counts()
    if sum(ops.values()) != 1:
        raise RuntimeError(f"the floor model should have one op, got {ops}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return {"path": str(path), "bytes": len(blob), "ops": ops}
