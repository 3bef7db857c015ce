"""Every RRUFF spectrum on the model grid, for pretraining without labels.

:func:`build_corpus` parses **every** spectrum file under a data root (folders, ``.zip`` or
``.tar(.xz)`` archives): RAW and Processed files of every set (LR-Raman, excellent_unoriented,
...), minerals with any number of spectra. Unlike the labelled data sets of
:mod:`ramanedge.dataset`, partial spectra are kept: a spectrum covering at least
``min_coverage`` of the grid is interpolated on its covered points and padded outside them with
:func:`ramanedge.grid.pad_outside` (the rover's own padding), and its covered span ``lo:hi`` is
stored. The 2019 excellent_unoriented processed spectra, which end near 1290 cm-1, enter this
way. Non-mineral compounds (RRUFF ids ``D...``/``XD...``) and files without a label are left
out, as in the labelled sets.

:meth:`Corpus.excluding` drops specimens (RRUFF ids) and minerals, so a pretraining never sees
a validation or test specimen of the split it is evaluated on, nor the evaluation half of the
unknown minerals (:func:`ramanedge.splits.unknown_halves`).

Cache: the parsed corpus is stored like the data-set pools (``corpus-<key>.npz`` + ``.json``
in the cache folder), keyed on the parser, the grid, ``min_coverage`` and every source file's
size and mtime.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.dataset import PARSER_VERSION
from ramanedge.errors import CoverageError, DataError, SpectrumError
from ramanedge.fsutil import sha256_bytes
from ramanedge.grid import DEFAULT_GRID, GRID, CoveragePolicy, covered_span, preprocess_covered
from ramanedge.io.rruff import display_names, is_non_mineral, normalise_label, parse_rruff
from ramanedge.io.sources import iter_spectrum_files, source_fingerprint
from ramanedge.paths import default_cache_dir
from ramanedge.poolcache import cached

__all__ = ["Corpus", "build_corpus"]

CORPUS_VERSION = 1
DEFAULT_CORPUS_COVERAGE = 0.4
"""Smallest covered fraction of the grid kept (the smallest window the crop augmentation
shows the classifier, ``trainer.augment.CROP_MIN_FRACTION``)."""


@dataclass(frozen=True)
class Corpus:
    """Unlabelled spectra on the model grid with where each came from.

    ``X`` (N, 1392) float32, max-normalised, padded outside ``lo[i]:hi[i]`` (the grid points
    the spectrum really covers). ``minerals`` (``##NAMES``, display spelling), ``sample_ids``
    (RRUFF ids, ``""`` when absent), ``kinds`` (``raw``/``processed``/``""``) and ``sources``
    (first folder of the path: ``LR-Raman``, ``excellent_unoriented``, ...) are per row.
    """

    X: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    paths: tuple[str, ...]
    minerals: tuple[str, ...]
    sample_ids: tuple[str, ...]
    kinds: tuple[str, ...]
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.X.shape[0]
        if self.X.ndim != 2 or self.X.shape[1] != GRID.size:
            raise ValueError(f"corpus spectra must be (N, {GRID.size}), got {self.X.shape}")
        for name in ("lo", "hi", "paths", "minerals", "sample_ids", "kinds", "sources"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"corpus field {name} has {len(getattr(self, name))} rows, "
                                 f"X has {n}")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, keep: np.ndarray) -> Corpus:
        """The rows where the boolean mask ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)

        def pick(t: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(t[i] for i in idx)

        return Corpus(self.X[idx], self.lo[idx], self.hi[idx], pick(self.paths),
                      pick(self.minerals), pick(self.sample_ids), pick(self.kinds),
                      pick(self.sources))

    def excluding(self, *, sample_ids: Iterable[str] = (), minerals: Iterable[str] = (),
                  paths: Iterable[str] = ()) -> Corpus:
        """Drop every spectrum of these specimens (RRUFF ids), minerals and files.

        Minerals are compared after :func:`ramanedge.io.rruff.normalise_label` (case and
        punctuation), specimens and paths exactly; empty ids never match.
        """
        ids = {s for s in sample_ids if s}
        mins = {normalise_label(m) for m in minerals}
        files = set(paths)
        keep = np.array([s not in ids and normalise_label(m) not in mins and p not in files
                         for s, m, p in zip(self.sample_ids, self.minerals, self.paths,
                                            strict=True)], bool)
        return self.subset(keep)

    def summary(self) -> dict[str, Any]:
        """Counts by source and kind, specimens, minerals and coverage."""
        by: dict[str, int] = {}
        for s, k in zip(self.sources, self.kinds, strict=True):
            by[f"{s}/{k or '?'}"] = by.get(f"{s}/{k or '?'}", 0) + 1
        cov = (self.hi - self.lo) / GRID.size if len(self) else np.zeros(0)
        return {"spectra": len(self), "by_source": dict(sorted(by.items())),
                "specimens": len({s for s in self.sample_ids if s}),
                "minerals": len(set(self.minerals)),
                "full_coverage": int(np.sum(cov >= 1.0)),
                "mean_coverage": round(float(cov.mean()), 4) if len(self) else 0.0}


def _key(root: Path, min_coverage: float) -> str:
    body = {"corpus_version": CORPUS_VERSION, "parser_version": PARSER_VERSION,
            "grid": DEFAULT_GRID.to_dict(), "min_coverage": float(min_coverage),
            "root": str(root.resolve()), "sources": source_fingerprint(root)}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


def _parse(root: Path, min_coverage: float,
           progress: Callable[[str], None] | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    say = progress or (lambda _m: None)
    policy = CoveragePolicy(mode="pad", min_fraction=min_coverage)
    rows: list[np.ndarray] = []
    meta: dict[str, Any] = {k: [] for k in ("paths", "names", "sample_ids", "kinds", "lo",
                                            "hi")}
    skipped: dict[str, int] = {}
    t0 = time.perf_counter()
    n = 0
    for sf in iter_spectrum_files(root):
        n += 1
        if n % 2000 == 0:
            say(f"  {n} files read, {len(rows)} kept ({time.perf_counter() - t0:.0f} s)")
        try:
            s = parse_rruff(sf.data, sf.path)
            if is_non_mineral(s, sf.path):
                skipped["non_mineral"] = skipped.get("non_mineral", 0) + 1
                continue
            if not s.mineral:
                skipped["no_label"] = skipped.get("no_label", 0) + 1
                continue
            row, _ = preprocess_covered(s.x, s.y, DEFAULT_GRID, policy)
        except CoverageError:
            skipped["too_little_coverage"] = skipped.get("too_little_coverage", 0) + 1
            continue
        except SpectrumError:
            skipped["unusable"] = skipped.get("unusable", 0) + 1
            continue
        lo, hi = covered_span(s.x, DEFAULT_GRID)
        rows.append(row)
        meta["paths"].append(sf.path)
        meta["names"].append(s.mineral.strip())
        meta["sample_ids"].append(s.rruff_id or "")
        meta["kinds"].append(s.kind or "")
        meta["lo"].append(int(lo))
        meta["hi"].append(int(min(hi, GRID.size)))
    if n == 0:
        raise DataError(f"no spectrum files found in {root} (expected RRUFF .txt files in "
                        "folders, .zip or .tar(.xz) archives)")
    meta["skipped"] = skipped
    meta["n_files"] = n
    meta["parse_seconds"] = round(time.perf_counter() - t0, 2)
    meta["root_resolved"] = str(root.resolve())
    X = np.stack(rows).astype(np.float32) if rows else np.zeros((0, GRID.size), np.float32)
    return meta, {"X": X}


def build_corpus(root: str | os.PathLike[str], *, min_coverage: float = DEFAULT_CORPUS_COVERAGE,
                 cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True,
                 progress: Callable[[str], None] | None = None) -> Corpus:
    """Every usable RRUFF spectrum under ``root`` on the model grid (see the module doc).

    Raises :class:`DataError` for a missing root, a root without spectrum files, or when no
    spectrum covers ``min_coverage`` of the grid.
    """
    r = Path(root)
    if not r.exists():
        raise DataError(f"data folder not found: {r} (expected the RRUFF data, e.g. "
                        "../shared/data/rruff, or RRUFF .zip / .tar.xz archives)")
    if not 0.0 < float(min_coverage) <= 1.0:
        raise DataError(f"min_coverage must be in (0, 1], got {min_coverage}")
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _key(r, float(min_coverage))
    stem = f"corpus-{key[:16]}"
    meta, arrays = cached(cdir, stem, key, lambda: _parse(r, float(min_coverage), progress),
                          need="X", what=f"every spectrum in {r}", use_cache=use_cache,
                          progress=progress)
    X = arrays["X"]
    if X.shape[0] == 0:
        raise DataError(f"no spectrum in {r} covers {100 * min_coverage:.0f}% of the grid")
    paths = tuple(meta["paths"])
    return Corpus(
        X=X, lo=np.asarray(meta["lo"], np.int64), hi=np.asarray(meta["hi"], np.int64),
        paths=paths, minerals=tuple(display_names(list(meta["names"]))),
        sample_ids=tuple(meta["sample_ids"]), kinds=tuple(meta["kinds"]),
        sources=tuple(p.replace("\\", "/").split("/", 1)[0] if "/" in p else "" for p in paths))
