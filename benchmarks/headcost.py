"""Cost of teaching the rover new minerals: onboard head retraining time (edge-only, 1 thread).

Worker, started in a fresh process with ``OPENBLAS_NUM_THREADS=1`` by the bench::

    python -m benchmarks.headcost --artifact DIR --inputs heldout.npz --work DIR \
        --classes 5,10,20 --shots 5 --repeats 3

For each ``c``: a fresh head store (:class:`edge_runtime.headstore.HeadStore`) in ``--work``
receives ``shots`` spectra of each of ``c`` minerals the model never saw (held out from
training by ``ramanedge.dataset.load_heldout``); the time of ``store.add_sample`` (int8
features + durable write) per spectrum, and of ``store.retrain()`` (exemplars + samples,
L-BFGS fit, head written and activated), median over ``repeats``, are recorded. The
artifact must carry ``exemplars.npz`` (the bench attaches it to a copy when missing).
TensorFlow-free; the last stdout line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pick_minerals(labels: np.ndarray, shots: int, max_classes: int) -> list[str]:
    """Held-out minerals with at least ``shots`` spectra, most spectra first (then by name)."""
    names, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    order = sorted((-int(c), str(n)) for n, c in zip(names, counts, strict=True) if c >= shots)
    return [n for _, n in order[:max_classes]]


def run(artifact: Path, X: np.ndarray, labels: np.ndarray, work: Path, *,
        classes: tuple[int, ...] = (5, 10, 20), shots: int = 5, repeats: int = 3
        ) -> dict[str, Any]:
    """Measure sample storage and retraining for each number of new classes."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.headstore import HeadStore
    from edge_runtime.interpreter import make_interpreter

    art = load_artifact(artifact)
    if art.exemplars_file is None:
        raise SystemExit(f"{artifact} has no exemplars.npz; attach them first")
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    labels = np.asarray(labels).astype(str)
    minerals = pick_minerals(labels, shots, max(classes))
    if len(minerals) < max(classes):
        raise SystemExit(f"only {len(minerals)} held-out minerals have >= {shots} spectra")
    rows = []
    for c in classes:
        root = work / f"store_c{c}"
        shutil.rmtree(root, ignore_errors=True)
        store = HeadStore.open(art, root, create=True)
        add_s = []
        for lab in minerals[:c]:
            idx = np.flatnonzero(labels == lab)[:shots]
            for i in idx:
                t0 = time.perf_counter()
                fq = clf.features_int8(X[i])
                store.add_sample(lab, X[i], fq, source=f"heldout:{lab}:{i}")
                add_s.append(time.perf_counter() - t0)
        fits, totals, iters, conv = [], [], [], []
        meta: dict[str, Any] = {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            info = store.retrain()
            totals.append(time.perf_counter() - t0)
            meta = info.meta
            fits.append(float(meta["fit_seconds"]))
            iters.append(int(meta["n_iter"]))
            conv.append(bool(meta["converged"]))
        row = {"new_classes": c, "shots": shots, "n_samples": int(meta["n_samples"]),
               "n_exemplars": int(meta["n_exemplars"]), "n_classes_after": len(meta["labels"]),
               "retrain_s_median": float(np.median(totals)),
               "retrain_s_all": [round(t, 4) for t in totals],
               "fit_s_median": float(np.median(fits)), "n_iter": iters, "converged": conv,
               "train_accuracy": float(meta["train_accuracy"]),
               "add_sample_ms_median": 1e3 * float(np.median(add_s))}
        rows.append(row)
        _log(f"  c={c}: {row['n_samples']} samples + {row['n_exemplars']} exemplars -> "
             f"{row['n_classes_after']} classes; retrain {row['retrain_s_median']:.2f} s "
             f"(fit {row['fit_s_median']:.2f} s, {iters[-1]} iterations); add "
             f"{row['add_sample_ms_median']:.1f} ms/spectrum")
        shutil.rmtree(root, ignore_errors=True)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    return {"rows": rows, "minerals": minerals, "threads": 1, "heavy_modules": heavy}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry of the worker."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--inputs", required=True, help="npz with X (N, 1392) and labels (N,)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--classes", default="5,10,20")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    with np.load(a.inputs, allow_pickle=False) as z:
        X, labels = np.array(z["X"]), np.array(z["labels"])
    classes = tuple(int(c) for c in a.classes.split(",") if c.strip())
    res = run(Path(a.artifact), X, labels, Path(a.work), classes=classes, shots=a.shots,
              repeats=a.repeats)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
