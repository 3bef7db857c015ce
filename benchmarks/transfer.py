"""Transfer experiment driver (ground side, needs TensorFlow for the pretraining).

1. ``rruff-raw`` (>= ``min_spectra`` spectra per mineral) with the grouped split (seed 0);
2. pick ``n_base`` minerals at random (seeded) among all; the others (those with at least 5
   train spectra) are the *new* minerals the rover will be taught;
3. pretrain the paper's CNN (pool size m = 4, the best of the trainer's sweep in ``runs/exp``)
   on the base minerals' train split (val for early stopping) with
   ``trainer.train.train_model`` (default recipe), export it to full int8 with
   ``quantize.export.export_artifact`` with up to 10 exemplars per class
   (``QuantizeConfig.exemplars_per_class``, from the train split; the export also calibrates
   the ``knn_cosine`` unknown rule on the val split);
4. run :func:`benchmarks.transfer_experiment.run_transfer` (TF-free) on the artifact: c = 5/10/20
   new minerals x k = 1/3/5 spectra, head retraining vs 1-NN over stored spectra, latency,
   unknown-mineral detection (unseen = new pool + the rare minerals of ``load_heldout``).

Usage::

    OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 python -m benchmarks.transfer \
        --work /tmp/transfer --repeats 5

Writes ``WORK/artifact/`` (the pretrained int8 model), ``WORK/split.csv``,
``WORK/transfer.json`` and ``WORK/transfer.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ramanedge.manifest import MANIFEST_NAME


def pretrain(work: Path, *, n_base: int, min_spectra: int, seed: int, data_root: Path,
             pool_size: int = 4, log=print) -> tuple[Path, object, np.ndarray]:
    """Pretrain + export the base-minerals model; returns (artifact dir, dataset, split)."""
    from ramanedge.dataset import build_dataset
    from ramanedge.splits import make_split, write_split_csv

    ds = build_dataset(data_root, "rruff-raw", min_spectra=min_spectra)
    split = make_split(ds, "grouped", seed=0)
    write_split_csv(work / "split.csv", ds, split)
    art_dir = work / "artifact"
    if (art_dir / MANIFEST_NAME).is_file():
        log(f"reusing {art_dir}")
        return art_dir, ds, split
    rng = np.random.default_rng(seed)
    ntrain = np.bincount(ds.y[split == "train"], minlength=len(ds.labels))
    order = rng.permutation(len(ds.labels))
    # new minerals need >= 5 train spectra (k = 5 shots); base minerals are the rest
    eligible_new = [i for i in order if ntrain[i] >= 5]
    n_new = len(ds.labels) - n_base
    new_ids = set(eligible_new[:n_new])
    base_ids = sorted(set(range(len(ds.labels))) - new_ids)
    base_labels = [ds.labels[i] for i in base_ids]
    remap = {old: new for new, old in enumerate(base_ids)}
    m = np.isin(ds.y, base_ids)
    yb = np.array([remap.get(int(v), -1) for v in ds.y])
    tr, va, te = (m & (split == s) for s in ("train", "val", "test"))
    log(f"base: {len(base_labels)} minerals, {tr.sum()} train / {va.sum()} val / "
        f"{te.sum()} test spectra; new pool: {n_new} minerals")

    from quantize.export import QuantizeConfig, export_artifact, select_calibration
    from trainer.model import ModelConfig
    from trainer.train import PAPER_FAMILY_TRAIN, train_model

    mc = ModelConfig(arch="paper", pool_size=pool_size)
    tc = replace(PAPER_FAMILY_TRAIN, seed=seed)
    t0 = time.perf_counter()
    res = train_model(ds.X[tr], yb[tr], ds.X[va], yb[va], len(base_labels), mc, tc, log=None)
    log(f"pretrained in {time.perf_counter() - t0:.0f} s ({res.epochs_run} epochs)")
    calib = ds.X[tr][select_calibration(yb[tr], 200, seed=0)]
    export_artifact(res.model, labels=base_labels, model_config=mc, calib_X=calib,
                    val_X=ds.X[va], test_X=ds.X[te], test_y=yb[te], out_dir=art_dir,
                    train_X=ds.X[tr], train_y=yb[tr], name="transfer-base",
                    training_meta={"dataset": "rruff-raw", "min_spectra": min_spectra,
                                   "split": "grouped seed 0", "base_seed": seed,
                                   "n_base": len(base_labels)},
                    config=QuantizeConfig(allow_accuracy_drop=True, exemplars_per_class=10),
                    log=log)
    return art_dir, ds, split


def time_retrain(work: Path, art_dir: Path, ds, split: np.ndarray, pool: list[str], *,
                 data_root: Path, n_minerals: int = 5, k: int = 5, seed: int = 0,
                 log=print) -> dict:
    """Wall time of teaching ``n_minerals`` x ``k`` raw RRUFF files through the real CLI.

    The raw files (byte copies of the LR-Raman tar members) go to ``work/timing/``; a copy of
    the artifact is used so the pretrained one keeps no head store. Each command runs in a
    fresh process with one thread (``OPENBLAS_NUM_THREADS=1``, ``--threads 1``); the
    reported times include interpreter start-up and imports, and the in-process figures
    (``seconds`` of ``head retrain --json``) exclude them.
    """
    import os
    import shutil
    import subprocess
    import sys

    from ramanedge.io import iter_spectrum_files

    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, size=n_minerals, replace=False).tolist())
    labels = np.array(ds.minerals)
    want: dict[str, str] = {}
    for lab in chosen:
        idx = rng.choice(np.flatnonzero((labels == lab) & (split == "train")), size=k,
                         replace=False)
        for i in idx:
            want[ds.paths[i]] = lab
    tdir = work / "timing"
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / "files").mkdir(parents=True)
    shutil.copytree(art_dir, tdir / "model", ignore=shutil.ignore_patterns("headstore"))
    files: dict[str, list[str]] = {lab: [] for lab in chosen}
    for sf in iter_spectrum_files(data_root, accept=lambda p: p in want):
        p = tdir / "files" / sf.path.rsplit("/", 1)[-1]
        p.write_bytes(sf.data)
        files[want[sf.path]].append(str(p))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}

    def run(args: list[str]) -> tuple[float, str]:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "ramanedge.cli", *args], env=env,
                           capture_output=True, text=True, check=True)
        return time.perf_counter() - t0, r.stdout

    model = str(tdir / "model")
    t_start, _ = run(["head", "list", "--model", model])  # start-up + imports, for reference
    t_add = 0.0
    for lab in chosen:
        dt, _ = run(["head", "add", "--model", model, "--label", lab, "--threads", "1",
                     *files[lab]])
        t_add += dt
    t_retrain, out = run(["head", "retrain", "--model", model, "--threads", "1", "--json"])
    meta = json.loads(out)

    # the same in one process (what a resident rover service would do): read + preprocess +
    # int8 features + durable sample writes + fit + head write
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.headstore import HeadStore, add_spectra
    from edge_runtime.interpreter import make_interpreter

    t0 = time.perf_counter()
    art = load_artifact(art_dir)
    store = HeadStore.open(art, tdir / "store_in_process", create=True)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for lab in chosen:
        for _path, sample, _c, err in add_spectra(store, clf, lab, files[lab]):
            assert sample is not None, err
    t_add_ip = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = store.retrain()
    t_fit_ip = time.perf_counter() - t0
    res = {
        "in_process_load_s": t_load, "in_process_add_s": t_add_ip,
        "in_process_retrain_s": t_fit_ip, "in_process_total_s": t_add_ip + t_fit_ip,
        "in_process_fit_s": info.meta["fit_seconds"],
        "minerals": chosen, "k": k, "n_files": sum(len(v) for v in files.values()),
        "cli_startup_s": t_start, "cli_add_s": t_add, "cli_retrain_s": t_retrain,
        "cli_total_s": t_add + t_retrain,
        "retrain_in_process_s": meta["seconds"], "fit_s": meta["fit_seconds"],
        "n_exemplars": meta["n_exemplars"], "n_iter": meta["n_iter"],
    }
    log(f"timing: {res}")
    return res


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    from benchmarks.transfer_experiment import TransferConfig, markdown, run_transfer
    from ramanedge.dataset import load_heldout
    from ramanedge.paths import default_data_root

    ap = argparse.ArgumentParser(description="Transfer experiment (pretrain + onboard heads).")
    ap.add_argument("--work", default="/tmp/ramanedge-transfer", help="working folder")
    ap.add_argument("--data", default=None, help="RRUFF data root")
    ap.add_argument("--n-base", type=int, default=63)
    ap.add_argument("--min-spectra", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pool-size", type=int, default=4,
                    help="pooling size m of the pretrained CNN (4: best of runs/exp, 73 %% top-1)")
    ap.add_argument("--alpha", type=float, default=TransferConfig.alpha)
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(a.data) if a.data else default_data_root()
    art_dir, ds, split = pretrain(work, n_base=a.n_base, min_spectra=a.min_spectra,
                                  seed=a.seed, data_root=root, pool_size=a.pool_size)
    held = load_heldout(root, "rruff-raw", min_spectra=a.min_spectra)
    cfg = TransferConfig(repeats=a.repeats, seed=a.seed, alpha=a.alpha)
    res = run_transfer(art_dir, ds.X, np.array(ds.minerals), split, config=cfg,
                       heldout_X=held.X)
    res["timing"] = time_retrain(work, art_dir, ds, split, res["pool"], data_root=root,
                                 seed=a.seed)
    (work / "transfer.json").write_text(json.dumps(res, indent=1))
    t = res["timing"]
    md = markdown(res) + (
        f"\nTeaching {len(t['minerals'])} minerals x {t['k']} raw files through the CLI "
        f"(fresh processes, 1 thread): head add total {t['cli_add_s']:.2f} s, head retrain "
        f"{t['cli_retrain_s']:.2f} s (in-process {t['retrain_in_process_s']:.2f} s, fit "
        f"{t['fit_s']:.2f} s, {t['n_exemplars']} exemplars); one CLI start-up "
        f"{t['cli_startup_s']:.2f} s. In one process: add {t['in_process_add_s']:.2f} s "
        f"(read, preprocess, int8 features, fsynced sample files) + retrain "
        f"{t['in_process_retrain_s']:.2f} s = {t['in_process_total_s']:.2f} s.\n")
    (work / "transfer.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
