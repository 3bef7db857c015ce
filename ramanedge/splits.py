"""Train/val/test splits of a :class:`~ramanedge.dataset.Dataset`, and the split CSV.

``grouped`` (default): 85/15 (train+val)/test, stratified by mineral and grouped by RRUFF
sample id, so the 532 and 785 nm spectra of one specimen never sit on both sides; then val
is carved from train+val the same grouped way (15 % of its groups). Per mineral with ``G``
sample groups (groups visited in a seeded random order):

* ``n_test = max(1, round(0.15 * G))`` when ``G >= 2``, else 0 (a one-specimen mineral is
  train only: it cannot be tested without leaking its specimen);
* of the remaining ``R = G - n_test`` groups, ``n_val = max(1, round(0.15 * R))`` when
  ``R >= 2``, else 0; the rest is train (so every mineral keeps >= 1 train group).

Because of the "at least one test group" rule, minerals with few specimens contribute more
than 15 % of their spectra to test (e.g. 4 groups -> 1 test, 1 val, 2 train); the achieved
fractions are in ``docs/parts/data.md``.

``random``: the same rule applied to single spectra (per-spectrum stratified split, as the
paper did); the two spectra of one specimen may then land on both sides.

Split CSV: header ``path,split``, one row per spectrum it assigns, ``split`` in
``train``/``val``/``test``. A file may name a subset of the data set (a published split's own
lists): the spectra it does not name are :data:`UNUSED` (``""``) and take no part; when it
has no ``val`` part, :func:`complete_split` carves one from its train part, grouped by
specimen and seeded. :func:`split_sha256` hashes the assigned (path, split) pairs sorted by
path, so it is the same for a split in memory and the CSV read back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ramanedge.dataset import Dataset
from ramanedge.errors import DataError
from ramanedge.fsutil import atomic_write_text

__all__ = [
    "SPLIT_KINDS",
    "SPLIT_VALUES",
    "UNUSED",
    "complete_split",
    "make_split",
    "read_split_csv",
    "specimen_groups",
    "split_counts",
    "split_sha256",
    "unknown_evaluation",
    "unknown_halves",
    "write_split_csv",
]

SPLIT_KINDS = ("grouped", "random")
SPLIT_VALUES = ("train", "val", "test")
UNUSED = ""
"""Split value of a spectrum the split does not assign (a split file naming a subset)."""


def _n_take(n: int, frac: float) -> int:
    """Groups to take out of ``n``: at least one when ``n >= 2``, never all."""
    if n < 2 or frac <= 0:
        return 0
    return int(min(n - 1, max(1, round(frac * n))))


def specimen_groups(ds: Dataset) -> np.ndarray:
    """The specimen of every spectrum of ``ds``: its RRUFF sample id, or its own file path
    (``"#path"``) when the file names none. What the grouped split keeps on one side."""
    return np.array([sid or f"#{p}" for sid, p in zip(ds.sample_ids, ds.paths, strict=True)])


def _groups(ds: Dataset, kind: str) -> np.ndarray:
    if kind == "grouped":
        return specimen_groups(ds)
    return np.array([f"#{i}" for i in range(len(ds))])


def make_split(
    ds: Dataset,
    kind: str = "grouped",
    seed: int = 0,
    *,
    test_frac: float = 0.15,
    val_frac: float = 0.15,
) -> np.ndarray:
    """Assign every spectrum of ``ds`` to ``"train"``, ``"val"`` or ``"test"``.

    Returns a ``str`` array aligned with ``ds.paths``. Deterministic for a given data set,
    ``kind`` and ``seed``. See the module docstring for the rules.
    """
    if kind not in SPLIT_KINDS:
        raise DataError(f"unknown split kind {kind!r}; expected one of {', '.join(SPLIT_KINDS)}")
    if not (0 <= test_frac < 1 and 0 <= val_frac < 1):
        raise DataError(f"split fractions must be in [0, 1), got test={test_frac}, val={val_frac}")
    return _assign(ds, _groups(ds, kind), np.arange(len(ds)), seed, test_frac, val_frac)


def _assign(ds: Dataset, groups: np.ndarray, pool: np.ndarray, seed: int, test_frac: float,
            val_frac: float) -> np.ndarray:
    """The grouped, stratified assignment of the spectra ``pool`` (indices into ``ds``);
    spectra outside ``pool`` are :data:`UNUSED`."""
    n = len(ds)
    # each group belongs to the mineral most of its spectra carry (in RRUFF: exactly one)
    owner: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for i in pool.tolist():
        members.setdefault(str(groups[i]), []).append(i)
    for g, idx in members.items():
        owner[g] = int(np.bincount(ds.y[idx]).argmax())
    by_label: dict[int, list[str]] = {}
    for g in sorted(members):
        by_label.setdefault(owner[g], []).append(g)
    rng = np.random.default_rng(seed)
    out = np.full(n, UNUSED, dtype="<U5")
    out[pool] = "train"
    for lab in sorted(by_label):
        gs = by_label[lab]
        order = rng.permutation(len(gs))
        gs = [gs[k] for k in order]
        n_test = _n_take(len(gs), test_frac)
        rest = gs[n_test:]
        n_val = _n_take(len(rest), val_frac)
        for g in gs[:n_test]:
            out[members[g]] = "test"
        for g in rest[:n_val]:
            out[members[g]] = "val"
    return out


def complete_split(ds: Dataset, split: np.ndarray, *, seed: int = 0, val_frac: float = 0.15,
                   ) -> tuple[np.ndarray, list[str]]:
    """Make a split read from a file usable for training: ``(split, notes)``.

    A split naming a subset keeps its unnamed spectra :data:`UNUSED`. A split without a
    ``val`` part gets one carved from its ``train`` part by the rule of :func:`make_split`
    (``val_frac`` of each mineral's train specimens, grouped by RRUFF sample id, seeded;
    minerals with one train specimen keep it in train). ``notes``: one line per change, for
    the user.
    """
    s = np.asarray(split).astype("<U5")
    notes: list[str] = []
    n_unused = int(np.sum(s == UNUSED))
    if n_unused:
        notes.append(f"the split file assigns {len(s) - n_unused} of the data set's {len(s)} "
                     f"spectra; the other {n_unused} are not used")
    if not np.any(s == "val") and np.any(s == "train"):
        train = np.flatnonzero(s == "train")
        carved = _assign(ds, _groups(ds, "grouped"), train, seed, 0.0, val_frac)
        s = s.copy()
        s[train] = carved[train]
        n_val = int(np.sum(s == "val"))
        notes.append(f"the split file has no val part: carved {n_val} of its {train.size} train "
                     f"spectra as val ({100 * val_frac:.0f}% of each mineral's train specimens, "
                     f"grouped by sample id, seed {seed})")
    return s, notes


def split_counts(split: np.ndarray) -> dict[str, int]:
    """Spectra per split value."""
    s = np.asarray(split)
    return {v: int(np.sum(s == v)) for v in SPLIT_VALUES}


def _paths_of(ds_or_paths: Dataset | Sequence[str]) -> list[str]:
    return list(ds_or_paths.paths) if isinstance(ds_or_paths, Dataset) else list(ds_or_paths)


def _check(paths: list[str], split: np.ndarray) -> np.ndarray:
    s = np.asarray(split).astype(str)
    if s.shape != (len(paths),):
        raise DataError(f"split has shape {s.shape}, expected ({len(paths)},)")
    bad = sorted(set(s.tolist()) - set(SPLIT_VALUES) - {UNUSED})
    if bad:
        raise DataError(f"split values must be train/val/test, got {bad[:3]}")
    if not np.any(s != UNUSED):
        raise DataError("the split assigns no spectrum of the data set")
    return s


def split_sha256(ds_or_paths: Dataset | Sequence[str], split: np.ndarray) -> str:
    """sha256 of the assigned (path, split) pairs sorted by path (order-independent,
    CSV-stable; :data:`UNUSED` spectra are left out)."""
    paths = _paths_of(ds_or_paths)
    s = _check(paths, split)
    h = hashlib.sha256()
    for p, v in sorted(zip(paths, s.tolist(), strict=True)):
        if v != UNUSED:
            h.update(f"{p}\t{v}\n".encode())
    return h.hexdigest()


def write_split_csv(
    path: str | os.PathLike[str], ds_or_paths: Dataset | Sequence[str], split: np.ndarray
) -> str:
    """Write the split CSV (``path,split``, the assigned spectra; atomic) and return its
    :func:`split_sha256`."""
    paths = _paths_of(ds_or_paths)
    s = _check(paths, split)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "split"])
    for p, v in zip(paths, s.tolist(), strict=True):
        if v != UNUSED:
            w.writerow([p, v])
    atomic_write_text(path, buf.getvalue())
    return split_sha256(paths, s)


def read_split_csv(
    path: str | os.PathLike[str],
    dataset: Dataset | Sequence[str],
    *,
    require_all: bool = False,
) -> np.ndarray:
    """Read a split CSV and align it with ``dataset.paths``.

    Raises :class:`DataError` (one line) for a missing file, missing ``path``/``split``
    columns, split values other than train/val/test, duplicated paths, paths that are not in
    the data set, a file assigning nothing, and (with ``require_all``) data-set spectra the
    file does not assign. Otherwise unassigned spectra are :data:`UNUSED` (``""``).
    """
    p = Path(path)
    paths = _paths_of(dataset)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"split file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split file {p}: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    cols = reader.fieldnames or []
    missing = [c for c in ("path", "split") if c not in cols]
    if missing:
        raise DataError(f"split file {p} lacks column(s) {', '.join(missing)}; expected header "
                        f"'path,split', got {','.join(cols) or 'nothing'}")
    index = {q: i for i, q in enumerate(paths)}
    out = np.full(len(paths), UNUSED, dtype="<U5")
    seen: set[str] = set()
    unknown: list[str] = []
    for lineno, row in enumerate(reader, start=2):
        q, v = (row.get("path") or "").strip(), (row.get("split") or "").strip()
        if v not in SPLIT_VALUES:
            raise DataError(f"split file {p} line {lineno}: split must be train, val or test, "
                            f"got {v!r}")
        if q in seen:
            raise DataError(f"split file {p} line {lineno}: path {q!r} appears twice")
        seen.add(q)
        i = index.get(q)
        if i is None:
            unknown.append(q)
            continue
        out[i] = v
    if unknown:
        raise DataError(f"split file {p} names {len(unknown)} path(s) not in the data set, "
                        f"e.g. {unknown[0]!r}; was it made for another data set or data root?")
    if require_all:
        n_missing = int(np.sum(out == ""))
        if n_missing:
            first = paths[int(np.flatnonzero(out == "")[0])]
            raise DataError(f"split file {p} does not assign {n_missing} spectra of the data "
                            f"set, e.g. {first!r}")
    if not np.any(out != UNUSED):
        raise DataError(f"split file {p} assigns no spectrum of the data set")
    return out


DEFAULT_CALIB_SIZE = 100
"""Spectra in the int8 representative set by default (``ramanedge quantize --calib-size``);
the int8-aware fine-tune calibrates its grids on the same draw (seed 0)."""


def select_calibration(y: np.ndarray, size: int, *, seed: int = 0) -> np.ndarray:
    """Indices of a stratified representative set of ``size`` samples with labels ``y``.

    Every class gets one sample first (while ``size`` allows), the rest is allocated in
    proportion to class frequency; within a class the samples are drawn at random (seeded).
    ``size >= len(y)`` returns every index. Returned indices are sorted.
    """
    y = np.asarray(y)
    n = y.shape[0]
    if n == 0:
        raise DataError("the training split is empty: nothing to calibrate the int8 model on")
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keys = np.empty(n, dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        rank = np.arange(idx.size, dtype=np.float64)
        # first of each class before everything else; then proportional (systematic) order
        keys[idx] = np.where(rank == 0, -1.0 + rng.random() * 1e-3, (rank + 0.5) / idx.size)
    order = np.argsort(keys + rng.random(n) * 1e-9, kind="stable")
    return np.sort(order[:size])


def calibration_indices(y: np.ndarray, given: np.ndarray | None, size: int, *,
                        seed: int = 0) -> np.ndarray:
    """Indices of the training spectra ``ramanedge quantize`` calibrates the int8 model on:
    :func:`select_calibration` stratified by the labels the run was *given* (``given``:
    bool per spectrum, ``None`` = all), the spectra without one (a few-label run's
    unlabelled part) as one more group. The int8-aware fine-tune calibrates on the same
    draw, so the grids it trains with are the ones the export finds.
    """
    y = np.asarray(y)
    strata = y if given is None else np.where(np.asarray(given, dtype=bool), y, -1)
    return select_calibration(strata, size, seed=seed)


UNKNOWN_HALVES_SEED = 0
"""Seed of :func:`unknown_halves`: one fixed partition of the rare minerals for every run."""
UNKNOWN_HALVES = ("negatives", "evaluation")


def unknown_halves(minerals: Sequence[str], *, known: Sequence[str] = (),
                   seed: int = UNKNOWN_HALVES_SEED) -> dict[str, list[str]]:
    """Split the minerals a model never learns (the rare ones :func:`~ramanedge.dataset.
    load_heldout` returns) *by mineral* into two halves: ``"negatives"`` (usable in training
    and calibration, e.g. outlier exposure) and ``"evaluation"`` (touched only by the final
    unknown-mineral figure). Seeded, independent of the order of ``minerals``; the halves
    never share a mineral; a mineral of ``known`` (the model's labels) is in neither. Returns
    ``{"negatives": [...], "evaluation": [...]}``, sorted.
    """
    names = sorted({str(m) for m in minerals} - {str(m) for m in known})
    if len(names) < 2:
        raise DataError(f"need at least 2 unknown minerals to split into halves, got "
                        f"{len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    neg = sorted(names[i] for i in order[: len(names) // 2])
    return {"negatives": neg, "evaluation": sorted(set(names) - set(neg))}


def unknown_evaluation(held: Dataset, *, known: Sequence[str] = (),
                       seed: int = UNKNOWN_HALVES_SEED) -> tuple[list[str], set[str]]:
    """The *evaluation* half of :func:`unknown_halves` for the rare-mineral data set
    ``held`` (:func:`~ramanedge.dataset.load_heldout`): ``(mineral names, RRUFF ids of their
    specimens)``. Every figure on unseen minerals is computed on these, so nothing a model
    learns from may hold them; other RRUFF sets file some of these specimens under another
    name, so a corpus beyond ``held`` must leave them out by id as well as by name."""
    evaluation = unknown_halves(held.labels, known=known, seed=seed)["evaluation"]
    names = set(evaluation)
    ids = {sid for sid, y in zip(held.sample_ids, held.y, strict=True)
           if sid and held.labels[y] in names}
    return evaluation, ids
