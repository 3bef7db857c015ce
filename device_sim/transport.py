"""Serial transport: opening ports, pacing bytes to a baud rate, and injecting line faults.

* :func:`open_port` opens every port, with :func:`serial.serial_for_url`: anything pyserial
  understands (``/dev/ttyUSB0``, a pty path, ``loop://``, ``spy://...``) and ``pty://``, a
  fresh raw pty pair served through its master end (the URL handler
  :mod:`device_sim.protocol_pty`), so the simulator and the tests run the same code path as
  a real port. :func:`open_pty_pair` is that port plus the slave's path for the other side.
* A pty never throttles, so :class:`Pacer` paces writes on the *sender* side to the baud
  rate (10 bits per byte at 8N1) with a replaceable :class:`Clock`.
* :class:`FaultInjector` damages outgoing frames as configured by :class:`FaultConfig`
  (dropped bytes, flipped bits, garbage between frames, whole frames corrupted).
* :class:`Link` puts it together: framed send with pacing and faults, and a receive loop
  feeding a :class:`~device_sim.protocol.FrameDecoder`, counting every byte both ways.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from device_sim.protocol import Frame, FrameDecoder, FrameError, encode_frame
from ramanedge.errors import LinkError
from ramanedge.options import check_options, format_options, option, parse_options

BITS_PER_BYTE_8N1: int = 10


# --------------------------------------------------------------------------------------------
# clocks and pacing
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Time source used for pacing (replaceable in tests)."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (may be 0)."""
        ...


class SystemClock:
    """The real clock: :func:`time.perf_counter` and :func:`time.sleep`."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (no-op for <= 0)."""
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class Pacer:
    """Sender-side pacing of a byte stream to ``baud`` (``None`` = no pacing).

    Each byte takes ``bits_per_byte / baud`` seconds on the line. Data go out in chunks of
    about ``chunk_seconds`` of line time; a chunk is written when its last bit would have
    arrived, so the receiver sees bytes no earlier than a real UART would deliver them.
    Back-to-back sends queue behind each other (the line is busy until ``busy_until``), and
    the schedule is kept from the start of a send, so sleep overshoot does not accumulate.
    """

    def __init__(self, baud: int | None, clock: Clock | None = None, *,
                 bits_per_byte: int = BITS_PER_BYTE_8N1, chunk_seconds: float = 0.002) -> None:
        if baud is not None and baud <= 0:
            raise LinkError(f"baud rate must be positive, got {baud}")
        self.baud = baud
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.bits_per_byte = int(bits_per_byte)
        self.chunk = max(1, int((baud or 0) / self.bits_per_byte * chunk_seconds))
        self.busy_until = 0.0

    @property
    def byte_time(self) -> float:
        """Seconds per byte on the line (0 without pacing)."""
        return self.bits_per_byte / self.baud if self.baud else 0.0

    def wire_seconds(self, n_bytes: int) -> float:
        """Line time of ``n_bytes`` at this baud rate."""
        return n_bytes * self.byte_time

    def send(self, write: Any, data: bytes) -> float:
        """Write ``data`` through ``write(bytes)`` at the line rate; returns the line time."""
        if not data:
            return 0.0
        if not self.baud:
            write(data)
            return 0.0
        bt = self.byte_time
        start = max(self.clock.now(), self.busy_until)
        sent = 0
        for i in range(0, len(data), self.chunk):
            piece = data[i:i + self.chunk]
            sent += len(piece)
            due = start + sent * bt
            wait = due - self.clock.now()
            if wait > 0:
                self.clock.sleep(wait)
            write(piece)
        self.busy_until = start + sent * bt
        return sent * bt


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultConfig:
    """Line faults, applied by the sender to its outgoing frames (each direction its own).

    ``corrupt``: probability that a frame is damaged (one bit flipped or one byte dropped at
    a random position, half each); ``drop`` / ``flip``: per-byte probability of losing a
    byte / flipping one of its bits; ``garbage``: probability of 1-32 random bytes before a
    frame; ``restart``: the host kills (SIGKILL) and restarts the device every ``restart``
    spectra (0 = never; replay only); ``seed``: RNG seed (each side offsets it).
    """

    corrupt: float = option(0.0, within=(0.0, 1.0))
    drop: float = option(0.0, within=(0.0, 1.0))
    flip: float = option(0.0, within=(0.0, 1.0))
    garbage: float = option(0.0, within=(0.0, 1.0))
    restart: int = option(0, within=(0, None))
    seed: int = option(0)

    def __post_init__(self) -> None:
        check_options(self, what="fault", error=LinkError)

    @property
    def active(self) -> bool:
        """True when any line fault (not counting restarts) is enabled."""
        return any((self.corrupt, self.drop, self.flip, self.garbage))

    @classmethod
    def parse(cls, text: str | None) -> FaultConfig:
        """Parse ``"corrupt=0.01,garbage=0.005,restart=500,seed=1"`` (empty/None = no faults)."""
        return parse_options(text, cls, what="fault", example="corrupt=0.01,restart=500",
                             error=LinkError)

    def to_spec(self) -> str:
        """Inverse of :meth:`parse`."""
        return format_options(self)

class FaultInjector:
    """Applies a :class:`FaultConfig` to outgoing frames with its own seeded RNG."""

    def __init__(self, config: FaultConfig, *, seed_offset: int = 0) -> None:
        self.config = config
        self.rng = random.Random(config.seed * 1_000_003 + seed_offset)
        self.stats: dict[str, int] = {"frames": 0, "corrupted": 0, "dropped_bytes": 0,
                                      "flipped_bits": 0, "garbage_bursts": 0}

    def _count(self, n: int, p: float) -> int:
        if p <= 0 or n == 0:
            return 0
        # binomial draw without numpy: fine for frame-sized n
        if n * p < 30:
            return sum(1 for _ in range(n) if self.rng.random() < p)
        return max(0, int(round(self.rng.gauss(n * p, (n * p * (1 - p)) ** 0.5))))

    def apply(self, frame: bytes) -> bytes:
        """Return the bytes that reach the line for ``frame`` (possibly damaged)."""
        c = self.config
        self.stats["frames"] += 1
        if not c.active:
            return frame
        rng = self.rng
        data = bytearray(frame)
        if c.corrupt and rng.random() < c.corrupt:
            self.stats["corrupted"] += 1
            pos = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[pos] ^= 1 << rng.randrange(8)
                self.stats["flipped_bits"] += 1
            else:
                del data[pos]
                self.stats["dropped_bytes"] += 1
        for _ in range(self._count(len(data), c.flip)):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
            self.stats["flipped_bits"] += 1
        n_drop = min(self._count(len(data), c.drop), len(data))
        for _ in range(n_drop):
            del data[rng.randrange(len(data))]
            self.stats["dropped_bytes"] += 1
        if c.garbage and rng.random() < c.garbage:
            self.stats["garbage_bursts"] += 1
            data[:0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        return bytes(data)


# --------------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------------


#: The URL of a fresh pty pair (:mod:`device_sim.protocol_pty`); the CLI's ``--port pty``.
PTY_URL = "pty://"
#: The package pyserial searches for ``protocol_<scheme>`` URL handlers of this project.
_HANDLER_PACKAGE = "device_sim"


def open_port(url: str, *, baud: int = 115200, timeout: float = 0.02) -> Any:
    """Open a serial port by path or pyserial URL (``serial.serial_for_url``), including
    :data:`PTY_URL`.

    ``timeout`` is the read timeout of one ``read`` call; :class:`Link` loops on it.
    Raises :class:`LinkError` when the port cannot be opened.
    """
    import serial

    if _HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLER_PACKAGE)
    try:
        return serial.serial_for_url(url, baudrate=int(baud), timeout=timeout,
                                     write_timeout=None, exclusive=None)
    except (serial.SerialException, ValueError, OSError) as e:
        raise LinkError(f"cannot open serial port {url!r}: {e}") from None


def open_pty_pair(*, timeout: float = 0.02) -> tuple[Any, str]:
    """A raw pty pair: ``(master port, slave path)``; the master is :func:`open_port` of
    :data:`PTY_URL`. Open the slave with :func:`open_port` too."""
    port = open_port(PTY_URL, timeout=timeout)
    return port, port.slave_path


# --------------------------------------------------------------------------------------------
# link
# --------------------------------------------------------------------------------------------


class Link:
    """Framed, paced, fault-injecting access to one end of a serial line.

    ``port``: any object with pyserial's ``read(n)``, ``write(b)``, ``in_waiting`` (a
    port from :func:`open_port`). ``baud``: the line rate,
    used for wire-time accounting and, with ``pace`` (the default), to pace writes in software
    (``None`` = full speed); a real UART paces in hardware, so use ``pace=False`` there.
    ``faults``: damage outgoing frames. Counters:
    ``bytes_out`` (bytes put on the line, after faults), ``bytes_in`` (every byte read,
    noise included), ``frames_out``.
    """

    def __init__(self, port: Any, *, baud: int | None = None, clock: Clock | None = None,
                 faults: FaultConfig | None = None, seed_offset: int = 0,
                 pace: bool = True) -> None:
        self.port = port
        self._baud = baud
        self.pacer = Pacer(baud if pace else None, clock)
        self.faults = FaultInjector(faults or FaultConfig(), seed_offset=seed_offset)
        self.decoder = FrameDecoder()
        self.bytes_out = 0
        self.bytes_in = 0
        self.frames_out = 0

    @property
    def baud(self) -> int | None:
        """The line rate (``None`` = unpaced, no wire time)."""
        return self._baud

    def wire_seconds(self, n_bytes: int) -> float:
        """Line time of ``n_bytes`` at :attr:`baud` (0 when unknown)."""
        return n_bytes * BITS_PER_BYTE_8N1 / self._baud if self._baud else 0.0

    def _write(self, data: bytes) -> None:
        self.port.write(data)

    def send_raw(self, data: bytes) -> int:
        """Put raw bytes on the line (paced, no faults); returns the count."""
        self.pacer.send(self._write, data)
        self.bytes_out += len(data)
        return len(data)

    def send(self, msg_type: int, seq: int, payload: bytes = b"") -> int:
        """Frame, damage (if faults are on) and send one message; returns bytes on the line."""
        return self.send_encoded(encode_frame(msg_type, seq, payload))

    def send_encoded(self, frame: bytes) -> int:
        """Send an already encoded frame (e.g. a cached response), with faults and pacing."""
        wire = self.faults.apply(frame)
        self.frames_out += 1
        return self.send_raw(wire)

    def receive(self, timeout: float) -> list[Frame | FrameError]:
        """Read for up to ``timeout`` seconds; return as soon as at least one event decoded."""
        deadline = time.perf_counter() + timeout
        while True:
            data = self.port.read(1)
            if data:
                waiting = self.port.in_waiting
                if waiting:
                    data += self.port.read(waiting)
                self.bytes_in += len(data)
                events = self.decoder.feed(data)
                if events:
                    return events
            if time.perf_counter() >= deadline:
                return []

    def close(self) -> None:
        """Close the port."""
        with contextlib.suppress(Exception):  # closing a dead port must not raise
            self.port.close()
