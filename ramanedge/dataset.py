"""RRUFF data sets on the model grid, parsed once and cached.

Data sets (``name``):

``rruff-raw``
    The paper's RRUFF-raw: the LR-Raman ("Broad_Scan") **RAW** spectra, non-minerals dropped
    (RRUFF ids starting ``D``/``XD`` in the header or the file name), only spectra that cover
    the whole grid 200-1591 cm-1, label = ``##NAMES``, minerals with ``>= min_spectra``
    spectra, every spectrum through :func:`ramanedge.grid.preprocess`.
``rruff-clean``
    The **same spectra** as ``rruff-raw`` (same files, minerals, specimens) with the
    fluorescence baseline removed on the grid by :func:`remove_baseline` (iterative
    modified-polynomial fit, numpy only) before max-normalisation. RRUFF's own processed
    files cannot serve here (SOURCE.md quirk 10, measured in ``docs/parts/data.md``): the LR
    "Processed" files are mostly cropped copies of the RAW numbers, not baseline-corrected,
    and the 2019 ``excellent_unoriented`` processed spectra, which are corrected, end at
    ~1290 cm-1, so only 22 of 5,461 cover the grid.
``rruff-processed``
    RRUFF's LR-Raman **Processed** files as shipped (same filters as ``rruff-raw``), for
    comparison only: mostly *not* baseline-corrected.

Cache: the first build parses every source file once and stores all usable spectra (before
the ``min_spectra`` filter) in ``cache_dir`` as ``<pool>-<key>.npz`` (``allow_pickle=False``)
plus a JSON index ``<pool>-<key>.json`` (paths, labels, ids, lasers, skipped files); ``key``
hashes the pool definition, the parser and baseline versions, the grid, the data root and the
size/mtime of every source file. ``rruff-raw`` and ``rruff-clean`` share the pool
``broadscan-raw`` (both arrays are computed in the same pass), ``rruff-processed`` uses
``broadscan-processed``. Any later build with any ``min_spectra`` or ``minerals`` loads the
cache (well under a second) and filters in memory; stale entries of the same pool and root
are deleted when a new one is written.

Held-out minerals (the spectra of minerals dropped for having too few spectra) come from
:func:`load_heldout`; ``build_dataset(..., min_spectra=1)`` gives everything.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import CoverageError, DataError, SpectrumError
from ramanedge.fsutil import sha256_bytes
from ramanedge.grid import DEFAULT_GRID, GRID, GridSpec, preprocess, resample
from ramanedge.io.rruff import (
    display_names,
    filename_fields,
    is_non_mineral,
    kind_from_name,
    normalise_label,
    parse_rruff,
)
from ramanedge.io.sources import iter_spectrum_files, source_fingerprint
from ramanedge.paths import default_cache_dir
from ramanedge.poolcache import cached

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "build_dataset",
    "load_heldout",
    "remove_baseline",
]

PARSER_VERSION = 1
BASELINE_METHOD = "modpoly-degree5-tol1e-3-v2"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DatasetSpec:
    """What goes into a named data set."""

    name: str
    kind: str
    """RRUFF file kind taken: ``"raw"`` or ``"processed"``."""
    scan: str = "Broad_Scan"
    """Third file-name field that marks the set (``Broad_Scan`` = LR-Raman)."""
    baseline: bool = False
    """Remove the baseline on the grid (:func:`remove_baseline`) before normalising."""
    description: str = ""

    @property
    def pool(self) -> str:
        """Name of the parse pool (cache entry) this set is cut from.

        ``rruff-raw`` and ``rruff-clean`` share one pool: the files are parsed once and
        both arrays (``X`` and ``X_clean``) are stored together.
        """
        return f"{self.scan.lower().replace('_', '')}-{self.kind}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the pool definition (part of the cache key)."""
        d: dict[str, Any] = {"kind": self.kind, "scan": self.scan}
        if self.kind == "raw":
            d["baseline_method"] = BASELINE_METHOD
        return d


DATASETS: dict[str, DatasetSpec] = {
    "rruff-raw": DatasetSpec(
        "rruff-raw", "raw",
        description="LR-Raman RAW spectra covering 200-1591 cm-1, max-normalised (paper's "
        "RRUFF-raw)"),
    "rruff-clean": DatasetSpec(
        "rruff-clean", "raw", baseline=True,
        description="the rruff-raw spectra with the baseline removed (modified polyfit, "
        "degree 5) before max-normalisation"),
    "rruff-processed": DatasetSpec(
        "rruff-processed", "processed",
        description="LR-Raman 'Processed' files as shipped (mostly NOT baseline-corrected)"),
}


@functools.lru_cache(maxsize=8)
def _poly_basis(n: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(-1.0, 1.0, n)
    vander = np.polynomial.polynomial.polyvander(t, degree)
    pinv = np.linalg.pinv(vander)
    vander.setflags(write=False)
    pinv.setflags(write=False)
    return vander, pinv


def remove_baseline(
    y: np.ndarray, degree: int = 5, max_iter: int = 100, tol: float = 1e-3
) -> np.ndarray:
    """Subtract a fluorescence baseline: iterative modified polynomial fit (ModPoly).

    Lieber & Mahadevan-Jansen (2003): fit a polynomial of ``degree`` to the spectrum, clip
    the spectrum to the fit from above, refit, until the fit changes by less than ``tol``
    (relative) or ``max_iter`` rounds. Works on one spectrum on a uniform grid (the axis is
    the sample index) and returns ``y - baseline`` (float64). Peaks stay positive, the
    background goes to ~0.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size <= degree + 1:
        raise SpectrumError(f"baseline removal needs a 1-D spectrum longer than {degree + 1}")
    vander, pinv = _poly_basis(y.size, degree)
    work = y.copy()
    base = work
    prev = None
    for _ in range(max_iter):
        base = vander @ (pinv @ work)  # least-squares polynomial fit
        work = np.minimum(work, base)
        if prev is not None:
            change = np.linalg.norm(base - prev) / max(np.linalg.norm(prev), 1e-12)
            if change < tol:
                break
        prev = base
    return y - base


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set on the model grid.

    ``X`` float32 (N, 1392) preprocessed spectra; ``y`` int64 class ids; ``labels`` sorted
    display names (index = class id); ``paths`` relative to ``root`` (= ``manifest.csv``
    ``path`` for the shared tar members); ``sample_ids`` RRUFF sample ids (split groups);
    ``lasers`` float64 nm (NaN when unknown); ``skipped`` reason -> number of files left out;
    ``problems`` ``(path, reason)`` of every file left out for a reason other than not
    belonging to the set; ``dropped_minerals`` label -> spectra of minerals below
    ``min_spectra``.
    """

    X: np.ndarray
    y: np.ndarray
    labels: list[str]
    paths: list[str]
    sample_ids: list[str]
    lasers: np.ndarray
    name: str
    root: str
    min_spectra: int = 1
    skipped: dict[str, int] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()
    dropped_minerals: dict[str, int] = field(default_factory=dict)
    cache_key: str = ""

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.X.shape != (n, GRID.size) or len(self.paths) != n or len(self.sample_ids) != n \
                or len(self.lasers) != n:
            raise DataError(f"inconsistent data set {self.name}: X {self.X.shape}, y {n}, "
                            f"paths {len(self.paths)}, sample_ids {len(self.sample_ids)}")

    def __len__(self) -> int:
        return int(len(self.y))

    @property
    def minerals(self) -> list[str]:
        """The label of every spectrum (``labels[y[i]]``)."""
        return [self.labels[i] for i in self.y]

    @property
    def n_samples(self) -> int:
        """Number of distinct RRUFF sample ids (specimens)."""
        return len(set(self.sample_ids))

    def counts(self) -> dict[str, int]:
        """Spectra per label, in label order."""
        c = np.bincount(self.y, minlength=len(self.labels))
        return {lab: int(c[i]) for i, lab in enumerate(self.labels)}

    def subset(self, mask: np.ndarray | Sequence[bool] | Sequence[int]) -> Dataset:
        """Rows selected by a boolean mask or an index array; labels and class ids unchanged."""
        m = np.asarray(mask)
        idx = np.flatnonzero(m) if m.dtype == bool else m.astype(np.int64)
        if m.dtype == bool and m.shape != (len(self),):
            raise DataError(f"mask has shape {m.shape}, expected ({len(self)},)")
        return Dataset(
            X=self.X[idx], y=self.y[idx], labels=list(self.labels),
            paths=[self.paths[i] for i in idx], sample_ids=[self.sample_ids[i] for i in idx],
            lasers=self.lasers[idx], name=self.name, root=self.root,
            min_spectra=self.min_spectra, skipped=dict(self.skipped), problems=self.problems,
            dropped_minerals=dict(self.dropped_minerals), cache_key=self.cache_key,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: spectra, minerals, samples, lasers, skipped files by reason."""
        lasers = Counter("unknown" if np.isnan(v) else f"{v:g}" for v in self.lasers)
        return {
            "name": self.name,
            "root": self.root,
            "min_spectra": self.min_spectra,
            "spectra": len(self),
            "minerals": len(self.labels),
            "samples": self.n_samples,
            "lasers": dict(sorted(lasers.items())),
            "skipped": dict(self.skipped),
            "dropped_minerals": len(self.dropped_minerals),
            "dropped_spectra": int(sum(self.dropped_minerals.values())),
        }


# ---------------------------------------------------------------------------------------
# parsing the sources into the cached pool


def _name_selects(spec: DatasetSpec, relpath: str) -> bool:
    """Pre-filter on the file name (before reading bytes): right set and kind."""
    fields = filename_fields(relpath)
    if len(fields) < 3 or fields[2] != spec.scan:
        return False
    kind = kind_from_name(relpath)
    return kind is None or kind == spec.kind


def _grid_spectra(
    spec: DatasetSpec, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """``preprocess(x, y)`` and, for RAW pools, the baseline-removed version."""
    row = preprocess(x, y)
    if spec.kind != "raw":
        return row, None
    on_grid = resample(x, y)
    return row, preprocess(GRID, remove_baseline(on_grid))


def _parse_pool(
    root: Path, spec: DatasetSpec, progress: Progress | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    say = progress or (lambda _m: None)
    rows: list[np.ndarray] = []
    clean_rows: list[np.ndarray] = []
    meta: dict[str, list[Any]] = {"paths": [], "names": [], "sample_ids": [], "lasers": []}
    problems: list[tuple[str, str, str]] = []
    n_seen = 0
    n_other = 0
    t0 = time.perf_counter()

    def accept(rel: str) -> bool:
        nonlocal n_seen, n_other
        n_seen += 1
        if n_seen % 1000 == 0:
            say(f"  {n_seen} files scanned, {len(rows)} kept ({time.perf_counter() - t0:.0f} s)")
        if _name_selects(spec, rel):
            return True
        n_other += 1
        return False

    def on_error(path: str, reason: str) -> None:
        problems.append((path, "unreadable", reason))
        say(f"  skipped {path}: {reason}")

    for sf in iter_spectrum_files(root, accept=accept, on_error=on_error):
        try:
            s = parse_rruff(sf.data, sf.path)
        except SpectrumError as e:
            on_error(sf.path, str(e))
            continue
        if s.kind is not None and s.kind != spec.kind:
            n_other += 1
            continue
        if is_non_mineral(s, sf.path):
            problems.append((sf.path, "non_mineral", f"non-mineral compound id {s.rruff_id}"))
            continue
        if not s.mineral:
            problems.append((sf.path, "no_label", "no ##NAMES and no mineral in the file name"))
            continue
        try:
            row, clean = _grid_spectra(spec, s.x, s.y)
        except CoverageError as e:
            problems.append((sf.path, "no_coverage", str(e)))
            continue
        except SpectrumError as e:
            problems.append((sf.path, "unusable", str(e)))
            say(f"  skipped {sf.path}: {e}")
            continue
        rows.append(row)
        if clean is not None:
            clean_rows.append(clean)
        meta["paths"].append(sf.path)
        meta["names"].append(s.mineral.strip())
        meta["sample_ids"].append(s.rruff_id or "")
        meta["lasers"].append(s.laser_nm)
    if n_seen == 0:
        why = f"; {problems[0][0]}: {problems[0][2]}" if problems else ""
        raise DataError(
            f"no spectrum files found in {root} (expected RRUFF .txt files in folders, "
            f".zip or .tar(.xz) archives){why}"
        )
    def stack(r: list[np.ndarray]) -> np.ndarray:
        return np.stack(r).astype(np.float32) if r else np.zeros((0, GRID.size), np.float32)

    arrays = {"X": stack(rows)}
    if spec.kind == "raw":
        arrays["X_clean"] = stack(clean_rows)
    meta["problems"] = problems
    meta["n_files"] = n_seen
    meta["n_other"] = n_other
    meta["parse_seconds"] = round(time.perf_counter() - t0, 2)
    meta["root_resolved"] = str(root.resolve())
    return meta, arrays


def _cache_key(root: Path, spec: DatasetSpec, grid: GridSpec) -> str:
    body = {
        "parser_version": PARSER_VERSION,
        "spec": spec.to_dict(),
        "grid": grid.to_dict(),
        "root": str(root.resolve()),
        "sources": source_fingerprint(root),
    }
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


def _pool(
    root: Path, spec: DatasetSpec, cache_dir: Path | None, progress: Progress | None,
    use_cache: bool = True,
) -> tuple[dict[str, Any], np.ndarray, str]:
    """The parsed pool of ``spec`` (from the cache if valid) and the array ``spec`` uses."""
    key = _cache_key(root, spec, DEFAULT_GRID)
    which = "X_clean" if spec.baseline else "X"
    meta, arrays = cached(cache_dir, f"{spec.pool}-{key[:16]}", key,
                          lambda: _parse_pool(root, spec, progress), need=which,
                          what=f"{spec.name} of {root}", use_cache=use_cache,
                          progress=progress)
    return meta, arrays[which], key


# ---------------------------------------------------------------------------------------
# public API


def _resolve(name: str, root: str | os.PathLike[str]) -> tuple[DatasetSpec, Path]:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    r = Path(root)
    if not r.exists():
        raise DataError(f"data folder not found: {r} (expected the RRUFF data, e.g. "
                        "../shared/data/rruff, or an LR-Raman.zip / .tar.xz archive)")
    return DATASETS[name], r


def _assemble(
    meta: dict[str, Any], X: np.ndarray, spec: DatasetSpec, root: Path, key: str,
    keep: Callable[[str, int], bool], min_spectra: int,
) -> Dataset:
    names = display_names(list(meta["names"]))
    counts = Counter(names)
    kept_labels = sorted(lab for lab, c in counts.items() if keep(lab, c))
    kept = set(kept_labels)
    dropped = {lab: c for lab, c in sorted(counts.items()) if lab not in kept}
    index = {lab: i for i, lab in enumerate(kept_labels)}
    rows = np.array([i for i, n in enumerate(names) if n in index], dtype=np.int64)
    problems = [tuple(p) for p in meta["problems"]]
    skipped = Counter(p[1] for p in problems)
    skipped["other_set_or_kind"] = int(meta["n_other"])
    skipped["too_few_spectra"] = int(sum(c for lab, c in counts.items() if lab not in index))
    lasers = np.array([np.nan if v is None else float(v) for v in meta["lasers"]], np.float64)
    return Dataset(
        X=X[rows] if rows.size else np.zeros((0, GRID.size), np.float32),
        y=np.array([index[names[i]] for i in rows], dtype=np.int64),
        labels=kept_labels,
        paths=[meta["paths"][i] for i in rows],
        sample_ids=[meta["sample_ids"][i] for i in rows],
        lasers=lasers[rows] if rows.size else np.zeros(0),
        name=spec.name,
        root=str(root),
        min_spectra=min_spectra,
        skipped=dict(sorted(skipped.items())),
        problems=tuple((p[0], f"{p[1]}: {p[2]}") for p in problems),
        dropped_minerals=dropped,
        cache_key=key,
    )


def build_dataset(
    root: str | os.PathLike[str],
    name: str = "rruff-raw",
    *,
    min_spectra: int = 8,
    minerals: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Build (or load from the cache) the data set ``name`` from the RRUFF data at ``root``.

    ``root`` is a data folder (e.g. ``../shared/data/rruff``), an archive (``LR-Raman.zip``,
    ``LR-Raman.tar.xz``) or one ``.txt``. ``min_spectra`` keeps minerals with at least that
    many spectra (1 = everything); ``minerals`` keeps only these labels (``##NAMES``
    spelling; each must be present with ``>= min_spectra`` spectra). ``cache_dir`` defaults to
    :func:`ramanedge.paths.default_cache_dir`; ``progress`` receives human-readable lines.

    Raises :class:`DataError` for a missing root, a root without spectrum files, an unknown
    data set, a requested mineral that is absent or too small, or an empty result.
    """
    spec, r = _resolve(name, root)
    if int(min_spectra) < 1:
        raise DataError(f"min_spectra must be >= 1, got {min_spectra}")
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    meta, X, key = _pool(r, spec, cdir, progress, use_cache)
    if not meta["paths"]:
        raise DataError(
            f"no usable {spec.name} spectra in {r}: {meta['n_files']} spectrum files scanned, "
            f"none is an LR-Raman ({spec.scan}) {spec.kind} spectrum covering "
            f"{DEFAULT_GRID.start:g}-{DEFAULT_GRID.stop:g} cm-1"
        )
    wanted: set[str] | None = None
    if minerals is not None:
        available = Counter(display_names(list(meta["names"])))
        by_key = {normalise_label(k): k for k in available}
        wanted = set()
        for m in minerals:
            lab = by_key.get(normalise_label(m))
            if lab is None:
                raise DataError(f"mineral {m!r} is not in {spec.name} (from {r})")
            if available[lab] < min_spectra:
                raise DataError(f"mineral {lab!r} has {available[lab]} spectra in {spec.name}, "
                                f"fewer than min_spectra={min_spectra}")
            wanted.add(lab)

    def keep(lab: str, c: int) -> bool:
        return c >= min_spectra and (wanted is None or lab in wanted)

    ds = _assemble(meta, X, spec, r, key, keep, int(min_spectra))
    if len(ds) == 0:
        most = max(Counter(display_names(list(meta["names"]))).values())
        raise DataError(
            f"no mineral in {spec.name} has >= {min_spectra} spectra (the largest has {most}); "
            "lower --min-spectra"
        )
    return ds


def load_heldout(
    root: str | os.PathLike[str],
    name: str = "rruff-raw",
    *,
    min_spectra: int = 8,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Spectra of the minerals that ``build_dataset(root, name, min_spectra=...)`` drops.

    These minerals are never seen by a model trained on that data set: use them to measure
    unknown-mineral detection. Labels are the held-out minerals' own sorted names (class ids
    are *not* those of the training set). Same cache as :func:`build_dataset`.
    """
    spec, r = _resolve(name, root)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    meta, X, key = _pool(r, spec, cdir, progress)
    ds = _assemble(meta, X, spec, r, key, lambda _lab, c: c < min_spectra, 1)
    if len(ds) == 0:
        raise DataError(f"every mineral of {spec.name} has >= {min_spectra} spectra; "
                        "nothing is held out")
    return ds
