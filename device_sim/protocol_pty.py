"""pyserial URL handler for ``pty://``: a fresh raw pty pair, served through its master end.

:func:`device_sim.transport.open_port` adds ``device_sim`` to pyserial's
``serial.protocol_handler_packages``, so ``serial.serial_for_url("pty://")`` finds this
module (pyserial imports ``<package>.protocol_<scheme>`` and uses its ``Serial`` class). The
port it opens is the master end of a new pty pair (``os.openpty``) whose slave is in raw mode
(no echo, no line editing, no CR/LF translation); the slave's path (``/dev/pts/N``,
:attr:`Serial.slave_path`) is what the other side opens, like any serial port.

A pty is a line with no line rate of its own: :class:`~device_sim.transport.Link` paces in
software. Two behaviours differ from a plain tty so that a simulated line behaves like a real
one when the far end is away:

* the slave is held open by this port, so the master never reads EIO while the far end
  restarts (a SIGKILLed device process, a replay restart);
* a write waits at most ``write_timeout`` seconds (:data:`WRITE_WAIT_S` when none is set)
  for room; bytes a full buffer cannot take then are dropped and counted in
  :attr:`Serial.dropped_writes`, as on a line with nobody listening.

``read(n)`` waits up to ``timeout`` for the first byte and returns what is there (up to
``n``), which is how :class:`~device_sim.transport.Link` reads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import termios
import time
import tty
from typing import Any
from urllib.parse import urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

#: How long a write waits for room when the port has no ``write_timeout`` (seconds).
WRITE_WAIT_S = 1.0


class Serial(SerialBase):
    """The master end of a raw pty pair, opened by ``serial.serial_for_url("pty://")``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fd = -1
        self.slave_fd: int | None = None
        self.slave_path: str | None = None
        self.dropped_writes = 0
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        """Make the pty pair (the URL takes no options)."""
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        self.from_url(self._port)
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            path = os.ttyname(slave)
            os.set_blocking(master, False)
        except OSError as e:
            for fd in (master, slave):
                os.close(fd)
            raise SerialException(f"cannot set up a pty pair: {e}") from None
        self.fd, self.slave_fd, self.slave_path = master, slave, path
        self.is_open = True

    @staticmethod
    def from_url(url: str) -> None:
        """Check the URL: ``pty://`` exactly (no host, path or options)."""
        parts = urlsplit(url)
        if parts.scheme != "pty" or parts.netloc or parts.path or parts.query:
            raise SerialException(f"expected 'pty://' (no host, path or options), got {url!r}")

    def _reconfigure_port(self, *args: Any) -> None:
        """Nothing to set: a pty has no line rate (the link paces in software)."""

    def close(self) -> None:
        """Close the master and the slave fd held open for the far end."""
        for fd in (self.fd, self.slave_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = -1
        self.slave_fd = None
        self.is_open = False
        super().close()

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read."""
        if not self.is_open:
            raise PortNotOpenError()
        buf = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; waits at most ``timeout`` for the first one."""
        if not self.is_open:
            raise PortNotOpenError()
        ready, _, _ = select.select([self.fd], [], [], self._timeout)
        if not ready:
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
        """Write all of ``data`` unless the buffer stays full for ``write_timeout``; what
        does not fit by then is dropped (:attr:`dropped_writes`). Returns ``len(data)``."""
        if not self.is_open:
            raise PortNotOpenError()
        view = memoryview(bytes(data))
        wait = WRITE_WAIT_S if self._write_timeout is None else self._write_timeout
        deadline = time.monotonic() + wait
        while view:
            try:
                view = view[os.write(self.fd, view):]
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
        """Nothing to flush: writes are unbuffered."""

    def reset_input_buffer(self) -> None:
        """Discard unread input."""
        if not self.is_open:
            raise PortNotOpenError()
        while self.in_waiting:
            try:
                os.read(self.fd, 65536)
            except OSError:
                break

    def reset_output_buffer(self) -> None:
        """Nothing to discard: writes are unbuffered."""
