"""Run a command and report its exact peak RSS: ``python -m benchmarks.launch OUT.json CMD...``.

Why a launcher: Linux's ``ru_maxrss`` of a child includes the high-water mark of the memory
image it was *forked from* (the forked copy of the parent's address space is folded in at
``exec``). Forked straight from the benchmark process (TensorFlow loaded, ~700 MB), every
child would report >= 700 MB. Started from this small process instead, the command's figure
is its own peak (floored at this launcher's few MB). The command's stdout/stderr are passed
through; ``OUT.json`` receives ``{"returncode", "peak_rss_kib", "wall_s", "t_spawn"}``.
"""

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Run ``argv[1:]``, write the result JSON to ``argv[0]``; returns the command's status."""
    out, cmd = argv[0], argv[1:]
    t_spawn = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    with open(out, "w") as f:
        json.dump({"returncode": rc, "peak_rss_kib": ru.ru_maxrss, "wall_s": wall,
                   "t_spawn": t_spawn, "launcher_rss_kib": _own_rss_kib()}, f)
    return rc


def _own_rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
