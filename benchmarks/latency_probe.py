"""Int8 latency of untrained architecture candidates, against the paper's m=6 (issue 11).

Latency does not depend on the weights' values, so candidates for the "<= 1.0x the m=6
model's latency" target can be screened before any training: each candidate is built with
random weights, converted to full int8 (calibrated on real training spectra, as ``ramanedge
quantize`` does) and timed through the rover's path (quantise + invoke + dequantise, 1
thread), all candidates interleaved round by round in one process.

    python -m benchmarks.latency_probe --data ../shared/data/rruff --out docs/latency_probe.json
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from ramanedge.cli_options import data_root_option
from ramanedge.manifest import QuantParams
from trainer.model import (
    FLIGHT_FULL_POSITIONS,
    FLIGHT_HALF_POSITIONS,
    FLIGHT_LATE_POOL,
    FLIGHT_MODEL,
    FLIGHT_QUARTER_POSITIONS,
    PAPER_DEFAULT,
    ModelConfig,
    count_macs,
    count_params,
)

#: name -> config. ``flight (default)`` follows the default; the others trade positions or
#: channels for time, or are the 2026-12-04 screen's candidates (benchmarks.flight_search),
#: all built on a pinned model (:data:`~trainer.model.FLIGHT_LATE_POOL` or
#: :data:`~trainer.model.FLIGHT_FULL_POSITIONS`, the default they were measured against) so
#: that a later default does not change what they measured.
CANDIDATES: dict[str, ModelConfig] = {
    "paper-m6 (reference)": PAPER_DEFAULT,
    "flight (default)": FLIGHT_MODEL,
    "flight pool 3 x 4": replace(FLIGHT_LATE_POOL, pool_size=3, pool_layers=4,
                                 filters=(24, 48, 64, 96)),
    "flight pool 3 x 5": replace(FLIGHT_LATE_POOL, pool_size=3),
    "flight narrow 16-32-48-64-96": replace(FLIGHT_LATE_POOL, filters=(16, 32, 48, 64, 96),
                                            reduce_channels=16),
    "flight narrow, pool 3 x 5": replace(FLIGHT_LATE_POOL, filters=(16, 32, 48, 64, 96),
                                         reduce_channels=16, pool_size=3),
    "flight 4 blocks 24-48-96-128, pool 2 x 4": replace(FLIGHT_LATE_POOL, filters=(24, 48, 96, 128),
                                                        pool_layers=4),
    "flight kernel 7": FLIGHT_LATE_POOL,
    "flight kernel 11": replace(FLIGHT_LATE_POOL, kernel_size=11),
    "flight kernel 15": replace(FLIGHT_LATE_POOL, kernel_size=15),
    "flight multi-scale 7 + 21": replace(FLIGHT_LATE_POOL, branch_kernels=(7, 21)),
    "flight SE attention": replace(FLIGHT_LATE_POOL, attention="se"),
    "flight pool before 1x1": replace(FLIGHT_LATE_POOL, early_pool=True),
    "flight kernel 3": replace(FLIGHT_LATE_POOL, early_pool=True, kernel_size=3),
    "flight kernel 5": replace(FLIGHT_LATE_POOL, early_pool=True, kernel_size=5),
    "flight depthwise 3": replace(FLIGHT_LATE_POOL, early_pool=True, depthwise_kernel=3),
    "flight strided first conv": replace(FLIGHT_LATE_POOL, early_pool=True, strided_stem=True),
    "flight strided first conv, depthwise 3": replace(
        FLIGHT_LATE_POOL, early_pool=True, strided_stem=True, depthwise_kernel=3),
    "flight narrow, pool before 1x1": replace(FLIGHT_LATE_POOL, early_pool=True,
                                              filters=(16, 32, 48, 64, 96), reduce_channels=16),
    "flight strided first conv 5, depthwise 3": replace(
        FLIGHT_LATE_POOL, early_pool=True, strided_stem=True, kernel_size=5, depthwise_kernel=3),
    # 2026-12-07: the convs up to block 5's depthwise at half the positions, one pool fewer
    # (same 44 feature positions; the first was the default that morning,
    # FLIGHT_HALF_POSITIONS), against the model it replaced
    "flight first conv stride 2, pool 2 x 4": FLIGHT_HALF_POSITIONS,
    "flight first conv stride 2, pool 2 x 5": replace(FLIGHT_FULL_POSITIONS, stem_stride=2),
    "flight full positions (default 2026-12-05 to 12-07)": FLIGHT_FULL_POSITIONS,
    # 2026-12-07 (second session): the first conv at every 4th point and one pool fewer again
    # (still 44 feature positions and the same weights): every conv up to block 4's
    # depthwise at a quarter of FLIGHT_FULL_POSITIONS' positions (the default since that
    # day, FLIGHT_MODEL: timed as "flight (default)")
    "flight first conv stride 4, pool 2 x 3": FLIGHT_QUARTER_POSITIONS,
    # 2026-12-07 (third session, rule (W)): the stride-4 model's latency headroom spent on
    # width (same 44 feature positions, reduce 24)
    "flight stride 4, blocks 32-64-80-96-128": replace(
        FLIGHT_QUARTER_POSITIONS, filters=(32, 64, 80, 96, 128)),
    "flight stride 4, blocks 32-64-96-112-128": replace(
        FLIGHT_QUARTER_POSITIONS, filters=(32, 64, 96, 112, 128)),
    "flight stride 4, blocks 32-64-96-128-128": replace(
        FLIGHT_QUARTER_POSITIONS, filters=(32, 64, 96, 128, 128)),
    "flight stride 4, blocks 32-64-96-128-160, dense 176": replace(
        FLIGHT_QUARTER_POSITIONS, filters=(32, 64, 96, 128, 160), dense_units=176),
}
REFERENCE = "paper-m6 (reference)"



def distinct(names: list[str]) -> list[str]:
    """``names`` without a candidate whose model is an earlier one's (the default is also
    listed under the name it was measured by before it became the default): each model is
    timed once, under its first name."""
    seen: list[ModelConfig] = []
    out = []
    for name in names:
        if CANDIDATES[name] not in seen:
            seen.append(CANDIDATES[name])
            out.append(name)
    return out


def export_int8(cfg: ModelConfig, n_classes: int, calib: np.ndarray) -> bytes:
    """Random-weight model of ``cfg`` as full-int8 TFLite bytes."""
    import keras

    from quantize.convert import convert, dual_output_model, export_saved_model
    from trainer.model import build_model

    keras.utils.set_random_seed(0)
    model = build_model(n_classes, cfg)
    if cfg.input_floor is not None:
        calib = np.maximum(calib, np.float32(cfg.input_floor))
    with tempfile.TemporaryDirectory() as d:
        export_saved_model(dual_output_model(model), d, cfg.input_points)
        return convert(d, "int8", calib)


def probe_data(data_root: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(calibration spectra, test spectra, number of minerals) of grouped split 0: the
    100-spectrum representative draw ``ramanedge quantize`` uses, and the spectra timed."""
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split, select_calibration

    ds = build_dataset(data_root, "rruff-raw", min_spectra=8)
    split = make_split(ds, kind="grouped", seed=0)
    tr, te = split == "train", split == "test"
    return ds.X[tr][select_calibration(ds.y[tr], 100)], ds.X[te], len(ds.labels)


def tensor_params(detail: dict) -> QuantParams:
    """:class:`~ramanedge.manifest.QuantParams` of an interpreter's tensor detail."""
    scale, zero_point = detail["quantization"]
    return QuantParams(index=int(detail["index"]), scale=float(scale),
                       zero_point=int(zero_point),
                       shape=tuple(int(v) for v in detail["shape"]))


@click.command()
@data_root_option
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--candidate", "names", multiple=True, type=click.Choice(list(CANDIDATES)),
              help="Time only these (repeatable; the m=6 reference always runs). Default: all.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(data_root: Path, rounds: int, names: tuple[str, ...], out: Path | None) -> None:
    """Time every candidate's int8 model call, interleaved, against the m=6 model."""
    from benchmarks.common import int8_call, interleaved
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.machine import cpu_model

    calib, X, k = probe_data(data_root)
    asked = [n for n in CANDIDATES if not names or n in names or n == REFERENCE]
    chosen = distinct(asked)
    for name in asked:
        if name not in chosen:
            same = next(n for n in chosen if CANDIDATES[n] == CANDIDATES[name])
            click.echo(f"{name}: the same model as {same}, timed once under that name", err=True)
    methods, meta = {}, {}
    for name in chosen:
        cfg = CANDIDATES[name]
        blob = export_int8(cfg, k, calib)
        it = make_interpreter(blob, num_threads=1)
        # the features output: the one as wide as the features layer
        feat = next(o for o in it.get_output_details() if o["shape"][-1] == cfg.dense_units)
        call = int8_call(it, X, tensor_params(it.get_input_details()[0]), tensor_params(feat))
        methods[name] = call
        meta[name] = {"macs": count_macs(cfg, k), "weights": count_params(cfg, k),
                      "tflite_bytes": len(blob), "config": cfg.to_dict()}
        click.echo(f"{name}: {len(blob):,} B, {meta[name]['macs'] / 1e6:.2f} M MACs", err=True)
    res = interleaved(methods, len(X), rounds=rounds, warmup=20)
    ref = float(np.median(res[REFERENCE]))
    lines = ["| candidate | int8 B | MACs | median ms | x paper m=6 |", "|---|---|---|---|---|"]
    for name in chosen:
        med = float(np.median(res[name]))
        meta[name].update(median_ms=med * 1e3, ratio=med / ref)
        lines.append(f"| {name} | {meta[name]['tflite_bytes']:,} | "
                     f"{meta[name]['macs'] / 1e6:.2f} M | {med * 1e3:.4f} | {med / ref:.2f} |")
    table = "\n".join(lines)
    click.echo(table)
    if out is not None:
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "cpu": cpu_model(), "rounds": rounds, "n_spectra": len(X),
                                   "rows": meta, "table": table}, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
