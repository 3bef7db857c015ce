"""Float vs int8 accuracy (top-1/top-3) at x-shifts 0/15/30 cm-1 on the test split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHIFTS = (0, 15, 30)


def tflite_predict(model_path: Path, *, artifact: Path | None = None,
                   threads: int = 1, library: bool = True
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """A batch predict function ``X (N, 1392) -> probs (N, K)`` running a TFLite model one
    spectrum at a time. With ``artifact`` the model is the artifact's int8 model, quantised
    and dequantised with the manifest's parameters, answered as the rover answers (its base
    head, and the spectral library when the artifact has one:
    :meth:`edge_runtime.classify.Classifier.predict_proba_batch`; ``library=False``: the
    network alone, for parity with the float model); otherwise a float-input TFLite file."""
    if artifact is not None:
        from edge_runtime.artifact import load_artifact
        from edge_runtime.classify import Classifier
        from edge_runtime.interpreter import make_interpreter

        art = load_artifact(artifact)
        clf = Classifier(art, make_interpreter(model_path, num_threads=threads),
                         library=library)
        return lambda X: clf.predict_proba_batch(X).astype(np.float32)
    from quantize.runner import TFLiteRunner  # the exporter's float loop, signature outputs

    runner = TFLiteRunner(model_path, num_threads=threads)
    return lambda X: runner.run(X)["probs"]


def shift_table(predictors: dict[str, Callable[[np.ndarray], np.ndarray]], X: np.ndarray,
                y: np.ndarray, shifts: tuple[int, ...] = SHIFTS) -> dict[str, Any]:
    """Top-1/top-3 of every predictor at every shift (mean of +s and -s), plus agreement of
    each predictor's argmax with the first predictor's at shift 0."""
    from trainer.evaluate import shift_accuracy

    out: dict[str, Any] = {}
    first = None
    for name, fn in predictors.items():
        res = shift_accuracy(fn, X, y, shifts)
        row = {str(s): {"top1": res[str(s)]["top1"], "top3": res[str(s)]["top3"]}
               for s in shifts}
        pred = np.argmax(fn(X), axis=1)
        if first is None:
            first = pred
        row["agreement_with_first"] = float(np.mean(pred == first))
        out[name] = row
    return {"n_test": int(len(y)), "shifts": list(shifts), "models": out}
