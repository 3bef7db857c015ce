"""The benchmark suite behind ``ramanedge bench`` / ``make bench``: measure, then report.

:func:`run_suite` drives every section for one default model (``models/default``, exported
from ``runs/default``) and returns the results dict that :mod:`benchmarks.report` renders:

1. make sure the run and artifact exist (train / quantize them with the CLI unless
   ``skip_train``), and a float32 TFLite of the same model (the artifact's
   ``model_float32.tflite``, or converted here into the work folder);
2. inputs: the run's test split (preprocessed rows and the raw RRUFF files, extracted once to
   ``.cache/ramanedge-spectra``), the k-NN references and its k/metric chosen on validation;
3. the floor model (:mod:`benchmarks.floor`);
4. latency workers, one per thread count (:mod:`benchmarks.latency`);
5. edge-only memory and cold start (:mod:`benchmarks.memory`);
6. sizes; 7. float vs int8 accuracy under shifts; 8. head retraining cost
   (:mod:`benchmarks.headcost`); 9. the pooling sweep (:mod:`benchmarks.sweep`);
10. the serial link (:mod:`benchmarks.serial`); 11. the demo's last wall time
   (``runs/demo/demo_report.json``); then the targets.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    REPO,
    child_env,
    git_commit,
    package_versions,
    python,
    rel,
    run_json,
    run_streaming,
    write_json,
)
from ramanedge.errors import DataError
from ramanedge.machine import machine_info
from ramanedge.manifest import EXEMPLARS_FILE, MANIFEST_NAME, MODEL_FILE, VARIANT_FILES

SECTIONS = ("latency", "memory", "sizes", "accuracy", "head", "sweep", "serial")
SPECTRA_CACHE = REPO / ".cache" / "ramanedge-spectra"


@dataclass(frozen=True)
class BenchConfig:
    """What ``ramanedge bench`` runs and where it writes (see ``ramanedge bench --help``)."""

    data_root: Path
    run: Path = REPO / "runs" / "default"
    model: Path = REPO / "models" / "default"
    work: Path = REPO / "bench_out"
    out_md: Path = REPO / "docs" / "benchmarks.md"
    mode: str = "full"
    skip_train: bool = False
    sections: tuple[str, ...] = SECTIONS
    threads: tuple[int, ...] = (1, 2)
    n_items: int = 236
    rounds: int = 3
    warmup: int = 20
    probe_repeats: int = 7
    probe_files: int = 100
    classify_repeats: int = 3
    head_classes: tuple[int, ...] = (5, 10, 20)
    head_shots: int = 5
    head_repeats: int = 3
    sweep_layers: tuple[int, ...] = (1, 2, 3)
    sweep_sizes: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    sweep_max_params: int = 12_000_000
    sweep_items: int = 100
    bauds: tuple[int, ...] = (115200, 921600)
    serial_limit: int | None = None
    board: str | None = None
    demo_report: Path | None = None
    command: str = "ramanedge bench"
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def for_mode(cls, mode: str, **kw: Any) -> BenchConfig:
        """Defaults for ``full`` (everything, minutes to an hour), ``quick`` (reuse runs,
        shorter timing, serial on 40 spectra) or ``smoke`` (seconds-scale timing, no sweep,
        serial 5 spectra at 921600 baud; writes under the work folder, not docs/)."""
        cfg = cls(**kw)
        if mode == "quick":
            cfg = replace(cfg, mode="quick", n_items=60, rounds=2, probe_repeats=3,
                          classify_repeats=1, head_repeats=1, sweep_layers=(), serial_limit=40,
                          sweep_items=50)
        elif mode == "smoke":
            cfg = replace(cfg, mode="smoke", n_items=10, rounds=1, warmup=3, probe_repeats=1,
                          probe_files=10, classify_repeats=1, head_classes=(5,), head_repeats=1,
                          sections=tuple(s for s in cfg.sections if s != "sweep"),
                          bauds=(921600,), serial_limit=5, threads=(1,))
        elif mode != "full":
            raise ValueError(f"mode must be full, quick or smoke, got {mode!r}")
        return cfg


def _say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------ preparation

def ensure_default(cfg: BenchConfig, log: Callable[[str], None] = _say) -> None:
    """Train ``cfg.run`` and export ``cfg.model`` with the CLI when they are missing.

    Only the default pair (``runs/default`` -> ``models/default``) is ever made here: an
    artifact the user named that does not exist is an error, not a reason to train one.
    """
    default_model = BenchConfig.model
    if not (cfg.model / MANIFEST_NAME).is_file() and cfg.model.resolve() != default_model:
        raise DataError(f"--model {cfg.model} is not a model artifact (no {MANIFEST_NAME}); "
                        "give an exported artifact folder or leave --model at its default")
    if not (cfg.run / "config.json").is_file():
        if cfg.skip_train:
            raise DataError(f"no trained run at {cfg.run} and --skip-train was given; train "
                            f"it with 'ramanedge train --out {rel(cfg.run)}' or drop "
                            "--skip-train")
        log(f"training the default model into {rel(cfg.run)} (trainer defaults)")
        rc, lines, _ = run_streaming([python(), "-m", "ramanedge.cli", "train", "--data",
                                      str(cfg.data_root), "--out", str(cfg.run)],
                                     env=child_env(1), cwd=REPO, echo=log)
        if rc != 0:
            raise DataError(f"training {cfg.run} failed: {lines[-1] if lines else rc}")
    if not (cfg.model / MANIFEST_NAME).is_file():
        log(f"exporting {rel(cfg.run)} to full int8 in {rel(cfg.model)} (+ float32)")
        rc, lines, _ = run_streaming([python(), "-m", "ramanedge.cli", "quantize",
                                      str(cfg.run), "--out", str(cfg.model), "--also",
                                      "float32", "--data", str(cfg.data_root)],
                                     env=child_env(1), cwd=REPO, echo=log)
        if rc != 0:
            raise DataError(f"quantizing {cfg.run} failed: {lines[-1] if lines else rc}")
    from benchmarks.sweep import _artifact_matches

    if not _artifact_matches(cfg.model, cfg.run):
        raise DataError(f"{rel(cfg.model)} was not exported from the current {rel(cfg.run)} "
                        "(its manifest's training.run_created / split differ from the run's "
                        "config.json); re-export it (ramanedge quantize "
                        f"{rel(cfg.run)} --out {rel(cfg.model)} --overwrite --also float32) or "
                        "pass the matching --run/--model")


def float32_tflite(cfg: BenchConfig, log: Callable[[str], None] = _say) -> Path:
    """The float32 TFLite of the default model: the artifact's variant, else converted into
    ``work/float32/`` (same Keras model, same SavedModel path as ``ramanedge quantize``)."""
    p = cfg.model / VARIANT_FILES["float32"]
    if p.is_file():
        return p
    out = cfg.work / "float32" / VARIANT_FILES["float32"]
    stamp = out.with_suffix(".json")
    src = cfg.run / "model.keras"
    key = {"run": str(src.resolve()), "mtime": src.stat().st_mtime}
    if out.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        return out
    log(f"converting {rel(src)} to float32 TFLite ({rel(out)})")
    import tempfile

    from quantize.convert import convert, dual_output_model, export_saved_model
    from trainer.model import load_keras_model

    model = load_keras_model(src)
    with tempfile.TemporaryDirectory(prefix="ramanedge-bench-sm-") as d:
        export_saved_model(dual_output_model(model), d, int(model.inputs[0].shape[-1]))
        blob = convert(d, "float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    stamp.write_text(json.dumps(key))
    return out


@dataclass
class Inputs:
    """The default run's data, split and test spectra (files and arrays)."""

    ds: Any
    split: np.ndarray
    test_idx: np.ndarray
    test_files: list[Path]
    npz: Path
    knn: dict[str, Any]


def prepare_inputs(cfg: BenchConfig, log: Callable[[str], None] = _say) -> Inputs:
    """Data set + split of the run, raw test files, k-NN selection, the workers' npz."""
    from benchmarks.latency import write_inputs
    from benchmarks.spectra import extract_spectra
    from ramanedge.dataset import build_dataset
    from ramanedge.io import read_spectrum
    from ramanedge.splits import read_split_csv
    from trainer.baselines import run_baseline
    from trainer.run import read_run_config

    rc = read_run_config(cfg.run)
    d = rc["data"]
    kw = {"minerals": d["minerals"]} if d.get("minerals") else {}
    ds = build_dataset(cfg.data_root, d.get("dataset", "rruff-raw"),
                       min_spectra=int(d.get("min_spectra", 8)), **kw)
    split = np.asarray(read_split_csv(cfg.run / "split.csv", ds))
    te = np.flatnonzero(split == "test")
    tr = np.flatnonzero(split == "train")
    va = np.flatnonzero(split == "val")
    files = extract_spectra(cfg.data_root, [ds.paths[i] for i in te], SPECTRA_CACHE,
                            progress=log)
    raw = []
    for f in files:
        s = read_spectrum(f)
        raw.append((s.x, s.y))
    log(f"selecting k-NN (k, metric) on the validation split ({len(tr)} references)")
    knn = run_baseline("knn", ds.X[tr], ds.y[tr], ds.X[va], ds.y[va], ds.X[te], ds.y[te],
                       len(ds.labels))
    npz = cfg.work / "inputs.npz"
    write_inputs(npz, X_test=ds.X[te], y_test=ds.y[te], raw=raw, X_train=ds.X[tr],
                 y_train=ds.y[tr])
    return Inputs(ds, split, te, files, npz, knn)


# ------------------------------------------------------------------------------ sections

def section_latency(cfg: BenchConfig, inp: Inputs, f32: Path, floor: Path,
                    log: Callable[[str], None] = _say) -> dict[str, Any]:
    """One latency worker per thread count; ``{"1": result, "2": result}``."""
    out = {}
    for t in cfg.threads:
        log(f"latency, {t} thread(s)")
        out[str(t)] = run_json(
            [python(), "-m", "benchmarks.latency", "--inputs", str(inp.npz), "--artifact",
             str(cfg.model), "--keras", str(cfg.run / "model.keras"), "--float32", str(f32),
             "--floor", str(floor), "--knn", json.dumps(inp.knn["params"]), "--threads",
             str(t), "--n-items", str(cfg.n_items), "--rounds", str(cfg.rounds), "--warmup",
             str(cfg.warmup)], env=child_env(t), cwd=REPO, echo=log)
        m = out[str(t)]["methods"]
        log("    " + ", ".join(f"{k} {v['median']:.3f}" for k, v in m.items() if v.get("n"))
            + " (median ms)")
    return out


def section_accuracy(cfg: BenchConfig, inp: Inputs, f32: Path) -> dict[str, Any]:
    """Keras float vs float32 TFLite vs int8 (and the k-NN row) on the test split."""
    from benchmarks.accuracy import shift_table, tflite_predict
    from trainer.model import load_keras_model
    from trainer.train import predict_probs

    model = load_keras_model(cfg.run / "model.keras")
    X, y = inp.ds.X[inp.test_idx], inp.ds.y[inp.test_idx]
    from edge_runtime.artifact import load_artifact

    predictors = {"Keras float32": lambda A: predict_probs(model, A),
                  "float32 TFLite": tflite_predict(f32),
                  "int8 TFLite (artifact)": tflite_predict(cfg.model / MODEL_FILE,
                                                           artifact=cfg.model, library=False)}
    if load_artifact(cfg.model).library_file is not None:  # the rover's answer as well
        predictors["int8 + spectral library (the rover's answer)"] = tflite_predict(
            cfg.model / MODEL_FILE, artifact=cfg.model)
    res = shift_table(predictors, X, y)
    k = inp.knn
    res["models"][f"k-NN ({k['params']['k']}, {k['params']['metric']})"] = {
        str(s): {"top1": k["shifts"][str(s)]["top1"], "top3": k["shifts"][str(s)]["top3"]}
        for s in (0, 15, 30)}
    return res


def section_memory(cfg: BenchConfig, inp: Inputs, log: Callable[[str], None] = _say
                   ) -> dict[str, Any]:
    """Edge-only probe runs and ``ramanedge classify`` runs on the first test files."""
    from benchmarks.memory import classify_cli_run, probe_runs

    files = inp.test_files[:cfg.probe_files]
    log(f"memory and cold start: {cfg.probe_repeats} edge-only processes, {len(files)} "
        "spectra each")
    res = {"probe": probe_runs(cfg.model, files, repeats=cfg.probe_repeats, log=log)}
    if res["probe"]["unknown_rule"]:
        log("  the same without the artifact's unknown-mineral rule (its cost):")
        res["probe_no_unknown"] = probe_runs(cfg.model, files, unknown=False,
                                             repeats=max(1, cfg.probe_repeats // 2), log=log)
    res["classify_cli"] = classify_cli_run(cfg.model, files, repeats=cfg.classify_repeats,
                                           log=log)
    return res


def section_head(cfg: BenchConfig, inp: Inputs, log: Callable[[str], None] = _say
                 ) -> dict[str, Any]:
    """Head retraining cost on held-out minerals (edge-only worker, 1 thread)."""
    from benchmarks.headcost import pick_minerals
    from ramanedge.dataset import load_heldout

    d = json.loads((cfg.run / "config.json").read_text())["data"]
    held = load_heldout(cfg.data_root, d.get("dataset", "rruff-raw"),
                        min_spectra=int(d.get("min_spectra", 8)))
    names = np.array(held.labels)[held.y]
    minerals = pick_minerals(names, cfg.head_shots, max(cfg.head_classes))
    keep = np.isin(names, minerals)
    npz = cfg.work / "heldout.npz"
    np.savez(npz, X=held.X[keep], labels=names[keep].astype(str))
    art = cfg.model
    from edge_runtime.artifact import load_artifact

    note = None
    if load_artifact(art).exemplars_file is None:
        art = cfg.work / "headcost" / "artifact"
        shutil.rmtree(art, ignore_errors=True)
        shutil.copytree(cfg.model, art, ignore=shutil.ignore_patterns("headstore"))
        from quantize.exemplars import DEFAULT_PER_CLASS, attach_exemplars

        tr = inp.split == "train"
        attach_exemplars(art, inp.ds.X[tr], inp.ds.y[tr])
        note = (f"{rel(cfg.model)} has no {EXEMPLARS_FILE}, so the bench attached "
                f"{DEFAULT_PER_CLASS} per class (from the training split, "
                "`quantize.exemplars.attach_exemplars`) to a copy.")
        log(f"  {note}")
    log(f"head retraining cost: c = {', '.join(map(str, cfg.head_classes))} new minerals x "
        f"{cfg.head_shots} spectra")
    res = run_json([python(), "-m", "benchmarks.headcost", "--artifact", str(art), "--inputs",
                    str(npz), "--work", str(cfg.work / "headcost"), "--classes",
                    ",".join(map(str, cfg.head_classes)), "--shots", str(cfg.head_shots),
                    "--repeats", str(cfg.head_repeats)], env=child_env(1), cwd=REPO, echo=log)
    res["note"] = note
    return res


def section_sweep(cfg: BenchConfig, log: Callable[[str], None] = _say) -> dict[str, Any]:
    """The pooling sweep (reuse or train runs, export, measure)."""
    from benchmarks import sweep

    base = sweep.paper_base(json.loads((cfg.run / "config.json").read_text()))
    n_classes = int(base["data"].get("n_classes", 97))
    pts = sweep.grid_points(base["model"], pool_sizes=cfg.sweep_sizes,
                            pool_layers=cfg.sweep_layers or (int(base["model"]["pool_layers"]),),
                            n_classes=n_classes, max_params=cfg.sweep_max_params)
    log(f"pooling sweep: {len(pts)} points {pts}")
    skip = cfg.skip_train or cfg.mode != "full"
    rows = sweep.ensure_points(pts, cfg.run, skip_train=skip, data_root=cfg.data_root,
                               base_model=cfg.model, log=log)
    rows = sweep.collect(rows, cfg.work / "inputs.npz", n_items=cfg.sweep_items,
                         rounds=max(2, cfg.rounds), log=log)
    desc = (f"The paper family (on `{rel(cfg.run)}`'s data and split: "
            f"{base['model']['activation']}, kernel "
            f"{base['model']['kernel_size']}, dense {base['model']['dense_units']}, same data, "
            f"split and training settings) with pool size m and n pooling layers changed. n = "
            f"{base['model']['pool_layers']} (the default) for every m; other n only up to "
            f"{cfg.sweep_max_params / 1e6:.0f} M weights. Runs found under `runs/` with exactly "
            "this configuration are reused (marked), missing ones trained into "
            "`runs/bench-sweep/`; int8 exports in `models/bench-sweep/` "
            "(`--allow-accuracy-drop`; gate = the parity gate's verdict). Float accuracy from "
            "each run's metrics.json, int8 accuracy and latency measured here (1 thread, "
            "interleaved).")
    same = _identical_networks(rows, base["model"])
    if same:
        desc += (" Identical networks (same weights, same numbers): "
                 + "; ".join(" = ".join(f"m={m}, n={n}" for m, n in g) for g in same)
                 + " (after the earlier pools the signal is one point long, so a further "
                 "pool is the identity).")
    return {"rows": rows, "description": desc}


def _identical_networks(rows: list[dict[str, Any]], base_model: dict[str, Any]
                        ) -> list[list[tuple[int, int]]]:
    """Groups of sweep points whose layer-by-layer lengths are the same (same network)."""
    def lengths(m: int, n: int) -> tuple[int, ...]:
        length, out = int(base_model["input_points"]), []
        for i in range(len(base_model["filters"])):
            out.append(length)
            if i < n:
                length = -(-length // m)
        return (*out, length)

    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for r in rows:
        if r.get("int8"):
            groups.setdefault(lengths(r["m"], r["n"]), []).append((r["m"], r["n"]))
    return [sorted(g, key=lambda t: (t[1], t[0])) for g in groups.values() if len(g) > 1]


def demo_record(path: Path | None = None) -> dict[str, Any] | None:
    """The last ``make demo`` report (``runs/demo/demo_report.json`` or ``path``), if any."""
    p = Path(path) if path is not None else REPO / "runs" / "demo" / "demo_report.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _arch_summary(mcfg: dict[str, Any]) -> str:
    if mcfg.get("arch", "paper") != "paper":
        from trainer.model import ModelConfig

        return ModelConfig.from_dict(mcfg).describe()
    return (f"m={mcfg['pool_size']}, n={mcfg['pool_layers']}, {mcfg['activation']}, "
            f"kernel {mcfg['kernel_size']}")


def model_macs(config: dict[str, Any], n_classes: int) -> dict[str, int]:
    """Multiply-accumulates of one forward pass (conv, dense, total): the paper's pooled CNN
    counted layer by layer, the flight architecture by :func:`trainer.model.count_macs`."""
    if config.get("arch", "paper") != "paper":
        from trainer.model import ModelConfig, count_macs, flatten_size

        mc = ModelConfig.from_dict(config)
        dense = flatten_size(mc) * mc.dense_units + mc.dense_units * n_classes
        total = count_macs(mc, n_classes)
        return {"conv": total - dense, "dense": dense, "macs": total}
    length, c_in, conv = int(config["input_points"]), 1, 0
    for i, f in enumerate(config["filters"]):
        conv += length * int(config["kernel_size"]) * c_in * int(f)
        c_in = int(f)
        if i < int(config["pool_layers"]):
            length = -(-length // int(config["pool_size"]))
    flat = length * c_in
    dense = flat * int(config["dense_units"]) + int(config["dense_units"]) * n_classes
    return {"conv": conv, "dense": dense, "macs": conv + dense}


def observations(res: dict[str, Any]) -> list[str]:
    """Data-driven remarks on the latency tables (added under them in the report)."""
    out = []
    lat = res.get("latency") or {}
    one = lat.get("1", {}).get("methods", {})
    if one.get("int8_classify", {}).get("n") and one.get("int8_model", {}).get("n"):
        extra = one["int8_classify"]["median"] - one["int8_model"]["median"]
        out.append(f"`classify_grid` adds {extra:.3f} ms (1 thread) to the int8 model call: "
                   "the float head on the features, top-k, the artifact's unknown-mineral "
                   "check (`knn_cosine` / `knn_logit`: a (1, D) x (D, M) product against "
                   "the exemplar bank, D features, M exemplars, plus the head's largest "
                   "logit) and the prediction set (a count over the K probabilities).")
    two = lat.get("2", {}).get("methods", {})
    slower = [k for k in ("int8_classify", "keras_predict_on_batch", "keras_tf_function",
                          "knn") if two.get(k, {}).get("n") and one.get(k, {}).get("n")
              and two[k]["median"] > 1.3 * one[k]["median"]]
    if slower:
        out.append("With 2 threads, " + ", ".join(f"`{k}` ({one[k]['median']:.2f} -> "
                                                  f"{two[k]['median']:.2f} ms)" for k in slower)
                   + " got *slower*: the 2 cores are shared with other jobs (load average "
                   f"{res['meta']['machine'].get('load_average')}), so extra worker threads "
                   "(TensorFlow's pools, OpenBLAS, LiteRT's) wait for a core instead of "
                   "helping, and OpenBLAS threads spin against LiteRT's. On a dedicated board "
                   "keep `OPENBLAS_NUM_THREADS=1` for the edge runtime; one LiteRT thread is "
                   "as fast as two for this model at batch 1.")
    return out


def explain_misses(res: dict[str, Any]) -> None:
    """Add a measured explanation to every missed target (in place)."""
    lat = (res.get("latency") or {}).get("1", {}).get("methods", {})
    for t in res.get("targets", []):
        if t["ok"]:
            continue
        if "floor" in t["target"] and res.get("model_macs"):
            inv, flo = lat["int8_invoke"]["median"], lat["floor"]["median"]
            macs = res["model_macs"]["macs"]
            t["why"] = (f"The floor is pure per-call overhead ({flo * 1e3:.1f} us for set_tensor"
                        f" + invoke + get_tensor of one ADD). The CNN performs "
                        f"{macs / 1e6:.2f} M int8 multiply-accumulates per spectrum, i.e. "
                        f"{macs / (inv * 1e-3) / 1e9:.1f} GMAC/s in {inv * 1e3:.0f} us on one "
                        "core: its time is arithmetic, not overhead, and no model with this "
                        "much arithmetic can come within 3x of an empty call. The overhead "
                        f"share of the int8 call is {100 * flo / inv:.1f}%.")
        elif "Keras" in t["target"]:
            t["why"] = ("Keras/TF at batch 1 on this model is itself fast (small graph); "
                        "see the latency table for both thread counts.")
        elif "RSS" in t["target"]:
            mem = res.get("memory") or {}
            ph = (mem.get("probe") or {}).get("rss_phases_mib")
            why = "See the memory section."
            if ph:
                why = (f"Measured inside the edge-only process: the Python interpreter "
                       f"{ph['start']:.1f} MiB, after `import edge_runtime.classify` (numpy) "
                       f"{ph['after_import']:.1f} MiB, after loading the artifact (incl. the "
                       f"LiteRT runtime and interpreter) "
                       f"{ph['after_load']:.1f} MiB (peak during loading "
                       f"{ph['hwm_after_load']:.1f} MiB).")
                nu = mem.get("probe_no_unknown")
                if nu:
                    why += (f" Without the artifact's unknown-mineral rule (`knn_cosine`, which "
                            f"loads the exemplar bank and keeps it as float32) the same process "
                            f"peaks at {nu['peak_rss_mib']['max']:.1f} MiB "
                            f"({nu['peak_rss_mib']['max'] * 1.048576:.1f} MB): the bank and its "
                            "temporary copies while it is built are the excess.")
            t["why"] = why
        elif "cold start" in t["target"]:
            t["why"] = ("Import of numpy and the LiteRT runtime dominates; see the phase "
                        "split in the memory section (the machine is shared and loaded).")


# ------------------------------------------------------------------------------ the suite

def run_suite(cfg: BenchConfig, log: Callable[[str], None] = _say) -> dict[str, Any]:
    """Run every section of ``cfg.sections``; returns the results dict (also written as
    JSON next to ``cfg.out_md`` together with the Markdown and plots)."""
    from benchmarks.floor import FLOOR_FILE, build_floor_model
    from benchmarks.report import evaluate_targets, write_report

    t_start = time.perf_counter()
    cfg.work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"meta": {
        "machine": machine_info(), "versions": package_versions(), "git": git_commit(),
        "command": cfg.command, "mode": cfg.mode, "config": _cfg_dict(cfg),
        "notes": list(cfg.notes)}}
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        log(f"== {name}")
        try:
            return fn()
        finally:
            timings[name] = round(time.perf_counter() - t0, 1)
            log(f"   ({name}: {timings[name]:.0f} s)")

    step("default model", lambda: ensure_default(cfg, log))
    man = json.loads((cfg.model / MANIFEST_NAME).read_text())
    mcfg = man["model"]["config"]
    res["model_macs"] = model_macs(mcfg, len(man["labels"]))
    res["meta"].update({
        "model": rel(cfg.model), "run": rel(cfg.run),
        "model_summary": (_arch_summary(mcfg) + f", {len(man['labels'])} minerals; "
                          "manifest int8 top-1 "
                          f"{100 * man['metrics']['int8']['top1']:.1f}%, float "
                          f"{100 * man['metrics']['float']['top1']:.1f}%, agreement "
                          f"{100 * man['metrics']['agreement']:.1f}%; int8 parity gate "
                          + ("passed" if (man["metrics"].get("gate") or {}).get("passed")
                             else "**FAILED** (exported with --allow-accuracy-drop)"))})
    f32 = step("float32 TFLite", lambda: float32_tflite(cfg, log))
    inp = step("inputs", lambda: prepare_inputs(cfg, log))
    res["meta"]["n_test"] = int(inp.test_idx.size)
    res["knn"] = {k: inp.knn[k] for k in ("params", "tried", "top1", "top3", "shifts")}
    floor_path = cfg.work / FLOOR_FILE
    res["floor"] = step("floor model", lambda: build_floor_model(floor_path))
    if "latency" in cfg.sections:
        res["latency"] = step("latency", lambda: section_latency(cfg, inp, f32, floor_path,
                                                                 log))
    if "memory" in cfg.sections:
        res["memory"] = step("memory", lambda: section_memory(cfg, inp, log))
    if "sizes" in cfg.sections:
        from benchmarks.sizes import artifact_sizes

        res["sizes"] = artifact_sizes(cfg.model, cfg.run)
        if not (cfg.model / VARIANT_FILES["float32"]).is_file():
            res["sizes"]["files"][f"(converted) {VARIANT_FILES['float32']}"] = f32.stat().st_size
            res["sizes"]["ratio_float32_to_int8"] = (f32.stat().st_size /
                                                     res["sizes"]["files"][MODEL_FILE])
        res["sizes"]["folder"] = rel(cfg.model)
    if "accuracy" in cfg.sections:
        res["accuracy"] = step("accuracy", lambda: section_accuracy(cfg, inp, f32))
    if "head" in cfg.sections:
        res["head_retrain"] = step("head retraining", lambda: section_head(cfg, inp, log))
    if "sweep" in cfg.sections:
        res["sweep"] = step("pooling sweep", lambda: section_sweep(cfg, log))
    if "serial" in cfg.sections:
        from benchmarks.serial import run_all

        img = cfg.out_md.parent / "img"
        res["serial"] = step("serial link", lambda: run_all(
            cfg.model, cfg.data_root, cfg.run / "split.csv", cfg.work / "serial",
            bauds=cfg.bauds, limit=cfg.serial_limit, img_dir=img, log=log))
    res["demo"] = demo_record(cfg.demo_report)
    res["observations"] = observations(res)
    res["targets"] = evaluate_targets(res)
    explain_misses(res)
    res["meta"]["step_seconds"] = timings
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    paths = write_report(res, cfg.out_md, cfg.out_md.with_suffix(".json"))
    if cfg.board and cfg.mode == "full":
        write_json(REPO / "benchmarks" / "reference" / f"{cfg.board}.json", reference(res))
    log("wrote " + ", ".join(rel(p) for p in paths.values()))
    for t in res["targets"]:
        log(f"target {'met   ' if t['ok'] else 'MISSED'}: {t['target']}: {t['measured']}")
    return res


def reference(res: dict[str, Any]) -> dict[str, Any]:
    """The compact per-board reference figures (``benchmarks/reference/BOARD.json``)."""
    lat = {t: {k: {"median": v["median"], "p99": v["p99"]}
               for k, v in r["methods"].items() if v.get("n")}
           for t, r in (res.get("latency") or {}).items()}
    mem = res.get("memory") or {}
    return {
        "meta": {k: res["meta"].get(k) for k in ("machine", "versions", "git", "command",
                                                 "model", "model_summary")},
        "targets": [{k: t[k] for k in ("target", "measured", "value", "ok")}
                    for t in res.get("targets", [])],
        "latency_ms": lat,
        "cold_start_s": (mem.get("probe") or {}).get("median"),
        "peak_rss_mib": {"edge_probe": (mem.get("probe") or {}).get("peak_rss_mib"),
                         "classify_cli": (mem.get("classify_cli") or {}).get("peak_rss_mib")},
        "sizes": (res.get("sizes") or {}).get("files"),
        "head_retrain_s": [{"c": r["new_classes"], "median": r["retrain_s_median"]}
                           for r in (res.get("head_retrain") or {}).get("rows", [])],
        "serial": [{"baud": r["baud"], "latency_ms": r["latency_ms"], "top1": r["top1"]}
                   for r in res.get("serial") or []],
    }


def _cfg_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = asdict(cfg)
    for k, v in d.items():
        if isinstance(v, Path):
            d[k] = rel(v)
    return d


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - see benchmarks.cli
    """Alias of ``ramanedge bench``."""
    from benchmarks.cli import bench

    bench.main(args=sys.argv[1:] if argv is None else argv, prog_name="ramanedge bench")
