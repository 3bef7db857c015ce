"""The device process's own resources: CPU pinning, glibc's malloc tuning, resident memory."""

from __future__ import annotations

import os
import resource

from ramanedge.errors import LinkError


def apply_cpu_limit(cpus: int | None) -> list[int]:
    """Pin this process to its first ``cpus`` allowed cores; return the affinity set."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    allowed = sorted(os.sched_getaffinity(0))
    if cpus is not None:
        if cpus < 1:
            raise LinkError(f"--cpus must be >= 1, got {cpus}")
        os.sched_setaffinity(0, set(allowed[:cpus]))
    return sorted(os.sched_getaffinity(0))


def tune_malloc(mmap_threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold so freed large buffers go back to the OS.

    glibc raises its mmap threshold dynamically after the first large ``free``, after which
    the temporary multi-MB numpy arrays of model loading stay in the heap as resident but
    unused memory (~10 MB with the default artifact). Fixing the threshold at 128 KiB keeps
    the steady-state RSS close to what is really in use. Returns False where unsupported.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(mmap_threshold)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def rss_bytes() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in bytes, from ``/proc/self/status``.

    ``VmHWM`` is the peak of this process image. ``ru_maxrss`` is not used: Linux carries it
    over ``execve``, so a device started by a large host process would report the host's
    size at fork time.
    """
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        cur = cur or peak
    return cur, peak
