"""Running a converted model on the ground exactly as the rover runs it.

:class:`TFLiteRunner` wraps the one int8 runtime path
(:func:`edge_runtime.interpreter.make_interpreter` +
:func:`~edge_runtime.interpreter.run_int8_batch`), so the parity gate, the exemplar features
and the unknown-rule calibration all come from the code that flies. :func:`head_probs` is
the rover's base classification (the float head on the dequantised int8 features).
"""

from __future__ import annotations

import os

import numpy as np

from edge_runtime.artifact import HeadWeights
from edge_runtime.interpreter import make_interpreter, model_tensors, run_int8_batch

from .convert import OUTPUT_NAMES


class TFLiteRunner:
    """A converted TFLite model (file or bytes) run exactly as the rover runs it.

    The interpreter comes from :func:`edge_runtime.interpreter.make_interpreter` and full-int8
    models go through :func:`edge_runtime.interpreter.run_int8_batch` (the rover's
    quantise / invoke / dequantise code), so the parity gate judges the flight path itself;
    ``input_q`` and ``outputs_q`` are the model's own quantisation (what the manifest
    records). Float comparison variants (``model_float32.tflite``, ground only) take float
    input.
    """

    def __init__(self, model: str | os.PathLike | bytes, *, num_threads: int = 1) -> None:
        self.interpreter = make_interpreter(model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.integer = np.dtype(self.input["dtype"]).kind != "f"
        if self.integer:
            self.input_q, self.outputs_q = model_tensors(self.interpreter, OUTPUT_NAMES)
        else:
            outs = self.interpreter.get_signature_runner().get_output_details()
            self.float_outputs = {k: int(outs[k]["index"]) for k in OUTPUT_NAMES}

    def run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for every row of ``X`` (N, n_points): ``{"probs": (N,K), "features": ...}``
        (float32; an int8 model's outputs dequantised)."""
        X = np.asarray(X, dtype=np.float32)
        if self.integer:
            return run_int8_batch(self.interpreter, X, self.input_q, self.outputs_q)
        it = self.interpreter
        res: dict[str, list[np.ndarray]] = {k: [] for k in self.float_outputs}
        for row in X:
            it.set_tensor(self.input["index"], row[None, :])
            it.invoke()
            for k, idx in self.float_outputs.items():
                res[k].append(np.array(it.get_tensor(idx)[0], dtype=np.float32))
        return {k: np.stack(v) for k, v in res.items()}


def head_probs(features: np.ndarray, W: np.ndarray, b: np.ndarray,
               labels: list[str] | None) -> np.ndarray:
    """The rover's base classification: its float head (``HeadWeights.probs``) on features."""
    names = labels if labels is not None else [str(i) for i in range(W.shape[1])]
    return HeadWeights(W=W, b=b, labels=tuple(names)).probs(features)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.maximum(na * nb, 1e-12)
    return np.sum(a * b, axis=1) / denom

