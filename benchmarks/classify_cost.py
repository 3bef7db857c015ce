"""What ``Classifier.classify_grid`` adds to the int8 model call, and where (issue 12).

Only the three int8 methods of :mod:`benchmarks.latency` are timed, interleaved in one
process (``int8_invoke``, ``int8_model`` = quantise + invoke + dequantise, ``int8_classify``),
``--repeats`` times, so that no other method (Keras, XLA) disturbs the caches between them.
Then the classifier's per-spectrum path is timed stage by stage, each stage a cumulative
prefix of ``classify_grid``, interleaved the same way (median per call)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.classify_cost --data ../shared/data/rruff \\
        --folder runs/flight/eval-oe/flight-oe-grouped0 --out docs/classify_cost.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import one_line_errors

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def stages(clf: Any) -> dict[str, Any]:
    """Cumulative prefixes of the classifier's per-spectrum path, ``fn(x)`` each."""
    from edge_runtime import conformal
    from edge_runtime.artifact import softmax_and_max
    from edge_runtime.interpreter import get_output_float, set_input_int8

    art, it = clf.artifact, clf.interpreter
    thr = clf._set_threshold if clf._set_threshold is not None else 0.0

    def model(x: np.ndarray) -> Any:
        set_input_int8(it, x, art.input_q)
        it.invoke()
        return get_output_float(it, art.probs_q)

    def checked(x: np.ndarray) -> Any:
        clf._invoke(x)
        return get_output_float(it, art.features_q).reshape(-1)

    def head(x: np.ndarray) -> Any:  # the float head alone (no library blend)
        f = checked(x)
        return softmax_and_max(clf._probs_head.logits(f)) if clf._probs_head else f

    def ranked(x: np.ndarray) -> Any:  # as in Classifier.classify_grid
        p, f, mx = clf._outputs(x)
        n = conformal.set_size(p, thr)
        r = np.argsort(-p, kind="stable")[:max(clf.top_k, n)].tolist()
        return f, r, p[r].tolist(), mx

    def bank(x: np.ndarray) -> Any:
        f, r, p, mx = ranked(x)
        return r, p, (clf._bank_unit.distance_and_norm(f) if clf._bank_unit is not None
                      else 0.0)

    library = ({} if clf.library is None else
               {"+ spectral library (lagged match, blend)": clf._outputs})
    return {"model (quantise + invoke + dequantise probs)": model,
            "+ input check, features instead of probs": checked,
            "+ float head logits and softmax": head if clf.library is not None
            else clf._outputs,
            **library,
            "+ ranking, top-k and set size": ranked,
            "+ bank distance (unknown rule)": bank,
            "classify_grid (all of it, + Prediction)": clf.classify_grid}


@click.command()
@one_line_errors
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True)
@click.option("--folder", type=click.Path(path_type=Path), required=True,
              help="an evaluation folder with run/ (split.csv) and model/")
@click.option("--n", "n_items", default=100, show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None)
def main(data_root: Path, folder: Path, n_items: int, repeats: int, out: Path | None) -> None:
    """Time int8_invoke / int8_model / int8_classify interleaved, then the stages."""
    from benchmarks.common import interleaved, stats_ms
    from benchmarks.latency import build_methods
    from edge_runtime.classify import Classifier
    from ramanedge.dataset import build_dataset
    from ramanedge.machine import cpu_model
    from ramanedge.splits import read_split_csv

    ds = build_dataset(data_root, "rruff-raw", min_spectra=8)
    split = read_split_csv(folder / "run" / "split.csv", ds)
    X = np.ascontiguousarray(ds.X[split == "test"][:n_items], dtype=np.float32)
    methods, _ = build_methods({"X_test": X}, artifact=folder / "model", threads=1,
                               floor=None, float32=None, keras_path=None, knn=None,
                               n_items=len(X))
    methods = {k: methods[k] for k in ("int8_invoke", "int8_model", "int8_classify")}
    runs = []
    for _ in range(repeats):
        t = interleaved(methods, len(X), rounds=3, warmup=20)
        med = {k: stats_ms(v)["median"] * 1e3 for k, v in t.items()}
        runs.append({**{f"{k}_us": round(v, 2) for k, v in med.items()},
                     "ratio": med["int8_classify"] / med["int8_model"]})
        click.echo(f"  {runs[-1]}", err=True)
    clf = Classifier.from_dir(folder / "model", use_head_store=False)
    st = {name: (lambda i, fn=fn: fn(X[i])) for name, fn in stages(clf).items()}
    t = interleaved(st, len(X), rounds=3 * repeats, warmup=20)
    stage_us = {k: round(stats_ms(v)["median"] * 1e3, 2) for k, v in t.items()}
    ratios = [r["ratio"] for r in runs]
    res = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu_model(),
           "folder": str(folder), "n": len(X), "openblas_threads":
           os.environ.get("OPENBLAS_NUM_THREADS"), "runs": runs,
           "ratio_median": float(np.median(ratios)), "ratio_min": float(min(ratios)),
           "ratio_max": float(max(ratios)), "stages_us": stage_us}
    lines = ["| stage (cumulative) | us per spectrum | added |", "|---|---|---|"]
    prev = None
    for name, us in stage_us.items():
        lines.append(f"| {name} | {us:.1f} | {'' if prev is None else f'{us - prev:+.1f}'} |")
        prev = us
    click.echo(f"classify_grid / model: median {res['ratio_median']:.3f} "
               f"(min {res['ratio_min']:.3f}, max {res['ratio_max']:.3f}) over {repeats} runs")
    click.echo("\n".join(lines))
    if out is not None:
        res["table"] = "\n".join(lines)
        out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
