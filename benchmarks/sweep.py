"""Pooling sweep: pool size m x pooling layers n -> accuracy under shifts, int8 size, latency.

Every point is the default model's recipe (``runs/default/config.json``: data, split, all
model and training settings) with only ``pool_size`` and ``pool_layers`` changed. Runs that
already exist anywhere under ``runs/`` with exactly that configuration (e.g. the trainer's
own sweep) are reused; missing ones are trained with :func:`trainer.run.train_run` into
``runs/bench-sweep/mM_nN`` (in a subprocess, unless ``--skip-train``). Each run is exported
to full int8 into ``models/bench-sweep/mM_nN`` (``ramanedge quantize ...
--allow-accuracy-drop``: the sweep reports every point, the gate result is recorded).

Measurement (:func:`measure`, run as an edge-only worker ``python -m benchmarks.sweep
measure ...``): int8 latency (quantise + invoke + dequantise, 1 thread, all models
interleaved on the same test spectra), int8 top-1/top-3 at shifts 0/15/30 cm-1. Float
accuracy comes from each run's ``metrics.json`` (the trainer's evaluation, same shifts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO,
    child_env,
    int8_call,
    interleaved,
    python,
    rel,
    run_json,
    run_streaming,
    stats_ms,
)
from ramanedge.manifest import HEAD_FILE, MANIFEST_NAME, MODEL_FILE

POOL_SIZES = (2, 4, 8, 16, 32, 64)
POOL_LAYERS = (1, 2, 3)
MAX_PARAMS = 12_000_000
SHIFTS = (0, 15, 30)


def grid_points(base_model: dict[str, Any], *, pool_sizes: Sequence[int] = POOL_SIZES,
                pool_layers: Sequence[int] = POOL_LAYERS, n_classes: int = 97,
                max_params: int = MAX_PARAMS) -> list[tuple[int, int]]:
    """The ``(m, n)`` points to run: every m (plus the default model's own m) for the default
    model's n, and the other n only where the model has at most ``max_params`` weights
    (n = 1 with m = 2 has 91 M)."""
    from trainer.model import ModelConfig, count_params

    base_n, base_m = int(base_model["pool_layers"]), int(base_model["pool_size"])
    pts = []
    for n in pool_layers:
        sizes = sorted(set(pool_sizes) | ({base_m} if n == base_n else set()))
        for m in sizes:
            cfg = ModelConfig.from_dict({**base_model, "pool_size": m, "pool_layers": n})
            if n == base_n or count_params(cfg, n_classes) <= max_params:
                pts.append((m, n))
    return pts


def paper_base(base_cfg: dict[str, Any]) -> dict[str, Any]:
    """The sweep's base config: the run's own when it is a paper-family run, else the paper
    family at its former default (m = 6, kernel 11) with the recipe it was measured with
    (:data:`trainer.train.PAPER_FAMILY_TRAIN`), on the run's data and split. The sweep is the
    paper's m/n dial; the flight family has its own table (``docs/parts/flight.md``)."""
    from trainer.model import PAPER_DEFAULT, ModelConfig
    from trainer.train import PAPER_FAMILY_TRAIN

    if ModelConfig.from_dict(base_cfg["model"]).arch == "paper":
        return base_cfg
    return {**base_cfg, "model": PAPER_DEFAULT.to_dict(), "train": PAPER_FAMILY_TRAIN.to_dict()}


def _norm_train(d: dict[str, Any]) -> dict[str, Any]:
    from trainer.train import TrainConfig

    try:
        return TrainConfig.from_dict(d).to_dict()
    except (TypeError, ValueError):
        return {"invalid": True}


def _norm_model(d: dict[str, Any]) -> dict[str, Any]:
    from trainer.model import ModelConfig

    try:
        return ModelConfig.from_dict(d).to_dict()
    except (TypeError, ValueError):
        return {"invalid": True}


def _data_key(cfg: dict[str, Any]) -> tuple:
    d = cfg.get("data", {})
    return (d.get("dataset"), d.get("min_spectra"), d.get("minerals"), cfg.get("split_sha256"))


def find_runs(base_cfg: dict[str, Any], runs_root: Path = REPO / "runs"
              ) -> dict[tuple[int, int], Path]:
    """Existing complete runs matching the base config except for (m, n); newest wins."""
    want_train = _norm_train(base_cfg["train"])
    want_model = _norm_model(base_cfg["model"])
    key = _data_key(base_cfg)
    found: dict[tuple[int, int], tuple[str, Path]] = {}
    for cfg_path in sorted(runs_root.glob("**/config.json")):
        run = cfg_path.parent
        if any(part.startswith(".") for part in run.relative_to(runs_root).parts):
            continue  # temporary folders of runs being written
        if not all((run / f).is_file() for f in ("model.keras", "labels.json", "split.csv",
                                                 "metrics.json")):
            continue
        try:
            cfg = json.loads(cfg_path.read_text())
            model = _norm_model(cfg["model"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _data_key(cfg) != key or _norm_train(cfg.get("train", {})) != want_train:
            continue
        m, n = model.get("pool_size"), model.get("pool_layers")
        if {**model, "pool_size": 0, "pool_layers": 0} != \
                {**want_model, "pool_size": 0, "pool_layers": 0}:
            continue
        created = str(cfg.get("created", ""))
        if (m, n) not in found or created > found[(m, n)][0]:
            found[(m, n)] = (created, run)
    return {k: v[1] for k, v in found.items()}


def train_point(base_run: Path, m: int, n: int, out: Path, data_root: Path | None = None
                ) -> None:
    """Train the base run's recipe with pool size ``m`` and ``n`` pooling layers into ``out``
    (in this process; the bench calls it through ``python -m benchmarks.sweep train``)."""
    from dataclasses import replace

    from trainer.model import ModelConfig
    from trainer.run import DataConfig, read_run_config, train_run
    from trainer.train import TrainConfig

    cfg = paper_base(read_run_config(base_run))
    d = cfg["data"]
    root = str(data_root) if data_root is not None else d["root"]
    data = DataConfig(root=root, dataset=d.get("dataset", "rruff-raw"),
                      min_spectra=int(d.get("min_spectra", 8)), split=d.get("split", "grouped"),
                      split_seed=int(d.get("split_seed", 0)),
                      split_file=str(Path(base_run) / "split.csv"),
                      minerals=d.get("minerals"))
    mc = replace(ModelConfig.from_dict(cfg["model"]), pool_size=m, pool_layers=n)
    tc = TrainConfig.from_dict(cfg["train"])
    train_run(out, data, mc, tc, overwrite=True,
              log=lambda s: print(s, file=sys.stderr, flush=True))


def ensure_points(points: Sequence[tuple[int, int]], base_run: Path, *, skip_train: bool,
                  data_root: Path, base_model: Path | None = None,
                  log: Callable[[str], None] = print,
                  runs_root: Path = REPO / "runs", models_root: Path = REPO / "models"
                  ) -> list[dict[str, Any]]:
    """For every point: find or train its run, find or export its int8 artifact (the
    default point uses ``base_model`` when that is an export of ``base_run``).

    Returns one dict per point: ``m``, ``n``, ``run``, ``model`` (None when missing),
    ``reused_run``, ``status``.
    """
    own_cfg = json.loads((base_run / "config.json").read_text())
    base_cfg = paper_base(own_cfg)
    have = find_runs(base_cfg, runs_root)
    if base_cfg is own_cfg:
        # the default run itself stands for its own point (not an identical copy of it)
        have[(int(base_cfg["model"]["pool_size"]), int(base_cfg["model"]["pool_layers"]))] = \
            Path(base_run)
    out = []
    for m, n in points:
        name = f"m{m}_n{n}"
        row: dict[str, Any] = {"m": m, "n": n, "run": None, "model": None, "reused_run": False,
                               "status": "ok"}
        run = have.get((m, n))
        if run is not None:
            row["reused_run"] = True
            log(f"  sweep {name}: reusing run {rel(run)}")
        elif skip_train:
            row["status"] = "no run (--skip-train)"
            log(f"  sweep {name}: no matching run, skipped (--skip-train)")
            out.append(row)
            continue
        else:
            run = runs_root / "bench-sweep" / name
            log(f"  sweep {name}: training {rel(run)}")
            rc, lines, secs = run_streaming(
                [python(), "-m", "benchmarks.sweep", "train", "--base", str(base_run),
                 "--m", str(m), "--n", str(n), "--out", str(run), "--data", str(data_root)],
                env=child_env(1), cwd=REPO, echo=_train_progress(log))
            if rc != 0:
                row["status"] = f"training failed ({lines[-1] if lines else rc})"
                log(f"  sweep {name}: {row['status']}")
                out.append(row)
                continue
            log(f"  sweep {name}: trained in {secs:.0f} s")
        row["run"] = run
        model = models_root / "bench-sweep" / name
        if base_model is not None and Path(run) == Path(base_run) and \
                _artifact_matches(base_model, run):
            model = Path(base_model)  # the default artifact itself
        elif not _artifact_matches(model, run):
            log(f"  sweep {name}: exporting int8 to {rel(model)}")
            rc, lines, _ = run_streaming(
                [python(), "-m", "ramanedge.cli", "quantize", str(run), "--out", str(model),
                 "--allow-accuracy-drop", "--overwrite", "--data", str(data_root)],
                env=child_env(1), cwd=REPO, echo=lambda s: log(s) if s.startswith(
                    ("wrote", "error", "WARNING: int8")) else None)
            if rc != 0:
                row["status"] = f"export failed ({lines[-1] if lines else rc})"
                out.append(row)
                continue
        row["model"] = model
        out.append(row)
    return out


def _train_progress(log: Callable[[str], None]) -> Callable[[str], None]:
    """Echo the trainer's summary lines (not every epoch, not TensorFlow's chatter)."""

    def echo(line: str) -> None:
        body = line.strip().lstrip("|").strip()
        if body.startswith(("data set", "split:", "test:", "run written")):
            log(line)

    return echo


def _artifact_matches(model: Path, run: Path) -> bool:
    """True when ``model`` is an export of exactly this run (same run creation time)."""
    try:
        man = json.loads((model / MANIFEST_NAME).read_text())
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return False
    t = man.get("training", {})
    return (t.get("run_created") == cfg.get("created")
            and t.get("split_sha256") == cfg.get("split_sha256"))


def measure(models: Sequence[Path], X: np.ndarray, y: np.ndarray, *, n_items: int = 100,
            rounds: int = 3, warmup: int = 20, shifts: Sequence[int] = SHIFTS
            ) -> dict[str, Any]:
    """Edge-only: int8 latency (1 thread, interleaved) and int8 accuracy of every model."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.interpreter import make_interpreter, run_int8_batch
    from trainer.evaluate import shift_accuracy

    X = np.asarray(X, np.float32)
    methods = {}
    acc = {}
    for mdir in models:
        art = load_artifact(mdir)
        it = make_interpreter(art.model_path, num_threads=1)

        def predict(A: np.ndarray, it=it, art=art) -> np.ndarray:
            return run_int8_batch(it, A, art.input_q, {"probs": art.probs_q})["probs"]

        methods[str(mdir)] = int8_call(it, X, art.input_q, art.probs_q)
        res = shift_accuracy(predict, X, y, shifts)
        acc[str(mdir)] = {str(s): {"top1": res[str(s)]["top1"], "top3": res[str(s)]["top3"]}
                          for s in shifts}
        print(f"  measured accuracy of {Path(mdir).name}", file=sys.stderr, flush=True)
    n = min(n_items, X.shape[0])
    times = interleaved(methods, n, rounds=rounds, warmup=warmup)
    return {k: {"latency_ms": stats_ms(times[k]), "int8": acc[k]} for k in methods}


def collect(points: list[dict[str, Any]], inputs: Path, *, n_items: int, rounds: int,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the measurement worker on every exported point; merge with run metrics."""
    from trainer.model import ModelConfig, count_params

    ready = [p for p in points if p["model"] is not None]
    if not ready:
        return points
    res = run_json([python(), "-m", "benchmarks.sweep", "measure", "--inputs", str(inputs),
                    "--n-items", str(n_items), "--rounds", str(rounds),
                    *[str(p["model"]) for p in ready]], env=child_env(1), cwd=REPO, echo=log)
    for p in points:
        p["run"] = rel(p["run"]) if isinstance(p["run"], Path) else p["run"]
        if p["model"] is None:
            continue
        mdir = Path(p["model"])
        r = res[str(mdir)]
        man = json.loads((mdir / MANIFEST_NAME).read_text())
        metrics = json.loads((REPO / p["run"] / "metrics.json").read_text())
        cfg = json.loads((REPO / p["run"] / "config.json").read_text())
        test = metrics["test"]
        p.update({
            "model": rel(mdir),
            "int8_bytes": (mdir / MODEL_FILE).stat().st_size,
            "head_bytes": (mdir / HEAD_FILE).stat().st_size,
            "params": count_params(ModelConfig.from_dict(cfg["model"]),
                                   len(man["labels"])),
            "latency_ms": r["latency_ms"],
            "int8": r["int8"],
            "float": {str(s): {"top1": test["shifts"][str(s)]["top1"],
                               "top3": test["shifts"][str(s)]["top3"]} for s in SHIFTS},
            "gate_passed": bool(man.get("metrics", {}).get("gate", {}).get("passed", False)),
            "agreement": man.get("metrics", {}).get("agreement"),
            "train_seconds": metrics.get("train_seconds"),
            "epochs_run": metrics.get("epochs_run"),
        })
    return points


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.sweep train|measure ...`` (workers of the bench)."""
    ap = argparse.ArgumentParser(description="pooling-sweep workers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--base", required=True)
    t.add_argument("--m", type=int, required=True)
    t.add_argument("--n", type=int, required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--data", default=None)
    me = sub.add_parser("measure")
    me.add_argument("--inputs", required=True)
    me.add_argument("--n-items", type=int, default=100)
    me.add_argument("--rounds", type=int, default=3)
    me.add_argument("models", nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "train":
        train_point(Path(a.base), a.m, a.n, Path(a.out),
                    Path(a.data) if a.data else None)
        print(json.dumps({"out": a.out}))
    else:
        with np.load(a.inputs, allow_pickle=False) as z:
            X, y = np.array(z["X_test"]), np.array(z["y_test"])
        print(json.dumps(measure([Path(m) for m in a.models], X, y, n_items=a.n_items,
                                 rounds=a.rounds)), flush=True)


if __name__ == "__main__":
    main()
