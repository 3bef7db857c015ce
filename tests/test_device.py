"""The device server with a fake backend: malformed input, exactly-once retries, faults.

The device runs in a thread on the slave end of a pty pair (the same pyserial code path as a
real port) or shares a ``loop://`` port with the test, which then drives it step by step.
"""

from __future__ import annotations

import struct
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from device_fakes import fake_loader, peak_spectrum, write_fake_artifact
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim import protocol as P
from device_sim.device import Device, DeviceConfig, open_store
from device_sim.host import DeviceError, HostClient, HostConfig
from device_sim.transport import FaultConfig, Link, open_port, open_pty_pair
from device_sim.uplink import ModelStore, artifact_files
from ramanedge.errors import LinkError, ModelError
from tests.conftest import device_on_pty

LABELS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def _fake_store(tmp_path: Path, loader: Any) -> ModelStore:
    """A device store (validated by ``loader``) with a fake factory model."""
    art = write_fake_artifact(tmp_path / "factory", LABELS)
    return open_store(tmp_path / "store", loader, factory=art)


@pytest.fixture
def fake_store(tmp_path: Path) -> ModelStore:
    return _fake_store(tmp_path, fake_loader())


def running_device(store: ModelStore, *, loader: Any = None, **kw: Any
                   ) -> AbstractContextManager[tuple[Device, HostClient]]:
    """:func:`tests.conftest.device_on_pty` with ``loader`` (the one the store was opened
    with) defaulting to the fake one."""
    return device_on_pty(store, loader or fake_loader(), **kw)


# --- loop:// : drive the device step by step ------------------------------------------------


@pytest.fixture
def loop_device(fake_store):
    port = open_port("loop://", timeout=0.01)
    dev = Device(Link(port), fake_store, fake_loader(), DeviceConfig(poll_seconds=0.01))
    host = Link(port)  # the same loopback port: what one writes, the other reads
    yield dev, host
    port.close()


def _exchange(dev: Device, host: Link, raw: bytes, wait: float = 2.0) -> list:
    """Send ``raw``, let the device handle it, and read what it answered.

    Waits up to ``wait`` seconds for the device to handle the request and, once it has sent
    bytes, for the host to read them: generous for a loaded CI machine, yet instant when
    things work. Without an answer only a short read is made.
    """
    host.send_raw(raw)
    sent_before = dev.link.bytes_out
    deadline = time.monotonic() + wait
    while not dev.poll(0.05) and time.monotonic() < deadline:
        pass
    return host.receive(wait if dev.link.bytes_out > sent_before else 0.05)


def _assert_alive(dev: Device, host: Link, seq: int = 500) -> None:
    (pong,) = _exchange(dev, host, P.encode_frame(P.MsgType.PING, seq, b"alive?"))
    assert pong == P.Frame(P.MsgType.PONG, seq, b"alive?")


def _error(events: list) -> tuple[int, int, str]:
    (ev,) = events
    assert isinstance(ev, P.Frame) and ev.type == P.MsgType.ERROR
    code, reason = P.decode_error(ev.payload)
    return ev.seq, code, reason


def test_ping_over_loop(loop_device):
    dev, host = loop_device
    _assert_alive(dev, host, 1)
    host.send(P.MsgType.PING, 2, b"")
    dev.poll(0.02)  # answers
    dev.poll(0.02)  # reads its own answer back from loop:// and ignores it: no ping-pong
    assert dev.stats["ignored"] == 1
    assert host.receive(0.02) == []


def test_bad_crc_answered_with_retryable_error(loop_device):
    dev, host = loop_device
    pkt = bytearray(P.build_packet(P.MsgType.PING, 12, b"abc"))
    pkt[7] ^= 4
    seq, code, _ = _error(_exchange(dev, host, b"\0" + P.cobs_encode(bytes(pkt)) + b"\0"))
    assert (seq, code) == (12, P.ErrorCode.BAD_CRC)
    assert P.ErrorCode(code).retryable
    _assert_alive(dev, host)


def test_bad_length_answered(loop_device):
    dev, host = loop_device
    body = P.HEADER.pack(1, P.MsgType.PING, 13, 99) + b"xy"
    pkt = body + struct.pack(">H", P.crc16(body))
    seq, code, reason = _error(_exchange(dev, host, b"\0" + P.cobs_encode(pkt) + b"\0"))
    assert (seq, code) == (13, P.ErrorCode.BAD_LENGTH) and "99" in reason
    _assert_alive(dev, host)


def test_unknown_type_and_version_answered(loop_device):
    dev, host = loop_device
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(0x3C, 14, b"")))
    assert (seq, code) == (14, P.ErrorCode.UNKNOWN_TYPE)
    pkt = P.build_packet(P.MsgType.PING, 15, b"", version=2)
    seq, code, _ = _error(_exchange(dev, host, b"\0" + P.cobs_encode(pkt) + b"\0"))
    assert (seq, code) == (15, P.ErrorCode.BAD_VERSION)
    _assert_alive(dev, host)


def test_truncated_and_garbage_resynchronise_silently(loop_device):
    dev, host = loop_device
    assert _exchange(dev, host, b"\0" + P.cobs_encode(b"\x01\x02\x03") + b"\0") == []
    assert _exchange(dev, host, b"\x00\x09abc\x00") == []
    assert _exchange(dev, host, b"random line noise \xff\xfe") == []
    # noise glued to the front of a valid frame: the frame's leading delimiter saves it
    (pong,) = _exchange(dev, host, b"\x13\x37" + P.encode_frame(P.MsgType.PING, 16, b""))
    assert pong.type == P.MsgType.PONG and pong.seq == 16
    assert dev.stats["garbage"] >= 2


def test_oversize_answered_and_resynchronised(loop_device):
    dev, host = loop_device
    junk = b"\x01" * 3000  # loop:// holds 4 KiB: feed it in pieces
    for _ in range(7):
        host.send_raw(junk)
        while dev.link.port.in_waiting:  # drain fully, or the next write blocks on loop://
            dev.poll(0.02)
    seq, code, _ = _error(_exchange(dev, host, b"\x00"))
    assert (seq, code) == (P.NO_SEQ, P.ErrorCode.OVERSIZE)
    _assert_alive(dev, host)


def test_bad_payloads_answered_with_errors(loop_device):
    dev, host = loop_device
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(P.MsgType.CLASSIFY, 20, b"\x03")))
    assert (seq, code) == (20, P.ErrorCode.BAD_PAYLOAD)
    # a spectrum that does not cover the model window (200-1591 cm-1)
    x = np.linspace(300, 1000, 100)
    spec = P.encode_spectrum_axis(x, np.ones(100) + x / 1000)
    seq, code, reason = _error(_exchange(dev, host, P.encode_frame(
        P.MsgType.CLASSIFY, 21, P.encode_classify(spec))))
    assert (seq, code) == (21, P.ErrorCode.SPECTRUM) and "cover" in reason
    # a flat zero spectrum cannot be normalised
    spec = P.encode_spectrum_grid(np.zeros(1392))
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(
        P.MsgType.CLASSIFY, 22, P.encode_classify(spec))))
    assert code == P.ErrorCode.SPECTRUM
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(P.MsgType.MODEL_BEGIN, 23, b"[")))
    assert code == P.ErrorCode.BAD_PAYLOAD
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(
        P.MsgType.MODEL_CHUNK, 24, P.encode_chunk(99, 0, 0, b"x"))))
    assert code == P.ErrorCode.UPLOAD
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(P.MsgType.ROLLBACK, 25, b"")))
    assert code == P.ErrorCode.UPLOAD  # nothing to roll back to
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(P.MsgType.HEAD_RETRAIN, 26, b"")))
    assert code == P.ErrorCode.HEAD  # no examples yet
    _assert_alive(dev, host)


@pytest.mark.parametrize("payload, code", [
    # issue 16.14: each used to be answered INTERNAL
    (b'{"files": [{"name": "model\\u0000.tflite", "bytes": 1, "sha256": "%s"}]}',
     P.ErrorCode.UPLOAD),
    (b'{"files": [{"name": "%s", "bytes": 1, "sha256": "%%s"}]}' % (b"m" * 300),
     P.ErrorCode.UPLOAD),
    (b'{"files": [{"name": "manifest.json", "bytes": 1e400, "sha256": "%s"}]}',
     P.ErrorCode.UPLOAD),
    (b'{"files": [{"name": "manifest.json", "bytes": "7", "sha256": "%s"}]}',
     P.ErrorCode.UPLOAD),
    # too deep for the recursion limit (BAD_PAYLOAD) or, where a library raised the limit,
    # parsed and refused as an upload announcement (UPLOAD): never INTERNAL
    (b'{"files": ' + b"[" * 1500 + b"]" * 1500 + b"}",
     (P.ErrorCode.BAD_PAYLOAD, P.ErrorCode.UPLOAD)),
])
def test_malformed_uploads_get_documented_codes(loop_device, payload, code):
    dev, host = loop_device
    if b"%s" in payload:
        payload = payload % (b"ab" * 32)
    seq, got, reason = _error(_exchange(dev, host, P.encode_frame(P.MsgType.MODEL_BEGIN, 40,
                                                                  payload)))
    assert seq == 40 and got in (code if isinstance(code, tuple) else (code,)), reason
    assert dev.stats["internal_errors"] == 0
    assert not list((dev.store.root / "staging").iterdir())
    _assert_alive(dev, host)


def test_nested_head_retrain_options_are_a_payload_error(loop_device):
    dev, host = loop_device
    raw = b"[" * 1500 + b"]" * 1500  # fits loop://'s 4 KiB
    seq, code, _ = _error(_exchange(dev, host, P.encode_frame(P.MsgType.HEAD_RETRAIN, 41, raw)))
    assert code == P.ErrorCode.BAD_PAYLOAD and dev.stats["internal_errors"] == 0


def test_responses_are_never_answered(loop_device):
    dev, host = loop_device
    assert _exchange(dev, host, P.encode_frame(P.MsgType.RESULT, 30, b"")) == []
    assert _exchange(dev, host, P.encode_frame(P.MsgType.ERROR, 31, b"\x01")) == []
    assert dev.stats["requests"] == 0


def test_repeated_seq_is_answered_from_cache_not_recomputed(loop_device):
    dev, host = loop_device
    calls0 = dev.backend.calls  # the factory install's validation classified one spectrum
    _, y = peak_spectrum(2, len(LABELS))
    req = P.encode_frame(P.MsgType.CLASSIFY, 40, P.encode_classify(P.encode_spectrum_grid(y)))
    (a,) = _exchange(dev, host, req)
    dev.poll(0.01)  # swallow the echo of the answer
    (b,) = _exchange(dev, host, req)
    assert a == b and a.type == P.MsgType.RESULT
    assert P.decode_result(a.payload).label == "gamma"
    assert dev.stats["classify_computed"] == 1 and dev.stats["cache_replays"] == 1
    assert dev.backend.calls == calls0 + 1
    # the same seq with another payload (seq wrapped around) is a new request
    _, y2 = peak_spectrum(4, len(LABELS))
    req2 = P.encode_frame(P.MsgType.CLASSIFY, 40, P.encode_classify(P.encode_spectrum_grid(y2)))
    dev.poll(0.01)
    (c,) = _exchange(dev, host, req2)
    assert P.decode_result(c.payload).label == "epsilon"
    assert dev.stats["classify_computed"] == 2


def test_a_state_change_drops_cached_read_only_answers(loop_device):
    """Every host session numbers from the start again: after a request that may change the
    device's state, an identical CLASSIFY with a reused seq is computed afresh (not the
    answer of the old head), while a state-changing request's own answer stays cached (a
    late duplicate is replayed, never executed twice). INFO is never replayed."""
    dev, host = loop_device
    _, y = peak_spectrum(2, len(LABELS))
    classify = P.encode_frame(P.MsgType.CLASSIFY, 1, P.encode_classify(P.encode_spectrum_grid(y)))
    x_raw, y_raw = peak_spectrum(0, len(LABELS), raw=True)
    add = P.encode_frame(P.MsgType.HEAD_ADD, 2, P.encode_head_add(
        "zeta", P.encode_spectrum_axis(x_raw, y_raw)))

    def exchange(raw: bytes) -> P.Frame:
        (answer,) = _exchange(dev, host, raw)
        dev.poll(0.01)  # swallow the echo of the answer (loop://)
        return answer

    exchange(classify)
    assert exchange(classify).type == P.MsgType.RESULT  # a retry: replayed
    assert dev.stats["classify_computed"] == 1 and dev.stats["cache_replays"] == 1
    first = P.decode_json(exchange(add).payload)
    assert first["n_label"] == 1
    exchange(classify)  # the same seq and bytes after a state change: computed again
    assert dev.stats["classify_computed"] == 2 and dev.stats["cache_replays"] == 1
    again = P.decode_json(exchange(add).payload)  # a late duplicate of the HEAD_ADD
    assert again == first and dev.stats["cache_replays"] == 2  # not stored twice
    info = P.encode_frame(P.MsgType.INFO, 3, b"")
    n1 = P.decode_json(exchange(info).payload)["stats"]["requests"]
    n2 = P.decode_json(exchange(info).payload)["stats"]["requests"]
    assert n2 == n1 + 1 and dev.stats["cache_replays"] == 2


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.binary(min_size=1, max_size=600))
def test_device_never_dies_on_random_bytes(loop_device, noise):
    dev, host = loop_device
    host.send_raw(noise)
    for _ in range(3):
        dev.poll(0.005)
    host.receive(0.005)  # drain any ERROR answers
    host.decoder = P.FrameDecoder()
    host.send_raw(b"\x00")  # end whatever frame the noise started
    dev.poll(0.005)
    host.receive(0.005)
    _assert_alive(dev, host, 999)
    host.receive(0.005)
    dev.poll(0.005)


# --- pty pair: host client against a device thread --------------------------------------


def test_host_client_round_trip_raw_and_grid(fake_store):
    with running_device(fake_store, baud=460800) as (dev, host):
        info = host.wait_ready(5)
        assert info["model"] == "fake" and info["n_labels"] == len(LABELS)
        assert info["labels_hash"] == P.labels_hash(LABELS)
        assert info["rss_bytes"] > 0 and info["peak_rss_bytes"] >= info["rss_bytes"]
        for i in range(len(LABELS)):
            x, y = peak_spectrum(i, len(LABELS), raw=True, seed=i)
            r, ex = host.classify(y, x, top_k=2)
            assert r.label == LABELS[i] and len(r.top) == 2
            assert ex.attempts == 1 and ex.bytes_out == len(P.encode_frame(
                P.MsgType.CLASSIFY, ex.seq, P.encode_classify(P.encode_spectrum_axis(x, y), 2)))
            assert r.set is None  # not asked for: the RESULT layout of older hosts
            _, g = peak_spectrum(i, len(LABELS), seed=10 + i)
            r, _ = host.classify(g, want_set=True)
            assert r.label == LABELS[i] and r.set and r.set[0] == (r.top[0][0], LABELS[i])
        with pytest.raises(DeviceError, match="SPECTRUM"):
            host.classify(np.zeros(1392))
        assert dev.stats["classify_computed"] == 2 * len(LABELS)


def test_latency_is_wire_plus_compute(tmp_path):
    """Paced at 115200 baud: end-to-end = bytes * 10 / baud + device compute + a few ms."""
    slow = fake_loader(0.01)
    with running_device(_fake_store(tmp_path, slow), baud=115200, loader=slow) as (dev, host):
        host.wait_ready(5)
        over = []
        for i in range(5):
            x, y = peak_spectrum(i % 5, len(LABELS), raw=True, seed=i)
            r, ex = host.classify(y, x)
            assert ex.wire_s == pytest.approx((ex.bytes_out + ex.bytes_in) * 10 / 115200)
            assert ex.wire_s > 0.25  # ~3.6 kB request
            over.append(ex.latency_s - ex.wire_s - r.compute_us / 1e6)
        assert min(over) > -0.002  # never faster than the line allows
        assert float(np.median(over)) < 0.010


def test_exactly_once_under_heavy_faults(fake_store):
    """20 % of frames corrupted and garbage both ways: every spectrum answered once,
    correctly, and computed once on the device."""
    f = FaultConfig(corrupt=0.2, garbage=0.1, seed=11)
    with running_device(fake_store, baud=None, dev_faults=f, host_faults=f,
                        host_config=HostConfig(timeout=0.15, deadline=20)) as (dev, host):
        host.wait_ready(5)
        n = 60
        answers = {}
        for i in range(n):
            k = i % len(LABELS)
            _, y = peak_spectrum(k, len(LABELS), seed=i)
            r, ex = host.classify(y)
            assert i not in answers
            answers[i] = r.label
            assert r.label == LABELS[k]
        assert len(answers) == n
        assert dev.stats["classify_computed"] == n  # retries never recomputed
        assert host.stats.resends > 0 and dev.stats["cache_replays"] > 0
        assert dev.link.faults.stats["corrupted"] > 0 and host.link.faults.stats["corrupted"] > 0


def test_dropped_and_flipped_bytes(fake_store):
    f = FaultConfig(drop=0.00005, flip=0.00005, seed=2)  # ~25 % of 2.8 kB frames hit
    with running_device(fake_store, baud=None, dev_faults=f, host_faults=f,
                        host_config=HostConfig(timeout=0.15, deadline=20)) as (dev, host):
        host.wait_ready(5)
        for i in range(30):
            _, y = peak_spectrum(i % 5, len(LABELS), seed=i)
            assert host.classify(y)[0].label == LABELS[i % 5]
        assert dev.stats["classify_computed"] == 30
        assert host.link.faults.stats["dropped_bytes"] + host.link.faults.stats[
            "flipped_bits"] > 0


def test_host_gives_up_with_link_error_when_nobody_answers():
    master, _slave = open_pty_pair()
    host = HostClient(Link(master), HostConfig(timeout=0.05, max_attempts=3, deadline=2))
    with pytest.raises(LinkError, match="no answer"):
        host.ping()
    assert host.stats.attempts == 3
    master.close()


def test_head_learning_over_the_link(fake_store):
    with running_device(fake_store) as (dev, host):
        host.wait_ready(5)
        x, y = peak_spectrum(0, 5, raw=True)
        out = host.head_add("zeta", y, x)
        assert out["label"] == "zeta" and out["n_label"] == 1
        res = host.head_retrain()
        assert res["head"] == "v0001" and "zeta" in res["new_labels"]
        assert host.info()["head"] == "v0001"


def test_uplink_and_rollback_over_the_link(fake_store, tmp_path):
    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2")
    bad = write_fake_artifact(tmp_path / "bad", LABELS, name="fake-bad",
                              model_bytes=b"NOT A MODEL" * 100)
    with running_device(fake_store, baud=2_000_000) as (dev, host):
        old = host.wait_ready(5)
        x, y = peak_spectrum(1, 5)
        before = host.classify(y)[0]
        # a model whose checksums are right but which does not load: rejected, old serves
        with pytest.raises(DeviceError, match="UPLOAD"):
            host.upload_model(bad, chunk_size=1000)
        assert host.classify(y)[0].top == before.top
        assert host.info()["model_sha256"] == old["model_sha256"]
        # data damaged inside valid frames: sha256 mismatch, rejected
        def corrupt(name: str, off: int, data: bytes) -> bytes:
            return data[:-1] + bytes([data[-1] ^ 1]) if name == "model.tflite" and off == 0 \
                else data
        with pytest.raises(DeviceError, match="sha256"):
            host.upload_model(new, chunk_size=1000, corrupt=corrupt)
        assert host.info()["model_sha256"] == old["model_sha256"]
        # incomplete upload then commit: rejected
        begin = host.upload_model(new, commit=False, chunk_size=100000)
        with pytest.raises(DeviceError, match="UPLOAD"):
            host.call(P.MsgType.MODEL_COMMIT, P.encode_json({"upload_id": begin["upload_id"] + 1}))
        # good upload: swapped in, answers now carry the new model's tag
        res = host.upload_model(new, chunk_size=1500)
        assert res["model"] == "fake-v2" and res["previous"] == old["slot"]
        after = host.classify(y)[0]
        assert after.model_tag != before.model_tag and after.model_tag == res["model_tag"]
        # rollback: one message
        rb = host.rollback()
        assert rb["model_sha256"] == old["model_sha256"]
        assert host.classify(y)[0].model_tag == before.model_tag
        assert dev.stats["uploads_committed"] == 1 and dev.stats["uploads_rejected"] >= 2


def test_a_lost_commit_answer_is_recovered_and_reflashing_is_a_no_op(fake_store, tmp_path):
    """Issue 16.5: the host asks what the device serves when the commit answer is lost; a
    second flash of the same model sends nothing and keeps the rollback target."""
    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2")
    other = write_fake_artifact(tmp_path / "other", LABELS + ["eta"], name="fake-v3")
    with running_device(fake_store) as (dev, host):
        old = host.wait_ready(5)
        real_call = host.call

        def lose_commit_answer(msg_type, payload=b"", **kw):
            ex = real_call(msg_type, payload, **kw)
            if msg_type == P.MsgType.MODEL_COMMIT:
                raise LinkError("no answer to MODEL_COMMIT (simulated loss)")
            return ex

        host.call = lose_commit_answer
        res = host.upload_model(new, chunk_size=1500)
        assert res["recovered"] and res["model"] == "fake-v2" and res["previous"] == old["slot"]

        def drop_commit(msg_type, payload=b"", **kw):  # never reaches the device
            if msg_type == P.MsgType.MODEL_COMMIT:
                raise LinkError("no answer to MODEL_COMMIT (simulated loss)")
            return real_call(msg_type, payload, **kw)

        host.call = drop_commit
        with pytest.raises(LinkError, match="still serves fake-v2.*not activated"):
            host.upload_model(other, chunk_size=1500)
        host.call = real_call
        chunks_before = dev.stats["requests"]
        again = host.upload_model(new, chunk_size=1500)
        assert again["unchanged"] and again["slot"] == res["slot"]
        assert dev.stats["requests"] == chunks_before + 1  # one INFO, no upload
        assert host.rollback()["slot"] == old["slot"]


def test_each_model_is_loaded_once_and_served_as_validated(tmp_path):
    """Issue 15.4: the device serves the backend the store's validation loaded (relocated
    from the staging folder into its slot): one load for the factory install, one per
    commit, one per rollback; a store that does not validate is refused."""
    loads: list[Path] = []

    def counting_loader(folder: Path, headstore: Path) -> Any:
        loads.append(Path(folder))
        return fake_loader()(folder, headstore)

    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2")
    store = _fake_store(tmp_path, counting_loader)
    assert len(loads) == 1  # the factory install's validation
    with running_device(store, loader=counting_loader) as (dev, host):
        old = host.wait_ready(5)
        assert len(loads) == 1  # the device serves the validated backend: no second load
        res = host.upload_model(new, chunk_size=1500)
        assert res["model"] == "fake-v2" and res["previous"] == old["slot"]
        assert len(loads) == 2  # one load for the commit: the validation's
        assert loads[-1].parent.name == "staging"  # ...of the upload, before the swap
        assert dev.backend.folder == dev.store.current_dir()  # relocated into its slot
        _, y = peak_spectrum(5, len(LABELS) + 1)
        assert host.classify(y)[0].label == "zeta"  # the new model answers
        assert host.rollback()["slot"] == old["slot"]
        assert len(loads) == 3  # the rollback target, validated and served
        assert host.classify(y)[0].label != "zeta"
    # the model that serves, committed again (the device thread has stopped): validated
    # (one load), not swapped, the serving backend kept
    served = dev.backend
    again = store.begin_upload(artifact_files(tmp_path / "factory"))
    for i, m in enumerate(again.files):
        again.write_chunk(i, 0, (tmp_path / "factory" / m["name"]).read_bytes())
    rtype, _ = dev.dispatch(P.Frame(P.MsgType.MODEL_COMMIT, 99, P.encode_json(
        {"upload_id": again.upload_id})), time.perf_counter())
    assert rtype == P.MsgType.MODEL_COMMIT_ACK and len(loads) == 4
    assert dev.backend is served and store.current == old["slot"]
    with pytest.raises(ModelError, match="does not validate"):
        Device(Link(open_port("loop://")), ModelStore.open(tmp_path / "store"), fake_loader())


def test_a_full_disk_is_a_documented_error_and_frees_the_staging_files(loop_device,
                                                                       tmp_path,
                                                                       monkeypatch):
    """Issue 16.14: ENOSPC while uploading: ERROR UPLOAD (not INTERNAL), staging removed."""
    import errno

    from device_sim.uplink import Upload

    dev, host = loop_device
    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2")
    files = artifact_files(new)
    (ev,) = _exchange(dev, host, P.encode_frame(P.MsgType.MODEL_BEGIN, 60,
                                                P.encode_json({"files": files})))
    uid = P.decode_json(ev.payload)["upload_id"]
    assert list((dev.store.root / "staging").iterdir())

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Upload, "write_chunk", full)
    seq, code, reason = _error(_exchange(dev, host, P.encode_frame(
        P.MsgType.MODEL_CHUNK, 61, P.encode_chunk(uid, 0, 0, b"x"))))
    assert code == P.ErrorCode.UPLOAD and "No space left" in reason
    assert dev.stats["internal_errors"] == 0
    assert not list((dev.store.root / "staging").iterdir())
    _assert_alive(dev, host)


def test_a_cut_uplink_resumes_and_a_head_only_update_sends_no_model(fake_store, tmp_path):
    """Issue 14: a link cut mid-upload ends with a message saying how far it got; the same
    flash then sends only the rest. A new head on the served model sends no model bytes."""
    import random
    import re

    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2", size=60000)
    cut_at = random.Random(14).randrange(2, 40)  # a random chunk (seeded: reproducible)
    with running_device(fake_store, baud=1_000_000) as (dev, host):  # a paced pty link
        old = host.wait_ready(5)
        real_call = host.call
        chunks = [0]

        def cut_link(msg_type, payload=b"", **kw):  # this chunk never reaches the device
            if msg_type == P.MsgType.MODEL_CHUNK:
                chunks[0] += 1
                if chunks[0] >= cut_at:
                    raise LinkError("no answer to MODEL_CHUNK (link cut)")
            return real_call(msg_type, payload, **kw)

        host.call = cut_link
        with pytest.raises(LinkError, match="interrupted.*run the same flash again") as e:
            host.upload_model(new, chunk_size=1500)
        host.call = real_call
        have, total = map(int, re.search(r"with (\d+) of (\d+) bytes", str(e.value)).groups())
        assert 0 < have < total
        assert host.info()["model_sha256"] == old["model_sha256"]  # nothing partial is active
        res = host.upload_model(new, chunk_size=1500)
        assert res["model"] == "fake-v2" and res["resumed"]
        assert res["wire_bytes"] == total and res["sent_bytes"] == total - have
        assert res["wire_bytes"] < res["file_bytes"]  # zlib on the wire where it pays
        head_only = write_fake_artifact(tmp_path / "h", LABELS + ["zeta", "eta"], name="fake-v3",
                                        model_bytes=(new / "model.tflite").read_bytes())
        res = host.upload_model(head_only, chunk_size=1500)
        assert res["model"] == "fake-v3" and res["held"] == ["model.tflite"]
        assert res["sent_bytes"] == res["wire_bytes"]  # head + manifest only, nothing resent
        assert res["wire_bytes"] <= res["file_bytes"] - (new / "model.tflite").stat().st_size
        _, y = peak_spectrum(6, len(LABELS) + 2)
        assert host.classify(y)[0].label == "eta"  # the new head's labels answer


def test_bytes_the_device_lost_are_found_as_gaps_and_resent(fake_store, tmp_path):
    """Issue 14: a chunk acknowledged but lost on the device (a power cut before its state
    snapshot) is not activated half-done: the commit answers "incomplete", the host asks
    MODEL_BEGIN for the gaps and resends just that chunk."""
    new = write_fake_artifact(tmp_path / "new", LABELS + ["zeta"], name="fake-v2", size=30000)
    with running_device(fake_store) as (dev, host):
        host.wait_ready(5)
        real_begin = dev.store.begin_upload
        lost: list[int] = []

        def begin_losing_one_chunk(files):
            up = real_begin(files)
            real_write = up.write_chunk

            def write_chunk(fi, off, data):
                if not lost and off > 0:  # acknowledged, but never stored
                    lost.append(len(data))
                    return up.bytes_received(fi)
                return real_write(fi, off, data)

            up.write_chunk = write_chunk
            return up

        dev.store.begin_upload = begin_losing_one_chunk
        res = host.upload_model(new, chunk_size=1500)
        assert res["model"] == "fake-v2" and res["resumed"]
        assert len(lost) == 1 and res["sent_bytes"] == res["wire_bytes"] + lost[0]


def test_each_cli_session_starts_at_a_random_seq(monkeypatch) -> None:
    """``ramanedge sim`` commands attach to a device that served other sessions: their first
    seq is drawn at random (never the reserved 0xFFFF), so they do not replay its cache."""
    import device_sim.cli as dcli
    import device_sim.host as dhost

    draws = iter([b"\xff\xff", b"\x07\x00", b"\x34\x12"])
    monkeypatch.setattr(dhost.os, "urandom", lambda n: next(draws))
    assert dhost.session_first_seq() != P.NO_SEQ
    assert dhost.session_first_seq() == 7
    with dcli._connected("loop://", 115200, pace=False) as client:
        assert client.seq == 0x1234
