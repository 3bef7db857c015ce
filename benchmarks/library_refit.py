"""The spectral library refit on training + validation specimens (issue 11; no training).

The grouped split tests on specimens the model never saw, and more specimens per mineral is
the lever the docs name for it (``docs/parts/flight.md``, "Evidence for the limits"). The
network is chosen on validation, but the library needs no choice: once its settings are
fixed, the validation spectra could join it. Rule (L+) of ``runs/flight/decision_rule.txt``
(2026-12-06, written before it was scored) measures that honestly on validation: each
split's validation specimens (RRUFF sample ids) are dealt into two folds, and each fold is
answered with the library of the training spectra plus the *other* fold's, against the
shipped library (training spectra only); the artifact's own ``LibraryConfig`` and blend, the
rover's int8 probabilities. Test, answered with the library of train + all validation, is
reported only. The grouped split holds about one validation specimen a mineral, so that
proxy has almost nothing of a spectrum's own mineral to add; rule (L+''), written after
(L+)'s test figure had been seen, asks the question the other way on validation alone: the
shipped library against it without one training specimen of each mineral (:func:`held_aside`),
confirmed on fresh networks (training seed 2). Both verdicts use the 10-run rule's counts
(higher on >= 7 runs), so on 5 runs they print "reject" whatever the gain. ``--extra DATA``:
rule (L2) instead, the other RRUFF files of the training specimens added to the library
(:func:`extra_scores`). ``--new DATA``: rule (X), the RRUFF spectra of specimens outside the
data set (never a validation or test specimen) added to the library
(:func:`new_scores`; validation answered with the training spectra's library, test with the
shipped one of training + validation spectra)::

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.library_refit \\
        --eval runs/flight/eval-m17-p25:flight-early-pool \\
        --eval runs/flight/eval-m17-s1-p25:flight-early-pool-s1 --out docs/library_refit.json
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.library_refit --extra ../shared/data/rruff \\
        --eval ... --out docs/library_extra.json
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.library_refit --new ../shared/data/rruff \\
        --eval runs/flight/eval-ch2-lv:flight-stem4-ch2 --out docs/library_new.json
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np

from benchmarks.common import one_line_errors

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHIFTS = (0, 15, 30)


def specimen_folds(sample_ids: list[str], n_folds: int = 2, seed: int = 0) -> np.ndarray:
    """Fold index of each spectrum: its specimen's (sorted ids, permuted with ``seed``,
    dealt in turn), so that one specimen's spectra share a fold."""
    ids = sorted(set(sample_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    fold_of = {ids[i]: k % n_folds for k, i in enumerate(order)}
    return np.array([fold_of[s] for s in sample_ids])


def held_aside(sample_ids: list[str], y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mask of the spectra of one specimen per class, for each class with at least two
    specimens (sorted ids of the class, one drawn with ``seed``): rule (L+'')'s library
    without one specimen per mineral."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(sample_ids)
    out = np.zeros(len(ids), dtype=bool)
    for k in np.unique(y):
        mine = sorted(set(ids[y == k].tolist()))
        if len(mine) >= 2:
            out |= (ids == mine[int(rng.integers(len(mine)))]) & (y == k)
    return out


def refit_scores(folder: Path) -> dict:
    """One split: validation top-1 (fold-wise) and test top-1 at every shift, with the
    shipped library (``"train"``) and the refit one (``"train+val"``)."""
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.grid import shift_spectra
    from ramanedge.library import SpectralLibrary, blend_rows
    from trainer.run import load_run

    art = load_artifact(folder / "model")
    lib = art.load_library()
    if lib is None:
        raise click.UsageError(f"{folder / 'model'} has no spectral library")
    cfg, K = lib.config, lib.n_classes
    net = Classifier(art, make_interpreter(art.model_path, num_threads=1), library=False)
    run = load_run(folder / "run", load_model=False)
    Xtr, ytr = run.subset("train")
    Xva, yva = run.subset("val")
    Xte, yte = run.subset("test")
    ids = [s for s, p in zip(run.dataset.sample_ids, run.split, strict=True) if p == "val"]
    fold = specimen_folds(ids)

    def build(X, y):
        return SpectralLibrary.build(X, y, K, cfg)

    shipped = build(Xtr, ytr)
    aside = held_aside([s for s, p in zip(run.dataset.sample_ids, run.split, strict=True)
                        if p == "train"], ytr)
    fewer = build(Xtr[~aside], ytr[~aside])
    refit_fold = [build(np.concatenate([Xtr, Xva[fold != f]]),
                        np.concatenate([ytr, yva[fold != f]])) for f in (0, 1)]
    refit_all = build(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]))
    out: dict[str, dict[str, float]] = {}
    for s in SHIFTS:
        hits: dict[str, list[float]] = {}
        for d in ((0,) if s == 0 else (s, -s)):
            X = shift_spectra(Xva, d)
            P = net.predict_proba_batch(X)
            q0 = blend_rows(P, shipped.similarity_batch(X), cfg).argmax(1)
            q1 = np.empty_like(q0)
            for f in (0, 1):
                m = fold == f
                q1[m] = blend_rows(P[m], refit_fold[f].similarity_batch(X[m]), cfg).argmax(1)
            hits.setdefault("val|train", []).append(float(np.mean(q0 == yva)))
            qa = blend_rows(P, fewer.similarity_batch(X), cfg).argmax(1)
            hits.setdefault("val|train-1", []).append(float(np.mean(qa == yva)))
            hits.setdefault("val|train+val", []).append(float(np.mean(q1 == yva)))
            X = shift_spectra(Xte, d)
            P = net.predict_proba_batch(X)
            for name, L in (("train", shipped), ("train+val", refit_all)):
                q = blend_rows(P, L.similarity_batch(X), cfg).argmax(1)
                hits.setdefault(f"test|{name}", []).append(float(np.mean(q == yte)))
        for k, v in hits.items():
            part, _, name = k.partition("|")
            out.setdefault(f"{part}_{s}", {})[name] = float(np.mean(v))
    out["rows"] = {"train": int(len(ytr)), "val": int(len(yva)),
                   "val_specimens": len(set(ids)), "held_aside": int(aside.sum())}
    return out


def _rule(gains: dict[str, np.ndarray]) -> dict:
    """The verdict of rules (L+) and (L+''): mean validation gain at 0 > +0.5 points,
    higher on >= 7 runs, and >= -0.5 at ±15 and ±30."""
    g0 = gains["val_0"]
    return {"val_gain_0": float(g0.mean()), "higher": int((g0 > 0).sum()),
            "lower": int((g0 < 0).sum()), "val_gain_15": float(gains["val_15"].mean()),
            "val_gain_30": float(gains["val_30"].mean()),
            "adopt": bool(g0.mean() > 0.5 and (g0 > 0).sum() >= 7
                          and gains["val_15"].mean() >= -0.5
                          and gains["val_30"].mean() >= -0.5)}


#: rule (L2)'s sources of extra library spectra (``ramanedge.corpus`` rows), by name
EXTRA_SOURCES = {"+eu": ("excellent_unoriented",), "+lrp": ("LR-Raman:processed",),
                 "+all": ("excellent_unoriented", "LR-Raman:processed",
                          "excellent_oriented_subset")}


def extra_rows(corpus, sources: tuple[str, ...], train_ids: set[str],
               labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``corpus`` from ``sources`` (a folder name, or ``folder:kind``) whose RRUFF
    id is one of ``train_ids`` and whose mineral is one of ``labels``: their grid spectra and
    class ids (never an LR-Raman raw file: rruff-raw itself)."""
    from ramanedge.io.rruff import normalise_label

    index = {normalise_label(n): i for i, n in enumerate(labels)}
    keep, ys = [], []
    for i, (src, kind, sid, name) in enumerate(zip(corpus.sources, corpus.kinds,
                                                   corpus.sample_ids, corpus.minerals,
                                                   strict=True)):
        if (src, kind) == ("LR-Raman", "raw") or sid not in train_ids:
            continue
        if src not in sources and f"{src}:{kind}" not in sources:
            continue
        k = index.get(normalise_label(name))
        if k is not None:
            keep.append(i)
            ys.append(k)
    return corpus.X[keep], np.array(ys, dtype=np.int64)


def extra_scores(folder: Path, corpus) -> dict:
    """Rule (L2), one split: validation and test top-1 at every shift with the shipped
    library (``"train"``) and with each of :data:`EXTRA_SOURCES` added (rows in ``"rows"``;
    :func:`benchmarks.library_eval.probe_scores`)."""
    from benchmarks.library_eval import probe_scores
    from ramanedge.library import SpectralLibrary, blend_rows

    rows: dict[str, int] = {}

    def make(art, run):
        lib = art.load_library()
        if lib is None:
            raise click.UsageError(f"{folder / 'model'} has no spectral library")
        cfg = lib.config
        Xtr, ytr = run.subset("train")
        train_ids = {s for s, p in zip(run.dataset.sample_ids, run.split, strict=True)
                     if p == "train" and s}
        K = len(run.labels)
        libs = {"train": SpectralLibrary.build(Xtr, ytr, K, cfg)}
        for name, sources in EXTRA_SOURCES.items():
            Xe, ye = extra_rows(corpus, sources, train_ids, list(run.labels))
            rows[name] = int(len(ye))
            libs[name] = SpectralLibrary.build(np.concatenate([Xtr, Xe]),
                                               np.concatenate([ytr, ye]), K, cfg)

        def score(P, X, y):
            return {name: float(np.mean(blend_rows(P, L.similarity_batch(X), cfg).argmax(1)
                                        == y)) for name, L in libs.items()}
        return score
    out = probe_scores(folder, make)
    return {"rows": rows, **out}


#: rule (X)'s candidates: the rows of specimens outside the data set, by the least share of
#: the grid a row must cover (the corpus pads a partial spectrum as the rover does)
NEW_SPECIMENS = {"+new": 0.0, "+new95": 0.95}


def new_specimen_rows(corpus, dataset_ids: set[str], labels: list[str],
                      min_coverage: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows of ``corpus`` whose RRUFF id is none of ``dataset_ids`` (the data set's specimens,
    every part of every split: never a validation or test specimen), whose mineral is one of
    ``labels`` and which cover at least ``min_coverage`` of the grid: their grid spectra,
    class ids and RRUFF ids (rows without an id are left out: nothing proves they are
    other specimens)."""
    from ramanedge.grid import GRID
    from ramanedge.io.rruff import normalise_label

    index = {normalise_label(n): i for i, n in enumerate(labels)}
    keep, ys = [], []
    for i, (sid, name) in enumerate(zip(corpus.sample_ids, corpus.minerals, strict=True)):
        k = index.get(normalise_label(name))
        if (k is None or not sid or sid in dataset_ids
                or (corpus.hi[i] - corpus.lo[i]) / GRID.size < min_coverage):
            continue
        keep.append(i)
        ys.append(k)
    return (corpus.X[keep], np.array(ys, dtype=np.int64),
            [corpus.sample_ids[i] for i in keep])


def new_scores(folder: Path, corpus) -> dict:
    """Rule (X), one split: validation top-1 at every shift with the library of the training
    spectra (``"train"``, the one the validation answers are calibrated with) and with each
    of :data:`NEW_SPECIMENS` added; test top-1 with the shipped library of training +
    validation spectra and with the same rows added (rows and specimens in ``"rows"``,
    ``"specimens"``; :func:`benchmarks.library_eval.probe_scores`)."""
    from benchmarks.library_eval import probe_scores
    from ramanedge.library import SpectralLibrary, blend_rows

    rows: dict[str, int] = {}
    specimens: dict[str, int] = {}

    def make(art, run):
        cfg = art.load_library().config
        K = len(run.labels)
        Xtr, ytr = run.subset("train")
        Xv, yv = run.subset("val")
        ids = {s for s in run.dataset.sample_ids if s}
        parts = {"val": (Xtr, ytr), "test": (np.concatenate([Xtr, Xv]),
                                             np.concatenate([ytr, yv]))}
        libs: dict[str, dict] = {p: {"train": SpectralLibrary.build(X, y, K, cfg)}
                                 for p, (X, y) in parts.items()}
        for name, cover in NEW_SPECIMENS.items():
            Xe, ye, se = new_specimen_rows(corpus, ids, list(run.labels), cover)
            rows[name], specimens[name] = int(len(ye)), len(set(se))
            for p, (X, y) in parts.items():
                libs[p][name] = SpectralLibrary.build(np.concatenate([X, Xe]),
                                                      np.concatenate([y, ye]), K, cfg)

        def scorer(part: str):
            def score(P, X, y):
                return {name: float(np.mean(blend_rows(P, L.similarity_batch(X), cfg)
                                            .argmax(1) == y))
                        for name, L in libs[part].items()}
            return score
        return {"val": scorer("val"), "test": scorer("test")}
    out = probe_scores(folder, make)
    return {"rows": rows, "specimens": specimens, **out}


def _gain_table(res: dict[str, dict], names, shipped: str) -> tuple[list[str], dict, dict]:
    """The library probes' table head: each of ``names``' paired gains over the shipped
    library (points, validation and test at every shift, with runs higher / lower), the
    shipped library's top-1 in the row labelled ``shipped``; returns the markdown lines, the
    gains by name and shift, and the mean rows added by name."""
    keys = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    runs = list(res.values())
    lines = ["| library | rows added (mean) | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys),
             f"| {shipped}, top-1 % | | " + " | ".join(
                 f"{100 * np.mean([r[k]['train'] for r in runs]):.2f}" for k in keys) + " |"]
    gains, n_rows = {}, {}
    for name in names:
        gains[name] = {k: np.array([100 * (r[k][name] - r[k]["train"]) for r in runs])
                       for k in keys}
        n_rows[name] = float(np.mean([r["rows"][name] for r in runs]))
        lines.append(f"| {name}, paired gain | {n_rows[name]:.0f} | " + " | ".join(
            f"{g.mean():+.2f} ± {g.std(ddof=1):.2f} ({int((g > 0).sum())}/{int((g < 0).sum())})"
            for g in gains[name].values()) + " |")
    return lines, gains, n_rows


def new_report(res: dict[str, dict]) -> tuple[str, dict]:
    """Rule (X)'s table (paired gains over the shipped library, points, validation and
    test) and verdict: the candidate with the larger mean validation gain at 0 is adopted
    iff that gain is > 0, more runs are higher than lower, and the mean validation gains at
    ±15 and ±30 are >= -0.25 (validation only)."""
    lines, all_gains, n_rows = _gain_table(
        res, NEW_SPECIMENS, "shipped (validation: training spectra; test: + validation)")
    stats = {}
    for name, gains in all_gains.items():
        g0 = gains["val_0"]
        stats[name] = {"val_gain_0": float(g0.mean()), "higher": int((g0 > 0).sum()),
                       "lower": int((g0 < 0).sum()),
                       "val_gain_15": float(gains["val_15"].mean()),
                       "val_gain_30": float(gains["val_30"].mean()),
                       "test_gain_0": float(gains["test_0"].mean()), "rows": n_rows[name]}
    pick = max(stats, key=lambda n: stats[n]["val_gain_0"])
    v = stats[pick]
    adopt = bool(v["val_gain_0"] > 0 and v["higher"] > v["lower"]
                 and v["val_gain_15"] >= -0.25 and v["val_gain_30"] >= -0.25)
    lines += ["", f"rule (X): choice {pick} (validation {v['val_gain_0']:+.2f} at 0, higher on "
              f"{v['higher']}, lower on {v['lower']}, {v['val_gain_15']:+.2f} at ±15, "
              f"{v['val_gain_30']:+.2f} at ±30): {'adopt' if adopt else 'reject'}"]
    return "\n".join(lines), {"candidates": stats, "pick": pick, "adopt": adopt}


def extra_report(res: dict[str, dict]) -> tuple[str, dict]:
    """Rule (L2)'s table: each variant's paired gains over the shipped library (points),
    validation and test, its rows, and the verdict (validation only)."""
    lines, all_gains, n_rows = _gain_table(res, EXTRA_SOURCES, "train (shipped)")
    verdicts = {name: {**_rule(gains), "rows": n_rows[name]}
                for name, gains in all_gains.items()}
    ok = [n for n, v in verdicts.items() if v["adopt"]]
    pick = min(ok, key=lambda n: verdicts[n]["rows"]) if ok else None
    lines += ["", f"rule (L2): {'adopt ' + pick if pick else 'reject'} ("
              + "; ".join(f"{n}: validation {v['val_gain_0']:+.2f} at 0, higher on "
                          f"{v['higher']}" for n, v in verdicts.items()) + ")"]
    return "\n".join(lines), {"variants": verdicts, "pick": pick}


def report(res: dict[str, dict]) -> tuple[str, dict]:
    """Top-1 of each library per shift (mean over runs), the paired gains (points) of rule
    (L+) (the refit against the shipped library; validation fold-wise, test reported) and
    of rule (L+'') (the shipped library against it without one specimen per mineral,
    validation), and both verdicts."""
    keys = [f"{p}_{s}" for p in ("val", "test") for s in SHIFTS]
    vkeys = [k for k in keys if k.startswith("val")]
    runs = list(res.values())

    def gain(k: str, a: str, b: str) -> np.ndarray:
        return np.array([100 * (r[k][a] - r[k][b]) for r in runs])

    lplus = {k: gain(k, "train+val", "train") for k in keys}
    lminus = {k: gain(k, "train", "train-1") for k in vkeys}
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name in ("train-1", "train", "train+val"):
        lines.append(f"| library {name}, top-1 % | " + " | ".join(
            f"{100 * np.mean([r[k][name] for r in runs]):.2f}" if name in runs[0][k] else ""
            for k in keys) + " |")
    for label, gains in (("(L+) train+val - train", lplus), ("(L+'') train - train-1", lminus)):
        lines.append(f"| {label}, paired | " + " | ".join(
            f"{gains[k].mean():+.2f} ± {gains[k].std(ddof=1):.2f}" if k in gains else ""
            for k in keys) + " |")
        lines.append("| higher / lower | " + " | ".join(
            f"{int((gains[k] > 0).sum())} / {int((gains[k] < 0).sum())}" if k in gains else ""
            for k in keys) + " |")
    verdict = {"L+": _rule(lplus), "L+''": _rule(lminus)}
    lines.append("")
    for name, v in verdict.items():
        lines.append(f"rule ({name}): validation {v['val_gain_0']:+.2f} at 0 (higher on "
                     f"{v['higher']} of {len(runs)}), {v['val_gain_15']:+.2f} at ±15, "
                     f"{v['val_gain_30']:+.2f} at ±30: {'adopt' if v['adopt'] else 'reject'}")
    return "\n".join(lines), verdict


@click.command()
@click.option("--eval", "evals", multiple=True, required=True,
              help="FOLDER:RECIPE of a multi-split evaluation with exports (repeatable).")
@click.option("--extra", "extra_data", type=click.Path(path_type=Path), default=None,
              help="Instead: rule (L2), the other RRUFF spectra of the training specimens "
                   "added to the library, read from this data root (ramanedge.corpus).")
@click.option("--new", "new_data", type=click.Path(path_type=Path), default=None,
              help="Instead: rule (X), the RRUFF spectra of specimens outside the data set "
                   "added to the library, read from this data root (ramanedge.corpus).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@one_line_errors
def main(evals: tuple[str, ...], extra_data: Path | None, new_data: Path | None,
         out: Path | None) -> None:
    """Score the refit library on every grouped split folder; print the table."""
    from benchmarks.knn_blend import grouped_runs, write_probe

    if extra_data is not None and new_data is not None:
        raise click.UsageError("give --extra or --new, not both")
    corpus = None
    if extra_data is not None or new_data is not None:
        from ramanedge.corpus import build_corpus

        corpus = build_corpus(extra_data if extra_data is not None else new_data)
    scores = (refit_scores if corpus is None
              else (lambda f: extra_scores(f, corpus)) if extra_data is not None
              else (lambda f: new_scores(f, corpus)))
    res = {}
    for names, f in grouped_runs(evals):
        res[names["run"]] = scores(f)
        click.echo(f"{f}: done", err=True)
    table, verdict = (report(res) if corpus is None
                      else extra_report(res) if extra_data is not None else new_report(res))
    click.echo(table)
    write_probe(out, evals, res, table, verdict=verdict)


if __name__ == "__main__":  # pragma: no cover
    main()
