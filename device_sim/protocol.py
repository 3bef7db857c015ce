"""The rover <-> ground serial protocol: framing, checksums and message payloads.

Wire format (see ``docs/protocol.md`` for the full reference)::

    0x00 | COBS( ver u8 | type u8 | seq u16 LE | len u16 LE | payload | crc u16 BE ) | 0x00

* COBS (Consistent Overhead Byte Stuffing) removes every zero byte from the packet, so a
  zero byte is an unambiguous frame delimiter. A delimiter is sent *before* and after each
  frame, so a receiver resynchronises after line noise on the next frame.
* The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), ``binascii.crc_hqx(data, 0xFFFF)``,
  over version, type, seq, len and payload.
* A response has the request's type with the high bit set (``0x80 | type``) and the same
  ``seq``; an error answer is ``ERROR`` (``0xFF``) with the request's ``seq``.

This module is pure (no I/O): :func:`encode_frame` gives the bytes to send, and a
:class:`FrameDecoder` turns any byte stream (noise included) into :class:`Frame` objects and
:class:`FrameError` events.
"""

from __future__ import annotations

import binascii
import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ramanedge.errors import LinkError
from ramanedge.hashing import sha256

PROTOCOL_VERSION: int = 1
DELIMITER: int = 0x00
HEADER = struct.Struct("<BBHH")  # version, type, seq, length
HEADER_SIZE: int = HEADER.size  # 6
CRC_SIZE: int = 2
#: Largest payload a frame may carry (16 KiB: one raw spectrum of up to ~4,000 points).
MAX_PAYLOAD: int = 16384
#: Keys of the MODEL_COMMIT / ROLLBACK answers (also part of INFO): what the device serves.
MODEL_INFO_KEYS: tuple[str, ...] = ("model", "model_sha256", "model_tag", "slot", "previous",
                                    "labels_hash", "n_labels", "head")
#: Largest packet (header + payload + CRC) before COBS.
MAX_PACKET: int = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
#: Largest COBS-encoded packet (one overhead byte per started 254 bytes, + 1).
MAX_ENCODED: int = MAX_PACKET + MAX_PACKET // 254 + 2
#: ``seq`` used in ERROR frames that answer no particular request (e.g. oversize input).
NO_SEQ: int = 0xFFFF
RESPONSE_BIT: int = 0x80


class MsgType(enum.IntEnum):
    """Message types. Responses are ``0x80 | request``; ``ERROR`` answers any request."""

    PING = 0x01
    INFO = 0x02
    CLASSIFY = 0x03
    HEAD_ADD = 0x04
    HEAD_RETRAIN = 0x05
    MODEL_BEGIN = 0x06
    MODEL_CHUNK = 0x07
    MODEL_COMMIT = 0x08
    ROLLBACK = 0x09
    PONG = 0x81
    INFO_REPLY = 0x82
    RESULT = 0x83
    HEAD_ADD_ACK = 0x84
    HEAD_RETRAIN_ACK = 0x85
    MODEL_BEGIN_ACK = 0x86
    MODEL_CHUNK_ACK = 0x87
    MODEL_COMMIT_ACK = 0x88
    ROLLBACK_ACK = 0x89
    ERROR = 0xFF


REQUEST_TYPES: frozenset[int] = frozenset(int(t) for t in MsgType if t < RESPONSE_BIT)
#: requests that never change the device's state (docs/protocol.md section 2: after any
#: other request the device drops its cached answers to these)
READ_ONLY_REQUESTS: frozenset[int] = frozenset(
    int(t) for t in (MsgType.PING, MsgType.INFO, MsgType.CLASSIFY))
KNOWN_TYPES: frozenset[int] = frozenset(int(t) for t in MsgType)


def response_type(request: int) -> int:
    """The response type that answers ``request`` (``0x80 | request``)."""
    return RESPONSE_BIT | int(request)


class ErrorCode(enum.IntEnum):
    """ERROR codes. ``retryable`` codes mean "the frame was damaged, send it again"."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    OVERSIZE = 4
    BAD_VERSION = 5
    BAD_PAYLOAD = 6
    SPECTRUM = 7
    NO_MODEL = 8
    UPLOAD = 9
    HEAD = 10
    INTERNAL = 11
    TRUNCATED = 12
    GARBAGE = 13

    @property
    def retryable(self) -> bool:
        """True when the error is a line error the sender should answer by resending."""
        return self in (ErrorCode.BAD_CRC, ErrorCode.TRUNCATED, ErrorCode.OVERSIZE,
                        ErrorCode.GARBAGE)


# --------------------------------------------------------------------------------------------
# checksums and COBS
# --------------------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of ``b"123456789"`` is 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``; the result contains no zero byte."""
    out = bytearray()
    for block in bytes(data).split(b"\x00"):
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises :class:`ValueError` on an invalid encoding."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside a COBS frame")
        i += 1
        end = i + code - 1
        if end > n:
            raise ValueError("COBS block runs past the end of the frame")
        block = data[i:end]
        if 0 in block:
            raise ValueError("zero byte inside a COBS frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One decoded frame: a message ``type`` (int, usually a :class:`MsgType`), ``seq``, payload."""

    type: int
    seq: int
    payload: bytes = b""
    version: int = PROTOCOL_VERSION

    @property
    def is_response(self) -> bool:
        """True for responses (high bit of the type set)."""
        return bool(self.type & RESPONSE_BIT)

    def type_name(self) -> str:
        """Readable type name (``"0x42"`` for unknown types)."""
        try:
            return MsgType(self.type).name
        except ValueError:
            return f"0x{self.type:02x}"


@dataclass(frozen=True)
class FrameError:
    """A frame the decoder rejected. ``seq`` is the header's seq when one could be read."""

    code: ErrorCode
    reason: str
    seq: int | None = None
    type: int | None = None
    raw_size: int = 0


def build_packet(msg_type: int, seq: int, payload: bytes = b"", version: int = PROTOCOL_VERSION
                 ) -> bytes:
    """Header + payload + CRC (before COBS). Raises :class:`LinkError` if the payload is too big."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise LinkError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    if not 0 <= seq <= 0xFFFF:
        raise LinkError(f"seq must be in 0..65535, got {seq}")
    if not 0 <= msg_type <= 0xFF:
        raise LinkError(f"message type must be one byte, got {msg_type}")
    body = HEADER.pack(version, msg_type, seq, len(payload)) + payload
    return body + struct.pack(">H", crc16(body))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """Wire bytes of one frame: ``0x00 + COBS(packet) + 0x00``."""
    return b"\x00" + cobs_encode(build_packet(msg_type, seq, payload)) + b"\x00"


def parse_packet(packet: bytes) -> Frame | FrameError:
    """Check one decoded packet (header, CRC, length, version, type) and return a Frame or error.

    The CRC is checked first, so a damaged header is reported as ``BAD_CRC`` (its ``seq``
    field may itself be damaged); a frame with a good CRC but a wrong length, version or
    type is a sender bug and gets its own code.
    """
    n = len(packet)
    if n < HEADER_SIZE + CRC_SIZE:
        return FrameError(ErrorCode.TRUNCATED, f"frame of {n} bytes is shorter than the "
                          f"{HEADER_SIZE + CRC_SIZE}-byte minimum", raw_size=n)
    version, msg_type, seq, length = HEADER.unpack_from(packet)
    body, (crc,) = packet[:-CRC_SIZE], struct.unpack(">H", packet[-CRC_SIZE:])
    if crc16(body) != crc:
        return FrameError(ErrorCode.BAD_CRC, "CRC mismatch", seq=seq, type=msg_type, raw_size=n)
    if length != n - HEADER_SIZE - CRC_SIZE:
        return FrameError(ErrorCode.BAD_LENGTH, f"length field says {length} payload bytes but "
                          f"the frame holds {n - HEADER_SIZE - CRC_SIZE}", seq=seq,
                          type=msg_type, raw_size=n)
    if length > MAX_PAYLOAD:  # COBS slack in MAX_ENCODED must not stretch the payload limit
        return FrameError(ErrorCode.BAD_LENGTH, f"payload of {length} bytes exceeds the "
                          f"{MAX_PAYLOAD}-byte limit", seq=seq, type=msg_type, raw_size=n)
    if version != PROTOCOL_VERSION:
        return FrameError(ErrorCode.BAD_VERSION, f"protocol version {version} is not supported "
                          f"(expected {PROTOCOL_VERSION})", seq=seq, type=msg_type, raw_size=n)
    if msg_type not in KNOWN_TYPES:
        return FrameError(ErrorCode.UNKNOWN_TYPE, f"unknown message type 0x{msg_type:02x}",
                          seq=seq, type=msg_type, raw_size=n)
    return Frame(msg_type, seq, bytes(packet[HEADER_SIZE:-CRC_SIZE]), version)


class FrameDecoder:
    """Incremental decoder: feed any bytes, get frames and errors out, never raises.

    Bytes between delimiters are one candidate frame. Empty candidates (back-to-back
    delimiters) are skipped. A candidate longer than :data:`MAX_ENCODED` is discarded up to
    the next delimiter and reported once as ``OVERSIZE``. Invalid COBS is reported as
    ``GARBAGE`` and a packet too short for a header as ``TRUNCATED`` (both without a seq);
    callers usually drop those silently.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self.max_encoded = int(max_encoded)
        self._buf = bytearray()
        self._overflow = False
        self.stats: dict[str, int] = {"frames": 0, "garbage": 0, "oversize": 0, "errors": 0}

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Consume ``data``; return the frames and errors completed by it, in order."""
        events: list[Frame | FrameError] = []
        start = 0
        data = bytes(data)
        while start <= len(data):
            idx = data.find(b"\x00", start)
            chunk = data[start:] if idx < 0 else data[start:idx]
            if self._overflow:
                pass
            elif len(self._buf) + len(chunk) > self.max_encoded:
                self._overflow = True
                self._buf.clear()
            else:
                self._buf += chunk
            if idx < 0:
                break
            events.extend(self._end_of_frame())
            start = idx + 1
        return events

    def _end_of_frame(self) -> list[Frame | FrameError]:
        if self._overflow:
            self._overflow = False
            self._buf.clear()
            self.stats["oversize"] += 1
            return [FrameError(ErrorCode.OVERSIZE,
                               f"frame longer than {self.max_encoded} bytes discarded")]
        if not self._buf:
            return []
        raw = bytes(self._buf)
        self._buf.clear()
        try:
            packet = cobs_decode(raw)
        except ValueError as e:
            self.stats["garbage"] += 1
            return [FrameError(ErrorCode.GARBAGE, f"not a COBS frame: {e}", raw_size=len(raw))]
        ev = parse_packet(packet)
        if isinstance(ev, Frame):
            self.stats["frames"] += 1
        else:
            self.stats["errors"] += 1
        return [ev]

    @property
    def pending(self) -> int:
        """Bytes buffered for the frame in progress."""
        return len(self._buf)


# --------------------------------------------------------------------------------------------
# payloads
# --------------------------------------------------------------------------------------------

#: Spectrum encodings inside CLASSIFY / HEAD_ADD.
SPEC_GRID = 1  # intensities on a known grid (grid id), uint16 with offset + scale
SPEC_AXIS = 2  # raw spectrum on its own axis: uint16 axis and uint16 intensities, each affine
#: Grid ids known to both sides.
GRID_RAMANEDGE_1392 = 1
GRID_IDS: dict[int, tuple[float, float, int]] = {GRID_RAMANEDGE_1392: (200.0, 1.0, 1392)}

_F32x2 = struct.Struct("<ff")


#: the largest magnitude a spectrum value may have on the wire (float32 offset and scale,
#: with room for their difference)
WIRE_MAX = 1e37


def _check_wire_range(what: str, v: np.ndarray) -> None:
    """:class:`LinkError` unless every value of ``v`` (finite) is within :data:`WIRE_MAX`."""
    big = float(np.abs(v).max())
    if big > WIRE_MAX:  # the wire carries float32 offsets and scales
        raise LinkError(f"spectrum {what} reach {big:.3g}; the link carries values within "
                        f"+-{WIRE_MAX:.0e} (float32)")


def _quantise_u16(v: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Affine uint16 quantisation ``v ~ offset + q * scale`` (offset, scale as float32)."""
    v = np.asarray(v, dtype=np.float64)
    lo32 = np.float32(v.min())
    if lo32 > v.min():  # the float32 offset must not sit above the minimum (it would clip)
        lo32 = np.nextafter(lo32, np.float32(-np.inf))
    lo = float(lo32)
    hi = float(v.max())
    scale = float(np.float32((hi - lo) / 65535.0)) if hi > lo else 0.0
    if scale > 0:
        # float32 rounding of the scale must not push the top value past 65535
        while lo + 65535.0 * scale < hi:
            scale = float(np.nextafter(np.float32(scale), np.float32(np.inf)))
        q = np.clip(np.round((v - lo) / scale), 0, 65535).astype("<u2")
    else:
        q = np.zeros(v.size, dtype="<u2")
    return lo, scale, q


def _dequantise_u16(data: bytes, pos: int, n: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`_quantise_u16` on the wire: read ``offset, scale`` (float32) and
    ``n`` uint16 values at ``pos``; returns the float64 values and the position after them."""
    offset, scale = _F32x2.unpack_from(data, pos)
    pos += _F32x2.size
    end = pos + 2 * n
    if end > len(data):
        raise LinkError("spectrum payload is truncated")
    q = np.frombuffer(data, dtype="<u2", count=n, offset=pos)
    return offset + q.astype(np.float64) * scale, end


@dataclass(frozen=True)
class Spectrum:
    """A spectrum as carried on the link: either on a known grid (``grid_id``) or raw
    (``x`` its own axis). ``y`` is float64 after dequantisation."""

    y: np.ndarray = field(repr=False)
    x: np.ndarray | None = field(default=None, repr=False)
    grid_id: int | None = None

    def axis(self) -> np.ndarray:
        """The wavenumber axis (the grid's for grid spectra)."""
        if self.x is not None:
            return self.x
        start, step, n = GRID_IDS[int(self.grid_id or 0)]
        return start + step * np.arange(n, dtype=np.float64)


def encode_spectrum_grid(y: np.ndarray, grid_id: int = GRID_RAMANEDGE_1392) -> bytes:
    """Encode intensities on grid ``grid_id``: 2 bytes per point + 13 bytes of header."""
    if grid_id not in GRID_IDS:
        raise LinkError(f"unknown grid id {grid_id}; known: {sorted(GRID_IDS)}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = GRID_IDS[grid_id][2]
    if y.size != n:
        raise LinkError(f"grid {grid_id} has {n} points, got {y.size} intensities")
    if not np.all(np.isfinite(y)):
        raise LinkError("spectrum contains NaN or infinite values")
    _check_wire_range("intensities", y)
    off, scale, q = _quantise_u16(y)
    return struct.pack("<BBH", SPEC_GRID, grid_id, n) + _F32x2.pack(off, scale) + q.tobytes()


def encode_spectrum_axis(x: np.ndarray, y: np.ndarray) -> bytes:
    """Encode a raw spectrum on its own axis: 4 bytes per point (2 axis + 2 intensity) + 19.

    The axis is quantised affinely to uint16 (0.02 cm-1 resolution over a 1,400 cm-1
    window, 0.1 cm-1 over a full 6,600 cm-1 scan), the intensities likewise.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.size != y.size or x.size < 2:
        raise LinkError(f"need matching axis and intensities of >= 2 points, got {x.size} and "
                        f"{y.size}")
    if x.size > 0xFFFF:
        raise LinkError(f"a spectrum may have at most 65535 points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise LinkError("spectrum contains NaN or infinite values")
    _check_wire_range("wavenumbers", x)
    _check_wire_range("intensities", y)
    xo, xs, qx = _quantise_u16(x)
    yo, ys, qy = _quantise_u16(y)
    return (struct.pack("<BH", SPEC_AXIS, x.size) + _F32x2.pack(xo, xs) + qx.tobytes()
            + _F32x2.pack(yo, ys) + qy.tobytes())


def decode_spectrum(data: bytes, offset: int = 0) -> tuple[Spectrum, int]:
    """Decode a spectrum starting at ``offset``; returns it and the offset after it.

    Raises :class:`LinkError` when the bytes are not a valid spectrum encoding.
    """
    data = bytes(data)
    try:
        kind = data[offset]
        if kind == SPEC_GRID:
            _, grid_id, n = struct.unpack_from("<BBH", data, offset)
            if grid_id not in GRID_IDS or GRID_IDS[grid_id][2] != n:
                raise LinkError(f"unknown grid id {grid_id} with {n} points")
            y, end = _dequantise_u16(data, offset + 4, n)
            return Spectrum(y=y, grid_id=grid_id), end
        if kind == SPEC_AXIS:
            _, n = struct.unpack_from("<BH", data, offset)
            if n < 2:
                raise LinkError(f"a spectrum needs >= 2 points, got {n}")
            x, pos = _dequantise_u16(data, offset + 3, n)
            y, pos = _dequantise_u16(data, pos, n)
            return Spectrum(y=y, x=x), pos
        raise LinkError(f"unknown spectrum encoding {kind}")
    except (IndexError, struct.error):
        raise LinkError("spectrum payload is truncated") from None


# --- CLASSIFY / RESULT -----------------------------------------------------------------------


#: CLASSIFY flag: the host wants the prediction set in the RESULT (a device that predates
#: sets ignores it; a host that predates them never sets it and gets the old RESULT layout)
CLASSIFY_WANT_SET = 0x01


def encode_classify(spectrum: bytes, top_k: int = 3, *, want_set: bool = False) -> bytes:
    """CLASSIFY payload: ``top_k u8 | flags u8 | spectrum`` (flag 0x01: send the prediction
    set, :data:`CLASSIFY_WANT_SET`)."""
    if not 1 <= top_k <= 255:
        raise LinkError(f"top_k must be in 1..255, got {top_k}")
    return struct.pack("<BB", top_k, CLASSIFY_WANT_SET if want_set else 0) + spectrum


def classify_flags(payload: bytes) -> int:
    """The flags byte of a CLASSIFY payload (0 when absent; check the payload with
    :func:`decode_classify`)."""
    return payload[1] if len(payload) > 1 else 0


def decode_classify(payload: bytes) -> tuple[int, Spectrum]:
    """Inverse of :func:`encode_classify`; :class:`LinkError` if malformed."""
    if len(payload) < 3:
        raise LinkError("CLASSIFY payload is truncated")
    top_k = payload[0]
    if top_k < 1:
        raise LinkError("CLASSIFY top_k must be >= 1")
    spec, end = decode_spectrum(payload, 2)
    if end != len(payload):
        raise LinkError(f"CLASSIFY payload has {len(payload) - end} trailing bytes")
    return top_k, spec


@dataclass(frozen=True)
class Result:
    """A device's answer to CLASSIFY.

    ``top``: ``(class index, label, probability)`` best first (probabilities quantised to
    1/65535); ``unknown``: the unknown-mineral flag; ``compute_us``: device time from the
    decoded request to the encoded answer (preprocessing + inference + head);
    ``infer_us``: the interpreter part; ``model_tag``: the first 4 bytes of the serving
    model's manifest sha256; ``coverage``: the fraction of the model grid the spectrum
    covered (quantised to 1/65535; 1.0 = all of it); ``set``: the conformal prediction set
    as ``(class index, label)`` pairs, most probable first (``None``: the model has none).
    """

    top: tuple[tuple[int, str, float], ...]
    unknown: bool
    compute_us: int
    infer_us: int
    model_tag: int
    coverage: float = 1.0
    set: tuple[tuple[int, str], ...] | None = None

    @property
    def label(self) -> str:
        """Top-1 label."""
        return self.top[0][1] if self.top else ""


_RESULT_HEAD = struct.Struct("<BBIII")
_FLAG_UNKNOWN = 0x01
_FLAG_PARTIAL = 0x02  # a coverage u16 follows the head: the spectrum covered part of the grid
_FLAG_SET = 0x04  # a prediction set follows the top entries
MAX_SET = 255


def encode_result(r: Result) -> bytes:
    """RESULT payload: ``flags u8 | k u8 | compute_us u32 | infer_us u32 | model_tag u32 |
    [coverage u16, when flag 0x02] | k x (index u16 | prob u16 | name_len u8 | name utf-8) |
    [m u8 | m x (index u16 | name_len u8 | name utf-8), when flag 0x04]``.

    Flag 0x01: unknown mineral; 0x02: the spectrum covered only part of the grid, its
    fraction follows as a u16 (x 1/65535); 0x04: the conformal prediction set follows (at
    most :data:`MAX_SET` minerals; a longer set is refused, never cut: a cut set would not
    hold its coverage). An answer without either is byte-for-byte the format before they
    existed."""
    cov = min(max(float(r.coverage), 0.0), 1.0)
    q_cov = int(round(cov * 65535))
    partial = q_cov < 65535
    if r.set is not None and len(r.set) > MAX_SET:
        raise LinkError(f"prediction set of {len(r.set)} minerals does not fit a RESULT "
                        f"frame (at most {MAX_SET})")
    flags = ((_FLAG_UNKNOWN if r.unknown else 0) | (_FLAG_PARTIAL if partial else 0)
             | (_FLAG_SET if r.set is not None else 0))
    out = bytearray(_RESULT_HEAD.pack(flags, len(r.top),
                                      min(int(r.compute_us), 0xFFFFFFFF),
                                      min(int(r.infer_us), 0xFFFFFFFF), int(r.model_tag)))
    if partial:
        out += struct.pack("<H", q_cov)
    for idx, name, prob in r.top:
        raw = name.encode("utf-8")[:255]
        q = int(round(min(max(float(prob), 0.0), 1.0) * 65535))
        out += struct.pack("<HHB", int(idx), q, len(raw)) + raw
    if r.set is not None:
        out.append(len(r.set))
        for idx, name in r.set:
            raw = name.encode("utf-8")[:255]
            out += struct.pack("<HB", int(idx), len(raw)) + raw
    return bytes(out)


def decode_result(payload: bytes) -> Result:
    """Inverse of :func:`encode_result`; :class:`LinkError` if malformed."""
    try:
        flags, k, compute_us, infer_us, tag = _RESULT_HEAD.unpack_from(payload)
        pos = _RESULT_HEAD.size
        coverage = 1.0
        if flags & _FLAG_PARTIAL:
            coverage = struct.unpack_from("<H", payload, pos)[0] / 65535.0
            pos += 2
        top = []
        for _ in range(k):
            idx, q, ln = struct.unpack_from("<HHB", payload, pos)
            pos += 5
            name = payload[pos:pos + ln]
            if len(name) != ln:
                raise LinkError("RESULT payload is truncated")
            pos += ln
            top.append((idx, name.decode("utf-8", errors="replace"), q / 65535.0))
        pset = None
        if flags & _FLAG_SET:
            m = payload[pos]
            pos += 1
            entries = []
            for _ in range(m):
                idx, ln = struct.unpack_from("<HB", payload, pos)
                pos += 3
                name = payload[pos:pos + ln]
                if len(name) != ln:
                    raise LinkError("RESULT payload is truncated")
                pos += ln
                entries.append((idx, name.decode("utf-8", errors="replace")))
            pset = tuple(entries)
    except (struct.error, IndexError):
        raise LinkError("RESULT payload is truncated") from None
    if pos != len(payload):
        raise LinkError("RESULT payload has trailing bytes")
    return Result(tuple(top), bool(flags & _FLAG_UNKNOWN), compute_us, infer_us, tag,
                  coverage=coverage, set=pset)


# --- ERROR -----------------------------------------------------------------------------------


def encode_error(code: int, reason: str) -> bytes:
    """ERROR payload: ``code u8 | reason utf-8`` (reason cut to 200 bytes)."""
    return bytes([int(code) & 0xFF]) + reason.encode("utf-8", errors="replace")[:200]


def decode_error(payload: bytes) -> tuple[int, str]:
    """Inverse of :func:`encode_error`."""
    if not payload:
        return int(ErrorCode.INTERNAL), "empty ERROR payload"
    return payload[0], payload[1:].decode("utf-8", errors="replace")


# --- JSON control messages -------------------------------------------------------------------


def encode_json(obj: Any) -> bytes:
    """Compact JSON payload (INFO_REPLY, HEAD_*, MODEL_BEGIN/COMMIT, ROLLBACK)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_json(payload: bytes) -> Any:
    """Parse a JSON payload (empty payload = ``{}``); :class:`LinkError` if not JSON."""
    if not payload:
        return {}
    def _no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise LinkError(f"payload is not JSON: {e}") from None
    except RecursionError:
        raise LinkError("payload JSON is nested too deeply") from None


# --- HEAD_ADD --------------------------------------------------------------------------------


def encode_head_add(label: str, spectrum: bytes) -> bytes:
    """HEAD_ADD payload: ``name_len u8 | label utf-8 | spectrum`` (one example per message)."""
    raw = label.encode("utf-8")
    if not 1 <= len(raw) <= 255:
        raise LinkError(f"label must be 1..255 bytes of UTF-8, got {len(raw)}")
    return bytes([len(raw)]) + raw + spectrum


def decode_head_add(payload: bytes) -> tuple[str, Spectrum]:
    """Inverse of :func:`encode_head_add`."""
    if not payload:
        raise LinkError("HEAD_ADD payload is empty")
    n = payload[0]
    try:
        label = payload[1:1 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise LinkError("HEAD_ADD label is not UTF-8") from None
    if len(label.encode()) != n or n == 0:
        raise LinkError("HEAD_ADD label is truncated or empty")
    spec, end = decode_spectrum(payload, 1 + n)
    if end != len(payload):
        raise LinkError("HEAD_ADD payload has trailing bytes")
    return label, spec


# --- MODEL_CHUNK -----------------------------------------------------------------------------

_CHUNK_HEAD = struct.Struct("<IBI")  # upload id, file index, offset
#: Default uplink chunk size (data bytes per MODEL_CHUNK).
CHUNK_SIZE: int = 4096


def encode_chunk(upload_id: int, file_index: int, offset: int, data: bytes) -> bytes:
    """MODEL_CHUNK payload: ``upload_id u32 | file u8 | offset u32 | data``."""
    if len(data) + _CHUNK_HEAD.size > MAX_PAYLOAD:
        raise LinkError(f"chunk of {len(data)} bytes is too large")
    return _CHUNK_HEAD.pack(upload_id, file_index, offset) + bytes(data)


def decode_chunk(payload: bytes) -> tuple[int, int, int, bytes]:
    """Inverse of :func:`encode_chunk`."""
    if len(payload) < _CHUNK_HEAD.size:
        raise LinkError("MODEL_CHUNK payload is truncated")
    uid, fi, off = _CHUNK_HEAD.unpack_from(payload)
    return uid, fi, off, bytes(payload[_CHUNK_HEAD.size:])


def labels_hash(labels: list[str] | tuple[str, ...]) -> str:
    """Short hash of a label list (as in INFO): sha256 of the JSON list, first 16 hex digits."""
    return sha256(json.dumps(list(labels)).encode("utf-8")).hexdigest()[:16]


def model_tag(manifest_sha256: str) -> int:
    """The 32-bit model tag carried in RESULT: first 8 hex digits of the manifest sha256."""
    try:
        return int(manifest_sha256[:8], 16)
    except ValueError:
        return 0
