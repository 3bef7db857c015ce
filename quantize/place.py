"""Placing a finished artifact: every file and the manifest written once, then one rename.

:func:`check_destination` refuses an unusable ``--out`` before any work;
:func:`write_artifact` writes the files (already computed, as bytes) and the manifest once
into a temporary folder beside ``out_dir`` and renames it into place, so ``out_dir`` is
always either the old complete artifact or the new complete one. An existing artifact's
onboard head store (``out_dir/headstore``, mission data) moves into the new artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ramanedge.errors import DataError
from ramanedge.fsutil import fsync_dir
from ramanedge.manifest import HEADSTORE_DIR, MANIFEST_NAME, Manifest, write_manifest


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse early (before any work) when ``out_dir`` cannot be (re)placed safely."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} exists and is not a folder; not replacing it")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST_NAME).is_file():
            raise DataError(
                f"--out {out_dir} is a non-empty folder that is not a model artifact; "
                f"choose another --out"
            )
        if not overwrite:
            raise DataError(
                f"--out {out_dir} already holds an artifact; pass --overwrite to replace it"
            )


def write_artifact(out_dir: Path, files: Mapping[str, bytes], data: dict[str, Any]) -> Manifest:
    """Write ``files`` (name -> content) and the manifest ``data`` once, then place the folder.

    ``data`` is a manifest without checksums (see :func:`ramanedge.manifest.manifest_data`);
    :func:`~ramanedge.manifest.write_manifest` adds them from the written files. On any
    failure the temporary folder is removed and ``out_dir`` is untouched.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; an artifact is a normal folder
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        manifest = write_manifest(tmp, data)
        place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def place(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` to ``out_dir``; the old one is removed only after.

    The onboard head store of the old artifact (``out_dir/headstore``: labelled samples are
    mission data) then moves into the new artifact; its heads belong to the old model file
    and stay unused, its samples serve the new model (see :mod:`edge_runtime.headstore`).
    The old folder is deleted only once its head store has moved; if that move fails, the
    old folder is kept and the error says where the samples are.
    """
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    fsync_dir(out_dir.parent)
    if old is None:
        return
    kept = old / HEADSTORE_DIR
    if kept.is_dir() and not kept.is_symlink():
        try:
            os.replace(kept, out_dir / HEADSTORE_DIR)
            fsync_dir(out_dir)
        except OSError as e:
            raise DataError(f"wrote {out_dir}, but its onboard head store could not be moved "
                            f"({e.strerror or e}); the samples are kept in {kept}: move that "
                            f"folder to {out_dir / HEADSTORE_DIR}") from None
    shutil.rmtree(old, ignore_errors=True)
