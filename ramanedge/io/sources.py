"""Iterate spectrum files in folders and archives without unpacking anything to disk.

A *source* is a loose ``.txt`` file, a folder (searched recursively, hidden entries skipped),
a ``.zip`` archive, or a tar archive (``.tar``, ``.tar.xz``/``.txz``, ``.tar.gz``/``.tgz``,
``.tar.bz2``). Folders may contain archives; archives are not searched for nested archives.
Only ``.txt`` files (and ``.txt`` members) are spectrum files; other files are ignored.

Every spectrum file is yielded as ``(relative path, bytes)``. Relative paths are POSIX and:

* loose file in a folder: its path relative to the folder, e.g.
  ``excellent_oriented_subset/raw/<file>.txt``;
* member of a **tar** archive: the member name itself. The ``.tar.xz`` packaging of
  ``../shared/data/rruff`` stores members relative to the data root, so
  ``LR-Raman/LR-Raman.tar.xz`` yields ``LR-Raman/raw/<file>``, exactly the ``path`` column of
  ``manifest.csv`` (as if the archive had been extracted in place);
* member of a **zip** archive: the archive's relative path, ``/``, and the member name, e.g.
  ``LR-Raman.zip/<file>.txt`` for the official ``rruff.info`` zips whose members sit at the
  zip root (so two zips holding the same member name never collide).

A source given directly as a file (``root`` is the archive or the ``.txt``) uses the same
rules with the file's own name as the relative path of the archive/file.

Unreadable archives and members are reported through ``on_error(path, reason)`` and skipped;
they never abort an iteration.

User inputs (``ramanedge classify``, ``ramanedge head add``) go through :func:`expand_paths`
instead: files named explicitly are taken whatever their suffix, folders are searched for the
formats :func:`~ramanedge.io.read_spectrum` reads (:data:`SPECTRUM_SUFFIXES`), and every bad
input becomes an error entry rather than an exception.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ramanedge.errors import DataError

__all__ = [
    "SPECTRUM_SUFFIXES",
    "SourceFile",
    "archive_kind",
    "expand_paths",
    "iter_source_files",
    "iter_spectrum_files",
    "source_fingerprint",
]

ErrorHook = Callable[[str, str], None]
Accept = Callable[[str], bool]

_TAR_SUFFIXES = (".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")
#: File suffixes :func:`expand_paths` picks up in a folder (files named explicitly are always
#: taken): the formats :func:`~ramanedge.io.read_spectrum` reads.
SPECTRUM_SUFFIXES = (".txt", ".csv", ".tsv", ".dat", ".npy")


@dataclass(frozen=True)
class SourceFile:
    """One spectrum file: ``path`` relative to the data root (POSIX) and its bytes."""

    path: str
    data: bytes


def archive_kind(name: str) -> str | None:
    """``"zip"``, ``"tar"`` or ``None`` from a file name."""
    low = name.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


def _is_spectrum_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(".txt") and not base.startswith(".")


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def iter_source_files(root: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """The on-disk files a data root is read from: ``(absolute path, relative POSIX path)``.

    Loose ``.txt`` files and archives, sorted. Raises :class:`DataError` when ``root`` does
    not exist or is a file of an unsupported type.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder or archive not found: {root}")
    if root.is_file():
        if archive_kind(root.name) is None and not _is_spectrum_name(root.name):
            raise DataError(
                f"unsupported data source {root}: expected a folder, a .zip, a .tar(.xz/.gz/"
                ".bz2) archive or a .txt spectrum file"
            )
        return [(root, root.name)]
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for fn in sorted(filenames):
            if _hidden(fn):
                continue
            if archive_kind(fn) is not None or _is_spectrum_name(fn):
                p = Path(dirpath) / fn
                out.append((p, p.relative_to(root).as_posix()))
    return out


def source_fingerprint(root: str | os.PathLike[str]) -> list[list[object]]:
    """``[[relative path, size, mtime_ns], ...]`` of the files a data root is read from.

    Used as the cache key of parsed data sets: touching, replacing, adding or removing a
    source file invalidates the cache.
    """
    fp: list[list[object]] = []
    for p, rel in iter_source_files(root):
        st = p.stat()
        fp.append([rel, st.st_size, st.st_mtime_ns])
    return fp


def _iter_zip(
    p: Path, rel: str, accept: Accept | None, on_error: ErrorHook
) -> Iterator[SourceFile]:
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        on_error(rel, f"unreadable zip archive: {e}")
        return
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not _is_spectrum_name(info.filename):
                continue
            if any(_hidden(part) for part in info.filename.split("/")[:-1]):
                continue
            mrel = f"{rel}/{info.filename}"
            if accept is not None and not accept(mrel):
                continue
            try:
                data = zf.read(info)
            except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as e:
                on_error(mrel, f"unreadable zip member: {e}")
                continue
            yield SourceFile(mrel, data)


def _iter_tar(
    p: Path, rel: str, accept: Accept | None, on_error: ErrorHook
) -> Iterator[SourceFile]:
    # stream mode: one sequential pass over the (xz) stream, no seeking, nothing on disk
    try:
        tf = tarfile.open(p, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError, EOFError) as e:
        on_error(rel, f"unreadable tar archive: {e}")
        return
    try:
        with tf:
            for member in tf:
                if not member.isfile() or not _is_spectrum_name(member.name):
                    continue
                name = member.name.removeprefix("./")
                if accept is not None and not accept(name):
                    continue
                f = tf.extractfile(member)
                if f is None:
                    continue
                yield SourceFile(name, f.read())
    except (tarfile.TarError, OSError, EOFError) as e:
        on_error(rel, f"tar archive is corrupt or truncated: {e}")


def iter_spectrum_files(
    root: str | os.PathLike[str],
    *,
    accept: Accept | None = None,
    on_error: ErrorHook | None = None,
) -> Iterator[SourceFile]:
    """Yield every spectrum file under ``root`` (folder, archive or ``.txt``), sorted by source.

    ``accept(relative_path)`` filters files *before* their bytes are read (tar archives are
    still decompressed sequentially). Problems go to ``on_error(path, reason)``; the default
    hook ignores them. Raises :class:`DataError` only for a missing or unsupported ``root``.
    """
    hook: ErrorHook = on_error or (lambda _p, _r: None)
    for p, rel in iter_source_files(root):
        kind = archive_kind(p.name)
        if kind == "zip":
            yield from _iter_zip(p, rel, accept, hook)
        elif kind == "tar":
            yield from _iter_tar(p, rel, accept, hook)
        else:
            if accept is not None and not accept(rel):
                continue
            try:
                data = p.read_bytes()
            except OSError as e:
                hook(rel, f"unreadable file: {e.strerror or e}")
                continue
            yield SourceFile(rel, data)


def expand_paths(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, str | None]]:
    """Yield ``(file path, None)`` for every input file, or ``(path, error)`` for bad inputs.

    Files are yielded as given; folders are searched recursively (sorted, hidden entries
    skipped) for files ending in :data:`SPECTRUM_SUFFIXES`.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = False
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith(".") or not fn.lower().endswith(SPECTRUM_SUFFIXES):
                        continue
                    found = True
                    yield str(Path(dirpath) / fn), None
            if not found:
                yield str(p), (f"folder {p} holds no spectrum files "
                               f"({', '.join(SPECTRUM_SUFFIXES)})")
        elif p.exists():
            yield str(p), None
        else:
            yield str(p), f"no such file or folder: {p}"
