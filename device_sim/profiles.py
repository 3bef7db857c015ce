"""Constrained-hardware profiles: run the device process as a rover-class board would.

A :class:`HardwareProfile` names a board class and gives the device process one core, a
share of that core (``cpu_fraction``) and an address-space limit (``memory_mib``).
:func:`limit_cpu` enforces the share on a running process with the first mechanism the
kernel allows here: a cgroup v2 ``cpu.max`` quota, a cgroup v1 ``cpu.cfs_quota_us`` quota, or,
where neither may be written, duty-cycling the process (SIGSTOP / SIGCONT, :class:`DutyCycler`);
which one was used is reported. The memory limit is ``RLIMIT_AS``, set in the child before it
starts (:func:`memory_preexec`); a device that cannot start under it exits, and the launcher
says so.

How the shares were derived (``docs/benchmarks.md``, "Constrained-hardware profiles"): the
float MobileNet v1 1.0/224 TFLite model, one thread, takes 11.0 ms on the reference machine
(AMD EPYC 2-core, 2026-12-04, ``python -m benchmarks.profiles --calibrate``) and about 87 ms
on a Raspberry Pi 4 CPU (published figure), so one Pi 4 core is ~1/7.9 of a reference core.
A Pi Zero 2 W (Cortex-A53 at 1.0 GHz) is a Pi 3-class core at a lower clock: a Pi 4 is ~2x a
Pi 3B+ (A53 at 1.4 GHz) in published TFLite benchmarks, times 1.4/1.0 for the clock, so
~2.8x slower than a Pi 4. On another host, scale by its own MobileNet time (``cpu_fraction``
is relative to the reference core).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ramanedge.errors import LinkError

#: Reference-core MobileNet v1 float time (ms) the shares below are relative to.
REFERENCE_MS = 11.0
#: Duty-cycle / quota period (s): long enough for 1 ms cgroup quanta at the smallest share.
PERIOD_S = 0.05


@dataclass(frozen=True)
class HardwareProfile:
    """A board class: ``cpus`` cores, each ``cpu_fraction`` of a reference core, and an
    address-space limit ``memory_mib`` for the device process (``None`` = no limit)."""

    name: str
    boards: str
    cpus: int = 1
    cpu_fraction: float = 1.0
    memory_mib: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.cpu_fraction <= 1.0:
            raise LinkError(f"profile {self.name}: cpu_fraction must be in (0, 1], got "
                            f"{self.cpu_fraction}")
        if self.cpus < 1:
            raise LinkError(f"profile {self.name}: cpus must be >= 1, got {self.cpus}")
        if self.memory_mib is not None and self.memory_mib < 16:
            raise LinkError(f"profile {self.name}: memory_mib must be >= 16, got "
                            f"{self.memory_mib}")


PROFILES: dict[str, HardwareProfile] = {
    "host": HardwareProfile("host", "this machine, one core, no limits"),
    "pi4": HardwareProfile("pi4", "Raspberry Pi 4 class (Cortex-A72 1.5 GHz), one core, "
                           "1 GB board: 512 MiB for the device", cpu_fraction=round(
                               REFERENCE_MS / 87.0, 3), memory_mib=512),
    "zero2": HardwareProfile("zero2", "Raspberry Pi Zero 2 W class (Cortex-A53 1.0 GHz), one "
                             "core, 512 MB board: 256 MiB for the device",
                             cpu_fraction=round(REFERENCE_MS / (87.0 * 2.8), 3),
                             memory_mib=256),
}


def get_profile(name: str) -> HardwareProfile:
    """The profile called ``name``; :class:`LinkError` listing the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LinkError(f"unknown hardware profile {name!r}; known: "
                        f"{', '.join(PROFILES)}") from None


def memory_preexec(memory_mib: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets ``RLIMIT_AS`` in the child (``None`` when no limit)."""
    if memory_mib is None:
        return None
    limit = int(memory_mib) << 20

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class DutyCycler:
    """Let process ``pid`` run ``fraction`` of every ``period`` seconds: SIGCONT, sleep the
    on-time, SIGSTOP, sleep the off-time (a software ``cpu.max``). ``kill`` and ``sleep`` are
    injectable (tests); :meth:`stop` leaves the process running."""

    def __init__(self, pid: int, fraction: float, *, period: float = PERIOD_S,
                 kill: Callable[[int, int], None] = os.kill,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.pid, self.fraction, self.period = pid, float(fraction), float(period)
        self._kill, self._sleep = kill, sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def cycle(self) -> bool:
        """One period; False once the process is gone or :meth:`stop` was called."""
        on = self.fraction * self.period
        try:
            self._kill(self.pid, signal.SIGCONT)
            self._sleep(on)
            if self._stop.is_set():
                return False
            self._kill(self.pid, signal.SIGSTOP)
            self._sleep(self.period - on)
        except ProcessLookupError:
            return False
        return not self._stop.is_set()

    def start(self) -> DutyCycler:
        """Run :meth:`cycle` in a daemon thread until :meth:`stop`."""
        def run() -> None:
            while self.cycle():
                pass
            with contextlib.suppress(ProcessLookupError):
                self._kill(self.pid, signal.SIGCONT)

        self._thread = threading.Thread(target=run, daemon=True, name="duty-cycler")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop cycling; the process is left running (SIGCONT)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.period + 1.0)


@dataclass
class CpuLimit:
    """How a CPU share was enforced on a process (``how``) and how to undo it."""

    how: str
    undo: Callable[[], None]


def limit_cpu(pid: int, fraction: float, *, cgroup_root: Path = Path("/sys/fs/cgroup"),
              name: str | None = None, period: float = PERIOD_S) -> CpuLimit:
    """Give process ``pid`` ``fraction`` of one core: cgroup v2 ``cpu.max``, else cgroup v1
    ``cpu.cfs_quota_us``, else a :class:`DutyCycler` (say which in :attr:`CpuLimit.how`)."""
    if fraction >= 1.0:
        return CpuLimit("no CPU limit", lambda: None)
    name = name or f"ramanedge-device-{pid}"
    period_us = int(period * 1e6)
    quota_us = max(1000, int(fraction * period_us))
    attempts = []
    for kind, folder, files in (
            ("cgroup v2 cpu.max", cgroup_root / name,
             {"cpu.max": f"{quota_us} {period_us}"}),
            ("cgroup v1 cpu.cfs_quota_us", cgroup_root / "cpu" / name,
             {"cpu.cfs_period_us": str(period_us), "cpu.cfs_quota_us": str(quota_us)})):
        v2 = kind.startswith("cgroup v2")
        if v2 and not (cgroup_root / "cgroup.controllers").is_file():
            attempts.append(f"{kind}: no cgroup v2 hierarchy at {cgroup_root}")
            continue
        if not v2 and not (cgroup_root / "cpu" / "cpu.cfs_quota_us").is_file():
            attempts.append(f"{kind}: no cgroup v1 cpu controller at {cgroup_root / 'cpu'}")
            continue
        try:
            folder.mkdir(exist_ok=True)
            for f, text in files.items():
                (folder / f).write_text(text)
            (folder / "cgroup.procs").write_text(str(pid))
        except OSError as e:
            attempts.append(f"{kind}: {e.strerror or e}")
            with contextlib.suppress(OSError):
                folder.rmdir()
            continue

        def undo(folder: Path = folder) -> None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # empty once the process has exited

        return CpuLimit(f"{kind} {quota_us / 1000:g} ms per {period_us / 1000:g} ms", undo)
    cycler = DutyCycler(pid, fraction, period=period).start()
    return CpuLimit(f"duty cycle SIGSTOP/SIGCONT {fraction * period * 1000:g} ms per "
                    f"{period * 1000:g} ms (no writable cgroup: {'; '.join(attempts)})",
                    cycler.stop)
