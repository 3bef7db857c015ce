"""Calibration-size sweep: int8 parity for several representative-set sizes and draws.

:func:`calibration_sweep` converts the model once per (size, seed) draw and measures it like
the export's parity gate, writing nothing; :func:`sweep_table` renders the rows
(``ramanedge quantize --calib-sweep``).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from ramanedge.splits import select_calibration

from .convert import convert, dual_output_model, export_saved_model, keras_outputs
from .export import check_spectra
from .gate import parity_report
from .runner import TFLiteRunner, head_probs


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
    int8-aware model is recalibrated on each draw first, as
    :func:`quantize.export.export_artifact` does).
    Returns one row per conversion: ``size``, ``seed``, ``n``, ``float_top1``, ``int8_top1``,
    ``drop_points``, ``agreement``, ``head_agreement`` (float head on int8 features),
    ``ties`` (share of int8 outputs with a tied top probability), ``input_scale``,
    ``convert_s``.
    """
    say = log or (lambda _msg: None)
    n_points = int(np.asarray(train_X).shape[1])
    train_X = check_spectra("training split", train_X, n_points)
    test_X = check_spectra("test split", test_X, n_points)
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    from trainer.qat import calibrate_act_quant, has_act_quant

    aware = has_act_quant(model)
    dual = dual_output_model(model)
    ref = keras_outputs(dual, test_X)
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
                    ref = keras_outputs(dual, test_X)
                runner = TFLiteRunner(blob)
                q = runner.run(test_X)
                p = parity_report(ref["probs"], q["probs"], test_y)
                head = head_probs(q["features"], W, b, None)
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
