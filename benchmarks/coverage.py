"""Top-1 against covered range, on the rover's int8 path (issue 13.1).

For each artifact (``--model``, repeatable) and the split of the run it was trained on
(``--split-file``, e.g. ``runs/NAME/split.csv``):

1. **Cut windows**: every val and test spectrum (raw file, as the device gets it) is cut to a
   wavenumber window (an instrument whose grating / filters see only that range) and classified
   with ``--coverage pad`` (:class:`ramanedge.grid.CoveragePolicy`, no minimum), exactly as
   ``ramanedge classify`` does; top-1 per window, val and test.
2. **Real partial files** in the RRUFF folder, whose minerals the model knows:
   the LR-Raman *processed* files of the split's test specimens (RRUFF crops most of them to
   the region with bands; SOURCE.md quirk 10), the non-LR-Raman raw files (the 2019
   excellent_unoriented raw files and the excellent_oriented subset, 514 nm) and the 2019
   excellent_unoriented *processed* files (mostly 135-1289 cm-1, baseline-corrected: a second
   shift of domain on top of the range). For the non-LR sets the specimen's part of the split
   is reported (a specimen in ``train`` was seen, through its LR-Raman spectra).

``python -m benchmarks.coverage --model models/a --model models/b --split-file runs/a/split.csv
--out bench_out/coverage.json`` prints a markdown table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: (start, stop) cm-1 windows of the cut measurement; the first is the whole grid.
WINDOWS: tuple[tuple[float, float], ...] = (
    (200, 1591), (200, 1400), (200, 1300), (200, 1200), (200, 1100), (200, 1000),
    (200, 900), (300, 1591), (400, 1591), (500, 1591), (600, 1591), (400, 1300), (400, 1100),
)


def _classifier(model: Path) -> Any:
    from edge_runtime.classify import Classifier
    from ramanedge.grid import CoveragePolicy

    return Classifier.from_dir(model, use_head_store=False, top_k=3,
                               coverage=CoveragePolicy(mode="pad", min_fraction=0.0))


def cut(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """The points of a spectrum inside ``[lo, hi]`` cm-1 (an instrument that sees only that)."""
    m = (x >= lo) & (x <= hi)
    return x[m], y[m]


def validation_classifiers(clfs: dict[str, Any], ds: Any, split: np.ndarray) -> dict[str, Any]:
    """Each classifier as it answers the split's validation spectra: without them in its
    library (:func:`benchmarks.common.validation_answerer`; the training part of ``split``
    over ``ds``, the spectra of the artifact's minerals)."""
    from benchmarks.common import validation_answerer

    out = {}
    minerals = np.asarray(ds.minerals).astype(str)
    for name, clf in clfs.items():
        labels = list(clf.artifact.labels)
        m = (np.asarray(split) == "train") & np.isin(minerals, labels)
        y = np.array([labels.index(n) for n in minerals[m]])
        out[name] = validation_answerer(clf, ds.X[m], y)
    return out


def window_table(clfs: dict[str, Any], items: dict[str, list[Any]],
                 val_clfs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Top-1 of every model on every window and part (``val_clfs``: the classifiers that
    answer the ``"val"`` part, default ``clfs``)."""
    rows = []
    for lo, hi in WINDOWS:
        row: dict[str, Any] = {"window": [lo, hi]}
        for part, its in items.items():
            answering = val_clfs if part == "val" and val_clfs is not None else clfs
            for name, clf in answering.items():
                right, cov = 0, []
                for it in its:
                    p = clf.classify_xy(*cut(it.x, it.y, lo, hi))
                    right += p.label == it.label
                    cov.append(p.coverage)
                row[f"{name}/{part}"] = right / len(its)
            row["coverage"] = float(np.median(cov))
        rows.append(row)
    return rows


def real_files(data_root: Path, ds: Any, split: np.ndarray, clfs: dict[str, Any],
               val_clfs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The real partial-coverage files of the RRUFF folder whose minerals the models know."""
    from ramanedge.errors import RamanEdgeError
    from ramanedge.io.rruff import normalise_label, parse_rruff, strip_rruff_id
    from ramanedge.io.sources import iter_spectrum_files

    known = {normalise_label(lab): lab for lab in ds.labels}
    part_of: dict[str, str] = {}
    for sid, s in zip(ds.sample_ids, split.tolist(), strict=True):
        if sid and s:
            part_of.setdefault(sid, s)
    test_ids = {sid for sid, s in part_of.items() if s == "test"}

    def accept(rel: str) -> bool:
        return ("/processed/" in rel and not rel.startswith("excellent_oriented")) or (
            "/raw/" in rel and not rel.startswith("LR-Raman/"))

    groups: dict[str, list[dict[str, Any]]] = {}
    for sf in iter_spectrum_files(data_root, accept=accept):
        try:
            s = parse_rruff(sf.data, sf.path)
        except RamanEdgeError:
            continue
        label = known.get(normalise_label(s.mineral or ""))
        sid = strip_rruff_id(s.rruff_id or "") or ""
        if label is None:
            continue
        if sf.path.startswith("LR-Raman/"):
            if sid not in test_ids:
                continue
            group = "LR-Raman processed, test specimens"
        elif sf.path.startswith("excellent_unoriented/processed/"):
            group = "excellent_unoriented processed (2019, baseline-corrected)"
        elif sf.path.startswith("excellent_unoriented/"):
            group = "excellent_unoriented raw (2019)"
        else:
            group = "excellent_oriented subset raw (514 nm)"
        rec: dict[str, Any] = {"path": sf.path, "label": label, "specimen_part": part_of.get(
            sid, "not in the data set"), "x": [float(s.x.min()), float(s.x.max())]}
        # a validation specimen's files are answered without its spectra in the library
        answering = val_clfs if val_clfs is not None and rec["specimen_part"] == "val" else clfs
        for name, clf in answering.items():
            try:
                p = clf.classify_xy(s.x, s.y)
                rec[name] = p.label == label
                rec["coverage"] = p.coverage
            except RamanEdgeError as e:
                rec[name] = None
                rec["error"] = str(e)
        groups.setdefault(group, []).append(rec)
    out: dict[str, Any] = {}
    for group, recs in sorted(groups.items()):
        summary: dict[str, Any] = {"n": len(recs)}
        for sub, keep in (("all", lambda r: True),
                          ("partial", lambda r: r.get("coverage", 0) < 1.0),
                          ("specimen not in train", lambda r: r["specimen_part"] != "train")):
            sel = [r for r in recs if keep(r)]
            summary[sub] = {"n": len(sel), **{
                name: (float(np.mean([bool(r[name]) for r in sel])) if sel else None)
                for name in clfs}}
        summary["median_coverage"] = float(np.median([r.get("coverage", 0.0) for r in recs]))
        summary["files"] = recs
        out[group] = summary
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurement; print a markdown table; write ``--out`` JSON."""
    from device_sim.spectra import load_items
    from ramanedge.dataset import build_dataset
    from ramanedge.machine import cpu_model
    from ramanedge.splits import read_split_csv

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, type=Path,
                    help="artifact folder (repeatable); all trained on --split-file")
    ap.add_argument("--split-file", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/rruff"))
    ap.add_argument("--out", type=Path, default=Path("bench_out/coverage.json"))
    a = ap.parse_args(argv)
    t0 = time.time()
    clfs = {m.name: _classifier(m) for m in a.model}
    items = {part: load_items(a.data, split_file=a.split_file, part=part, payload="raw")
             for part in ("val", "test")}
    ds = build_dataset(a.data, "rruff-raw")
    split = read_split_csv(a.split_file, ds)
    val_clfs = validation_classifiers(clfs, ds, split)
    res = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu_model(),
           "command": "python -m benchmarks.coverage " + " ".join(
               [*(f"--model {m}" for m in a.model), f"--split-file {a.split_file}"]),
           "models": [str(m) for m in a.model],
           "n": {p: len(v) for p, v in items.items()},
           "windows": window_table(clfs, items, val_clfs),
           "real_files": real_files(a.data, ds, split, clfs, val_clfs)}
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    names = list(clfs)
    print("| window cm-1 | grid covered | " + " | ".join(
        f"{n} val | {n} test" for n in names) + " |")
    print("|---|---:|" + "---:|" * (2 * len(names)))
    for r in res["windows"]:
        cells = " | ".join(f"{100 * r[f'{n}/val']:.1f} | {100 * r[f'{n}/test']:.1f}"
                           for n in names)
        print(f"| {r['window'][0]:g}-{r['window'][1]:g} | {100 * r['coverage']:.0f}% | {cells} |")
    print()
    subs = ("all", "partial", "specimen not in train")
    print("| real files | median coverage | " + " | ".join(
        f"{sub}: n | " + " | ".join(names) for sub in subs) + " |")
    print("|---|---:|" + ("---:|" * (1 + len(names))) * len(subs))
    for g, s in res["real_files"].items():
        cells = " | ".join(f"{s[sub]['n']} | " + " | ".join(
            "-" if s[sub][n] is None else f"{100 * s[sub][n]:.1f}" for n in names)
            for sub in subs)
        print(f"| {g} | {100 * s['median_coverage']:.0f}% | {cells} |")
    print(f"\n{res['cpu']}, {res['date']}, {res['seconds']} s")
    return res


if __name__ == "__main__":
    main()
