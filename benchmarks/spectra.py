"""Real RRUFF spectrum files for the demo and the benchmarks, extracted to a cache folder.

The held-out test spectra live inside ``LR-Raman/LR-Raman.tar.xz`` of the data root. The
edge runtime's CLI classifies *files*, so the few files needed are copied out of the archive
(one sequential pass, nothing else unpacked) into a folder under ``.cache/`` (git-ignored),
never into the repository's tracked files. TensorFlow-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from ramanedge.errors import DataError

DEFAULT_CACHE = Path(".cache") / "ramanedge-spectra"


def _safe_rel(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataError(f"refusing to extract {rel!r}: not a plain relative path")
    return p


def extract_spectra(root: str | os.PathLike, rel_paths: Sequence[str],
                    dest: str | os.PathLike = DEFAULT_CACHE, *,
                    progress: Callable[[str], None] | None = None) -> list[Path]:
    """Copy the spectrum files ``rel_paths`` (data-root relative, as in ``manifest.csv`` and
    ``Dataset.paths``) from ``root`` (folders and archives) to ``dest/<rel path>``.

    Files already present with a non-zero size are not extracted again, so a second call is
    instant. Returns the destination paths in the order of ``rel_paths``. Raises
    :class:`DataError` when some files are not found under ``root``.
    """
    from ramanedge.io.sources import iter_spectrum_files

    dest = Path(dest)
    targets = {rel: dest / Path(*_safe_rel(rel).parts) for rel in rel_paths}
    missing = {rel for rel, p in targets.items() if not (p.is_file() and p.stat().st_size > 0)}
    if missing:
        say = progress or (lambda _m: None)
        say(f"extracting {len(missing)} spectrum files from {root} to {dest} (one pass over "
            "the archives)")
        for sf in iter_spectrum_files(root, accept=lambda rel: rel in missing):
            if sf.path not in missing:
                continue
            out = targets[sf.path]
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(sf.data)
            os.replace(tmp, out)
            missing.discard(sf.path)
            if not missing:
                break
    if missing:
        raise DataError(f"{len(missing)} spectrum files were not found under {root}, e.g. "
                        f"{sorted(missing)[0]}")
    return [targets[rel] for rel in rel_paths]
