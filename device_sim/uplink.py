"""Model uplink ("flashing") and the device's model store with atomic swap and rollback.

Store layout (``root/``)::

    ACTIVE.json           {"current": SLOT, "previous": SLOT | null, "generation": N}
    ACTIVE.json.bak       the same pointer, written right after it (a bit flip in one copy
                          is survived; with both damaged the pointer is rebuilt from the slots)
    slots/SLOT/           a complete, verified artifact (model.tflite, head.npz, manifest.json)
    staging/UPLOAD/       files of an upload in progress (never served) and its resumable
                          state .upload.json (received byte ranges, see :class:`Upload`)
    headstore/            the onboard head store (labelled samples, retrained heads): mission
                          data, kept outside every slot so no uplink, rollback or clean-up
                          can remove it (see :mod:`edge_runtime.headstore`)
    lock                  flock(2) held by the one process serving or editing the store

Invariants (what may delete what):

* only the store deletes, and only names it made itself: slot folders named
  ``NNNNNN-<sha12>`` that the pointer no longer references, and staging folders named
  ``upload-XXXXXXXX`` / ``install-PID-NS``. Any other file or folder in ``slots/`` or
  ``staging/`` is left alone;
* a damaged pointer never deletes anything: it is restored from its backup copy or rebuilt
  from the newest slots that verify, and that boot deletes no slot;
* nothing ever deletes from ``headstore/``; samples carry their preprocessed spectrum, so a
  new model recomputes their features (see :meth:`HeadStore.training_set`).

A new artifact arrives in chunks into ``staging/``. On commit every file is checked against
the sha256 announced at the start *and* against the artifact's own manifest
(:func:`ramanedge.manifest.read_manifest`), and the ``validate`` hook given to
:meth:`ModelStore.open` loads it (the device builds a real classifier and runs one spectrum;
the store hands what it loaded back, :meth:`ModelStore.take_loaded`, so the device serves
the very runtime that passed). Only then is the staging folder renamed into ``slots/`` and
``ACTIVE.json`` replaced atomically (temp file, fsync, rename, fsync of the folder). The
pointer file is the single commit point: a process killed at any moment boots either the old
model (pointer not yet replaced) or the new one (replaced), never neither; leftovers (staging
folders without a usable state, older uploads, unreferenced slots) are removed at the next
boot; the newest upload in progress survives a restart and resumes where it stopped. The
old model keeps serving until the pointer moves. Rollback swaps ``current`` and
``previous`` with the same atomic write.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramanedge.errors import LinkError, ManifestError, RamanEdgeError
from ramanedge.fsutil import atomic_write_text, fsync_dir, sha256_file
from ramanedge.manifest import MANIFEST_NAME, read_manifest, verify_artifact_files

POINTER = "ACTIVE.json"
POINTER_BACKUP = "ACTIVE.json.bak"
SLOTS = "slots"
STAGING = "staging"
HEADSTORE = "headstore"
LOCK = "lock"
#: Names the store gives slot and staging folders; nothing else there is ever deleted.
SLOT_RE = re.compile(r"^\d{6,}-[0-9a-f]{12}$")
_STAGING_RE = re.compile(r"^(upload-[0-9a-f]{8}|install-\d+-\d+)$")
#: Largest artifact file accepted over the link (256 MiB).
MAX_FILE_BYTES = 256 << 20
MAX_FILES = 16
#: Longest file name accepted in an upload (file systems allow 255 bytes).
MAX_NAME_LEN = 100


class UploadError(LinkError):
    """An uploaded artifact was incomplete, corrupt or unusable; nothing was changed."""


#: ``validate(folder) -> loaded``: load a candidate artifact and check it (raise if it is
#: unusable); what it returns (the device's model runtime) is handed back by
#: :meth:`ModelStore.take_loaded` once that candidate is current.
Validate = Callable[[Path], Any]


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


class _Received:
    """Byte ranges of one file received so far: sorted disjoint ``[start, end)`` intervals and
    their total. Adding a chunk costs O(log n) plus the intervals it merges, so a flood of
    tiny chunks stays cheap per chunk (in order they all extend one interval)."""

    __slots__ = ("starts", "ends", "total")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.total = 0

    def add(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        i = bisect.bisect_left(self.ends, lo)  # first interval that ends at/after lo
        j = bisect.bisect_right(self.starts, hi)  # intervals starting after hi stay
        if i < j:  # merge [i, j) with the new range
            lo, hi = min(lo, self.starts[i]), max(hi, self.ends[j - 1])
            self.total -= sum(e - s for s, e in zip(self.starts[i:j], self.ends[i:j],
                                                    strict=True))
        self.starts[i:j] = [lo]
        self.ends[i:j] = [hi]
        self.total += hi - lo


#: The upload's resumable state inside its staging folder (announced names never start with
#: a dot, so it cannot collide with an artifact file).
UPLOAD_STATE = ".upload.json"
#: Received bytes between two state snapshots: after a power cut or a device restart at most
#: this much is sent again (each snapshot first fsyncs the data it covers).
SNAPSHOT_BYTES = 16 << 10
#: Most missing ranges named in one MODEL_BEGIN answer (the rest follow in a later round).
MAX_GAPS = 256
#: What the uplink supports (INFO ``uplink``): gap reports and resume, files copied from the
#: store's slots instead of sent, zlib-compressed files on the wire.
UPLINK_FEATURES = ("resume", "delta", "zlib")


@dataclass
class Upload:
    """One upload in progress: announced files, received byte ranges, staging folder.

    Resumable in the spirit of CCSDS CFDP class 2: the receiver keeps what arrived (byte
    ranges, snapshotted to :data:`UPLOAD_STATE` after the data they cover is fsynced), and
    :meth:`missing` tells the sender the gaps, so a cut link or a device restart costs only
    what was not yet stored. ``held`` names the files copied from the store's own slots
    (same sha256) instead of being sent; ``resumed`` is true when a MODEL_BEGIN found this
    upload already in progress. A file announced with ``"zlib": N`` travels as an N-byte
    zlib stream (offsets and gaps count in that stream, kept in ``.NAME.zlib``) and is
    inflated at commit (:meth:`finish`), never beyond its announced size.
    """

    upload_id: int
    folder: Path
    files: list[dict[str, Any]]
    received: list[_Received] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    held: list[str] = field(default_factory=list)
    resumed: bool = False
    _unsaved: int = 0
    _dirty: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.received:
            self.received = [_Received() for _ in self.files]

    def write_chunk(self, file_index: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` of file ``file_index`` (idempotent: a resent chunk
        rewrites the same bytes); returns the bytes of that file received so far."""
        if not 0 <= file_index < len(self.files):
            raise UploadError(f"chunk for file #{file_index}, but the upload has "
                              f"{len(self.files)} files")
        meta, size = self.files[file_index], self.wire_bytes(file_index)
        if offset < 0 or offset + len(data) > size:
            raise UploadError(f"chunk {offset}+{len(data)} is outside {meta['name']} "
                              f"({size} bytes on the wire)")
        with open(self.folder / self.wire_name(file_index), "r+b") as f:
            f.seek(offset)
            f.write(data)
        self.received[file_index].add(offset, offset + len(data))
        self._dirty.add(file_index)
        self._unsaved += len(data)
        if self._unsaved >= SNAPSHOT_BYTES or self.received[file_index].total == size:
            self.save_state()
        return self.bytes_received(file_index)

    def wire_name(self, file_index: int) -> str:
        """The staging file the chunks of file ``file_index`` go to."""
        m = self.files[file_index]
        return m["name"] if self.is_raw(file_index) else f".{m['name']}.zlib"

    def wire_bytes(self, file_index: int) -> int:
        """Bytes of file ``file_index`` on the wire (its zlib stream, or the file)."""
        m = self.files[file_index]
        return m["bytes"] if self.is_raw(file_index) else int(m["zlib"])

    def is_raw(self, file_index: int) -> bool:
        """True when file ``file_index`` is stored as sent (not compressed, or held)."""
        m = self.files[file_index]
        return "zlib" not in m or m["name"] in self.held

    def finish(self) -> None:
        """Inflate the zlib files of a complete upload into their names (each at most its
        announced size; a bad or overlong stream is an :class:`UploadError`)."""
        for i, m in enumerate(self.files):
            if self.is_raw(i):
                continue
            src, dst = self.folder / self.wire_name(i), self.folder / m["name"]
            z = zlib.decompressobj()
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                written = 0
                while chunk := fin.read(1 << 16):
                    while chunk:  # at most 1 MiB out per call: memory stays small
                        try:
                            out = z.decompress(chunk, 1 << 20)
                        except zlib.error as e:
                            raise UploadError(f"{m['name']}: bad zlib stream ({e}); nothing "
                                              "changed") from None
                        written += len(out)
                        if written > m["bytes"]:
                            raise UploadError(f"{m['name']} inflates beyond its announced "
                                              f"{m['bytes']} bytes; nothing changed")
                        fout.write(out)
                        chunk = z.unconsumed_tail
            if not z.eof or written != m["bytes"]:
                raise UploadError(f"{m['name']}: zlib stream inflates to {written} bytes, "
                                  f"{m['bytes']} announced; nothing changed")
            src.unlink()

    def bytes_received(self, file_index: int) -> int:
        """Distinct bytes of file ``file_index`` received so far (union of the chunks)."""
        return self.received[file_index].total

    @property
    def complete(self) -> bool:
        """True when every byte of every file has arrived."""
        return all(self.bytes_received(i) == self.wire_bytes(i) for i in range(len(self.files)))

    def missing(self, limit: int = MAX_GAPS) -> list[list[int]]:
        """The gaps, ``[[file_index, start, end), ...]`` in file order (at most ``limit``)."""
        gaps: list[list[int]] = []
        for i in range(len(self.files)):
            r, pos, end = self.received[i], 0, self.wire_bytes(i)
            for lo, hi in [*zip(r.starts, r.ends, strict=True), (end, end)]:
                if lo > pos:
                    gaps.append([i, pos, lo])
                    if len(gaps) >= limit:
                        return gaps
                pos = max(pos, hi)
        return gaps

    def save_state(self) -> None:
        """Snapshot the received ranges (fsync the data they cover first, then one atomic
        write), so a restart resumes from here."""
        for i in sorted(self._dirty):
            _fsync_file(self.folder / self.wire_name(i))
        self._dirty.clear()
        state = {"upload_id": self.upload_id, "files": self.files, "held": self.held,
                 "received": [[[lo, hi] for lo, hi in zip(r.starts, r.ends, strict=True)]
                              for r in self.received]}
        atomic_write_text(self.folder / UPLOAD_STATE, json.dumps(state))
        self._unsaved = 0

    @classmethod
    def load(cls, folder: Path) -> Upload | None:
        """The upload a staging folder holds, from its state snapshot; ``None`` when the
        snapshot is missing or does not fit the folder (then the folder is a leftover)."""
        try:
            state = json.loads((folder / UPLOAD_STATE).read_text(encoding="utf-8"))
            files = check_announced(state["files"])
            up = cls(int(state["upload_id"]), folder, files,
                     held=[str(h) for h in state.get("held", [])])
            for i in range(len(files)):
                size = up.wire_bytes(i)
                if (folder / up.wire_name(i)).stat().st_size != size:
                    return None
                for lo, hi in state["received"][i]:
                    if not (type(lo) is int and type(hi) is int and 0 <= lo <= hi <= size):
                        return None
                    up.received[i].add(lo, hi)
        except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError,
                UploadError):
            return None
        return up


def check_announced(files: Any) -> list[dict[str, Any]]:
    """The announced file list of a MODEL_BEGIN, checked and normalised (``name``, ``bytes``,
    ``sha256`` lower-case): plain distinct names including the manifest, sizes within
    :data:`MAX_FILE_BYTES`; :class:`UploadError` naming what is wrong."""
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_FILES:
        raise UploadError(f"an upload must announce 1..{MAX_FILES} files")
    clean: list[dict[str, Any]] = []
    for m in files:
        if not (isinstance(m, dict) and isinstance(m.get("name"), str)
                and type(m.get("bytes")) is int and isinstance(m.get("sha256"), str)):
            raise UploadError(f"bad file entry {str(m)[:200]}; expected name (string), "
                              "bytes (integer), sha256 (string)")
        name, size, sha = m["name"], m["bytes"], m["sha256"].lower()
        if (Path(name).name != name or name in ("", ".", "..") or name.startswith(".")
                or len(name) > MAX_NAME_LEN
                or any(ord(c) < 32 or ord(c) == 127 or c in "\\/" for c in name)):
            raise UploadError(f"file name {name[:80]!r} must be a plain file name of at "
                              f"most {MAX_NAME_LEN} printable characters")
        if not 0 <= size <= MAX_FILE_BYTES:
            raise UploadError(f"file {name} of {size} bytes is over the "
                              f"{MAX_FILE_BYTES}-byte limit")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise UploadError(f"file {name}: sha256 must be 64 hex digits")
        entry = {"name": name, "bytes": size, "sha256": sha}
        if "zlib" in m:
            if type(m["zlib"]) is not int or not 0 < m["zlib"] <= MAX_FILE_BYTES:
                raise UploadError(f"file {name}: zlib must be the stream's size in bytes "
                                  f"(1..{MAX_FILE_BYTES})")
            entry["zlib"] = m["zlib"]
        clean.append(entry)
    names = [m["name"] for m in clean]
    if len(set(names)) != len(names) or MANIFEST_NAME not in names:
        raise UploadError(f"an upload must list distinct files including {MANIFEST_NAME}")
    return clean


class ModelStore:
    """The device's model slots, the active pointer, uploads, commit and rollback.

    Use :meth:`open` (recovers after a crash and installs a factory artifact into an empty
    store). ``validate(folder)`` (:data:`Validate`) is called on every candidate before it
    becomes active (an install, a commit, a rollback target) and must raise a
    :class:`~ramanedge.errors.RamanEdgeError` if the artifact is unusable; what it returns
    for the candidate that became current is kept for :meth:`take_loaded`.
    ``crash_hook(step)`` is for tests: it is called at every step of a commit
    (``"staged"``, ``"renamed"``, ``"pointed"``) so a test can kill the process there.
    """

    def __init__(self, root: str | os.PathLike, *, validate: Validate | None = None,
                 crash_hook: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self._validate = validate
        self._loaded: tuple[str, Any] | None = None
        self.crash_hook = crash_hook or (lambda step: None)
        self.upload: Upload | None = None
        self._lock_fd: int | None = None
        self._last_commit: tuple[int, str] | None = None
        self._next_upload = int(time.time() * 1000) & 0xFFFFFFF

    # -- pointer ---------------------------------------------------------------------------

    @property
    def slots_dir(self) -> Path:
        """``root/slots``."""
        return self.root / SLOTS

    @property
    def headstore_dir(self) -> Path:
        """``root/headstore``: the onboard head store shared by every slot."""
        return self.root / HEADSTORE

    @staticmethod
    def _parse_pointer(path: Path) -> dict[str, Any] | None:
        """A pointer file's content if it is well formed, else ``None``.

        Well formed: a JSON object whose ``current`` is a slot name the store makes
        (:data:`SLOT_RE`, so never a path), ``previous`` such a name or null, ``generation``
        a non-negative integer.
        """
        try:
            if path.is_symlink() or path.stat().st_size > 4096:
                return None
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(d, dict):
            return None
        cur, prev, gen = d.get("current"), d.get("previous"), d.get("generation", 0)
        if not (isinstance(cur, str) and SLOT_RE.match(cur)):
            return None
        if prev is not None and not (isinstance(prev, str) and SLOT_RE.match(prev)):
            return None
        if type(gen) is not int or gen < 0:
            return None
        return {"current": cur, "previous": prev, "generation": gen}

    def read_pointer(self) -> dict[str, Any]:
        """The active pointer: ``ACTIVE.json``, or its backup copy when the main one is
        damaged; an empty dict when neither is well formed (see :meth:`_parse_pointer`)."""
        for name in (POINTER, POINTER_BACKUP):
            d = self._parse_pointer(self.root / name)
            if d is not None:
                return d
        return {}

    def _write_pointer(self, current: str, previous: str | None) -> None:
        gen = int(self.read_pointer().get("generation", 0)) + 1
        text = json.dumps({"current": current, "previous": previous, "generation": gen,
                           "time": time.time()}, indent=1) + "\n"
        # the main file is the commit point; the backup follows it (a crash in between
        # leaves the backup one step behind, which still names a complete slot)
        atomic_write_text(self.root / POINTER, text)
        self._write_backup(text)

    def _write_backup(self, text: str) -> None:
        """Refresh ``ACTIVE.json.bak``; a failure here is reported, never fatal (the main
        pointer, the commit point, is already written)."""
        try:
            atomic_write_text(self.root / POINTER_BACKUP, text)
        except OSError as e:
            print(f"device: could not refresh {POINTER_BACKUP} ({e.strerror or e})",
                  file=sys.stderr)

    def _slot_ok(self, slot: str | None, *, verify_files: bool = True) -> bool:
        """True when ``slot`` is a slot folder the store made whose manifest checks (and,
        with ``verify_files``, whose files match their sha256)."""
        if not (isinstance(slot, str) and SLOT_RE.match(slot)):
            return False
        folder = self.slots_dir / slot
        if folder.is_symlink():
            return False
        try:
            read_manifest(folder, verify_files=verify_files)
        except RamanEdgeError:
            return False
        return True

    def _slot_names(self) -> list[str]:
        """Slot folders the store made (by name), oldest first."""
        if not self.slots_dir.is_dir():
            return []
        names = [p.name for p in self.slots_dir.iterdir()
                 if SLOT_RE.match(p.name) and p.is_dir() and not p.is_symlink()]
        return sorted(names, key=lambda n: int(n.split("-")[0]))

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
        if not cur or not SLOT_RE.match(cur):
            raise ManifestError(f"model store {self.root} has no active model")
        return self.slots_dir / cur

    # -- boot ------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike, *, factory: str | os.PathLike | None = None,
             validate: Validate | None = None,
             crash_hook: Callable[[str], None] | None = None,
             lock: bool = False) -> ModelStore:
        """Open (create) a store, with ``lock`` take its writer lock (:meth:`lock`; the
        device and the offline tools do), recover from an
        interrupted commit, install ``factory`` if the store has no usable model, and
        return it. ``validate``: the check every candidate model passes (:data:`Validate`;
        ``None`` = the manifest and checksums only, for offline tools)."""
        store = cls(root, validate=validate, crash_hook=crash_hook)
        if lock:
            store.lock()
        try:
            store.recover(factory)
        except BaseException:
            store.unlock()
            raise
        return store

    def _make_dirs(self) -> None:
        for d in (self.root, self.slots_dir, self.root / STAGING):
            if d.exists() and (d.is_symlink() or not d.is_dir()):
                raise ManifestError(f"model store: {d} exists but is not a folder; give --store "
                                    "an empty or existing store folder")
        try:
            self.slots_dir.mkdir(parents=True, exist_ok=True)
            (self.root / STAGING).mkdir(exist_ok=True)
        except OSError as e:
            raise ManifestError(f"cannot create the model store {self.root}: "
                                f"{e.strerror or e}") from None

    def recover(self, factory: str | os.PathLike | None = None) -> None:
        """Boot-time recovery: drop the store's own staging folders; make sure ``current``
        verifies (else fall back to ``previous``, else install ``factory``); drop
        unreferenced slots. A damaged pointer is restored from its backup or rebuilt from
        the newest slots that verify, and then no slot is deleted on this boot."""
        self._make_dirs()
        self.upload = None
        resumable: list[Upload] = []
        for p in (self.root / STAGING).iterdir():
            if _STAGING_RE.match(p.name):
                if p.is_symlink() or not p.is_dir():
                    continue  # not a folder the store made: left alone, never used
                up = Upload.load(p) if p.name.startswith("upload-") else None
                if up is None:
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    resumable.append(up)
        if resumable:  # the newest upload resumes; older ones are leftovers
            resumable.sort(key=lambda u: (u.folder / UPLOAD_STATE).stat().st_mtime_ns)
            for old in resumable[:-1]:
                shutil.rmtree(old.folder, ignore_errors=True)
            self.upload = resumable[-1]
            self._next_upload = max(self._next_upload, self.upload.upload_id)
        main = self._parse_pointer(self.root / POINTER)
        ptr = self.read_pointer()
        restored = bool(ptr) and main is None
        if restored:
            # the backup may be a step behind (a crash between the two writes): a newer slot
            # that verifies is the one the lost main pointer named
            good = [n for n in self._slot_names() if self._slot_ok(n)]
            cur = ptr["current"]
            if good and int(good[-1].split("-")[0]) > int(cur.split("-")[0]):
                ptr = {"current": good[-1], "previous": cur}
            print(f"device: {POINTER} is damaged; restored from {POINTER_BACKUP} "
                  f"(current {ptr['current']})", file=sys.stderr)
            self._write_pointer(ptr["current"], ptr.get("previous"))
        elif main is not None and self._parse_pointer(self.root / POINTER_BACKUP) != main:
            # a crash between the two writes leaves the backup a step behind: catch it up
            self._write_backup((self.root / POINTER).read_text(encoding="utf-8"))
        cur, prev = ptr.get("current"), ptr.get("previous")
        if self._slot_ok(cur):
            if prev and not self._slot_ok(prev):
                self._write_pointer(str(cur), None)
        elif self._slot_ok(prev):
            self._write_pointer(str(prev), None)  # the current model rotted: the previous one
        else:
            # no pointer, a damaged one, or one naming no good slot: rebuild it from the
            # newest slots that verify; such a boot deletes nothing
            good = [n for n in self._slot_names() if self._slot_ok(n)]
            if good:
                print(f"device: {POINTER} names no usable model; rebuilt from the slots "
                      f"(current {good[-1]})", file=sys.stderr)
                self._write_pointer(good[-1], good[-2] if len(good) > 1 else None)
                return
            if factory is None:
                raise ManifestError(f"model store {self.root} has no usable model and no "
                                    "factory model was given (--model DIR)")
            self.install(factory)
        if not restored:  # a backup may be a step behind: never delete on its word
            self._gc()

    def _gc(self) -> None:
        """Remove the slots the pointer no longer references (only names the store made)."""
        ptr = self.read_pointer()
        if not ptr:
            return
        keep = {ptr.get("current"), ptr.get("previous")}
        for name in self._slot_names():
            if name not in keep:
                shutil.rmtree(self.slots_dir / name, ignore_errors=True)

    # -- lock -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the store's writer lock for the life of this object (one serving device or
        one offline tool at a time); :class:`UploadError` naming the holder if it is taken."""
        if self._lock_fd is not None:
            return
        self._make_dirs()
        try:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UploadError(f"cannot open the lock of model store {self.root}: "
                              f"{e.strerror or e}") from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise UploadError(f"model store {self.root} is in use by another process "
                              f"(pid {holder}); stop the device first") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only informative; the flock is what counts
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock taken by :meth:`lock` (also released when the process ends)."""
        fd = self._lock_fd
        if fd is not None:
            os.close(fd)
            self._lock_fd = None

    def _new_slot_name(self, manifest_sha: str) -> str:
        nums = [int(n.split("-")[0]) for n in self._slot_names()]
        sha = manifest_sha[:12] if re.fullmatch(r"[0-9a-f]{12,}", manifest_sha) else "0" * 12
        return f"{max(nums, default=0) + 1:06d}-{sha}"

    # -- validation ------------------------------------------------------------------------

    @property
    def validates(self) -> bool:
        """True when the store was opened with a ``validate`` hook."""
        return self._validate is not None

    def _check(self, folder: Path) -> Any:
        """Run the ``validate`` hook on a candidate; what it loaded (``None`` without one)."""
        return None if self._validate is None else self._validate(folder)

    def take_loaded(self, slot: str | None) -> Any:
        """What ``validate`` loaded for ``slot`` when it last became current (an install, a
        commit, a rollback), handed over once; ``None`` when nothing was (the slot did not
        change, or no hook). Anything held for another slot is dropped."""
        held, self._loaded = self._loaded, None
        return held[1] if held is not None and held[0] == slot else None

    # -- install / commit ------------------------------------------------------------------

    def install(self, src: str | os.PathLike) -> str:
        """Copy a local artifact folder in, verify it and make it current (atomically)."""
        src = Path(src)
        staging = self.root / STAGING / f"install-{os.getpid()}-{time.time_ns()}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        _copy_verified(src, staging)
        return self._activate(staging)

    def _activate(self, staging: Path, *, verified: bool = False) -> str:
        """Verify a complete staging folder (``verified``: its files were just hashed by the
        caller) and make it the current slot (what ``validate`` loaded is kept for
        :meth:`take_loaded`)."""
        try:
            manifest = read_manifest(staging, verify_files=not verified)
            loaded = self._check(staging)
        except RamanEdgeError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise UploadError(f"artifact rejected, nothing changed: {e}") from None
        except Exception as e:  # noqa: BLE001 - any failure to load = rejected
            shutil.rmtree(staging, ignore_errors=True)
            raise UploadError(f"artifact rejected, nothing changed: {type(e).__name__}: {e}"
                              ) from None
        sha = str(manifest.data.get("manifest_sha256", ""))
        cur = self.current
        if cur and self._slot_ok(cur, verify_files=False) and read_manifest(
                self.slots_dir / cur, verify_files=False).data.get("manifest_sha256") == sha:
            # the artifact already serving: nothing to swap (re-flashing must never push the
            # rollback target out with a second copy of the current model)
            shutil.rmtree(staging, ignore_errors=True)
            return cur
        self.crash_hook("staged")
        slot = self._new_slot_name(sha)
        os.rename(staging, self.slots_dir / slot)
        fsync_dir(self.slots_dir)
        self.crash_hook("renamed")
        # the old model stays the rollback target; a rollback verifies it again before use
        self._write_pointer(slot, self.current
                            if self._slot_ok(self.current, verify_files=False) else None)
        self._loaded = (slot, loaded)
        self.crash_hook("pointed")
        self._gc()
        return slot

    def begin_upload(self, files: list[dict[str, Any]]) -> Upload:
        """Start an upload of ``files`` (``[{"name", "bytes", "sha256"}]``), or resume it.

        The same announcement as the upload in progress (also one found at boot) resumes
        it: what was received is kept and :meth:`Upload.missing` names the gaps. Any other
        upload in progress is discarded. A new upload pre-allocates its files in a fresh
        staging folder; a file the store already holds (same sha256 and size in the current
        or previous slot) is copied there instead of being sent (a delta update: a new head
        on the same model sends only the head, exemplars and manifest).
        """
        clean = check_announced(files)
        if self.upload is not None and self.upload.files == clean:
            self.upload.resumed = True
            return self.upload
        self.abort_upload()
        self._next_upload = (self._next_upload + 1) & 0xFFFFFFFF
        folder = self.root / STAGING / f"upload-{self._next_upload:08x}"
        folder.mkdir(parents=True)
        up = Upload(self._next_upload, folder, clean)
        self.upload = up  # from here on abort_upload() removes the folder (a full disk...)
        held = self._held_files()
        for i, m in enumerate(clean):
            src = held.get((m["sha256"], m["bytes"]))
            # a held file is used only if it still matches (a rotted slot file is sent anew)
            if src is not None and m["name"] != MANIFEST_NAME and sha256_file(src) == m["sha256"]:
                shutil.copyfile(src, folder / m["name"])
                up.held.append(m["name"])
                up.received[i].add(0, m["bytes"])
                up._dirty.add(i)
            else:
                with open(folder / up.wire_name(i), "wb") as f:
                    f.truncate(up.wire_bytes(i))
        up.save_state()
        return up

    def _held_files(self) -> dict[tuple[str, int], Path]:
        """``(sha256, bytes) -> path`` of the files in the current and previous slots (as
        their verified manifests list them)."""
        out: dict[tuple[str, int], Path] = {}
        for slot in (self.previous, self.current):
            if not (isinstance(slot, str) and SLOT_RE.match(slot)):
                continue
            folder = self.slots_dir / slot
            try:
                listed = read_manifest(folder, verify_files=False).files
            except RamanEdgeError:
                continue
            for name, meta in listed.items():
                path = folder / name
                if path.is_file() and not path.is_symlink():
                    out[(str(meta.get("sha256", "")).lower(), int(meta.get("bytes", -1)))] = path
        return out

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
        it current. An incomplete upload is refused and kept (to be resumed); on any other
        failure the upload is discarded; nothing else changes.

        Idempotent: committing the upload that was just committed again (a lost answer,
        resent) returns the same slot and changes nothing.
        """
        if self.upload is None and self._last_commit is not None \
                and self._last_commit[0] == upload_id and self.current == self._last_commit[1]:
            return self._last_commit[1]
        up = self.get_upload(upload_id)
        if not up.complete:  # kept: the sender asks for the gaps (MODEL_BEGIN) and resumes
            missing = [f"{m['name']} ({up.bytes_received(i)}/{up.wire_bytes(i)} bytes)"
                       for i, m in enumerate(up.files)
                       if up.bytes_received(i) != up.wire_bytes(i)]
            raise UploadError("upload incomplete, nothing changed (the received part is "
                              "kept for a resume): " + ", ".join(missing))
        try:
            (up.folder / UPLOAD_STATE).unlink(missing_ok=True)
            up.finish()
            for m in up.files:  # each file is hashed once per commit, here
                p = up.folder / m["name"]
                if sha256_file(p) != m["sha256"]:
                    raise UploadError(f"{m['name']} does not match its announced sha256 "
                                      "(corrupted in transit?); nothing changed")
                _fsync_file(p)
            fsync_dir(up.folder)
            try:
                manifest = read_manifest(up.folder, verify_files=False)
                verify_artifact_files(up.folder, manifest,
                                      known={m["name"]: m["sha256"] for m in up.files})
            except ManifestError as e:
                raise UploadError(f"artifact rejected, nothing changed: {e}") from None
            announced = {m["name"] for m in up.files}
            extra = announced - set(manifest.files) - {MANIFEST_NAME}
            if extra:
                raise UploadError(f"uploaded files not listed in the manifest: {sorted(extra)}")
            for p in up.folder.iterdir():  # e.g. a snapshot's temp file left by a crash
                if p.name not in announced and p.name != MANIFEST_NAME:
                    p.unlink()
            self.upload = None
            slot = self._activate(up.folder, verified=True)
            self._last_commit = (upload_id, slot)
            return slot
        except BaseException:
            if self.upload is up:
                self.abort_upload()
            else:
                shutil.rmtree(up.folder, ignore_errors=True)
            raise

    # -- rollback --------------------------------------------------------------------------

    def rollback(self) -> str:
        """Make the previous model current (and the current one previous), after
        ``validate``; returns the new current slot. :class:`UploadError` when there is
        nothing to roll back to."""
        cur, prev = self.current, self.previous
        if not self._slot_ok(prev):
            raise UploadError("no previous model to roll back to")
        loaded = self._check(self.slots_dir / str(prev))
        self._write_pointer(str(prev), cur)
        self._loaded = (str(prev), loaded)
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
        problems = []
        if not ptr:
            good = [n for n in self._slot_names() if self._slot_ok(n, verify_files=False)]
            problems.append(f"{POINTER} and {POINTER_BACKUP} are both unreadable; "
                            + (f"'device serve' will recover the newest good slot "
                               f"({good[-1]})" if good else "no good slot to recover"))
        elif not self._slot_ok(ptr.get("current"), verify_files=False):
            problems.append(f"the current slot {ptr.get('current')!r} is missing or damaged; "
                            "'device serve' will recover a good one")
        return {"root": str(self.root), "current": ptr.get("current"),
                "previous": ptr.get("previous"), "generation": ptr.get("generation", 0),
                "upload": up, "problems": problems}


# --------------------------------------------------------------------------------------------
# host side: what to send
# --------------------------------------------------------------------------------------------


def artifact_files(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The files of a local artifact to upload (verified first): ``[{"name", "bytes",
    "sha256"}]``, manifest last. Ground-only comparison variants (``--also float32`` etc.,
    :attr:`~ramanedge.manifest.Manifest.comparison_files`) are not sent: the rover never
    loads them, and a float32 model is 4x the int8 one on a slow link."""
    folder = Path(folder)
    manifest = read_manifest(folder)  # verifies every file against the manifest's sha256
    out = [{"name": name, "bytes": int(meta["bytes"]), "sha256": str(meta["sha256"])}
           for name, meta in sorted(manifest.flight_files.items())]
    p = folder / MANIFEST_NAME
    out.append({"name": MANIFEST_NAME, "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return out
