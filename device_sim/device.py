"""The rover-computer side of the link: a server answering framed requests on a serial port.

:class:`Device` reads frames from a :class:`~device_sim.transport.Link`, answers each
request with one response frame (or an ERROR frame) and never dies on bad input: every
exception while handling a request becomes an ERROR answer, every damaged frame is answered
with a retryable ERROR (bad CRC) or dropped (noise), and the loop goes on.

Exactly-once semantics: the host resends a request with the *same* ``seq`` when it gets no
answer. The device keeps the last :attr:`DeviceConfig.cache_size` responses by ``seq``
(together with a digest of the request), so a retried CLASSIFY is answered from the cache,
byte for byte the same, and is neither recomputed nor counted twice. A new host session
may reuse seqs of an earlier one (docs/protocol.md section 2), so a cached answer must never
outlive what it was computed from: a request that may change the device's state (anything
but PING, INFO and CLASSIFY) drops the cached answers of read-only requests, and INFO
(uptime, counters) is never cached. The answers of state-changing requests stay cached,
so that a late duplicate of one is still never executed twice.

The model comes from a :class:`~device_sim.uplink.ModelStore` (slots + atomic pointer),
opened with :func:`open_store`, and is run by a :class:`~device_sim.backend.Backend`
(:class:`~device_sim.backend.EdgeBackend` is the real one, ``edge_runtime``). The process's
own resources (CPU pinning, malloc tuning, RSS) are :mod:`device_sim.proc`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from device_sim import protocol as P
from device_sim.backend import Backend, Loader, edge_loader, validate_artifact
from device_sim.proc import apply_cpu_limit, rss_bytes, tune_malloc
from device_sim.transport import FaultConfig, Link, open_port
from device_sim.uplink import HEADSTORE, UPLINK_FEATURES, ModelStore, UploadError
from ramanedge.errors import (
    HeadStoreError,
    LinkError,
    ManifestError,
    ModelError,
    RamanEdgeError,
    SpectrumError,
)
from ramanedge.grid import CoveragePolicy
from ramanedge.hashing import blake2b


@dataclass(frozen=True)
class DeviceConfig:
    """Device settings.

    ``threads``: interpreter threads; ``cpus``: pin the process to this many cores
    (``os.sched_setaffinity``; ``None`` = no pinning); ``baud``: the line rate (``None`` =
    unpaced); ``pace``: pace the device's own writes to ``baud`` in software (a pty never
    throttles; a real UART does it in hardware); ``faults``: damage the device's outgoing frames;
    ``cache_size``: responses kept by seq for retries; ``top_k_max``: largest top-k
    answered; ``poll_seconds``: read timeout of the serve loop; ``coverage``: the policy
    for spectra covering part of the model grid (default: pad, refuse below half).
    """

    threads: int = 1
    cpus: int | None = None
    baud: int | None = None
    pace: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)
    cache_size: int = 64
    top_k_max: int = 10
    poll_seconds: float = 0.05
    edgetpu: bool = False
    coverage: CoveragePolicy = field(default_factory=CoveragePolicy)


def open_store(root: str | os.PathLike, loader: Loader, *,
               factory: str | os.PathLike | None = None, lock: bool = False) -> ModelStore:
    """Open (create) the device's model store, validating every candidate model with
    ``loader``: :func:`~device_sim.backend.validate_artifact` loads it and classifies one
    spectrum before it may become active, and the store hands that backend over to the
    :class:`Device` (:meth:`~device_sim.uplink.ModelStore.take_loaded`), which serves it.
    ``factory`` and ``lock`` as :meth:`ModelStore.open`."""
    headstore = Path(root) / HEADSTORE

    def validate(folder: Path) -> Backend:
        return validate_artifact(loader, folder, headstore)

    return ModelStore.open(root, factory=factory, lock=lock, validate=validate)


class Device:
    """Serve one link. Build with a :class:`Link`, a store from :func:`open_store` and the
    same loader.

    ``loader(folder, headstore) -> Backend`` builds the model runtime for an artifact folder
    (``headstore``: the store's :attr:`~device_sim.uplink.ModelStore.headstore_dir`). A model
    installed, uplinked or rolled back to is loaded (and one spectrum classified) by the
    store's validation before it may become active, and the device then serves that very
    backend: one load per model; the old backend serves until the pointer moves. The loader
    itself builds only the model a store already had at boot.
    """

    def __init__(self, link: Link, store: ModelStore, loader: Loader,
                 config: DeviceConfig | None = None, *, affinity: list[int] | None = None
                 ) -> None:
        if not store.validates:
            raise ModelError(f"model store {store.root} does not validate its models; open "
                             "it with device_sim.device.open_store")
        self.link = link
        self.store = store
        self.loader = loader
        self.config = config or DeviceConfig()
        self.affinity = affinity if affinity is not None else apply_cpu_limit(None)
        self.slot: str | None = None  # the slot self.backend was loaded from
        self.backend: Backend
        self._serve_current()
        # seq -> (digest of the request, answer frame, request type)
        self.cache: OrderedDict[int, tuple[bytes, bytes, int]] = OrderedDict()
        self.boot_id = int.from_bytes(os.urandom(4), "little")
        self.started = time.time()
        self.stats: dict[str, int] = {
            "requests": 0, "classify_computed": 0, "cache_replays": 0, "errors_sent": 0,
            "bad_crc": 0, "garbage": 0, "ignored": 0, "uploads_committed": 0,
            "uploads_rejected": 0, "rollbacks": 0, "internal_errors": 0}
        self._stop = threading.Event()

    # -- model lifecycle --------------------------------------------------------------------

    def _serve_current(self) -> None:
        """Serve the store's current slot (at boot, after a commit or a rollback): the
        backend the store's validation loaded for it (a factory install, an uplink, a
        rollback), else the one already serving when the slot did not change (an artifact
        identical to the current one, a resent commit), else a fresh load (a boot on a
        store that already had its model)."""
        slot = self.store.current
        loaded = self.store.take_loaded(slot)
        if loaded is not None:
            loaded.relocate(self.store.current_dir())
            self.backend = loaded
        elif slot != self.slot:
            self.backend = self.loader(self.store.current_dir(), self.store.headstore_dir)
        self.slot = slot

    # -- serving ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`serve` to return after the current poll."""
        self._stop.set()

    def serve(self, *, max_seconds: float | None = None) -> None:
        """Answer requests until :meth:`stop`, ``max_seconds``, or the port goes away."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                self.poll(self.config.poll_seconds)
            except (OSError, LinkError) as e:
                print(f"device: link closed ({e})", file=sys.stderr)
                break
            except Exception as e:  # noqa: BLE001 - serial backends raise their own types
                if type(e).__name__ == "SerialException":
                    print(f"device: link closed ({e})", file=sys.stderr)
                    break
                raise

    def poll(self, timeout: float = 0.05) -> int:
        """Read for up to ``timeout`` seconds and answer what arrived; returns events handled."""
        events = self.link.receive(timeout)
        for ev in events:
            self.handle(ev)
        return len(events)

    def _send(self, msg_type: int, seq: int, payload: bytes) -> bytes:
        frame = P.encode_frame(msg_type, seq, payload)
        self.link.send_encoded(frame)
        return frame

    def _send_error(self, seq: int, code: int, reason: str) -> bytes:
        self.stats["errors_sent"] += 1
        return self._send(P.MsgType.ERROR, seq, P.encode_error(code, reason))

    def handle(self, ev: P.Frame | P.FrameError) -> None:
        """Answer one decoded frame or frame error (never raises for bad input)."""
        if isinstance(ev, P.FrameError):
            if ev.code in (P.ErrorCode.GARBAGE, P.ErrorCode.TRUNCATED):
                self.stats["garbage"] += 1  # noise: resynchronise silently
                return
            if ev.code == P.ErrorCode.BAD_CRC:
                self.stats["bad_crc"] += 1
            if ev.type is not None and ev.type & P.RESPONSE_BIT and ev.code != P.ErrorCode.BAD_CRC:
                self.stats["ignored"] += 1
                return
            self._send_error(P.NO_SEQ if ev.seq is None else ev.seq, ev.code, ev.reason)
            return
        if ev.is_response:
            self.stats["ignored"] += 1  # never answer a response (no ping-pong on loop://)
            return
        self.stats["requests"] += 1
        digest = blake2b(bytes([ev.type]) + ev.payload, digest_size=8).digest()
        cached = self.cache.get(ev.seq)
        if cached is not None and cached[0] == digest:
            self.stats["cache_replays"] += 1
            self.cache.move_to_end(ev.seq)
            self.link.send_encoded(cached[1])
            return
        t0 = time.perf_counter()
        try:
            rtype, payload = self.dispatch(ev, t0)
        except UploadError as e:
            self.stats["uploads_rejected"] += 1
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.UPLOAD, str(e))
        except SpectrumError as e:
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.SPECTRUM, str(e))
        except HeadStoreError as e:
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.HEAD, str(e))
        except LinkError as e:
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.BAD_PAYLOAD, str(e))
        except (ModelError, ManifestError) as e:
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.NO_MODEL, str(e))
        except RamanEdgeError as e:
            rtype, payload = P.MsgType.ERROR, P.encode_error(P.ErrorCode.BAD_PAYLOAD, str(e))
        except Exception as e:  # noqa: BLE001 - the device never dies on a request
            self.stats["internal_errors"] += 1
            print(f"device: internal error on {ev.type_name()} seq {ev.seq}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            rtype, payload = P.MsgType.ERROR, P.encode_error(
                P.ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")
        try:
            frame = P.encode_frame(rtype, ev.seq, payload)
        except LinkError as e:  # an answer too large for one frame: a device bug, not fatal
            self.stats["internal_errors"] += 1
            rtype = P.MsgType.ERROR
            frame = P.encode_frame(rtype, ev.seq, P.encode_error(P.ErrorCode.INTERNAL, str(e)))
        if rtype == P.MsgType.ERROR:
            self.stats["errors_sent"] += 1
        self.link.send_encoded(frame)
        self._remember(ev.seq, ev.type, digest, frame)

    def _remember(self, seq: int, msg_type: int, digest: bytes, frame: bytes) -> None:
        """Cache the answer ``frame`` of request ``seq`` for its retries (see the module
        docstring): after a request that may change the state, the read-only requests'
        answers go (a new session reusing their seqs must get fresh ones); INFO is never
        kept."""
        if msg_type not in P.READ_ONLY_REQUESTS:
            for s in [s for s, c in self.cache.items() if c[2] in P.READ_ONLY_REQUESTS]:
                del self.cache[s]
        if msg_type == P.MsgType.INFO:
            self.cache.pop(seq, None)
            return
        self.cache[seq] = (digest, frame, msg_type)
        self.cache.move_to_end(seq)
        while len(self.cache) > self.config.cache_size:
            self.cache.popitem(last=False)

    def dispatch(self, frame: P.Frame, t0: float) -> tuple[int, bytes]:
        """Compute the response ``(type, payload)`` of one request (may raise).

        A storage failure (full disk, I/O error) while uploading discards the upload (its
        staging files would keep the disk full) and is answered UPLOAD; while storing a
        sample or a head it is answered HEAD. Nothing acknowledged before is touched.
        """
        try:
            return self._dispatch(frame, t0)
        except OSError as e:
            why = f"storage error on the device ({e.strerror or e})"
            if frame.type in (P.MsgType.MODEL_BEGIN, P.MsgType.MODEL_CHUNK,
                              P.MsgType.MODEL_COMMIT, P.MsgType.ROLLBACK):
                self.store.abort_upload()
                raise UploadError(f"{why}; the upload was discarded, the current model "
                                  "still serves") from None
            if frame.type in (P.MsgType.HEAD_ADD, P.MsgType.HEAD_RETRAIN):
                raise HeadStoreError(f"{why}; nothing was stored") from None
            raise

    def _dispatch(self, frame: P.Frame, t0: float) -> tuple[int, bytes]:
        t = frame.type
        if t == P.MsgType.PING:
            return P.MsgType.PONG, frame.payload
        if t == P.MsgType.CLASSIFY:
            top_k, spec = P.decode_classify(frame.payload)
            top_k = min(top_k, self.config.top_k_max)
            c = self.backend.classify(spec.axis(), spec.y, top_k)
            self.stats["classify_computed"] += 1
            compute_us = int((time.perf_counter() - t0) * 1e6)
            want_set = bool(P.classify_flags(frame.payload) & P.CLASSIFY_WANT_SET)
            result = P.Result(c.top, c.unknown, compute_us, c.infer_us,
                              P.model_tag(self.backend.manifest_sha256),
                              coverage=c.coverage, set=c.set if want_set else None)
            try:
                payload = P.encode_result(result)
            except LinkError:  # a set too large for one frame: the answer without it
                payload = P.encode_result(replace(result, set=None))
            if len(payload) > P.MAX_PAYLOAD:
                payload = P.encode_result(replace(result, set=None))
            return P.MsgType.RESULT, payload
        if t == P.MsgType.INFO:
            return P.MsgType.INFO_REPLY, P.encode_json(self.info())
        if t == P.MsgType.HEAD_ADD:
            label, spec = P.decode_head_add(frame.payload)
            out = self.backend.head_add(label, spec.axis(), spec.y)
            return P.MsgType.HEAD_ADD_ACK, P.encode_json(out)
        if t == P.MsgType.HEAD_RETRAIN:
            opts = P.decode_json(frame.payload)
            if not isinstance(opts, dict):
                raise LinkError("HEAD_RETRAIN payload must be a JSON object")
            out = self.backend.head_retrain(opts)
            return P.MsgType.HEAD_RETRAIN_ACK, P.encode_json(out)
        if t == P.MsgType.MODEL_BEGIN:
            req = P.decode_json(frame.payload)
            if not isinstance(req, dict):
                raise LinkError("MODEL_BEGIN payload must be a JSON object")
            up = self.store.begin_upload(req.get("files"))
            return P.MsgType.MODEL_BEGIN_ACK, P.encode_json(
                {"upload_id": up.upload_id, "chunk_max": P.MAX_PAYLOAD - 9,
                 "missing": up.missing(), "held": up.held, "resumed": up.resumed,
                 "received": sum(r.total for r in up.received)})
        if t == P.MsgType.MODEL_CHUNK:
            uid, fi, off, data = P.decode_chunk(frame.payload)
            n = self.store.get_upload(uid).write_chunk(fi, off, data)
            return P.MsgType.MODEL_CHUNK_ACK, n.to_bytes(4, "little")
        if t == P.MsgType.MODEL_COMMIT:
            req = P.decode_json(frame.payload)
            if not isinstance(req, dict) or not isinstance(req.get("upload_id"), int):
                raise LinkError("MODEL_COMMIT payload must be {\"upload_id\": N}")
            self.store.commit_upload(int(req["upload_id"]))
            self._serve_current()
            self.stats["uploads_committed"] += 1
            return P.MsgType.MODEL_COMMIT_ACK, P.encode_json(self._model_info())
        if t == P.MsgType.ROLLBACK:
            self.store.rollback()
            self._serve_current()
            self.stats["rollbacks"] += 1
            return P.MsgType.ROLLBACK_ACK, P.encode_json(self._model_info())
        raise LinkError(f"{frame.type_name()} is not a request")

    def _model_info(self) -> dict[str, Any]:
        b = self.backend
        values = (b.name, b.manifest_sha256, P.model_tag(b.manifest_sha256),
                  self.store.current, self.store.previous, P.labels_hash(b.labels),
                  len(b.labels), b.head_version)
        return dict(zip(P.MODEL_INFO_KEYS, values, strict=True))

    def info(self) -> dict[str, Any]:
        """INFO reply: model, labels hash, memory in use, CPU limits, counters."""
        cur, peak = rss_bytes()
        return {**self._model_info(), "protocol": P.PROTOCOL_VERSION,
                "max_payload": P.MAX_PAYLOAD, "uplink": list(UPLINK_FEATURES),
                "rss_bytes": cur, "peak_rss_bytes": peak,
                "pid": os.getpid(), "boot_id": self.boot_id,
                "uptime_s": round(time.time() - self.started, 3),
                "threads": self.config.threads, "cpus": self.affinity,
                "baud": self.config.baud, "faults": self.config.faults.to_spec(),
                "link": {"bytes_in": self.link.bytes_in, "bytes_out": self.link.bytes_out},
                "faults_injected": dict(self.link.faults.stats), "stats": dict(self.stats)}


# --------------------------------------------------------------------------------------------
# process entry point
# --------------------------------------------------------------------------------------------


def run_device(port: str, model: str | os.PathLike | None, *, store: str | os.PathLike | None,
               config: DeviceConfig, announce: Callable[[str], None] | None = None,
               loader: Loader | None = None,
               seed_offset: int = 1) -> dict[str, int]:
    """Open ``port`` (a path or pyserial URL; :data:`~device_sim.transport.PTY_URL` makes a
    pty pair, serves its master end and announces the slave's path), open the model store
    (``store`` or a temporary folder) with ``model`` as factory image, and serve until
    SIGTERM/SIGINT or the port closes. Returns the final counters.
    """
    import tempfile

    affinity = apply_cpu_limit(config.cpus)
    tune_malloc()
    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ramanedge-device-")
        store = tmp.name
    loader = loader or edge_loader(config.threads, config.edgetpu, config.coverage)
    ms = open_store(store, loader, factory=model, lock=True)
    ser = open_port(port, baud=config.baud or 115200, timeout=config.poll_seconds)
    where = getattr(ser, "slave_path", None) or port  # a pty pair: where the far end opens
    link = Link(ser, baud=config.baud, faults=config.faults, seed_offset=seed_offset,
                pace=config.pace)
    dev = Device(link, ms, loader, config, affinity=affinity)

    def _term(signum: int, frame: object) -> None:
        dev.stop()

    old = {s: signal.signal(s, _term) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if announce is not None:
            announce(f"device: serving {dev.backend.name} on {where} "
                     f"(pid {os.getpid()}, cpus {affinity}, threads {config.threads})")
        dev.serve()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        link.close()
        if tmp is not None:
            tmp.cleanup()
    return dict(dev.stats)
