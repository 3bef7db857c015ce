"""Accuracy experiments on the grouped split that did not become the default (ground side, TF).

Three ways of getting more out of the same 1,262 ``rruff-raw`` spectra, each measured on the
grouped test split with every choice made on the validation split (results and commands:
``docs/parts/results_training.md``, "More data, refits and ensembles"):

``pretrain``
    Pretrain the CNN on *every* LR-Raman raw spectrum that covers the grid (all 2,055
    minerals, ``min_spectra=1``) except those of the validation and test specimens of the
    97-mineral split, validating on the 97-mineral validation spectra; then fine-tune on the
    97 minerals' training split (softmax initialised from the pretrained head's columns of
    those minerals, learning rate ``--finetune-lr``). Reports the joint model (pretrained,
    restricted to the 97 columns) and the fine-tuned one.
``refit``
    Retrain a finished run on train + validation with the run's own learning-rate schedule
    cut at its best epoch (``trainer.train.train_model(schedule=...)``): same recipe, 25 %
    more spectra, no selection on anything but the original validation run.
``ensemble``
    Average the softmax outputs of several finished runs (an upper bound for a distilled
    single model).
``extra``
    Add the 2019 ``excellent_unoriented`` spectra (processed, other instruments and lasers)
    of the 97 minerals measured on *training* specimens and covering at least
    ``--lo``-``--hi`` cm-1 (zero outside their range: they are baseline-corrected) to the
    training split; default recipe otherwise.

Usage::

    OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 python -m benchmarks.accuracy_experiments \\
        --data ../shared/data/rruff --out bench_out/accuracy pretrain --pool-size 6
    ... refit runs/default runs/sweep/default-grouped-m2
    ... ensemble runs/sweep/default-grouped-m2 runs/sweep/default-grouped-m2-seed1

Each command writes ``OUT/<command>.json`` and prints one line per result.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _data(root: str, run: str | None = None):
    """The data set and split of ``run`` (its recorded data set, ``min_spectra``, minerals
    and ``split.csv``); without a run ``rruff-raw`` (>= 8 spectra), grouped split, seed 0."""
    from ramanedge.dataset import build_dataset
    from trainer.run import DataConfig, make_or_read_split

    if run is None:
        ds = build_dataset(root, "rruff-raw", min_spectra=8)
        return ds, make_or_read_split(ds, DataConfig(root=root))
    d = json.loads((Path(run) / "config.json").read_text())["data"]
    kw: dict[str, Any] = {"min_spectra": int(d.get("min_spectra", 8))}
    if d.get("minerals"):
        kw["minerals"] = list(d["minerals"])
    if d.get("cache_dir"):
        kw["cache_dir"] = d["cache_dir"]
    ds = build_dataset(root, d.get("dataset", "rruff-raw"), **kw)
    split = make_or_read_split(ds, DataConfig(root=root,
                                              split_file=str(Path(run) / "split.csv")))
    return ds, split


def _top1(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probs.argmax(1) == y))


def pretrain(root: str, pool_size: int, seed: int, finetune_lr: float,
             pre_epochs: int) -> dict[str, Any]:
    """Pretrain on all minerals (val/test specimens excluded), fine-tune on the 97."""
    from ramanedge.dataset import build_dataset
    from trainer.model import ModelConfig
    from trainer.train import PAPER_FAMILY_TRAIN, predict_probs, train_model

    ds, split = _data(root)
    everything = build_dataset(root, "rruff-raw", min_spectra=1)
    held = {s for s, part in zip(ds.sample_ids, split, strict=True) if part != "train"}
    pre = np.array([s not in held for s in everything.sample_ids])
    row = {p: i for i, p in enumerate(everything.paths)}
    va_rows = np.array([row[p] for p, part in zip(ds.paths, split, strict=True) if part == "val"])
    mc = ModelConfig(arch="paper", pool_size=pool_size)
    t0 = time.perf_counter()
    r = train_model(everything.X[pre], everything.y[pre], everything.X[va_rows],
                    everything.y[va_rows], len(everything.labels), mc,
                    replace(PAPER_FAMILY_TRAIN, seed=seed, epochs=pre_epochs,
                            early_stop_patience=15),
                    log=lambda s: print("pretrain", s, flush=True))
    pre_s = time.perf_counter() - t0
    cols = np.array([everything.labels.index(lab) for lab in ds.labels])
    tr, va, te = (split == s for s in ("train", "val", "test"))
    out: dict[str, Any] = {
        "pool_size": pool_size, "seed": seed, "pretrain_spectra": int(pre.sum()),
        "pretrain_minerals": int(len(np.unique(everything.y[pre]))),
        "pretrain_epochs": r.epochs_run, "pretrain_seconds": round(pre_s, 1),
        "joint_val_top1": _top1(predict_probs(r.model, ds.X[va])[:, cols], ds.y[va]),
        "joint_test_top1": _top1(predict_probs(r.model, ds.X[te])[:, cols], ds.y[te]),
    }
    w = r.model.get_weights()
    w[-2], w[-1] = w[-2][:, cols], w[-1][cols]
    ft = train_model(ds.X[tr], ds.y[tr], ds.X[va], ds.y[va], len(ds.labels), mc,
                     replace(PAPER_FAMILY_TRAIN, seed=seed, learning_rate=finetune_lr),
                     init_weights=w,
                     log=lambda s: print("finetune", s, flush=True))
    out.update(finetune_lr=finetune_lr, finetune_epochs=ft.epochs_run,
               val_top1=_top1(predict_probs(ft.model, ds.X[va]), ds.y[va]),
               test_top1=_top1(predict_probs(ft.model, ds.X[te]), ds.y[te]))
    return out


def refit(root: str, runs: list[str]) -> list[dict[str, Any]]:
    """Retrain each run on train + val with its LR schedule cut at its best epoch."""
    from trainer.model import ModelConfig
    from trainer.train import TrainConfig, predict_probs, train_model

    rows = []
    for run in runs:
        cfg = json.loads((Path(run) / "config.json").read_text())
        hist = json.loads((Path(run) / "history.json").read_text())
        met = json.loads((Path(run) / "metrics.json").read_text())
        ds, split = _data(root, run)
        tv, te = split != "test", split == "test"
        schedule = hist["lr"][: met["best_epoch"]]
        # the validation arguments are only logged with a schedule: two training rows
        r = train_model(ds.X[tv], ds.y[tv], ds.X[tv][:2], ds.y[tv][:2], len(ds.labels),
                        ModelConfig.from_dict(cfg["model"]),
                        # a run trained with outlier exposure is refit without its
                        # negatives (this refit does not load them): recorded in the row
                        TrainConfig.from_dict(cfg["train"]),
                        schedule=schedule, log=None)
        rows.append({"run": run, "epochs": len(schedule), "seconds": round(r.seconds, 1),
                     "outlier_exposure_in_run": cfg["train"].get("outlier_exposure", 0.0),
                     "outlier_exposure_in_refit": 0.0,
                     "test_top1_run": met["test"]["top1"],
                     "test_top1_refit": _top1(predict_probs(r.model, ds.X[te]), ds.y[te])})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def ensemble(root: str, runs: list[str]) -> dict[str, Any]:
    """Top-1 of each run and of the mean of their softmax outputs (val and test)."""
    from trainer.model import load_keras_model
    from trainer.train import predict_probs

    ds, split = _data(root, runs[0])
    va, te = split == "val", split == "test"
    probs = []
    for run in runs:
        model = load_keras_model(Path(run) / "model.keras")
        probs.append((predict_probs(model, ds.X[va]), predict_probs(model, ds.X[te])))
    return {
        "runs": runs,
        "single": [{"val_top1": _top1(v, ds.y[va]), "test_top1": _top1(t, ds.y[te])}
                   for v, t in probs],
        "ensemble": {"val_top1": _top1(np.mean([v for v, _ in probs], 0), ds.y[va]),
                     "test_top1": _top1(np.mean([t for _, t in probs], 0), ds.y[te])},
    }


def extra(root: str, pool_size: int, seed: int, lo: float, hi: float) -> dict[str, Any]:
    """Train with extra processed spectra of training specimens (see the module docstring)."""
    from ramanedge.errors import SpectrumError
    from ramanedge.grid import GRID
    from ramanedge.io.rruff import normalise_label, parse_rruff
    from ramanedge.io.sources import iter_spectrum_files
    from trainer.model import ModelConfig
    from trainer.train import PAPER_FAMILY_TRAIN, predict_probs, train_model

    ds, split = _data(root)
    tr, va, te = (split == s for s in ("train", "val", "test"))
    held = {s for s, part in zip(ds.sample_ids, split, strict=True) if part != "train"}
    index = {normalise_label(lab): i for i, lab in enumerate(ds.labels)}
    g = np.asarray(GRID, dtype=np.float64)
    X, y = [], []
    for f in iter_spectrum_files(Path(root) / "excellent_unoriented" / "processed.tar.xz"):
        try:
            s = parse_rruff(f.data, f.path)
        except SpectrumError:
            continue
        k = index.get(normalise_label(s.mineral or ""))
        if k is None or not s.rruff_id or s.rruff_id in held or s.x[0] > lo or s.x[-1] < hi:
            continue
        row = np.where((g >= s.x[0]) & (g <= s.x[-1]), np.interp(g, s.x, s.y), 0.0)
        if row.max() > 0:
            X.append(row / row.max())
            y.append(k)
    Xt = np.concatenate([ds.X[tr], np.asarray(X, np.float32)])
    yt = np.concatenate([ds.y[tr], np.asarray(y, np.int64)])
    r = train_model(Xt, yt, ds.X[va], ds.y[va], len(ds.labels),
                    ModelConfig(arch="paper", pool_size=pool_size),
                    replace(PAPER_FAMILY_TRAIN, seed=seed),
                    log=None)
    return {"pool_size": pool_size, "seed": seed, "lo": lo, "hi": hi, "n_extra": len(y),
            "extra_minerals": len(set(y)), "epochs": r.epochs_run,
            "val_top1": _top1(predict_probs(r.model, ds.X[va]), ds.y[va]),
            "test_top1": _top1(predict_probs(r.model, ds.X[te]), ds.y[te])}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/rruff")
    ap.add_argument("--out", default="bench_out/accuracy")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--pool-size", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-lr", type=float, default=3e-4)
    p.add_argument("--pretrain-epochs", type=int, default=120)
    p = sub.add_parser("extra")
    p.add_argument("--pool-size", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lo", type=float, default=300.0)
    p.add_argument("--hi", type=float, default=1200.0)
    for name in ("refit", "ensemble"):
        sub.add_parser(name).add_argument("runs", nargs="+")
    a = ap.parse_args(argv)
    if not Path(a.data).is_dir():
        ap.error(f"RRUFF data folder {a.data} does not exist (expected e.g. ../shared/data/rruff)")
    for run in getattr(a, "runs", []):
        missing = [f for f in ("config.json", "history.json", "metrics.json", "model.keras")
                   if not (Path(run) / f).is_file()]
        if missing:
            ap.error(f"{run} is not a finished run folder (missing {', '.join(missing)}); "
                     "expected a folder written by 'ramanedge train'")
    if a.cmd == "pretrain":
        res: Any = pretrain(a.data, a.pool_size, a.seed, a.finetune_lr, a.pretrain_epochs)
    elif a.cmd == "extra":
        res = extra(a.data, a.pool_size, a.seed, a.lo, a.hi)
    elif a.cmd == "refit":
        res = refit(a.data, a.runs)
    else:
        res = ensemble(a.data, a.runs)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.cmd}.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
