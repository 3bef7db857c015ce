"""Where and when figures were measured: CPU model, cores, platform, load, memory, date.

One description of the machine for every measured report: the benchmarks'
(``benchmarks/``) and the serial-link replay's (:mod:`device_sim.report`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (a noise indicator on a shared machine)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def mem_total_mib() -> int | None:
    """The machine's memory in MiB (``/proc/meminfo``), ``None`` where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def machine_info() -> dict[str, Any]:
    """Where and when the numbers were measured."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": load_average(),
        "mem_total_mib": mem_total_mib(),
    }
