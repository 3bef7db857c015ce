"""The default artifacts re-exported with the spectral library, scored as the rover answers.

For each split folder of one or more multi-split evaluations (:mod:`benchmarks.flight_eval`),
the trained run is exported again with ``ramanedge quantize``'s defaults (10 exemplars per
class, the spectral library: :mod:`ramanedge.library`) into ``OUT/<folder>/model``; the int8
model is the same file (its sha256 is checked against the original export). Then the rover
path's top-1 at 0 / ±15 / ±30 cm⁻¹ (mean of +s and -s) on the split's validation and test
spectra, with the library (``int8_*``, ``val_int8_*``) and without it (``net_*``,
``val_net_*``), one row per split in ``OUT/eval.jsonl``; ``OUT/<folder>/run`` links to the
split's run, so the open-set probes (:mod:`benchmarks.open_set`, :mod:`benchmarks.conformal`)
read ``OUT`` as they read a :mod:`benchmarks.flight_eval` folder::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.library_eval \\
        --eval runs/flight/eval-ep:flight-early-pool \\
        --eval runs/flight/eval-ep-s1:flight-early-pool-s1 --out runs/flight/eval-lib
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from benchmarks.common import one_line_errors

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHIFTS = (0, 15, 30)


def shift_top1(predict, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1 of ``predict`` at each shift of :data:`SHIFTS` (mean of +s and -s)."""
    from ramanedge.grid import shift_spectra

    return {str(s): float(np.mean([np.mean(predict(shift_spectra(X, d)).argmax(1) == y)
                                   for d in ((0,) if s == 0 else (s, -s))]))
            for s in SHIFTS}


def evaluate(folder: Path, recipe: str, out: Path) -> dict:
    """Re-export one split's run with the library and score it (one row)."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from quantize.exemplars import DEFAULT_PER_CLASS
    from quantize.export import QuantizeConfig, quantize_run
    from ramanedge.fsutil import sha256_file
    from ramanedge.library import LibraryConfig
    from ramanedge.manifest import MODEL_FILE
    from trainer.run import load_run

    art_dir = out / folder.name / "model"
    link = out / folder.name / "run"  # the open-set and set probes read the run beside it
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to((folder / "run").resolve(), target_is_directory=True)
    quantize_run(folder / "run", art_dir, config=QuantizeConfig(
        overwrite=True, exemplars_per_class=DEFAULT_PER_CLASS, library=LibraryConfig(),
        allow_accuracy_drop=True), log=lambda _m: None)
    same = sha256_file(art_dir / MODEL_FILE) == sha256_file(folder / "model" / MODEL_FILE)
    art = load_artifact(art_dir)
    clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
    net = Classifier(art, clf.interpreter, library=False)
    run = load_run(folder / "run", load_model=False)
    tail = folder.name[len(recipe) + 1:]
    kind = tail.rstrip("0123456789")
    seed = int(tail[len(kind):])
    row = {"recipe": f"{recipe}+library", "split": kind, "split_seed": seed,
           "same_model_tflite": same, "library_bytes": art.library_file.stat().st_size,
           "library_rows": int(art.manifest.data["library"]["rows"]),
           "date": time.strftime("%Y-%m-%d")}
    for part, prefix in (("test", ""), ("val", "val_")):
        X, y = run.subset(part)
        row.update({f"{prefix}int8_{k}": v
                    for k, v in shift_top1(clf.predict_proba_batch, X, y).items()})
        row.update({f"{prefix}net_{k}": v
                    for k, v in shift_top1(net.predict_proba_batch, X, y).items()})
    return row


def candidate_scores(folder: Path, counts: tuple[int, ...]) -> dict:
    """Top-1 of the blended answer when the library match is made only for the ``N`` most
    probable minerals of the network (the others get no library share), for each ``N`` of
    ``counts`` (0 = every mineral, as shipped), on the split's validation and test spectra
    at each shift: ``{"val_0": {"0": top1, "5": top1, ...}, ...}``. Computed from the whole
    similarity matrix with the other classes masked: the same numbers as a match made only
    for those classes."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.grid import shift_spectra
    from ramanedge.library import blend_rows
    from trainer.run import load_run

    art = load_artifact(folder / "model")
    net = Classifier(art, make_interpreter(art.model_path, num_threads=1), library=False)
    lib = art.load_library()
    if lib is None:
        raise click.UsageError(f"{folder / 'model'} has no spectral library")
    run = load_run(folder / "run", load_model=False)
    out: dict[str, dict[str, float]] = {}
    for part in ("val", "test"):
        X0, y = run.subset(part)
        for s in SHIFTS:
            hits: dict[str, list[float]] = {}
            for d in ((0,) if s == 0 else (s, -s)):
                X = shift_spectra(X0, d)
                P = net.predict_proba_batch(X)
                S = lib.similarity_batch(X)
                for n in counts:
                    q = blend_rows(P, S, replace(lib.config, candidates=n))
                    hits.setdefault(str(n), []).append(float(np.mean(q.argmax(1) == y)))
            out[f"{part}_{s}"] = {k: float(np.mean(v)) for k, v in hits.items()}
    return out


@click.command()
@click.option("--eval", "evals", multiple=True, required=True,
              help="FOLDER:RECIPE of a multi-split evaluation (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--candidates", default="", metavar="N,N,...",
              help="Instead: score the library match restricted to the network's N most "
                   "probable minerals, on OUT's exported folders; JSON to --json-out.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def main(evals: tuple[str, ...], out: Path, candidates: str, json_out: Path | None) -> None:
    """Re-export and score every split folder; rows in OUT/eval.jsonl (resumable)."""
    if candidates:
        from benchmarks.common import comma_list
        from ramanedge.machine import cpu_model

        counts = (0, *comma_list(candidates, "--candidates"))
        res = {}
        for spec in evals:
            recipe = spec.rpartition(":")[2]
            for f in sorted(p for p in out.glob(f"{recipe}-grouped*")
                            if re.fullmatch(rf"{re.escape(recipe)}-grouped\d+", p.name)):
                res[f.name] = candidate_scores(f, counts)
                click.echo(f"{f.name}: " + "  ".join(
                    f"N={n}: {100 * res[f.name]['val_0'][str(n)]:.1f}" for n in counts),
                    err=True)
        if json_out is not None:
            json_out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                                            "cpu": cpu_model(), "counts": counts,
                                            "runs": res}, indent=1) + "\n")
        return
    out.mkdir(parents=True, exist_ok=True)
    jl = out / "eval.jsonl"
    done = {(r["recipe"], r["split"], r["split_seed"])
            for r in (json.loads(x) for x in (jl.read_text().splitlines()
                                               if jl.is_file() else []) if x)}
    for spec in evals:
        folder, sep, recipe = spec.rpartition(":")
        if not sep or not folder or not recipe:
            raise click.UsageError(f"--eval {spec!r}: expected FOLDER:RECIPE")
        folders = sorted(p for p in Path(folder).glob(f"{recipe}-*")
                         if re.fullmatch(rf"{re.escape(recipe)}-(grouped|random)\d+", p.name)
                         and (p / "run").is_dir() and (p / "model").is_dir())
        if not folders:
            raise click.UsageError(f"no {recipe}-<split> folders with run/ and model/ in "
                                   f"{folder}")
        for f in folders:
            tail = f.name[len(recipe) + 1:]
            kind = tail.rstrip("0123456789")
            if (f"{recipe}+library", kind, int(tail[len(kind):])) in done:
                continue
            row = evaluate(f, recipe, out)
            with jl.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            click.echo(f"{f.name}: library {row['int8_0']:.1%} / {row['int8_15']:.1%} / "
                       f"{row['int8_30']:.1%}  network {row['net_0']:.1%} / "
                       f"{row['net_15']:.1%} / {row['net_30']:.1%}  (validation "
                       f"{row['val_int8_0']:.1%} vs {row['val_net_0']:.1%})", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
