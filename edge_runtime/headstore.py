"""The onboard head store: labelled samples, retrained heads, the active-head pointer.

Layout (default ``MODEL_DIR/headstore/``)::

    samples/000012-<sha16>.npz   one file per labelled sample (never rewritten or deleted)
    heads/v0003-<sha16>.npz      one file per retrained head (never rewritten or deleted)
    index.jsonl                  one line per sample (CRC32 + JSON: label, spectrum key,
                                 model sha256, int8 features), appended after the sample's
                                 own fsync: duplicates, counts and the unknown bank without
                                 opening sample files (derived data, rebuilt when damaged)
    active.json                  {"by_model": {model sha256: "v0003" | "base"}, ...} + its
                                 own sha256: the active head of each model
    lock                         flock(2) file serialising writers

Numbers have at least 6 (samples) and 4 (heads) digits and grow past them (sample 1000000,
head v10000); they are compared as numbers.

One store may serve several models (the device keeps one store outside its model slots, so
samples outlive uplinks and rollbacks): a head belongs to the model file it was trained on
(``model_sha256`` in its metadata) and is invisible to the others; each model has its own
active head; samples are shared by all.

Power-loss safety:

* every file is written with :func:`ramanedge.fsutil.atomic_write_bytes` (temp file, fsync,
  rename, fsync of the folder), so a reader sees the old state or the whole new file;
* every sample and head file carries the first 16 hex digits of its own sha256 in its name;
  a file whose bytes do not match (bit rot, a torn write on a lying SD card) is reported in
  :attr:`HeadStore.problems` and skipped, never used;
* a sample is *acknowledged* once :meth:`HeadStore.add_sample` returns (its file and the
  folder entry are fsynced); nothing ever deletes or rewrites a sample, so an acknowledged
  sample cannot be lost by a later crash, retrain or rollback;
* retraining writes the new head file first and only then switches ``active.json``; a crash
  in between leaves the previous head active. If the active head's file is corrupt, the
  newest good head older than it is used (ultimately the base head of the artifact).

Samples keep the raw spectrum (float32 axis and intensities), the preprocessed spectrum
(float32 on the model grid) and the model's int8 features with the sha256 of the model that
produced them. A retrain on another model uses every sample: features are recomputed from
the preprocessed spectrum (or, when the new model's grid differs, from the raw one). Heads
are always refitted from the artifact's base head on
*all* samples plus the artifact's exemplars, so results do not drift with the number of
retrains.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import io
import json
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_runtime.artifact import Artifact, HeadWeights
from edge_runtime.head import SoftmaxHead, load_exemplars
from edge_runtime.interpreter import dequantize_int8
from ramanedge.errors import HeadStoreError, ModelError, RamanEdgeError
from ramanedge.fsutil import atomic_write_bytes, sha256_bytes
from ramanedge.io import expand_paths, read_spectrum
from ramanedge.manifest import HEADSTORE_DIR

STORE_DIR = HEADSTORE_DIR
ACTIVE_FILE = "active.json"
INDEX_FILE = "index.jsonl"
BASE = "base"
MAX_LABEL_LEN = 100
#: The named steps a :data:`Checkpoint` is called at: in :meth:`HeadStore.retrain` before the
#: new head file is written, after it is written, after ``active.json`` names it; in
#: :func:`add_spectra` after each acknowledged sample.
CHECKPOINTS = ("before-head-write", "after-head-write", "after-activate", "after-sample")

Checkpoint = Callable[[str], None]
#: ``features_fn(grids (M, P)) -> (M, D)``: the model's dequantised features of grid spectra
FeaturesFn = Callable[[np.ndarray], np.ndarray]

_SAMPLE_RE = re.compile(r"^(\d{6,})-([0-9a-f]{16})\.npz$")
_HEAD_RE = re.compile(r"^v(\d{4,})-([0-9a-f]{16})\.npz$")
_VERSION_RE = re.compile(r"^v\d{4,}$")


def _version_number(version: str) -> int:
    """``"v0012"`` -> 12 (``"base"`` -> 0): versions compare as numbers, not strings."""
    return 0 if version == BASE else int(version[1:])


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _no_checkpoint(_step: str) -> None:
    """The default :data:`Checkpoint`: does nothing."""


class SpectrumEncoder(Protocol):
    """What :func:`add_spectra` needs of a classifier (an
    :class:`edge_runtime.classify.Classifier` on the store's artifact is one)."""

    def preprocess(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Raw spectrum -> the model's grid (float32)."""
        ...

    def features_int8(self, x_grid: np.ndarray) -> np.ndarray:
        """The model's raw int8 ``features`` output (D,) for one grid spectrum."""
        ...


def check_label(label: str) -> str:
    """Validate and normalise (strip) a mineral label; raise :class:`HeadStoreError`."""
    lab = str(label).strip()
    if not lab:
        raise HeadStoreError("label must not be empty; expected a mineral name, e.g. 'Jarosite'")
    if len(lab) > MAX_LABEL_LEN:
        raise HeadStoreError(f"label is {len(lab)} characters long; at most {MAX_LABEL_LEN}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in lab):
        raise HeadStoreError("label contains control characters; expected a mineral name")
    return lab


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_verified(path: Path, sha16: str) -> dict[str, np.ndarray]:
    """Read an npz whose sha256 must start with ``sha16``; :class:`HeadStoreError` if not."""
    data = path.read_bytes()
    if not sha256_bytes(data).startswith(sha16):
        raise HeadStoreError(f"{path.name} is corrupt (checksum mismatch)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: np.array(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as e:  # pragma: no cover - checksum catches first
        raise HeadStoreError(f"{path.name} is unreadable: {e}") from None


@dataclass(frozen=True)
class Sample:
    """One stored labelled spectrum."""

    seq: int
    label: str
    grid: np.ndarray = field(repr=False)
    features_q: np.ndarray = field(repr=False)
    model_sha256: str
    source: str
    added: str
    key: str
    raw: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    grid_spec: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        """Sample id shown to users (its sequence number, 6 digits)."""
        return f"{self.seq:06d}"


@dataclass(frozen=True)
class HeadInfo:
    """One stored head: version, file, and the metadata written with it."""

    version: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Labels of the head (from its metadata)."""
        return list(self.meta.get("labels", []))


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the index keeps of one sample: enough to find duplicates, count labels and
    build the unknown rule's bank without opening the sample file (~0.4 kB in memory)."""

    seq: int
    label: str
    key: bytes  # sha256 of the preprocessed spectrum (32 bytes)
    model_sha256: str
    features_q: bytes


class _SampleIndex:
    """``index.jsonl``: one line per sample file, ``CRC32 JSON``, appended (under the store's
    lock) right after the sample file itself is fsynced. Derived data: a torn or damaged
    line is skipped and that sample file is read (and indexed) again; the sample files stay
    the source of truth.

    The samples folder is listed once, when the index is first loaded (a crash between a
    sample's fsync and its index line leaves a file only a listing finds); afterwards the
    index file's new lines are all a writer needs, so adding a sample costs the same with 10
    or 10,000 stored.
    """

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.by_key: dict[bytes, str] = {}
        self.counts: dict[str, int] = {}
        self.unreadable: set[str] = set()
        self.max_seq = 0
        self.pos = 0  # bytes of the index file consumed
        self.listed = False

    def add(self, name: str, e: _Entry) -> None:
        old = self.entries.get(name)
        if old is not None:
            self.counts[old.label] -= 1
        self.entries[name] = e
        self.by_key[e.key] = name
        self.counts[e.label] = self.counts.get(e.label, 0) + 1
        self.max_seq = max(self.max_seq, e.seq)

    def drop(self, name: str) -> None:
        e = self.entries.pop(name)
        self.counts[e.label] -= 1
        if self.by_key.get(e.key) == name:
            del self.by_key[e.key]

    @staticmethod
    def line(name: str, e: _Entry) -> bytes:
        body = json.dumps({"name": name, "seq": e.seq, "label": e.label, "key": e.key.hex(),
                           "model": e.model_sha256,
                           "f": base64.b64encode(e.features_q).decode("ascii")},
                          sort_keys=True, separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    @staticmethod
    def parse(line: bytes) -> tuple[str, _Entry] | None:
        crc, _, body = line.rstrip(b"\n").partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
            d = json.loads(body)
            name = d["name"]
            if not (isinstance(name, str) and _SAMPLE_RE.match(name)):
                return None
            e = _Entry(int(d["seq"]), sys.intern(str(d["label"])), bytes.fromhex(d["key"]),
                       sys.intern(str(d["model"])), base64.b64decode(d["f"], validate=True))
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        return (name, e) if e.seq == int(name.split("-")[0]) else None

    def read_new_lines(self, root: Path) -> None:
        try:
            f = open(root / INDEX_FILE, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with f:
            if os.fstat(f.fileno()).st_size < self.pos:  # replaced or cut: read it again
                self.pos = 0
            f.seek(self.pos)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a torn last line is left for later (or never)
                self.pos += len(raw)
                got = self.parse(raw)
                if got is not None:
                    self.add(*got)

    def append(self, root: Path, name: str, e: _Entry) -> None:
        """Append (fsynced) one line; the caller holds the store's lock."""
        p = root / INDEX_FILE
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size and os.pread(fd, 1, size - 1) != b"\n":
                prefix = b"\n"  # end a torn line so this one parses
            os.write(fd, prefix + self.line(name, e))
            os.fsync(fd)
            end = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self.add(name, e)
        if self.pos == size:  # nothing unread before our line: skip over it
            self.pos = end


class HeadStore:
    """Onboard head store for one artifact (see the module docstring for the layout).

    Open with :meth:`open` (creates the folder on demand) or :meth:`open_existing`.
    Problems found while reading (corrupt files, a head made for another model) are
    collected in :attr:`problems` as one-line strings; the store keeps working around them.
    ``checkpoint``: called with the name of each step of :data:`CHECKPOINTS` as it is
    reached (a no-op by default); the crash tests stop the process there.
    """

    def __init__(self, artifact: Artifact, root: str | os.PathLike | None = None, *,
                 checkpoint: Checkpoint | None = None) -> None:
        self.artifact = artifact
        self.root = Path(root) if root is not None else artifact.folder / STORE_DIR
        self.problems: list[str] = []
        self.checkpoint: Checkpoint = checkpoint or _no_checkpoint
        self._model_sha = artifact.manifest.files[artifact.manifest.model_file]["sha256"]
        # the sample index (see _SampleIndex): loaded on first use, then kept in step with
        # the index file (appends of other writers) and the samples folder
        self._index: _SampleIndex | None = None

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, artifact: Artifact, root: str | os.PathLike | None = None, *,
             create: bool = False, checkpoint: Checkpoint | None = None) -> HeadStore:
        """Open the store; with ``create`` make its folders, else it must exist."""
        store = cls(artifact, root, checkpoint=checkpoint)
        if create:
            try:
                (store.root / "samples").mkdir(parents=True, exist_ok=True)
                (store.root / "heads").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise HeadStoreError(f"cannot create the head store {store.root}: "
                                     f"{e.strerror or e}") from None
        elif not store.root.is_dir():
            raise HeadStoreError(f"no head store at {store.root}; add samples first with "
                                 "'ramanedge head add'")
        return store

    @classmethod
    def open_existing(cls, artifact: Artifact, root: str | os.PathLike | None = None, *,
                      checkpoint: Checkpoint | None = None) -> HeadStore | None:
        """The store if its folder exists, else ``None``."""
        store = cls(artifact, root, checkpoint=checkpoint)
        return store if store.root.is_dir() else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive writer lock (flock on ``lock``); readers never need it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - non-POSIX
                pass
            yield
        finally:
            os.close(fd)

    # -- samples ------------------------------------------------------------------------------
    def _sample_files(self) -> list[tuple[int, str, Path]]:
        folder = self.root / "samples"
        out = []
        if folder.is_dir():
            for p in folder.iterdir():
                m = _SAMPLE_RE.match(p.name)
                if m:
                    out.append((int(m.group(1)), m.group(2), p))
        return sorted(out)

    def _read_sample(self, seq: int, sha16: str, p: Path) -> Sample | None:
        """One sample file (verified), or ``None`` (reported in :attr:`problems`)."""
        try:
            a = _read_verified(p, sha16)
            s = Sample(
                seq=seq, label=str(a["label"]), grid=a["grid"].astype(np.float32),
                features_q=a["features"].astype(np.int8),
                model_sha256=str(a["model_sha256"]), source=str(a["source"]),
                added=str(a["added"]), key=str(a["key"]),
                raw=(a["raw_x"], a["raw_y"]) if "raw_x" in a and "raw_y" in a else None,
                grid_spec=json.loads(str(a["grid_spec"])) if "grid_spec" in a else None,
            )
        except (HeadStoreError, KeyError, OSError, ValueError) as e:
            self._problem(f"sample {p.name} skipped: {e}")
            return None
        return s

    def samples(self) -> list[Sample]:
        """Every readable sample, oldest first; corrupt ones are reported in :attr:`problems`."""
        out = []
        for seq, sha16, p in self._sample_files():
            s = self._read_sample(seq, sha16, p)
            if s is not None:
                out.append(s)
        return out

    def _sync_index(self, *, repair: bool) -> _SampleIndex:
        """The sample index, brought in step with the index file and the samples folder.

        Lines other writers appended are read; sample files the index does not list (a
        crash between a sample's fsync and its index line, or a lost index) are read once,
        verified, and with ``repair`` (caller holds the lock) appended to the index file.
        """
        if self._index is None:
            self._index = _SampleIndex()
        idx = self._index
        idx.read_new_lines(self.root)
        if idx.listed:
            return idx
        listed: dict[str, int] = {}
        folder = self.root / "samples"
        if folder.is_dir():
            with os.scandir(folder) as it:
                for de in it:
                    m = _SAMPLE_RE.match(de.name)
                    if m:
                        listed[de.name] = int(m.group(1))
        idx.max_seq = max([idx.max_seq, *listed.values()])
        for name in [n for n in idx.entries if n not in listed]:  # removed by hand
            idx.drop(name)
        for name in sorted(set(listed) - set(idx.entries), key=lambda n: listed[n]):
            smp = self._read_sample(listed[name], name.split("-")[1][:16], folder / name)
            if smp is None:
                idx.unreadable.add(name)
                continue
            entry = _Entry(smp.seq, sys.intern(smp.label), bytes.fromhex(smp.key),
                           sys.intern(smp.model_sha256), smp.features_q.tobytes())
            if repair:
                try:
                    idx.append(self.root, name, entry)
                    continue
                except OSError as e:  # a read-only store still answers from memory
                    self._problem(f"cannot update {INDEX_FILE}: {e.strerror or e}")
            idx.add(name, entry)
        idx.listed = True
        return idx

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """:meth:`_locked` for the commands that write: a lock that cannot be taken (its path
        a folder, no permission) is the store's :class:`HeadStoreError`, in one line."""
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self._locked())
        except OSError as e:
            raise HeadStoreError(f"head store {self.root}: cannot take its lock: "
                                 f"{e.strerror or e}") from None
        with stack:
            yield

    def _index_now(self) -> _SampleIndex:
        """:meth:`_sync_index`, repairing the index file when the store is writable."""
        try:
            with self._locked():
                return self._sync_index(repair=True)
        except OSError:
            return self._sync_index(repair=False)

    def sample_counts(self) -> dict[str, int]:
        """Stored samples per label (from the index: no sample file is read)."""
        return {k: v for k, v in self._index_now().counts.items() if v}

    def _problem(self, msg: str) -> None:
        if msg not in self.problems:
            self.problems.append(msg)

    def add_sample(self, label: str, grid: np.ndarray, features_q: np.ndarray, *,
                   source: str = "", raw: tuple[np.ndarray, np.ndarray] | None = None,
                   ) -> tuple[Sample, bool]:
        """Store one labelled sample durably; returns ``(sample, created)``.

        ``grid``: the preprocessed spectrum (float32, model grid); ``features_q``: the
        model's raw int8 ``features`` output for it. The same spectrum stored again with the
        same label returns the existing sample with ``created=False``; with another label it
        raises :class:`HeadStoreError` (one spectrum cannot be two minerals), as it does for
        a label that differs from a known one (the model's or the store's) only in case. Once this
        returns, the sample is on disk (fsynced) and will never be removed by the store.
        ``raw``: the spectrum as measured ``(axis, intensities)``, kept so that a model with
        another grid can still use the sample.
        """
        label = check_label(label)
        grid = np.ascontiguousarray(grid, dtype=np.float32).reshape(-1)
        fq = np.ascontiguousarray(features_q).reshape(-1)
        if grid.size != self.artifact.grid.n_points or not np.all(np.isfinite(grid)):
            raise HeadStoreError(f"a sample needs a finite preprocessed spectrum of "
                                 f"{self.artifact.grid.n_points} points, got {grid.size}")
        if fq.dtype != np.int8 or fq.size != self.artifact.feature_dim:
            raise HeadStoreError(f"a sample needs the model's int8 features "
                                 f"({self.artifact.feature_dim}), got {fq.dtype} {fq.size}")
        key = sha256_bytes(grid.tobytes())
        with self._locked():
            index = self._sync_index(repair=True)
            known = set(self.artifact.labels) | {k for k, n in index.counts.items() if n > 0}
            twin = None if label in known else min(
                (k for k in known if k.casefold() == label.casefold()), default=None)
            if twin is not None:  # 'actinolite' next to 'Actinolite' would be a second class
                raise HeadStoreError(f"label {label!r} differs from the known label {twin!r} "
                                     f"only in case; use {twin!r}")
            name = index.by_key.get(bytes.fromhex(key))
            if name is not None:
                e = index.entries[name]
                s = self._read_sample(e.seq, name.split("-")[1][:16], self.root / "samples" / name)
                if s is not None:  # a file gone bad since it was indexed is no duplicate
                    if s.label == label:
                        return s, False
                    raise HeadStoreError(f"this spectrum is already stored as sample {s.id} "
                                         f"labelled {s.label!r}; not adding it as {label!r}")
            seq = index.max_seq + 1
            index.max_seq = seq  # taken even if a later step fails: numbers are never reused
            added = _now()
            extra: dict[str, np.ndarray] = {
                "grid_spec": np.array(json.dumps(self.artifact.grid.to_dict(), sort_keys=True))}
            if raw is not None:
                extra["raw_x"] = np.asarray(raw[0], dtype=np.float32).reshape(-1)
                extra["raw_y"] = np.asarray(raw[1], dtype=np.float32).reshape(-1)
            data = _npz_bytes(label=np.array(label), grid=grid, features=fq,
                              model_sha256=np.array(self._model_sha), source=np.array(source),
                              added=np.array(added), key=np.array(key), **extra)
            name = f"{seq:06d}-{sha256_bytes(data)[:16]}.npz"
            atomic_write_bytes(self.root / "samples" / name, data)
            # acknowledged from here (the file is fsynced); the index line is derived data
            entry = _Entry(seq, sys.intern(label), bytes.fromhex(key),
                           sys.intern(self._model_sha), fq.tobytes())
            try:
                index.append(self.root, name, entry)
            except OSError as e:  # the sample is stored; the next open re-indexes it
                index.add(name, entry)
                self._problem(f"cannot update {INDEX_FILE}: {e.strerror or e}")
        raw_t = (extra["raw_x"], extra["raw_y"]) if "raw_x" in extra else None
        return Sample(seq, label, grid, fq, self._model_sha, source, added, key, raw_t,
                      self.artifact.grid.to_dict()), True

    # -- heads --------------------------------------------------------------------------------
    def _head_files(self) -> list[tuple[int, str, Path]]:
        folder = self.root / "heads"
        out = []
        if folder.is_dir():
            for p in folder.iterdir():
                m = _HEAD_RE.match(p.name)
                if m:
                    out.append((int(m.group(1)), m.group(2), p))
        return sorted(out)

    def heads(self) -> list[HeadInfo]:
        """Every readable head for this artifact's model, oldest first (corrupt: problems)."""
        out = []
        for n, sha16, p in self._head_files():
            info = self._read_head_info(n, sha16, p)
            if info is not None:
                out.append(info)
        return out

    def _read_head_info(self, n: int, sha16: str, p: Path) -> HeadInfo | None:
        version = f"v{n:04d}"
        try:
            a = _read_verified(p, sha16)
            meta = json.loads(str(a["meta"]))
        except (HeadStoreError, KeyError, OSError, json.JSONDecodeError) as e:
            self._problem(f"head {version} ({p.name}) is unusable: {e}")
            return None
        if meta.get("model_sha256") != self._model_sha:
            return None  # another model's head (one store serves every model): not ours
        return HeadInfo(version, p, meta)

    def load_head(self, version: str) -> HeadWeights | None:
        """The head ``version`` (``"base"`` -> ``None``); :class:`HeadStoreError` if unusable."""
        if version == BASE:
            return None
        for n, sha16, p in self._head_files():
            if f"v{n:04d}" == version:
                if self._read_head_info(n, sha16, p) is None:
                    raise HeadStoreError(f"head {version} is corrupt or not for this model")
                a = _read_verified(p, sha16)
                try:
                    return HeadWeights(a["W"], a["b"], tuple(a["labels"].tolist()),
                                       version=version)
                except (KeyError, ModelError) as e:
                    raise HeadStoreError(f"head {version} is unusable: {e}") from None
        raise HeadStoreError(f"no head {version!r} in {self.root}; see 'ramanedge head list'")

    def _read_pointer_file(self) -> dict[str, Any] | None:
        """The checked content of ``active.json``: None when missing, ``{}`` when corrupt
        (reported), else ``{"by_model": {...}}`` (an old single-model pointer
        ``{"active": v}`` applies to this store's model)."""
        p = self.root / ACTIVE_FILE
        if not p.exists():
            return None
        try:
            if not p.is_file():  # a folder (or a device node) where the pointer belongs
                raise ValueError("not a regular file")
            d = json.loads(p.read_text(encoding="utf-8"))
            body = {k: v for k, v in d.items() if k != "sha256"}
            if sha256_bytes(json.dumps(body, sort_keys=True).encode()) != d.get("sha256"):
                raise ValueError("checksum mismatch")
            by_model = d["by_model"] if "by_model" in d else {self._model_sha: d["active"]}
            if not isinstance(by_model, dict):
                raise ValueError("'by_model' is not an object")
            for v in by_model.values():
                if v != BASE and not _VERSION_RE.match(str(v)):
                    raise ValueError(f"bad version {v!r}")
            return {"by_model": {str(k): str(v) for k, v in by_model.items()}}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            self._problem(f"{ACTIVE_FILE} is corrupt ({e}); using the newest good head")
            return {}

    def _read_active(self) -> str | None:
        """The version ``active.json`` names for this model (None: none; ``"corrupt"``)."""
        d = self._read_pointer_file()
        if d is None:
            return None
        if not d:
            return "corrupt"
        return d["by_model"].get(self._model_sha)

    def _write_active(self, version: str, reason: str) -> None:
        d = self._read_pointer_file() or {"by_model": {}}
        by_model = {**d["by_model"], self._model_sha: version}
        body = {"by_model": by_model, "model_sha256": self._model_sha, "active": version,
                "updated": _now(), "reason": reason}
        body["sha256"] = sha256_bytes(json.dumps(body, sort_keys=True).encode())
        atomic_write_bytes(self.root / ACTIVE_FILE,
                           (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())

    def active_version(self) -> str:
        """The version classification uses: the pointer's head if it is good, else the
        newest good head older than it (a corrupt pointer: the newest good head), else
        ``"base"``."""
        wanted = self._read_active()
        if wanted is None or wanted == BASE:
            return BASE
        good = [h.version for h in self.heads()]
        if wanted == "corrupt":
            return good[-1] if good else BASE
        if wanted in good:
            return wanted
        older = [v for v in good if _version_number(v) < _version_number(wanted)]
        fallback = older[-1] if older else BASE
        self._problem(f"active head {wanted} is missing or corrupt; using {fallback}")
        return fallback

    def active_head(self) -> HeadWeights | None:
        """The active retrained head, or ``None`` for the artifact's base head."""
        return self.load_head(self.active_version())

    def activate(self, version: str, *, reason: str = "rollback") -> str:
        """Make ``version`` (``"base"`` or a good head) the active head; returns it."""
        with self._writer_lock():
            if version != BASE:
                good = [h.version for h in self.heads()]
                if version not in good:
                    raise HeadStoreError(
                        f"cannot activate {version!r}: not a good head of this store; "
                        f"choose one of: {', '.join([BASE, *good])}")
            self._write_active(version, reason)
        return version

    def rollback(self, to: str | None = None) -> str:
        """Activate ``to``, or by default the good head before the active one (or base)."""
        if to is not None:
            return self.activate(to)
        current = self.active_version()
        if current == BASE:
            raise HeadStoreError("the base head is already active; nothing to roll back")
        older = [h.version for h in self.heads()
                 if _version_number(h.version) < _version_number(current)]
        return self.activate(older[-1] if older else BASE)

    def sample_features(self, labels: Sequence[str] | None = None) -> np.ndarray:
        """Dequantised features (M, D) of the good samples recorded with this artifact's model
        (optionally only those whose label is in ``labels``); the unknown-rule bank."""
        return self._features_in(self._index_now(), labels)

    def _features_in(self, index: _SampleIndex, labels: Sequence[str] | None) -> np.ndarray:
        """:meth:`sample_features` from an index already read (no lock taken here)."""
        keep = None if labels is None else set(labels)
        d = self.artifact.feature_dim
        entries = sorted(index.entries.values(), key=lambda e: e.seq)
        rows = [e.features_q for e in entries
                if e.model_sha256 == self._model_sha and (keep is None or e.label in keep)
                and len(e.features_q) == d]
        if not rows:
            return np.zeros((0, d), np.float32)
        codes = np.frombuffer(b"".join(rows), dtype=np.int8).reshape(len(rows), d)
        return dequantize_int8(codes, self.artifact.features_q)

    # -- training -----------------------------------------------------------------------------
    def _grid_for(self, s: Sample) -> np.ndarray | None:
        """A stored sample on this artifact's grid: its preprocessed spectrum when it was made
        on the same grid, else its raw spectrum preprocessed again (None, reported in
        :attr:`problems`, when it has no raw spectrum or the raw one does not overlap the grid).
        A raw spectrum covering part of the new grid is padded whatever its fraction: it was
        accepted when it was stored."""
        from ramanedge.grid import CoveragePolicy, preprocess

        same = (s.grid_spec == self.artifact.grid.to_dict() if s.grid_spec is not None
                else s.grid.size == self.artifact.grid.n_points)  # older samples: by size
        if same:
            return s.grid
        if s.raw is not None:
            try:
                return preprocess(s.raw[0], s.raw[1], self.artifact.grid,
                                  CoveragePolicy(mode="pad", min_fraction=0.0))
            except RamanEdgeError as e:
                self._problem(f"sample {s.id} not usable with this model's grid: {e}")
                return None
        self._problem(f"sample {s.id} was stored on another grid and has no raw spectrum; "
                      "not used")
        return None

    def training_set(self, features_fn: FeaturesFn | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Features (N, D) float32 and labels (N,) for retraining: exemplars + samples.

        Samples recorded with another model file get their features recomputed from their
        stored spectrum with ``features_fn(grid (M, P)) -> (M, D)`` (required then).
        Returns also counts ``{"exemplars", "samples", "recomputed"}``.
        """
        fq = self.artifact.features_q
        feats: list[np.ndarray] = []
        labels: list[str] = []
        counts = {"exemplars": 0, "samples": 0, "recomputed": 0}
        ex_path = self.artifact.exemplars_file
        if ex_path is not None:
            ex = load_exemplars(ex_path, fq, self.artifact.labels)
            feats.append(ex.features)
            labels.extend(ex.labels.tolist())
            counts["exemplars"] = int(ex.features.shape[0])
        samples = self.samples()
        stale = [s for s in samples if s.model_sha256 != self._model_sha]
        fresh = [s for s in samples if s.model_sha256 == self._model_sha]
        if fresh:
            feats.append(dequantize_int8(np.stack([s.features_q for s in fresh]), fq))
            labels.extend(s.label for s in fresh)
        if stale:
            if features_fn is None:
                raise HeadStoreError(f"{len(stale)} samples were stored with another model; "
                                     "their features must be recomputed (pass features_fn)")
            grids, used = [], []
            for s in stale:
                g = self._grid_for(s)
                if g is not None:
                    grids.append(g)
                    used.append(s)
            if grids:
                feats.append(np.asarray(features_fn(np.stack(grids)), dtype=np.float32))
                labels.extend(s.label for s in used)
            counts["recomputed"] = len(used)
        counts["samples"] = len(samples)
        if not feats:
            return (np.zeros((0, self.artifact.feature_dim), np.float32),
                    np.array([], dtype=str), counts)
        return np.concatenate(feats).astype(np.float32), np.array(labels), counts

    def retrain(self, *, features_fn: FeaturesFn | None = None,
                estimator: SoftmaxHead | None = None,
                check: Callable[[HeadWeights, np.ndarray], object] | None = None) -> HeadInfo:
        """Fit a new head on exemplars + every sample, store it, make it active.

        ``estimator``: an unfitted :class:`SoftmaxHead` to use (its ``prior`` is set to the
        artifact's base head); default parameters otherwise. ``check``: called with the new
        head and its unknown-rule bank (:meth:`sample_features` of its labels) before
        anything is written, to build the classifier that will answer with them; it runs
        inside the store's lock, so it must not call the store; a
        :class:`~ramanedge.errors.RamanEdgeError` it raises leaves the store as it was.
        Crash-safe: the head file is written (atomically) before ``active.json`` is switched.
        """
        with self._writer_lock():
            X, y, counts = self.training_set(features_fn)
            if counts["samples"] == 0:
                raise HeadStoreError(f"no labelled samples in {self.root}; add some with "
                                     "'ramanedge head add --model DIR --label NAME FILES'")
            est = estimator if estimator is not None else SoftmaxHead()
            est.set_params(prior=self.artifact.head)
            try:
                est.fit(X, y)
            except ValueError as e:
                raise HeadStoreError(f"retraining failed: {e}") from None
            files = self._head_files()
            n = (files[-1][0] + 1) if files else 1
            version = f"v{n:04d}"
            if check is not None:
                head = HeadWeights(est.W_, est.b_, tuple(est.classes_.tolist()), version=version)
                try:
                    check(head, self._features_in(self._sync_index(repair=True), head.labels))
                except RamanEdgeError as e:
                    raise HeadStoreError(f"head {version} not stored: the artifact cannot answer "
                                         f"with it ({e})") from None
            base_labels = set(self.artifact.labels)
            meta = {
                "version": version,
                "created": _now(),
                "model_sha256": self._model_sha,
                "labels": est.classes_.tolist(),
                "new_labels": [c for c in est.classes_.tolist() if c not in base_labels],
                "n_samples": counts["samples"],
                "n_exemplars": counts["exemplars"],
                "n_recomputed": counts["recomputed"],
                "train_accuracy": round(est.score(X, y), 6),
                "fit_seconds": round(est.fit_seconds_, 4),
                "n_iter": int(est.n_iter_),
                "converged": bool(est.converged_),
                "params": {k: v for k, v in est.get_params().items() if k != "prior"},
            }
            data = _npz_bytes(W=est.W_, b=est.b_, labels=np.array(meta["labels"]),
                              meta=np.array(json.dumps(meta, sort_keys=True)))
            path = self.root / "heads" / f"{version}-{sha256_bytes(data)[:16]}.npz"
            self.checkpoint("before-head-write")
            try:
                atomic_write_bytes(path, data)
                self.checkpoint("after-head-write")
                self._write_active(version, "retrain")
            except OSError as e:
                where = e.filename2 or e.filename  # a rename's target, else the file
                raise HeadStoreError(f"head store {self.root}: cannot store head {version}: "
                                     f"{e.strerror or e}"
                                     + (f" ({where})" if where else "")) from None
            self.checkpoint("after-activate")
        return HeadInfo(version, path, meta)

    def summary(self) -> dict[str, Any]:
        """JSON-ready overview: active version, heads, sample counts per label, problems."""
        samples = self.samples()
        per_label: dict[str, int] = {}
        for s in samples:
            per_label[s.label] = per_label.get(s.label, 0) + 1
        active = self.active_version()
        heads = [{
            "version": h.version,
            "active": h.version == active,
            "created": h.meta.get("created"),
            "n_classes": len(h.labels),
            "new_labels": h.meta.get("new_labels", []),
            "n_samples": h.meta.get("n_samples"),
            "train_accuracy": h.meta.get("train_accuracy"),
        } for h in self.heads()]
        return {"store": str(self.root), "active": active, "heads": heads,
                "samples": per_label, "n_samples": len(samples),
                "problems": list(self.problems)}


def add_spectra(store: HeadStore, classifier: SpectrumEncoder, label: str,
                paths: Sequence[str | os.PathLike]) -> Iterator[tuple[str, Sample | None, bool,
                                                                    str | None]]:
    """Read, preprocess and store each spectrum file of ``paths`` under ``label``.

    Yields ``(path, sample, created, error)`` per file (folders are expanded as by
    :func:`ramanedge.io.expand_paths`); a bad file (or a sample the store refuses) yields an
    error and the batch goes on; a store that cannot be written raises
    :class:`~ramanedge.errors.HeadStoreError` and ends it.
    ``classifier``: an :class:`edge_runtime.classify.Classifier` on the same artifact (any
    :class:`SpectrumEncoder`).
    """
    label = check_label(label)
    for path, err in expand_paths(paths):
        if err is not None:
            yield path, None, False, err
            continue
        try:
            s = read_spectrum(path)
            grid = classifier.preprocess(s.x, s.y)
            fq = classifier.features_int8(grid)
        except RamanEdgeError as e:
            yield path, None, False, str(e)
            continue
        except OSError as e:
            yield path, None, False, f"cannot read {path}: {e.strerror or e}"
            continue
        try:  # a refusal is this sample's; an OSError is the store's and ends the batch
            sample, created = store.add_sample(label, grid, fq, source=str(path),
                                               raw=(s.x, s.y))
        except RamanEdgeError as e:
            yield path, None, False, str(e)
            continue
        except OSError as e:
            raise HeadStoreError(f"head store {store.root}: cannot store a sample: "
                                 f"{e.strerror or e}"
                                 + (f" ({e.filename})" if e.filename else "")) from None
        yield path, sample, created, None
        store.checkpoint("after-sample")
