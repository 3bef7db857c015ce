"""Constrained-hardware profiles: CPU share via cgroups or duty cycling, memory limits."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from device_fakes import write_fake_artifact

from device_sim.launcher import DeviceProcess
from device_sim.profiles import (
    PROFILES,
    DutyCycler,
    HardwareProfile,
    get_profile,
    limit_cpu,
    memory_preexec,
)
from device_sim.transport import FaultConfig
from ramanedge.errors import LinkError


def test_profiles_are_named_and_checked():
    assert set(PROFILES) >= {"host", "pi4", "zero2"}
    assert PROFILES["zero2"].cpu_fraction < PROFILES["pi4"].cpu_fraction < 1.0
    with pytest.raises(LinkError, match="unknown hardware profile 'pi5'; known: host, pi4"):
        get_profile("pi5")
    with pytest.raises(LinkError, match="cpu_fraction"):
        HardwareProfile("bad", "none", cpu_fraction=0.0)


def test_duty_cycler_runs_the_process_its_share_of_each_period():
    sent: list[tuple[int, int]] = []
    slept: list[float] = []
    dc = DutyCycler(42, 0.25, period=0.04, kill=lambda pid, sig: sent.append((pid, sig)),
                    sleep=slept.append)
    assert dc.cycle() and dc.cycle()
    assert sent == [(42, signal.SIGCONT), (42, signal.SIGSTOP)] * 2
    assert slept == pytest.approx([0.01, 0.03] * 2)

    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError

    assert not DutyCycler(42, 0.25, kill=gone, sleep=slept.append).cycle()


def _fake_v1(root: Path) -> Path:
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    return root


def test_cpu_share_goes_to_a_cgroup_when_one_is_writable(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory")
    lim = limit_cpu(1234, 0.1, cgroup_root=v2, name="dev", period=0.05)
    assert lim.how.startswith("cgroup v2 cpu.max")
    assert (v2 / "dev" / "cpu.max").read_text() == "5000 50000"
    assert (v2 / "dev" / "cgroup.procs").read_text() == "1234"
    v1 = _fake_v1(tmp_path / "v1")
    lim = limit_cpu(1234, 0.01, cgroup_root=v1, name="dev", period=0.05)
    assert lim.how.startswith("cgroup v1")
    assert (v1 / "cpu" / "dev" / "cpu.cfs_quota_us").read_text() == "1000"  # kernel minimum
    assert (v1 / "cpu" / "dev" / "cpu.cfs_period_us").read_text() == "50000"


def test_without_a_writable_cgroup_the_process_is_duty_cycled(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lim = limit_cpu(child.pid, 0.5, cgroup_root=tmp_path / "none", period=0.02)
        assert lim.how.startswith("duty cycle") and "no writable cgroup" in lim.how
        lim.undo()
        assert child.poll() is None  # left running
    finally:
        child.kill()
        child.wait()
    assert limit_cpu(1, 1.0).how == "no CPU limit"


def test_a_memory_limit_too_small_for_the_device_is_reported(tmp_path):
    """The profile's address-space limit applies to the device process; one that cannot
    start under it exits at boot, and the launcher sees it at once."""
    assert memory_preexec(None) is None
    art = write_fake_artifact(tmp_path / "art", ["a", "b"])
    tiny = HardwareProfile("tiny", "a board with too little memory", memory_mib=16)
    dev = DeviceProcess("/dev/null", art, tmp_path / "store", threads=1, cpus=None, baud=None,
                        faults=FaultConfig(), log_path=tmp_path / "dev.log", profile=tiny)
    dev.start()
    assert dev.proc is not None and dev.proc.wait(60) != 0
    assert not dev.alive()
    dev.stop()


def test_waiting_for_a_device_that_is_gone_ends_at_once():
    from device_sim.host import HostClient, HostConfig
    from device_sim.transport import Link, open_pty_pair

    master, _slave = open_pty_pair()
    checks: list[int] = []

    def alive() -> bool:  # the launcher's view: the process has exited
        checks.append(1)
        return False

    host = HostClient(Link(master), HostConfig())
    with pytest.raises(LinkError, match="exited before it answered"):
        host.wait_ready(600, alive=alive)  # not 600 s: the first check ends it
    assert checks == [1]
    master.close()


def test_the_cpu_limit_is_released_before_a_signal_and_removed_after_the_exit(
        tmp_path, monkeypatch):
    """A killed or stopped device: the limit is undone before the signal (a duty-cycled
    process must run to act on SIGTERM) and once more after the exit (a cgroup folder can
    only be removed when empty), so none is left behind across restarts."""
    import device_sim.launcher as launcher
    from device_sim.profiles import CpuLimit

    undone: list[bool] = []  # was the process still alive at each undo?
    dev: DeviceProcess

    def fake_limit(pid: int, fraction: float) -> CpuLimit:
        return CpuLimit("fake quota", lambda: undone.append(dev.alive()))

    monkeypatch.setattr(launcher, "limit_cpu", fake_limit)
    art = write_fake_artifact(tmp_path / "art", ["a", "b"])
    dev = DeviceProcess("/dev/null", art, tmp_path / "store", threads=1, cpus=None,
                        baud=None, faults=FaultConfig(), profile=PROFILES["pi4"])
    dev.start()
    dev.kill()  # a power cut
    assert undone == [True, False] and dev.cpu_limit is None
    dev.start()
    dev.stop()
    assert undone[2:] and undone[-1] is False and dev.cpu_limit is None
