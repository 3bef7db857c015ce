"""How much a teacher ensemble says beyond the label on its own training spectra (issue 11).

Distillation mixes the teachers' mean answer on the clean training spectra into the
targets (``TrainConfig.distill``). Teachers trained on those very spectra answer them almost
with the label; this prints by how much, for teacher runs of one split (e.g. the teacher
runs ``benchmarks.flight_eval --recipe flight-kd-m2`` keeps)::

    python -m benchmarks.teacher_targets runs/flight/eval-kd/flight-kd-m2-grouped0/teacher0 \\
        runs/flight/eval-kd/flight-kd-m2-grouped0/teacher1 \\
        runs/flight/eval-kd/flight-kd-m2-grouped0/teacher2

``--views N`` also prints their mean answer on N augmented copies of those spectra (the
flight augmentation, each copy's shift undone): what function matching
(``TrainConfig.distill_views``) distils instead; and on copies without the partial-coverage
crop and with the crop alone (every copy cropped, shift undone, nothing else): where the
teachers, which never trained on crops, go wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def target_stats(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1, mean probability of the label, mean largest probability and mean entropy
    (nats) of mean-ensemble probabilities ``probs`` (N, K) against labels ``y``."""
    P = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    return {"top1": float(np.mean(P.argmax(1) == y)),
            "p_label": float(P[np.arange(len(y)), y].mean()),
            "p_max": float(P.max(1).mean()),
            "entropy": float(-(P * np.log(np.clip(P, 1e-12, None))).sum(1).mean())}


def teacher_views(X: np.ndarray, copies: int, config: Any = None) -> list[np.ndarray]:
    """``copies`` augmented copies of the training spectra ``X`` as function matching shows
    them to the teachers: ``config`` (default the flight augmentation,
    :data:`trainer.train.FLIGHT_AUGMENT`; backgrounds from ``X`` itself), each row's shift
    undone; copy ``i`` drawn from seed ``i``."""
    from trainer.augment import augment_batch, shift_rows, split_background
    from trainer.train import FLIGHT_AUGMENT

    config = FLIGHT_AUGMENT if config is None else config
    bands, backgrounds = split_background(X)
    out = []
    for i in range(copies):
        V, s = augment_batch(X, config, np.random.default_rng(i), bands=bands,
                             backgrounds=backgrounds, with_shifts=True)
        out.append(shift_rows(V, -s))
    return out


#: the views ``--views`` prints, by name: the flight augmentation, without its crop, and the
#: crop alone (with the shift, undone)
VIEW_KINDS = ("all of the flight augmentation", "without the crop", "the crop alone")


@click.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--views", type=click.IntRange(0, 100), default=0, show_default=True,
              help="also their answer on this many augmented copies (shift undone)")
def main(runs: tuple[Path, ...], views: int) -> None:
    """Mean answer of the teacher RUNS (one split) on their clean training spectra."""
    from ramanedge.errors import RamanEdgeError
    from trainer.run import load_run
    from trainer.train import predict_probs

    try:
        loaded = [load_run(r) for r in runs]
    except RamanEdgeError as e:
        raise click.UsageError(str(e)) from None
    probs, y = [], None
    for r in loaded:
        X, y_r = r.subset("train")
        if y is not None and not np.array_equal(y, y_r):
            raise click.UsageError("the teacher runs were trained on different splits")
        y = y_r
        probs.append(predict_probs(r.model, X))
    s = target_stats(np.mean(probs, axis=0), y)
    click.echo(f"{len(runs)} teachers, {len(y)} training spectra: top-1 {100 * s['top1']:.1f} %, "
               f"mean p(label) {s['p_label']:.3f}, mean max p {s['p_max']:.3f}, "
               f"mean entropy {s['entropy']:.2f} nats")
    if not views:
        return
    from dataclasses import replace

    from trainer.augment import AugmentConfig
    from trainer.train import FLIGHT_AUGMENT

    configs = (FLIGHT_AUGMENT, replace(FLIGHT_AUGMENT, crop=0.0),
               AugmentConfig(shift_cm=FLIGHT_AUGMENT.shift_cm, crop=1.0))
    for kind, cfg in zip(VIEW_KINDS, configs, strict=True):
        V = teacher_views(X, views, cfg)
        s = target_stats(np.concatenate([np.mean([predict_probs(r.model, v) for r in loaded],
                                                 axis=0) for v in V]), np.tile(y, views))
        click.echo(f"on {views} augmented copies, {kind} (shift undone): top-1 "
                   f"{100 * s['top1']:.1f} %, mean p(label) {s['p_label']:.3f}, mean max p "
                   f"{s['p_max']:.3f}, mean entropy {s['entropy']:.2f} nats")


if __name__ == "__main__":  # pragma: no cover
    main()
