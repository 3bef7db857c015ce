"""The spectra the ground sends over the link: a split part of an RRUFF data set
(:func:`load_items`), each raw spectrum cut to the window the model needs
(:func:`crop_to_window`).

What travels: by default (``payload="raw"``) each spectrum is the **raw** RRUFF spectrum on
its own axis, cut to the window the model needs (the last point <= 200 cm-1 to the first point
>= 1591 cm-1, ~720 points for LR-Raman broad scans), 2 bytes per point for the axis and 2 for
the intensity; the device resamples and normalises (:func:`ramanedge.grid.preprocess`).
``payload="grid"`` sends the already preprocessed 1392-point spectrum with a grid id.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.protocol import labels_hash
from ramanedge.errors import DataError
from ramanedge.grid import DEFAULT_GRID

PAYLOADS = ("raw", "grid")


@dataclass(frozen=True)
class ReplayItem:
    """One spectrum to replay: ``x`` (None = on the model grid), ``y``, true ``label``, id."""

    y: np.ndarray
    x: np.ndarray | None
    label: str
    ident: str


def crop_to_window(x: np.ndarray, y: np.ndarray, start: float = DEFAULT_GRID.start,
                   stop: float = DEFAULT_GRID.stop) -> tuple[np.ndarray, np.ndarray]:
    """Keep the points from the last one <= ``start`` to the first one >= ``stop``.

    Linear interpolation onto the grid only uses the neighbours of each grid point, so the
    device's preprocessing of the cropped spectrum equals that of the full one. A spectrum
    that starts above ``start`` (ends below ``stop``) keeps its own first (last) point: the
    device pads it under its coverage policy exactly as it would the whole file. A spectrum
    entirely outside the window keeps its first and last points, so that it still makes a
    valid request and the device refuses it with its own coverage message, which then names
    the file's true range.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        return x, y
    below = x[x <= start]
    above = x[x >= stop]
    lo = below.max() if below.size else x.min()
    hi = above.min() if above.size else x.max()
    m = (x >= lo) & (x <= hi)
    if m.sum() < 2 <= x.size:  # entirely outside: nothing of it reaches the grid
        m = np.zeros(x.size, dtype=bool)
        m[[int(np.argmin(x)), int(np.argmax(x))]] = True
    return x[m], y[m]


def load_items(data_root: str | os.PathLike, *, dataset: str = "rruff-raw",
               split_file: str | os.PathLike | None = None, part: str = "test",
               payload: str = "raw", min_spectra: int = 8,
               cache_dir: str | os.PathLike | None = None,
               progress: Callable[[str], None] | None = None) -> list[ReplayItem]:
    """The spectra of one split part of an RRUFF data set, in data-set order.

    The split is ``split_file`` (e.g. the training run's ``split.csv``) or the default
    grouped split (seed 0). ``payload="raw"`` re-reads each raw file (cached under
    ``cache_dir``) and crops it to the model window; ``"grid"`` uses the data set's
    preprocessed rows.
    """
    from ramanedge.dataset import build_dataset
    from ramanedge.paths import default_cache_dir
    from ramanedge.splits import complete_split, make_split, read_split_csv

    if payload not in PAYLOADS:
        raise DataError(f"payload must be one of {PAYLOADS}, got {payload!r}")
    say = progress or (lambda _m: None)
    ds = build_dataset(data_root, dataset, min_spectra=min_spectra)
    if split_file is not None:  # a subset without val is completed as training did (seed 0)
        split, notes = complete_split(ds, read_split_csv(split_file, ds))
        for note in notes:
            say(note)
    else:
        split = make_split(ds, kind="grouped", seed=0)
    idx = np.flatnonzero(np.asarray(split) == part)
    if idx.size == 0:
        raise DataError(f"the split has no {part!r} spectra")
    labels = [ds.labels[int(ds.y[i])] for i in idx]
    paths = [ds.paths[i] for i in idx]
    if payload == "grid":
        return [ReplayItem(ds.X[i].astype(np.float64), None, lab, p)
                for i, lab, p in zip(idx, labels, paths, strict=True)]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps([ds.cache_key, dataset, paths]).encode()).hexdigest()[:16]
    cfile = cache / f"replay-raw-{key}.npz"
    if cfile.is_file():
        with np.load(cfile, allow_pickle=False) as z:
            xs, ys, offs = z["x"], z["y"], z["offsets"]
        say(f"raw spectra from cache {cfile}")
    else:
        say(f"reading {len(paths)} raw spectra from {data_root} (once; cached)")
        xs, ys, offs = _read_raw(Path(data_root), paths)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(".tmp.npz")
        np.savez(tmp, x=xs, y=ys, offsets=offs)
        os.replace(tmp, cfile)
    return [ReplayItem(ys[offs[j]:offs[j + 1]], xs[offs[j]:offs[j + 1]], labels[j], paths[j])
            for j in range(len(paths))]


def _read_raw(root: Path, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ramanedge.io.rruff import parse_rruff
    from ramanedge.io.sources import iter_spectrum_files

    wanted = set(paths)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sf in iter_spectrum_files(root, accept=lambda rel: rel in wanted):
        if sf.path in wanted and sf.path not in found:
            s = parse_rruff(sf.data, sf.path)
            found[sf.path] = crop_to_window(s.x, s.y)
        if len(found) == len(wanted):
            break
    missing = [p for p in paths if p not in found]
    if missing:
        raise DataError(f"{len(missing)} spectra of the split were not found under {root}, "
                        f"e.g. {missing[0]}")
    offs = np.zeros(len(paths) + 1, dtype=np.int64)
    for j, p in enumerate(paths):
        offs[j + 1] = offs[j] + found[p][0].size
    xs = np.concatenate([found[p][0] for p in paths])
    ys = np.concatenate([found[p][1] for p in paths])
    return xs, ys, offs


def check_labels(items: Sequence[ReplayItem], model_labels: Sequence[str]) -> dict[str, Any]:
    """How many items have a label the model knows (accuracy is over those)."""
    known = set(model_labels)
    k = sum(1 for it in items if it.label in known)
    return {"items": len(items), "known": k, "labels_hash": labels_hash(list(model_labels))}
