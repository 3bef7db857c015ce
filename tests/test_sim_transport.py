"""Link layer: pacing with a fake clock, fault injection, loop:// and pty ports."""

from __future__ import annotations

import os
import threading
import time

import pytest
from device_fakes import FakeClock

from device_sim import protocol as P
from device_sim.transport import (
    PTY_URL,
    FaultConfig,
    FaultInjector,
    Link,
    Pacer,
    open_port,
    open_pty_pair,
)
from ramanedge.errors import LinkError


def test_pacer_paces_to_ten_bits_per_byte():
    clock = FakeClock()
    writes: list[tuple[float, int]] = []
    pacer = Pacer(115200, clock)
    line = pacer.send(lambda b: writes.append((clock.now(), len(b))), b"x" * 1000)
    assert line == pytest.approx(1000 * 10 / 115200)
    assert clock.now() == pytest.approx(1000 * 10 / 115200)
    assert sum(n for _, n in writes) == 1000
    # every chunk is written when its last bit has arrived, never earlier
    sent = 0
    for t, n in writes:
        sent += n
        assert t >= sent * 10 / 115200 - 1e-12
    # a second send queues behind the first
    pacer.send(lambda b: None, b"y" * 100)
    assert clock.now() == pytest.approx(1100 * 10 / 115200)


def test_pacer_does_not_accumulate_sleep_overshoot():
    class LateClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds + 0.0003)  # every sleep overshoots 0.3 ms

    clock = LateClock()
    Pacer(9600, clock).send(lambda b: None, b"z" * 960)  # 1 s of line time, ~100 chunks
    assert clock.now() == pytest.approx(1.0, abs=0.001)


def test_pacer_idle_line_does_not_bank_time():
    clock = FakeClock()
    pacer = Pacer(10000, clock)
    pacer.send(lambda b: None, b"a" * 10)  # 10 ms
    clock.advance(1.0)  # line idle for a second
    t = clock.now()
    pacer.send(lambda b: None, b"b" * 10)
    assert clock.now() - t == pytest.approx(0.01)


def test_unpaced_pacer_writes_at_once():
    clock = FakeClock()
    out = []
    assert Pacer(None, clock).send(out.append, b"abc") == 0.0
    assert out == [b"abc"] and clock.sleeps == []
    with pytest.raises(LinkError):
        Pacer(0)


def test_fault_spec_parsing():
    c = FaultConfig.parse("corrupt=0.01, garbage=0.005,restart=100,seed=3")
    assert (c.corrupt, c.garbage, c.restart, c.seed) == (0.01, 0.005, 100, 3)
    assert FaultConfig.parse(c.to_spec()) == c
    assert FaultConfig.parse("") == FaultConfig() == FaultConfig.parse("none")
    for bad in ("corrupt", "bogus=1", "corrupt=x", "corrupt=2", "restart=-1"):
        with pytest.raises(LinkError):
            FaultConfig.parse(bad)


def test_fault_injector_rates_and_determinism():
    frame = P.encode_frame(P.MsgType.CLASSIFY, 1, bytes(range(256)) * 4)
    inj = FaultInjector(FaultConfig(corrupt=0.1, seed=5))
    outs = [inj.apply(frame) for _ in range(2000)]
    damaged = sum(o != frame for o in outs)
    assert 140 <= damaged <= 260  # ~10 % of frames
    assert inj.stats["corrupted"] == damaged
    again = FaultInjector(FaultConfig(corrupt=0.1, seed=5))
    assert [again.apply(frame) for _ in range(2000)] == outs
    # damaged frames are rejected by the decoder, never delivered as another frame
    for o in outs:
        for ev in P.FrameDecoder().feed(o):
            assert isinstance(ev, P.FrameError) or ev == P.Frame(
                P.MsgType.CLASSIFY, 1, bytes(range(256)) * 4)
    g = FaultInjector(FaultConfig(garbage=1.0, drop=0.001, flip=0.001, seed=1))
    o = g.apply(frame)
    assert len(o) > len(frame) - 10 and g.stats["garbage_bursts"] == 1
    assert FaultInjector(FaultConfig()).apply(frame) == frame


def test_link_over_loop_url_counts_bytes():
    port = open_port("loop://", baud=115200)
    link = Link(port)
    n = link.send(P.MsgType.PING, 42, b"hello")
    assert n == len(P.encode_frame(P.MsgType.PING, 42, b"hello"))
    assert link.receive(1.0) == [P.Frame(P.MsgType.PING, 42, b"hello")]
    assert link.bytes_out == link.bytes_in == n
    link.send_raw(b"\x00\x07garbage\x00")
    evs = link.receive(0.5)
    assert len(evs) == 1 and evs[0].code == P.ErrorCode.GARBAGE
    assert link.receive(0.05) == []
    link.close()


def test_open_port_errors_are_link_errors():
    with pytest.raises(LinkError, match="cannot open"):
        open_port("/dev/does-not-exist-ramanedge")
    with pytest.raises(LinkError):
        open_port("nosuchscheme://x")


def test_pty_url_is_a_pyserial_url_handler():
    """``pty://`` opens through ``serial.serial_for_url`` like every other port."""
    import serial

    master = open_port(PTY_URL)
    try:
        assert isinstance(master, serial.SerialBase) and master.is_open
        assert type(master).__module__ == "device_sim.protocol_pty"
        assert master.slave_path.startswith("/dev/") and os.path.exists(master.slave_path)
    finally:
        master.close()
    assert not master.is_open
    with pytest.raises(LinkError, match="cannot open serial port 'pty://x'"):
        open_port("pty://x")


def test_pty_pair_is_raw_and_paced():
    master, slave_path = open_pty_pair()
    slave = open_port(slave_path, baud=9600)
    try:
        data = bytes(range(256))  # includes CR, LF, ^C, ^D: must arrive untouched
        master.write(data)
        got = b""
        t_end = time.time() + 2
        while len(got) < 256 and time.time() < t_end:
            got += slave.read(256 - len(got))
        assert got == data
        a, b = Link(master, baud=19200), Link(slave)
        t0 = time.perf_counter()
        a.send(P.MsgType.PING, 1, b"p" * 200)  # ~210 bytes at 19200 baud = ~110 ms
        dt = time.perf_counter() - t0
        # never faster than the line (a lower bound on any machine); the exact schedule is
        # tested with the manual clock above
        assert dt >= 0.99 * a.bytes_out * 10 / 19200
        assert b.receive(1.0) == [P.Frame(P.MsgType.PING, 1, b"p" * 200)]
    finally:
        slave.close()
        master.close()


def test_pty_master_survives_far_end_closing():
    """The host keeps the slave open, so a device restart never gives it EIO."""
    master, slave_path = open_pty_pair(timeout=0.05)
    try:
        s = open_port(slave_path)
        s.close()
        assert master.read(10) == b""  # no EIO, no data
        master.write(b"while nobody listens")
        s2 = open_port(slave_path)  # pyserial flushes stale input on open
        master.write(b"\x00fresh\x00")
        got = b""
        t_end = time.time() + 1
        while time.time() < t_end and not got.endswith(b"fresh\x00"):
            got += s2.read(64)
        assert got.endswith(b"\x00fresh\x00")
        s2.close()
    finally:
        master.close()


def test_pty_write_never_blocks_forever():
    master, slave_path = open_pty_pair()
    master.write_timeout = 0.2
    try:
        import threading

        done = threading.Event()

        def write() -> None:
            master.write(b"x" * (1 << 20))  # nobody reads: the line drops what does not fit
            done.set()

        threading.Thread(target=write, daemon=True).start()
        assert done.wait(120), "write blocked"  # liveness, not speed: a generous bound
        assert master.dropped_writes > 0
    finally:
        master.close()


def test_concurrent_duplex_over_pty():
    master, slave_path = open_pty_pair()
    slave = open_port(slave_path)
    a, b = Link(master, baud=230400), Link(slave, baud=230400)
    got: list = []

    def reader() -> None:
        t_end = time.time() + 3
        while len(got) < 20 and time.time() < t_end:
            got.extend(b.receive(0.1))

    th = threading.Thread(target=reader)
    th.start()
    for i in range(20):
        a.send(P.MsgType.PING, i, os.urandom(50))
    th.join()
    assert [f.seq for f in got] == list(range(20))
    slave.close()
    master.close()
