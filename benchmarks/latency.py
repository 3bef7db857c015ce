"""Batch-1 latency of every way to classify a spectrum, measured in one process.

Run as a worker (one per thread count, because TensorFlow's thread pools are fixed when it
starts)::

    python -m benchmarks.latency --inputs bench_out/inputs.npz --artifact models/default \
        --keras runs/default/model.keras --floor bench_out/floor.tflite --threads 1

It times, on the same real test spectra and interleaved round by round (see
:func:`benchmarks.common.interleaved`):

``int8_invoke``
    the artifact's int8 TFLite model, pre-quantised int8 input: ``set_tensor`` + ``invoke`` +
    ``get_tensor(probs)`` (the same protocol as the floor);
``int8_model``
    the int8 model as a float-in/float-out model: quantise the input, invoke, dequantise the
    probabilities (the reference of every ratio: what replaces a Keras call);
``int8_classify``
    :meth:`edge_runtime.classify.Classifier.classify_grid` (adds both outputs, top-k, the
    unknown check);
``float32_tflite``
    the float32 TFLite export of the same model (XNNPACK), float input;
``keras_predict_on_batch``, ``keras_tf_function``, ``keras_xla``
    the Keras float model: ``model.predict_on_batch``, a ``tf.function`` of
    ``model(x, training=False)``, and the same with ``jit_compile=True`` (XLA);
``knn``
    the k-NN-over-reference-spectra classifier (:class:`trainer.baselines.KNNScorer`, k and
    metric chosen on the validation split) with the training split as references;
``floor``
    the trivial one-op int8 model (:mod:`benchmarks.floor`), same protocol as ``int8_invoke``;
``pre_resample``, ``pre_normalise``, ``pre_quantise``, ``pre_total``
    preprocessing of the raw test spectra (cropped to the model window as a device receives
    them): linear resampling onto the grid, max-normalisation, int8 quantisation, all three;
``total_raw_to_label``
    :meth:`~edge_runtime.classify.Classifier.classify_xy` on the raw spectrum (preprocessing +
    ``int8_classify``).

The last stdout line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import interleaved, stats_ms

REFERENCE = "int8_model"
KERAS_METHODS = ("keras_predict_on_batch", "keras_tf_function", "keras_xla")
MODEL_METHODS = ("int8_invoke", "int8_model", "int8_classify", "float32_tflite", *KERAS_METHODS,
                 "knn", "floor")
PRE_METHODS = ("pre_resample", "pre_normalise", "pre_quantise", "pre_total",
               "total_raw_to_label")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the inputs file written by :func:`write_inputs`."""
    with np.load(path, allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def write_inputs(path: str | os.PathLike, *, X_test: np.ndarray, y_test: np.ndarray,
                 raw: list[tuple[np.ndarray, np.ndarray]], X_train: np.ndarray,
                 y_train: np.ndarray) -> None:
    """Save the arrays a latency worker needs: preprocessed test spectra, the raw test spectra
    (concatenated with offsets) and the k-NN references."""
    offs = np.zeros(len(raw) + 1, dtype=np.int64)
    for j, (x, _y) in enumerate(raw):
        offs[j + 1] = offs[j] + len(x)
    rx = np.concatenate([np.asarray(x, np.float64) for x, _ in raw]) if raw else np.zeros(0)
    ry = np.concatenate([np.asarray(y, np.float64) for _, y in raw]) if raw else np.zeros(0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, X_test=np.asarray(X_test, np.float32), y_test=np.asarray(y_test, np.int64),
             raw_x=rx, raw_y=ry, raw_offsets=offs, X_train=np.asarray(X_train, np.float32),
             y_train=np.asarray(y_train, np.int64))


def build_methods(inp: dict[str, np.ndarray], *, artifact: Path, threads: int,
                  floor: Path | None, float32: Path | None, keras_path: Path | None,
                  knn: dict[str, Any] | None, n_items: int, xla: bool = True
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create every available method ``fn(i)`` for items ``0..n_items-1``.

    Returns ``(methods, info)``; a method whose model is not given is left out (``info``
    records why).
    """
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import (
        get_output_float,
        make_interpreter,
        quantize_int8,
        set_input_int8,
    )
    from ramanedge.grid import normalise_max, preprocess, resample

    info: dict[str, Any] = {"skipped": {}}
    X = np.ascontiguousarray(inp["X_test"][:n_items], dtype=np.float32)
    X1 = [x[None, :] for x in X]
    art = load_artifact(artifact)
    it = make_interpreter(art.model_path, num_threads=threads)
    qin, qp = art.input_q, art.probs_q
    Q = [quantize_int8(x, qin).reshape(qin.shape) for x in X]
    clf = Classifier(art, it)
    info["artifact"] = str(artifact)
    info["labels"] = len(art.labels)
    m: dict[str, Any] = {}

    def int8_invoke(i: int) -> Any:
        it.set_tensor(qin.index, Q[i])
        it.invoke()
        return it.get_tensor(qp.index)

    def int8_model(i: int) -> Any:
        set_input_int8(it, X[i], qin)
        it.invoke()
        return get_output_float(it, qp)

    m["int8_invoke"] = int8_invoke
    m["int8_model"] = int8_model
    m["int8_classify"] = lambda i: clf.classify_grid(X[i])

    if float32 is not None and Path(float32).is_file():
        fit = make_interpreter(float32, num_threads=threads)
        fin = fit.get_input_details()[0]["index"]
        fout = [d["index"] for d in fit.get_output_details()
                if tuple(d["shape"]) == (1, len(art.labels))]
        fout_i = fout[0] if fout else fit.get_output_details()[0]["index"]

        def float32_tflite(i: int) -> Any:
            fit.set_tensor(fin, X1[i])
            fit.invoke()
            return fit.get_tensor(fout_i)

        m["float32_tflite"] = float32_tflite
    else:
        info["skipped"]["float32_tflite"] = "no float32 TFLite file"

    if keras_path is not None:
        import tensorflow as tf

        from trainer.model import load_keras_model

        model = load_keras_model(keras_path)
        m["keras_predict_on_batch"] = lambda i: model.predict_on_batch(X1[i])
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        m["keras_tf_function"] = lambda i: fn(X1[i]).numpy()
        if xla:
            try:
                fx = tf.function(lambda x: model(x, training=False), jit_compile=True)
                fx(X1[0]).numpy()
                m["keras_xla"] = lambda i: fx(X1[i]).numpy()
            except Exception as e:  # noqa: BLE001 - XLA availability varies by build
                info["skipped"]["keras_xla"] = f"XLA failed: {type(e).__name__}: {e}"[:200]
        info["tensorflow"] = tf.__version__
        info["tf_threads"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                              "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    else:
        info["skipped"].update({k: "no Keras model" for k in KERAS_METHODS})

    if knn is not None and inp.get("X_train") is not None and inp["X_train"].size:
        from trainer.baselines import KNNScorer

        n_classes = int(max(inp["y_train"].max(), inp["y_test"].max()) + 1)
        scorer = KNNScorer(int(knn["k"]), str(knn["metric"])).fit(inp["X_train"],
                                                                inp["y_train"], n_classes)
        m["knn"] = lambda i: scorer.scores(X1[i])
        info["knn"] = {**knn, "n_references": int(inp["X_train"].shape[0])}
    else:
        info["skipped"]["knn"] = "no references"

    if floor is not None and Path(floor).is_file():
        flo = make_interpreter(floor, num_threads=threads)
        fl_in = flo.get_input_details()[0]
        fl_out = flo.get_output_details()[0]["index"]
        fQ = [np.ascontiguousarray(q.reshape(tuple(fl_in["shape"]))) for q in Q]

        def floor_fn(i: int) -> Any:
            flo.set_tensor(fl_in["index"], fQ[i])
            flo.invoke()
            return flo.get_tensor(fl_out)

        m["floor"] = floor_fn
    else:
        info["skipped"]["floor"] = "no floor model"

    # preprocessing of the raw spectra
    offs = inp.get("raw_offsets")
    if offs is not None and offs.size > 1:
        n_raw = min(n_items, offs.size - 1)
        RX = [inp["raw_x"][offs[j]:offs[j + 1]] for j in range(n_raw)]
        RY = [inp["raw_y"][offs[j]:offs[j + 1]] for j in range(n_raw)]
        R = [resample(RX[j], RY[j], art.grid) for j in range(n_raw)]
        N = [normalise_max(r) for r in R]

        def wrap(j: int) -> int:
            return j % n_raw

        m["pre_resample"] = lambda i: resample(RX[wrap(i)], RY[wrap(i)], art.grid)
        m["pre_normalise"] = lambda i: normalise_max(R[wrap(i)])
        m["pre_quantise"] = lambda i: quantize_int8(N[wrap(i)], qin)
        m["pre_total"] = lambda i: quantize_int8(preprocess(RX[wrap(i)], RY[wrap(i)], art.grid),
                                                 qin)
        m["total_raw_to_label"] = lambda i: clf.classify_xy(RX[wrap(i)], RY[wrap(i)])
        info["n_raw"] = n_raw
        info["raw_points_median"] = float(np.median([len(x) for x in RX]))
    else:
        info["skipped"].update({k: "no raw spectra" for k in PRE_METHODS})
    return m, info


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Set up threads, build the methods, time them; the worker's JSON result."""
    threads = int(args.threads)
    if args.keras:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    inp = load_inputs(args.inputs)
    n_items = min(int(args.n_items), int(inp["X_test"].shape[0]))
    knn = json.loads(args.knn) if args.knn else None
    t0 = time.perf_counter()
    methods, info = build_methods(
        inp, artifact=Path(args.artifact), threads=threads,
        floor=Path(args.floor) if args.floor else None,
        float32=Path(args.float32) if args.float32 else None,
        keras_path=Path(args.keras) if args.keras else None, knn=knn, n_items=n_items,
        xla=not args.no_xla)
    _log(f"  [{threads} thread(s)] {len(methods)} methods set up in "
         f"{time.perf_counter() - t0:.1f} s; timing {n_items} spectra x {args.rounds} rounds")
    times = interleaved(methods, n_items, rounds=int(args.rounds), warmup=int(args.warmup),
                        progress=_log if args.verbose else None)
    res = {k: stats_ms(v) for k, v in times.items()}
    return {"threads": threads, "n_items": n_items, "rounds": int(args.rounds),
            "warmup": int(args.warmup), "methods": res, "info": info,
            "ratios": ratios(res)}


def ratios(res: dict[str, dict[str, float]], reference: str = REFERENCE) -> dict[str, float]:
    """Median time of each method divided by the reference method's median."""
    ref = res.get(reference, {}).get("median")
    if not ref:
        return {}
    return {k: v["median"] / ref for k, v in res.items() if v.get("n")}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry of the latency worker."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--keras", default=None)
    ap.add_argument("--float32", default=None)
    ap.add_argument("--floor", default=None)
    ap.add_argument("--knn", default=None, help='JSON, e.g. {"k": 1, "metric": "cosine"}')
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-items", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-xla", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps(run_worker(args)), flush=True)


if __name__ == "__main__":
    main()
