"""Model uplink ("flashing") and the device's model store with atomic swap and rollback.

Store layout (``root/``)::

    ACTIVE.json           {"current": SLOT, "previous": SLOT | null, "generation": N}
    slots/SLOT/           a complete, verified artifact (model.tflite, head.npz, manifest.json,
                          and the onboard head store the runtime keeps beside it)
    staging/UPLOAD/       files of an upload in progress (never served)

A new artifact arrives in chunks into ``staging/``. On commit every file is checked against
the sha256 announced at the start *and* against the artifact's own manifest
(:func:`ramanedge.manifest.read_manifest`), and a caller-supplied ``validate`` hook loads it
(the device builds a real classifier and runs one spectrum). Only then is the staging folder
renamed into ``slots/`` and ``ACTIVE.json`` replaced atomically (temp file, fsync, rename,
fsync of the folder). The pointer file is the single commit point: a process killed at any
moment boots either the old model (pointer not yet replaced) or the new one (replaced),
never neither; leftovers (staging folders, unreferenced slots) are removed at the next boot.
The old model keeps serving until the pointer moves. Rollback swaps ``current`` and
``previous`` with the same atomic write.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramanedge.errors import LinkError, ManifestError, RamanEdgeError
from ramanedge.fsutil import atomic_write_text, fsync_dir, sha256_file
from ramanedge.hashing import sha256
from ramanedge.manifest import MANIFEST_NAME, read_manifest

POINTER = "ACTIVE.json"
SLOTS = "slots"
STAGING = "staging"
#: Largest artifact file accepted over the link (256 MiB).
MAX_FILE_BYTES = 256 << 20
MAX_FILES = 16


class UploadError(LinkError):
    """An uploaded artifact was incomplete, corrupt or unusable; nothing was changed."""


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_verified(src: Path, dst: Path) -> None:
    """Copy the flight files listed in ``src``'s manifest (and the manifest) into ``dst``,
    fsynced; ground-only comparison variants (float32/float16 models) stay behind."""
    manifest = read_manifest(src)
    dst.mkdir(parents=True, exist_ok=False)
    for name in [*manifest.flight_files, MANIFEST_NAME]:
        shutil.copyfile(src / name, dst / name)
        _fsync_file(dst / name)
    fsync_dir(dst)


@dataclass
class Upload:
    """One upload in progress: announced files, received byte ranges, staging folder."""

    upload_id: int
    folder: Path
    files: list[dict[str, Any]]
    ranges: list[dict[int, int]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.ranges:
            self.ranges = [{} for _ in self.files]

    def write_chunk(self, file_index: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` of file ``file_index`` (idempotent: a resent chunk
        rewrites the same bytes); returns the bytes of that file received so far."""
        if not 0 <= file_index < len(self.files):
            raise UploadError(f"chunk for file #{file_index}, but the upload has "
                              f"{len(self.files)} files")
        meta = self.files[file_index]
        if offset < 0 or offset + len(data) > meta["bytes"]:
            raise UploadError(f"chunk {offset}+{len(data)} is outside {meta['name']} "
                              f"({meta['bytes']} bytes)")
        with open(self.folder / meta["name"], "r+b") as f:
            f.seek(offset)
            f.write(data)
        rng = self.ranges[file_index]
        rng[offset] = max(rng.get(offset, 0), len(data))
        return self.bytes_received(file_index)

    def bytes_received(self, file_index: int) -> int:
        """Distinct bytes of file ``file_index`` received so far (union of the chunks)."""
        total, end = 0, 0
        for off, n in sorted(self.ranges[file_index].items()):
            lo, hi = max(off, end), off + n
            if hi > lo:
                total += hi - lo
                end = hi
        return total

    @property
    def complete(self) -> bool:
        """True when every byte of every file has arrived."""
        return all(self.bytes_received(i) == m["bytes"] for i, m in enumerate(self.files))


class ModelStore:
    """The device's model slots, the active pointer, uploads, commit and rollback.

    Use :meth:`open` (recovers after a crash and installs a factory artifact into an empty
    store). ``validate(folder)`` is called on every candidate before it becomes active and
    must raise a :class:`~ramanedge.errors.RamanEdgeError` if the artifact is unusable.
    ``crash_hook(step)`` is for tests: it is called at every step of a commit
    (``"staged"``, ``"renamed"``, ``"pointed"``) so a test can kill the process there.
    """

    def __init__(self, root: str | os.PathLike, *,
                 validate: Callable[[Path], None] | None = None,
                 crash_hook: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.validate = validate or (lambda folder: None)
        self.crash_hook = crash_hook or (lambda step: None)
        self.upload: Upload | None = None
        self._next_upload = int(time.time() * 1000) & 0xFFFFFFF

    # -- pointer ---------------------------------------------------------------------------

    @property
    def slots_dir(self) -> Path:
        """``root/slots``."""
        return self.root / SLOTS

    def read_pointer(self) -> dict[str, Any]:
        """The parsed ``ACTIVE.json`` (empty dict when absent or unreadable)."""
        p = self.root / POINTER
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return d if isinstance(d, dict) else {}

    def _write_pointer(self, current: str, previous: str | None) -> None:
        gen = int(self.read_pointer().get("generation", 0)) + 1
        atomic_write_text(self.root / POINTER, json.dumps(
            {"current": current, "previous": previous, "generation": gen,
             "time": time.time()}, indent=1) + "\n")

    def _slot_ok(self, slot: str | None) -> bool:
        if not slot:
            return False
        try:
            read_manifest(self.slots_dir / slot)
        except RamanEdgeError:
            return False
        return True

    @property
    def current(self) -> str | None:
        """Name of the active slot."""
        return self.read_pointer().get("current")

    @property
    def previous(self) -> str | None:
        """Name of the slot a rollback would return to."""
        return self.read_pointer().get("previous")

    def current_dir(self) -> Path:
        """Folder of the active artifact; :class:`ManifestError` if the store has none."""
        cur = self.current
        if not cur:
            raise ManifestError(f"model store {self.root} has no active model")
        return self.slots_dir / cur

    # -- boot ------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike, *, factory: str | os.PathLike | None = None,
             validate: Callable[[Path], None] | None = None,
             crash_hook: Callable[[str], None] | None = None) -> ModelStore:
        """Open (create) a store, recover from an interrupted commit, install ``factory`` if
        the store has no usable model, and return it."""
        store = cls(root, validate=validate, crash_hook=crash_hook)
        store.recover(factory)
        return store

    def recover(self, factory: str | os.PathLike | None = None) -> None:
        """Boot-time recovery: drop staging folders; make sure ``current`` verifies (else
        fall back to ``previous``, else install ``factory``); drop unreferenced slots."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.slots_dir.mkdir(exist_ok=True)
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
        ptr = self.read_pointer()
        cur, prev = ptr.get("current"), ptr.get("previous")
        if not self._slot_ok(cur):
            if self._slot_ok(prev):
                self._write_pointer(prev, None)
            elif factory is not None:
                self.install(factory)
            else:
                raise ManifestError(f"model store {self.root} has no usable model and no "
                                    "factory model was given (--model DIR)")
        elif prev and not self._slot_ok(prev):
            self._write_pointer(cur, None)
        self._gc()

    def _gc(self) -> None:
        keep = {self.current, self.previous}
        for p in self.slots_dir.iterdir():
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)

    def _new_slot_name(self, manifest_sha: str) -> str:
        nums = [int(p.name.split("-")[0]) for p in self.slots_dir.iterdir()
                if p.name.split("-")[0].isdigit()]
        return f"{max(nums, default=0) + 1:06d}-{manifest_sha[:12]}"

    # -- install / commit ------------------------------------------------------------------

    def install(self, src: str | os.PathLike) -> str:
        """Copy a local artifact folder in, verify it and make it current (atomically)."""
        src = Path(src)
        staging = self.root / STAGING / f"install-{os.getpid()}-{time.time_ns()}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        _copy_verified(src, staging)
        return self._activate(staging)

    def _activate(self, staging: Path) -> str:
        """Verify a complete staging folder and make it the current slot."""
        try:
            manifest = read_manifest(staging)
            self.validate(staging)
        except RamanEdgeError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise UploadError(f"artifact rejected, nothing changed: {e}") from None
        except Exception as e:  # noqa: BLE001 - any failure to load = rejected
            shutil.rmtree(staging, ignore_errors=True)
            raise UploadError(f"artifact rejected, nothing changed: {type(e).__name__}: {e}"
                              ) from None
        self.crash_hook("staged")
        slot = self._new_slot_name(str(manifest.data.get("manifest_sha256", "0" * 12)))
        os.rename(staging, self.slots_dir / slot)
        fsync_dir(self.slots_dir)
        self.crash_hook("renamed")
        self._write_pointer(slot, self.current if self._slot_ok(self.current) else None)
        self.crash_hook("pointed")
        self._gc()
        return slot

    def begin_upload(self, files: list[dict[str, Any]]) -> Upload:
        """Start an upload of ``files`` (``[{"name", "bytes", "sha256"}]``); any upload in
        progress is discarded. The files are pre-allocated in a fresh staging folder."""
        if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
            raise UploadError(f"an upload must announce 1..{MAX_FILES} files")
        clean: list[dict[str, Any]] = []
        for m in files:
            try:
                name, size, sha = str(m["name"]), int(m["bytes"]), str(m["sha256"]).lower()
            except (KeyError, TypeError, ValueError):
                raise UploadError(f"bad file entry {m!r}; expected name, bytes, sha256"
                                  ) from None
            if Path(name).name != name or name in ("", ".", "..") or name.startswith("."):
                raise UploadError(f"file name {name!r} must be a plain file name")
            if not 0 <= size <= MAX_FILE_BYTES:
                raise UploadError(f"file {name} of {size} bytes is over the "
                                  f"{MAX_FILE_BYTES}-byte limit")
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise UploadError(f"file {name}: sha256 must be 64 hex digits")
            clean.append({"name": name, "bytes": size, "sha256": sha})
        names = [m["name"] for m in clean]
        if len(set(names)) != len(names) or MANIFEST_NAME not in names:
            raise UploadError(f"an upload must list distinct files including {MANIFEST_NAME}")
        self.abort_upload()
        self._next_upload = (self._next_upload + 1) & 0xFFFFFFFF
        folder = self.root / STAGING / f"upload-{self._next_upload:08x}"
        folder.mkdir(parents=True)
        for m in clean:
            with open(folder / m["name"], "wb") as f:
                f.truncate(m["bytes"])
        self.upload = Upload(self._next_upload, folder, clean)
        return self.upload

    def abort_upload(self) -> None:
        """Discard the upload in progress (if any)."""
        if self.upload is not None:
            shutil.rmtree(self.upload.folder, ignore_errors=True)
            self.upload = None

    def get_upload(self, upload_id: int) -> Upload:
        """The upload in progress with this id, or :class:`UploadError`."""
        if self.upload is None or self.upload.upload_id != upload_id:
            raise UploadError(f"no upload {upload_id:08x} in progress (begin a new one)")
        return self.upload

    def commit_upload(self, upload_id: int) -> str:
        """Verify the upload (complete, announced sha256, manifest, ``validate``) and make
        it current. On any failure the upload is discarded and nothing else changes."""
        up = self.get_upload(upload_id)
        try:
            if not up.complete:
                missing = [f"{m['name']} ({up.bytes_received(i)}/{m['bytes']} bytes)"
                           for i, m in enumerate(up.files)
                           if up.bytes_received(i) != m["bytes"]]
                raise UploadError("upload incomplete, nothing changed: " + ", ".join(missing))
            for m in up.files:
                p = up.folder / m["name"]
                if sha256_file(p) != m["sha256"]:
                    raise UploadError(f"{m['name']} does not match its announced sha256 "
                                      "(corrupted in transit?); nothing changed")
                _fsync_file(p)
            fsync_dir(up.folder)
            try:
                manifest = read_manifest(up.folder)
            except ManifestError as e:
                raise UploadError(f"artifact rejected, nothing changed: {e}") from None
            extra = {m["name"] for m in up.files} - set(manifest.files) - {MANIFEST_NAME}
            if extra:
                raise UploadError(f"uploaded files not listed in the manifest: {sorted(extra)}")
            self.upload = None
            return self._activate(up.folder)
        except BaseException:
            if self.upload is up:
                self.abort_upload()
            else:
                shutil.rmtree(up.folder, ignore_errors=True)
            raise

    # -- rollback --------------------------------------------------------------------------

    def rollback(self) -> str:
        """Make the previous model current (and the current one previous); returns the
        new current slot. :class:`UploadError` when there is nothing to roll back to."""
        cur, prev = self.current, self.previous
        if not self._slot_ok(prev):
            raise UploadError("no previous model to roll back to")
        self.validate(self.slots_dir / str(prev))
        self._write_pointer(str(prev), cur)
        return str(prev)

    def status(self) -> dict[str, Any]:
        """Current/previous slots and the upload in progress, JSON-ready."""
        ptr = self.read_pointer()
        up = None
        if self.upload is not None:
            up = {"upload_id": self.upload.upload_id,
                  "received": [self.upload.bytes_received(i)
                               for i in range(len(self.upload.files))],
                  "files": self.upload.files}
        return {"root": str(self.root), "current": ptr.get("current"),
                "previous": ptr.get("previous"), "generation": ptr.get("generation", 0),
                "upload": up}


# --------------------------------------------------------------------------------------------
# host side: what to send
# --------------------------------------------------------------------------------------------


def artifact_files(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The files of a local artifact to upload (verified first): ``[{"name", "bytes",
    "sha256"}]``, manifest last. Ground-only comparison variants (``--also float32`` etc.,
    :attr:`~ramanedge.manifest.Manifest.comparison_files`) are not sent: the rover never
    loads them, and a float32 model is 4x the int8 one on a slow link."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    out = []
    for name in [*sorted(manifest.flight_files), MANIFEST_NAME]:
        p = folder / name
        out.append({"name": name, "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return out


def upload_digest(files: list[dict[str, Any]]) -> str:
    """A short digest of an upload's file list (for logs)."""
    h = sha256(json.dumps([(m["name"], m["sha256"]) for m in files]).encode())
    return h.hexdigest()[:12]
