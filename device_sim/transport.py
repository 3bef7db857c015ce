"""Serial transport: opening ports, pacing bytes to a baud rate, and injecting line faults.

* :func:`open_port` opens anything pyserial understands (``/dev/ttyUSB0``, a pty path,
  ``loop://``, ``spy://...``) with :func:`serial.serial_for_url`, so the simulator and the
  tests run the same code path as a real port.
* :func:`open_pty_pair` makes a raw pty pair (``os.openpty``) and returns the master end as
  a :class:`FdPort` (a small pyserial-like wrapper) and the slave's path for the other side.
* A pty never throttles, so :class:`Pacer` paces writes on the *sender* side to the baud
  rate (10 bits per byte at 8N1) with a replaceable :class:`Clock`.
* :class:`FaultInjector` damages outgoing frames as configured by :class:`FaultConfig`
  (dropped bytes, flipped bits, garbage between frames, whole frames corrupted).
* :class:`Link` puts it together: framed send with pacing and faults, and a receive loop
  feeding a :class:`~device_sim.protocol.FrameDecoder`, counting every byte both ways.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import select
import struct
import termios
import time
import tty
from dataclasses import dataclass, fields
from typing import Any, Protocol

from device_sim.protocol import Frame, FrameDecoder, FrameError, encode_frame
from ramanedge.errors import LinkError

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


class FakeClock:
    """A manual clock for tests: :meth:`sleep` advances time instantly and is recorded."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Current fake time."""
        return self.t

    def sleep(self, seconds: float) -> None:
        """Advance the fake time by ``seconds``."""
        if seconds > 0:
            self.sleeps.append(seconds)
            self.t += seconds

    def advance(self, seconds: float) -> None:
        """Let time pass without a sleep (e.g. work done between sends)."""
        self.t += seconds


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

    corrupt: float = 0.0
    drop: float = 0.0
    flip: float = 0.0
    garbage: float = 0.0
    restart: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("corrupt", "drop", "flip", "garbage"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise LinkError(f"fault rate {name}={v} must be between 0 and 1")
        if self.restart < 0:
            raise LinkError(f"restart={self.restart} must be >= 0 (0 = never)")

    @property
    def active(self) -> bool:
        """True when any line fault (not counting restarts) is enabled."""
        return any((self.corrupt, self.drop, self.flip, self.garbage))

    @classmethod
    def parse(cls, text: str | None) -> FaultConfig:
        """Parse ``"corrupt=0.01,garbage=0.005,restart=500,seed=1"`` (empty/None = no faults)."""
        if not text or text.strip().lower() in ("none", "off", "0"):
            return cls()
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, val = part.partition("=")
            key = key.strip()
            if not sep or key not in kinds:
                raise LinkError(f"bad fault spec {part!r}; expected key=value with key one of "
                                f"{', '.join(kinds)} (e.g. corrupt=0.01,restart=500)")
            try:
                values[key] = int(val) if key in ("restart", "seed") else float(val)
            except ValueError:
                raise LinkError(f"bad value in fault spec {part!r}: not a number") from None
        return cls(**values)

    def to_spec(self) -> str:
        """Inverse of :meth:`parse`."""
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


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


def open_port(url: str, *, baud: int = 115200, timeout: float = 0.02) -> Any:
    """Open a serial port by path or pyserial URL (``serial.serial_for_url``).

    ``timeout`` is the read timeout of one ``read`` call; :class:`Link` loops on it.
    Raises :class:`LinkError` when the port cannot be opened.
    """
    import serial

    try:
        return serial.serial_for_url(url, baudrate=int(baud), timeout=timeout,
                                     write_timeout=None, exclusive=None)
    except (serial.SerialException, ValueError, OSError) as e:
        raise LinkError(f"cannot open serial port {url!r}: {e}") from None


class FdPort:
    """A minimal pyserial-like port on a raw file descriptor (the master end of a pty).

    ``read(n)`` waits up to ``timeout`` for the first byte and returns what is there (up to
    ``n``); ``write`` never blocks longer than ``write_timeout`` — bytes a full buffer
    cannot take are dropped, as on a real line with nobody listening. ``keep_fd`` (the pty
    slave) is held open so the master never reads EIO while the far end restarts.
    """

    def __init__(self, fd: int, *, keep_fd: int | None = None, timeout: float = 0.02,
                 write_timeout: float = 1.0, name: str = "fd") -> None:
        self.fd = fd
        self.keep_fd = keep_fd
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.name = name
        self.dropped_writes = 0
        os.set_blocking(fd, False)

    @property
    def is_open(self) -> bool:
        """True until :meth:`close`."""
        return self.fd >= 0

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read."""
        buf = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; waits at most ``timeout`` for the first one."""
        if self.fd < 0:
            raise LinkError("port is closed")
        r, _, _ = select.select([self.fd], [], [], self.timeout)
        if not r:
            return b""
        try:
            return os.read(self.fd, max(1, size))
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.EIO:  # no slave open: nothing to read
                return b""
            raise

    def write(self, data: bytes) -> int:
        """Write all of ``data`` unless the buffer stays full for ``write_timeout``."""
        view = memoryview(bytes(data))
        deadline = time.monotonic() + self.write_timeout
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                self.dropped_writes += len(view)
                break
            select.select([], [self.fd], [], min(left, 0.05))
        return len(data)

    def flush(self) -> None:
        """No-op (writes are unbuffered)."""

    def reset_input_buffer(self) -> None:
        """Discard unread input."""
        while self.in_waiting:
            try:
                os.read(self.fd, 65536)
            except OSError:
                break

    def close(self) -> None:
        """Close the fd (and the kept slave fd)."""
        for fd in (self.fd, self.keep_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = -1
        self.keep_fd = None

    def __enter__(self) -> FdPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pty_pair(*, timeout: float = 0.02) -> tuple[FdPort, str]:
    """A raw pty pair: ``(master port, slave path)``. Open the slave with :func:`open_port`."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
    path = os.ttyname(slave)
    return FdPort(master, keep_fd=slave, timeout=timeout, name=f"pty-master({path})"), path


# --------------------------------------------------------------------------------------------
# link
# --------------------------------------------------------------------------------------------


class Link:
    """Framed, paced, fault-injecting access to one end of a serial line.

    ``port``: any object with pyserial's ``read(n)``, ``write(b)``, ``in_waiting`` (a
    ``serial.Serial`` from :func:`open_port`, or a :class:`FdPort`). ``baud``: the line rate,
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
