"""``ramanedge device serve`` as a child process of the replay: started on a pty slave,
SIGKILLed (a power cut) and restarted for the ``restart`` fault, stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from device_sim.profiles import CpuLimit, HardwareProfile, limit_cpu, memory_preexec
from device_sim.transport import FaultConfig


class DeviceProcess:
    """``ramanedge device serve`` in a child process on a given port; restartable.

    ``profile``: run it as that board class (:mod:`device_sim.profiles`: its cores, its
    share of each, its address-space limit); :attr:`cpu_limit` says how the share was
    enforced."""

    def __init__(self, port: str, model: Path, store: Path, *, threads: int,
                 cpus: int | None, baud: int | None, faults: FaultConfig,
                 log_path: Path | None = None, pace: bool = True,
                 profile: HardwareProfile | None = None) -> None:
        self.port = port
        self.model = Path(model)
        self.store = Path(store)
        self.threads = threads
        self.cpus = cpus
        self.baud = baud
        self.pace = pace
        self.faults = FaultConfig(corrupt=faults.corrupt, drop=faults.drop, flip=faults.flip,
                                  garbage=faults.garbage, seed=faults.seed)
        self.log_path = log_path
        self.profile = profile
        if profile is not None:
            self.cpus = profile.cpus
        self.cpu_limit: CpuLimit | None = None
        self.limits: list[str] = []  # how each start's CPU share was enforced
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.starts = 0

    def command(self) -> list[str]:
        """The command line of the device process."""
        cmd = [sys.executable, "-m", "ramanedge.cli", "device", "serve", "--port", self.port,
               "--model", str(self.model), "--store", str(self.store),
               "--threads", str(self.threads), "--baud", str(self.baud or 0),
               "--faults", self.faults.to_spec(), "--seed-offset", str(1 + 7919 * self.starts)]
        if self.cpus:
            cmd += ["--cpus", str(self.cpus)]
        if not self.pace:
            cmd.append("--no-pace")
        return cmd

    def start(self) -> int:
        """Start the process; returns its pid."""
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(self.threads)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        memory = self.profile.memory_mib if self.profile is not None else None
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env,
                                         preexec_fn=memory_preexec(memory))
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.starts += 1
        self.pids.append(self.proc.pid)
        if self.profile is not None:
            self._release_cpu_limit(final=True)
            self.cpu_limit = limit_cpu(self.proc.pid, self.profile.cpu_fraction)
            self.limits.append(self.cpu_limit.how)
        return self.proc.pid

    def _release_cpu_limit(self, *, final: bool) -> None:
        """Undo the CPU limit: before a signal (a duty-cycled process must be running to act
        on SIGTERM, and no cycler signal may reach a reused pid) and again, ``final``, once
        the process is gone (a cgroup folder can only be removed when empty)."""
        if self.cpu_limit is not None:
            self.cpu_limit.undo()
            if final:
                self.cpu_limit = None

    @property
    def pid(self) -> int | None:
        """The running process's pid."""
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL the process (a power cut) and reap it."""
        self._release_cpu_limit(final=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._release_cpu_limit(final=True)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._release_cpu_limit(final=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release_cpu_limit(final=True)
        return self.proc.returncode

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None
