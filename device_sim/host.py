"""The ground side of the link: a client with retries, exactly-once answers and byte accounting.

:class:`HostClient` sends one request at a time and waits for its answer. When the answer
does not come (request or response damaged, device restarting) it resends the request with
the **same** ``seq``; the device answers a repeated ``seq`` from its response cache, so an
answer is never computed or counted twice, and the host keeps only the first answer for a
``seq`` (late duplicates of an earlier ``seq`` are discarded). Every byte written and read
is counted per exchange so wire time can be computed from bytes actually sent.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_sim import protocol as P
from device_sim.transport import Link
from device_sim.uplink import artifact_files
from ramanedge.errors import LinkError, SpectrumError
from ramanedge.manifest import read_manifest


class DeviceError(LinkError):
    """The device answered a request with an ERROR frame (not a line error)."""

    def __init__(self, code: int, reason: str, msg_type: int) -> None:
        try:
            name = P.ErrorCode(code).name
        except ValueError:
            name = str(code)
        try:
            req = P.MsgType(msg_type).name
        except ValueError:
            req = f"0x{msg_type:02x}"
        super().__init__(f"device refused {req}: {name}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class HostConfig:
    """Client settings.

    ``timeout``: seconds to wait for an answer after a request has been sent, on top of the
    line time of the expected answer (``None`` = 0.2 s + 3 x the slowest reply seen, a
    reply being the time from the end of sending to the answer);
    ``max_attempts``: attempts per request before :class:`LinkError`; ``deadline``: total
    seconds per request (covers a device reboot); ``resend_grace``: after a damaged incoming
    frame, wait this long for a good answer before resending.
    """

    timeout: float | None = None
    max_attempts: int = 50
    deadline: float = 60.0
    resend_grace: float = 0.02


@dataclass
class Exchange:
    """One request/answer: the answer frame plus what it cost on the line."""

    response: P.Frame
    seq: int
    attempts: int
    bytes_out: int
    bytes_in: int
    latency_s: float
    send_s: float
    baud: int | None

    @property
    def wire_s(self) -> float:
        """Line time of every byte of this exchange, both directions (10 bits/byte, 8N1)."""
        return (self.bytes_out + self.bytes_in) * 10.0 / self.baud if self.baud else 0.0


@dataclass
class HostStats:
    """Counters over the client's life."""

    requests: int = 0
    attempts: int = 0
    resends: int = 0
    timeouts: int = 0
    damaged_in: int = 0
    stale_discarded: int = 0
    line_errors_from_device: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


def session_first_seq() -> int:
    """A random first ``seq`` for a new session with a device that may have served others
    (each ``ramanedge sim`` command): the device caches answers by seq and request bytes for
    retries, so a session that numbered from 1 again could be answered from an earlier
    session's cache (docs/protocol.md section 2). Never :data:`~device_sim.protocol.NO_SEQ`."""
    return int.from_bytes(os.urandom(2), "little") % P.NO_SEQ


def _spectrum(y: np.ndarray, x: np.ndarray | None) -> bytes:
    """A spectrum's request encoding (on the model grid when ``x`` is None); a spectrum no
    request can carry (NaN, under 2 points, ...) is the data's fault, not the link's:
    :class:`SpectrumError`, raised before any byte is sent."""
    try:
        return P.encode_spectrum_grid(y) if x is None else P.encode_spectrum_axis(x, y)
    except LinkError as e:
        raise SpectrumError(str(e)) from None


def _fits(payload: bytes, y: np.ndarray) -> bytes:
    """``payload`` if one frame carries it, else :class:`SpectrumError` naming the limit."""
    if len(payload) > P.MAX_PAYLOAD:
        n = np.asarray(y).size
        raise SpectrumError(f"{n} points make a {len(payload)}-byte request; one frame carries "
                            f"at most {P.MAX_PAYLOAD} bytes (about {(P.MAX_PAYLOAD - 24) // 4} "
                            "points on their own axis): classify it with 'ramanedge classify' "
                            "on the ground or resample it coarser")
    return payload


class HostClient:
    """Request/answer client over a :class:`~device_sim.transport.Link`.

    ``on_sent(seq, attempt)`` is called after each attempt has been written (the replay
    uses it to kill the device mid-exchange for the restart fault). ``first_seq``: the seq
    of the first request; a session with a device that served other sessions should start
    at :func:`session_first_seq`.
    """

    def __init__(self, link: Link, config: HostConfig | None = None, *, first_seq: int = 1,
                 on_sent: Callable[[int, int], None] | None = None) -> None:
        self.link = link
        self.config = config or HostConfig()
        self.seq = first_seq & 0xFFFF
        self.stats = HostStats()
        self.on_sent = on_sent
        self._slowest = 0.05  # slowest recent reply (end of send -> answer), seconds

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        if self.seq == P.NO_SEQ:
            self.seq = 0
        return seq

    def _attempt_timeout(self, expect_bytes: int, extra: float) -> float:
        base = self.config.timeout if self.config.timeout is not None else (
            0.2 + 3.0 * self._slowest)
        return base + 1.5 * self.link.wire_seconds(expect_bytes) + extra

    def request(self, msg_type: int, payload: bytes = b"", *, expect_bytes: int = 64,
                extra_timeout: float = 0.0) -> Exchange:
        """Send one request and return its answer (a response or a non-line ERROR).

        Resends the same ``seq`` on timeout, on a retryable ERROR and when a damaged frame
        arrives without a good answer following. Raises :class:`LinkError` after
        ``max_attempts`` or ``deadline``; ERROR answers are returned (see :meth:`call`).
        """
        seq = self._next_seq()
        frame = P.encode_frame(msg_type, seq, payload)
        want = P.response_type(msg_type)
        self.stats.requests += 1
        out0, in0 = self.link.bytes_out, self.link.bytes_in
        t_start = time.perf_counter()
        # a request that legitimately takes longer (a commit validates the whole model) gets
        # its extra time on the deadline too, or the deadline would cut its first attempt
        deadline = t_start + self.config.deadline + extra_timeout
        send_s = 0.0
        attempt = 0
        while True:
            attempt += 1
            now = time.perf_counter()
            if attempt > self.config.max_attempts or now > deadline:
                raise LinkError(f"no answer to {P.MsgType(msg_type).name} seq {seq} after "
                                f"{attempt - 1} attempts ({now - t_start:.1f} s)")
            if attempt > 1:
                self.stats.resends += 1
            self.stats.attempts += 1
            ts = time.perf_counter()
            self.link.send_encoded(frame)
            send_s += time.perf_counter() - ts
            if self.on_sent is not None:
                self.on_sent(seq, attempt)
            t_sent = time.perf_counter()
            wait_until = t_sent + self._attempt_timeout(expect_bytes, extra_timeout)
            answer: P.Frame | None = None
            resend = False
            while answer is None and not resend:
                left = min(wait_until, deadline) - time.perf_counter()
                if left <= 0:
                    self.stats.timeouts += 1
                    break
                for ev in self.link.receive(left):
                    if isinstance(ev, P.FrameError):
                        self.stats.damaged_in += 1
                        # a damaged answer may be ours: resend soon unless a good one follows
                        wait_until = min(wait_until, time.perf_counter() + self.config.resend_grace
                                         + self.link.wire_seconds(expect_bytes))
                        continue
                    if ev.type == P.MsgType.ERROR:
                        code, reason = P.decode_error(ev.payload)
                        try:
                            retry = P.ErrorCode(code).retryable
                        except ValueError:
                            retry = False
                        if retry:
                            # a line error seen by the device: with one request in flight it
                            # is ours whatever seq it carries (the seq may be damaged too)
                            self.stats.line_errors_from_device += 1
                            resend = True
                            break
                        if ev.seq == seq:
                            answer = ev
                            break
                        self.stats.stale_discarded += 1
                        continue
                    if ev.seq == seq and ev.type == want:
                        answer = ev
                        break
                    self.stats.stale_discarded += 1
            if answer is not None:
                latency = time.perf_counter() - t_start
                if answer.type != P.MsgType.ERROR and not extra_timeout:
                    reply = time.perf_counter() - t_sent
                    self._slowest = max(0.9 * self._slowest, min(reply, 10.0))
                if answer.type == P.MsgType.ERROR:
                    code = P.decode_error(answer.payload)[0]
                    key = str(code)
                    self.stats.by_code[key] = self.stats.by_code.get(key, 0) + 1
                return Exchange(answer, seq, attempt, self.link.bytes_out - out0,
                                self.link.bytes_in - in0, latency, send_s, self.link.baud)

    def call(self, msg_type: int, payload: bytes = b"", **kw: Any) -> Exchange:
        """:meth:`request`, raising :class:`DeviceError` for an ERROR answer."""
        ex = self.request(msg_type, payload, **kw)
        if ex.response.type == P.MsgType.ERROR:
            code, reason = P.decode_error(ex.response.payload)
            raise DeviceError(code, reason, msg_type)
        return ex

    # -- messages ---------------------------------------------------------------------------

    def ping(self, payload: bytes = b"ping") -> float:
        """Round-trip time of a PING (seconds); checks the echo."""
        ex = self.call(P.MsgType.PING, payload, expect_bytes=len(payload) + 16)
        if ex.response.payload != payload:
            raise LinkError("PONG payload differs from the PING payload")
        return ex.latency_s

    def wait_ready(self, timeout: float = 60.0, *,
                   alive: Callable[[], bool] | None = None) -> dict[str, Any]:
        """PING until the device answers (it may still be booting), then return INFO.

        ``alive``: for a device this process started, a check run about once a second; a
        device that is gone ends the wait at once (:class:`LinkError`) instead of at
        ``timeout``."""
        t_end = time.perf_counter() + timeout
        last: Exception | None = None
        saved = self.config
        while True:
            left = t_end - time.perf_counter()
            self.config = HostConfig(timeout=0.3, max_attempts=10**6,
                                     deadline=max(0.5, left if alive is None else min(left, 1.0)),
                                     resend_grace=saved.resend_grace)
            try:
                self.ping()
                last = None
            except LinkError as e:
                last = e
            finally:
                self.config = saved
            if last is None or alive is None or time.perf_counter() >= t_end:
                break  # without ``alive``: one ping with the whole timeout, as before
            if not alive():
                raise LinkError("the device process exited before it answered")
        if last is not None:
            raise LinkError(f"device did not answer within {timeout:.0f} s: {last}")
        return self.info()

    def info(self) -> dict[str, Any]:
        """The device's INFO (model, labels hash, memory, CPU limits, counters)."""
        ex = self.call(P.MsgType.INFO, expect_bytes=1024)
        return P.decode_json(ex.response.payload)

    def classify(self, y: np.ndarray, x: np.ndarray | None = None, *, top_k: int = 3,
                 want_set: bool = False) -> tuple[P.Result, Exchange]:
        """Classify one spectrum: raw (``x`` given: own axis, 4 bytes/point) or on the
        1392-point model grid (``x`` None: grid id + 2 bytes/point). ``want_set``: ask for
        the prediction set too (``Result.set``; ``None`` from a device or model without
        sets, or when the set does not fit one frame)."""
        payload = P.encode_classify(_spectrum(y, x), top_k, want_set=want_set)
        ex = self.call(P.MsgType.CLASSIFY, _fits(payload, y),
                       expect_bytes=24 + 40 * top_k + (2048 if want_set else 0))
        return P.decode_result(ex.response.payload), ex

    def head_add(self, label: str, y: np.ndarray, x: np.ndarray | None = None
                 ) -> dict[str, Any]:
        """Send one labelled example for onboard learning (HEAD_ADD)."""
        ex = self.call(P.MsgType.HEAD_ADD, _fits(P.encode_head_add(label, _spectrum(y, x)), y),
                       expect_bytes=256)
        return P.decode_json(ex.response.payload)

    def head_retrain(self, **options: Any) -> dict[str, Any]:
        """Retrain the onboard head on the examples sent (HEAD_RETRAIN)."""
        ex = self.call(P.MsgType.HEAD_RETRAIN, P.encode_json(options), expect_bytes=256,
                       extra_timeout=120.0)
        return P.decode_json(ex.response.payload)

    def rollback(self) -> dict[str, Any]:
        """Make the device's previous model current again (ROLLBACK)."""
        ex = self.call(P.MsgType.ROLLBACK, expect_bytes=512, extra_timeout=30.0)
        return P.decode_json(ex.response.payload)

    def _commit_outcome(self, want: str, cause: LinkError) -> dict[str, Any]:
        """The commit's answer was lost: ask the device what it serves now (it answers
        requests in order, so the first INFO answer comes after the commit finished)."""
        try:
            now = self.info()
        except DeviceError:
            raise
        except LinkError:
            raise LinkError(f"{cause}; the device did not answer INFO either, so whether the "
                            "new model is active is unknown (ask again with 'sim info')"
                            ) from None
        if now.get("model_sha256") == want:
            return {**{k: now.get(k) for k in P.MODEL_INFO_KEYS}, "recovered": True}
        raise LinkError(f"{cause}; the device still serves {now.get('model')} "
                        f"({str(now.get('model_sha256'))[:12]}): the upload was not activated")

    def upload_model(self, folder: str | Path, *, chunk_size: int = P.CHUNK_SIZE,
                     progress: Callable[[int, int], None] | None = None,
                     corrupt: Callable[[str, int, bytes], bytes] | None = None,
                     commit: bool = True, rounds: int = 3, compress: bool = True
                     ) -> dict[str, Any]:
        """Flash a local artifact folder: MODEL_BEGIN, the missing MODEL_CHUNKs, MODEL_COMMIT.

        The artifact is verified locally first. MODEL_BEGIN answers with the byte ranges the
        device still lacks: nothing of a file it already holds (same sha256: a head-only
        update sends the head, exemplars and manifest only), and after a cut link or a device
        restart only what it had not stored (the same flash resumes); with ``compress`` (and a
        device that lists ``zlib`` in its INFO ``uplink``) a file travels zlib-compressed
        when that saves 5 %. Each chunk is acknowledged (and resent on loss). When the link
        fails mid-transfer, the :class:`LinkError` says how far it got and that running the
        same flash resumes.
        ``corrupt(name, offset, data)`` lets tests damage the data *inside* valid frames
        (the device must then reject the commit). Returns the COMMIT answer (model, slot,
        tag) with ``sent_bytes`` (payload bytes sent by this call), ``file_bytes``,
        ``wire_bytes`` (what had to travel: the files the device did not hold, as they
        travel), ``held`` and ``resumed``; the BEGIN answer
        when ``commit=False``.

        Flashing the model the device already serves sends nothing (the answer has
        ``"unchanged": true``). When the commit's answer is lost, the device is asked what
        it serves: the new model (``"recovered": true``) or an error saying it was not
        activated; the commit itself is idempotent on the device.
        """
        folder = Path(folder)
        files = artifact_files(folder)
        want = str(read_manifest(folder, verify_files=False).data.get("manifest_sha256", ""))
        now = self.info()
        if commit and now.get("model_sha256") == want:  # re-flashing what is current: a no-op
            return {**{k: now.get(k) for k in P.MODEL_INFO_KEYS}, "unchanged": True}
        data = {m["name"]: (folder / m["name"]).read_bytes() for m in files}
        if compress and "zlib" in now.get("uplink", ()):
            for m in files:  # on the wire as zlib where it pays (int8 weights: ~13 %)
                z = zlib.compress(data[m["name"]], 9)
                if len(z) < 0.95 * m["bytes"]:
                    m["zlib"], data[m["name"]] = len(z), z
        file_bytes = sum(m["bytes"] for m in files)
        chunk_size = max(1, min(int(chunk_size), P.MAX_PAYLOAD - 9))
        sent, resumed, held = 0, False, []
        for _round in range(max(1, rounds)):
            begin = P.decode_json(self.call(P.MsgType.MODEL_BEGIN,
                                            P.encode_json({"files": files}),
                                            expect_bytes=8192, extra_timeout=5.0
                                            ).response.payload)
            uid = int(begin["upload_id"])
            resumed = resumed or bool(begin.get("resumed"))
            held = list(begin.get("held", held))
            gaps = begin.get("missing")
            if gaps is None:  # a device that does not report gaps: send everything
                gaps = [[fi, 0, len(data[m["name"]])] for fi, m in enumerate(files)]
            # what has to reach the device over the link: every file it does not hold
            total = sum(len(data[m["name"]]) for m in files if m["name"] not in held)
            have = total - sum(hi - lo for _fi, lo, hi in gaps)
            try:
                for fi, lo, hi in gaps:
                    name = files[fi]["name"]
                    for off in range(lo, hi, chunk_size):
                        piece = data[name][off:min(off + chunk_size, hi)]
                        if corrupt is not None:
                            piece = corrupt(name, off, piece)
                        self.call(P.MsgType.MODEL_CHUNK, P.encode_chunk(uid, fi, off, piece),
                                  expect_bytes=16)
                        sent += len(piece)
                        have += len(piece)
                        if progress is not None:
                            progress(have, total)
                if not commit:
                    return begin
                try:
                    ex = self.call(P.MsgType.MODEL_COMMIT, P.encode_json({"upload_id": uid}),
                                   expect_bytes=512, extra_timeout=60.0)
                except DeviceError:
                    raise
                except LinkError as e:
                    out = self._commit_outcome(want, e)
                else:
                    out = P.decode_json(ex.response.payload)
                return {**out, "sent_bytes": sent, "file_bytes": file_bytes,
                        "wire_bytes": total, "held": held, "resumed": resumed}
            except DeviceError as e:
                lost = "no upload" in e.reason or "upload incomplete" in e.reason
                if e.code == P.ErrorCode.UPLOAD and lost:
                    continue  # the device restarted (or missed bytes): ask for the gaps again
                raise
            except LinkError as e:
                raise LinkError(f"uplink interrupted with {have} of {total} bytes on the "
                                f"device ({e}); the device keeps what it received: run the "
                                "same flash again to resume") from None
        raise LinkError(f"model upload still incomplete after {rounds} rounds")
