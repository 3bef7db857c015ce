"""Where an int8 model's time goes, layer by layer (issue 11's latency target).

The Python interpreter has no op profiler, so this times *prefixes*: for each cut point (a
layer whose output a TFLite op produces: the input shift, each conv or pool, the dense
layers) the model up to that layer is converted to full int8 on its own (random weights,
calibrated on real training spectra, as :mod:`benchmarks.latency_probe` does) and its call
(quantise + invoke, 1 thread; not the dequantisation of the output, which for an early
prefix would be a large tensor the whole model never dequantises) is timed, every prefix
interleaved round by round in one process. The difference between consecutive prefixes is
the cost of the layers between them (including the write of their output tensor); the last
prefix is the whole model::

    python -m benchmarks.op_profile --data ../shared/data/rruff \\
        --candidate "flight (default)" --candidate "paper-m6 (reference)" \\
        --out docs/op_profile.json

Candidates are the names of :data:`benchmarks.latency_probe.CANDIDATES`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import one_line_errors
from ramanedge.cli_options import data_root_option

#: Keras layer types whose output is a TFLite op's output (BN and activations fold into the
#: conv before them; Reshape / Flatten / Dropout are free or gone after conversion).
CUT_TYPES = ("Conv1D", "DepthwiseConv1D", "SeparableConv1D", "MaxPooling1D", "Dense",
             "ReLU", "LeakyReLU", "PReLU")


def cut_points(model) -> list[str]:
    """Names of the layers to cut at: the last of each run of layers that fold into one op
    (a conv and the BN and activation after it count once, at the activation)."""
    layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
    cuts = []
    for i, lay in enumerate(layers):
        kind = type(lay).__name__
        nxt = type(layers[i + 1]).__name__ if i + 1 < len(layers) else None
        if kind not in CUT_TYPES:
            continue
        if kind in ("Conv1D", "DepthwiseConv1D", "SeparableConv1D", "Dense") and nxt in (
                "BatchNormalization", "ReLU", "LeakyReLU", "PReLU"):
            continue  # its BN / activation is cut instead
        cuts.append(lay.name)
    return cuts


def prefix_int8(model, layer: str, calib: np.ndarray, points: int) -> bytes:
    """The model up to ``layer`` (its only output) as full-int8 TFLite bytes."""
    import keras

    from quantize.convert import convert, export_saved_model

    sub = keras.Model(model.inputs, model.get_layer(layer).output, name=f"upto_{layer}")
    with tempfile.TemporaryDirectory() as d:
        export_saved_model(sub, d, points)
        return convert(d, "int8", calib)


@click.command()
@one_line_errors
@data_root_option
@click.option("--candidate", "candidates", multiple=True,
              default=("flight (default)", "paper-m6 (reference)"), show_default=True,
              help="a name of benchmarks.latency_probe.CANDIDATES (repeatable)")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(data_root: Path, candidates: tuple[str, ...], rounds: int, out: Path | None) -> None:
    """Time every prefix of each candidate, interleaved; print per-layer costs."""
    import keras

    from benchmarks.common import interleaved
    from benchmarks.latency_probe import CANDIDATES, probe_data, tensor_params
    from edge_runtime.interpreter import make_interpreter, set_input_int8
    from ramanedge.machine import cpu_model
    from trainer.model import build_model

    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise click.UsageError(f"unknown candidate {unknown[0]!r}; choose from: "
                               + ", ".join(CANDIDATES))
    calib, X, n_classes = probe_data(data_root)
    methods, rows, configs = {}, {}, {}
    for name in candidates:
        cfg = CANDIDATES[name]
        configs[name] = cfg.to_dict()
        keras.utils.set_random_seed(0)
        model = build_model(n_classes, cfg)
        cal = calib if cfg.input_floor is None else np.maximum(calib, np.float32(cfg.input_floor))
        rows[name] = []
        for layer in cut_points(model):
            blob = prefix_int8(model, layer, cal, cfg.input_points)
            it = make_interpreter(blob, num_threads=1)
            outp = it.get_output_details()[0]
            qp = tensor_params(it.get_input_details()[0])

            def call(i: int, it=it, qp=qp) -> None:
                set_input_int8(it, X[i], qp)
                it.invoke()

            key = f"{name} | {layer}"
            methods[key] = call
            # the op count is informational; the interpreter lists its ops only privately
            ops = getattr(it, "_get_ops_details", None)
            rows[name].append({"layer": layer, "output": [int(v) for v in outp["shape"]],
                               "ops": None if ops is None else len(ops())})
            click.echo(f"{key}: {rows[name][-1]['ops']} ops", err=True)
    res = interleaved(methods, len(X), rounds=rounds, warmup=20)
    lines = ["| model | up to layer | output | ops | cumulative us | added us | share |",
             "|---|---|---|---|---|---|---|"]
    for name, prefixes in rows.items():
        total = float(np.median(res[f"{name} | {prefixes[-1]['layer']}"])) * 1e6
        prev = 0.0
        for r in prefixes:
            us = float(np.median(res[f"{name} | {r['layer']}"])) * 1e6
            r.update(cumulative_us=round(us, 2), added_us=round(us - prev, 2))
            lines.append(f"| {name} | {r['layer']} | {'x'.join(map(str, r['output'][1:]))} | "
                         f"{r['ops']} | {us:.1f} | {us - prev:+.1f} | "
                         f"{(us - prev) / total:.0%} |")
            prev = us
    table = "\n".join(lines)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "cpu": cpu_model(), "rounds": rounds, "n_spectra": len(X),
                                   "configs": configs, "candidates": rows, "table": table},
                                  indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
