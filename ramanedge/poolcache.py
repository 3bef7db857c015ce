"""The parsed-spectra cache shared by :mod:`ramanedge.dataset` and :mod:`ramanedge.corpus`.

An entry is ``STEM.npz`` (float32 arrays, one grid row per file) and ``STEM.json`` (the
metadata, the list of arrays and the ``key`` that names the sources, grid and parsing rules
it was built from). The JSON is written last, atomically, so a half-written entry is never
read; a new entry deletes the older ones of the same pool and data root. JSON and npz only,
never pickle.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.fsutil import atomic_write_bytes, atomic_write_text
from ramanedge.grid import GRID


def load_pool(
    cache_dir: Path, stem: str, key: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The entry ``stem`` of ``cache_dir`` as ``(meta, arrays)``, or ``None`` when it is
    missing, incomplete, for another ``key`` or not (len(paths), grid points) float32."""
    jpath, npath = cache_dir / f"{stem}.json", cache_dir / f"{stem}.npz"
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in meta["arrays"]}
        for X in arrays.values():
            if X.shape != (len(meta["paths"]), GRID.size) or X.dtype != np.float32:
                return None
        return meta, arrays
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def save_pool(
    cache_dir: Path, stem: str, key: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Write the entry ``stem`` (arrays, then the JSON index that marks it complete) and
    delete older entries of the same pool and data root. Raises ``OSError``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = {**meta, "arrays": sorted(arrays)}
    atomic_write_bytes(cache_dir / f"{stem}.npz", buf.getvalue())
    # the JSON index is written last: it is what marks the cache entry as complete
    atomic_write_text(cache_dir / f"{stem}.json", json.dumps({**meta, "key": key}))
    _prune(cache_dir, stem, meta.get("root_resolved"))


def cached(
    cache_dir: Path | None, stem: str, key: str,
    parse: Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]], *, need: str,
    what: str, use_cache: bool = True, progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The entry ``stem`` when it is valid for ``key`` and holds the array ``need``, else
    ``parse()`` (then stored; a cache that cannot be written is a warning, not an error).
    ``cache_dir`` ``None`` or ``use_cache`` False: always parse, store nothing. ``what``
    names the data in the progress lines."""
    use = use_cache and cache_dir is not None
    hit = load_pool(cache_dir, stem, key) if use else None
    if hit is not None and need in hit[1]:
        if progress:
            progress(f"loaded {what} from cache {cache_dir / stem}.npz")
        return hit
    if progress:
        progress(f"parsing {what} (once; cached afterwards)")
    meta, arrays = parse()
    if use:
        try:
            save_pool(cache_dir, stem, key, meta, arrays)
        except OSError as e:
            if progress:
                progress(f"warning: could not write the cache in {cache_dir}: {e}")
    return meta, arrays


def _prune(cache_dir: Path, keep_stem: str, root_resolved: str | None) -> None:
    """Delete older cache entries of the same data set and data root (stale keys)."""
    name = keep_stem.rsplit("-", 1)[0]
    for j in cache_dir.glob(f"{name}-*.json"):
        if j.stem == keep_stem or j.stem.rsplit("-", 1)[0] != name:
            continue
        try:
            old_root = json.loads(j.read_text(encoding="utf-8")).get("root_resolved")
        except (OSError, ValueError):
            continue
        if root_resolved is not None and old_root == root_resolved:
            for q in (j, j.with_suffix(".npz")):
                with contextlib.suppress(OSError):
                    q.unlink()
