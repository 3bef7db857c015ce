"""Framing, checksums and payload codecs of the serial protocol (pure, no I/O)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim import protocol as P
from ramanedge.errors import LinkError

KNOWN = sorted(P.KNOWN_TYPES)


def test_crc16_is_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1  # the catalogue check value of CRC-16/CCITT-FALSE
    assert P.crc16(b"") == 0xFFFF


@settings(deadline=None)
@given(st.binary(max_size=3000))
def test_cobs_round_trip_and_no_zero(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert P.cobs_decode(enc) == data
    assert len(enc) <= len(data) + len(data) // 254 + 2


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KNOWN), st.integers(0, 0xFFFF), st.binary(max_size=2000),
       st.lists(st.integers(1, 97), min_size=1, max_size=40))
def test_frame_round_trip_in_any_chunking(msg_type, seq, payload, cuts):
    wire = P.encode_frame(msg_type, seq, payload)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    dec = P.FrameDecoder()
    events = []
    pos = 0
    i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        events += dec.feed(wire[pos:pos + n])
        pos += n
        i += 1
    assert events == [P.Frame(msg_type, seq, payload)]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=300),
       st.integers(0, 0xFFFF))
def test_frames_survive_garbage_between_them(g1, g2, payload, seq):
    """Noise before, between and after frames never hides a frame (leading delimiter)."""
    f1 = P.encode_frame(P.MsgType.CLASSIFY, seq, payload)
    f2 = P.encode_frame(P.MsgType.PING, (seq + 1) & 0xFFFF, b"x")
    events = P.FrameDecoder().feed(g1 + f1 + g2 + f2 + g1)
    frames = [e for e in events if isinstance(e, P.Frame)]
    assert P.Frame(P.MsgType.CLASSIFY, seq, payload) in frames
    assert P.Frame(P.MsgType.PING, (seq + 1) & 0xFFFF, b"x") in frames


def _encode_packet(packet: bytes) -> bytes:
    return b"\x00" + P.cobs_encode(packet) + b"\x00"


def _events(data: bytes) -> list:
    return P.FrameDecoder().feed(data)


def test_bad_crc_is_reported_with_its_seq():
    pkt = bytearray(P.build_packet(P.MsgType.PING, 77, b"hello"))
    pkt[-3] ^= 0x10  # flip a payload bit
    (ev,) = _events(_encode_packet(bytes(pkt)))
    assert isinstance(ev, P.FrameError)
    assert ev.code == P.ErrorCode.BAD_CRC and ev.seq == 77


def test_truncated_frame_is_reported():
    (ev,) = _events(_encode_packet(b"\x01\x02\x03"))
    assert isinstance(ev, P.FrameError) and ev.code == P.ErrorCode.TRUNCATED


def test_frame_cut_short_fails_the_crc():
    pkt = P.build_packet(P.MsgType.CLASSIFY, 5, bytes(range(1, 100)))
    (ev,) = _events(_encode_packet(pkt[:-10]))
    assert isinstance(ev, P.FrameError) and ev.code == P.ErrorCode.BAD_CRC


def test_bad_length_field_is_reported():
    body = P.HEADER.pack(P.PROTOCOL_VERSION, P.MsgType.PING, 9, 50) + b"abc"
    pkt = body + struct.pack(">H", P.crc16(body))
    (ev,) = _events(_encode_packet(pkt))
    assert isinstance(ev, P.FrameError)
    assert ev.code == P.ErrorCode.BAD_LENGTH and ev.seq == 9


def test_unknown_type_and_bad_version_are_reported():
    (ev,) = _events(P.encode_frame(0x42, 3, b""))
    assert ev.code == P.ErrorCode.UNKNOWN_TYPE and ev.seq == 3
    (ev,) = _events(_encode_packet(P.build_packet(P.MsgType.PING, 4, b"", version=9)))
    assert ev.code == P.ErrorCode.BAD_VERSION and ev.seq == 4


def test_invalid_cobs_is_garbage():
    (ev,) = _events(b"\x00\x05ab\x00")  # block says 4 bytes follow, only 2 do
    assert isinstance(ev, P.FrameError) and ev.code == P.ErrorCode.GARBAGE


def test_oversize_input_is_dropped_once_and_decoder_resyncs():
    dec = P.FrameDecoder()
    events = []
    junk = b"\x01" * 5000
    for _ in range(5):  # 25,000 bytes without a delimiter, fed in pieces
        events += dec.feed(junk)
    assert events == []
    assert dec.pending <= P.MAX_ENCODED
    events += dec.feed(P.encode_frame(P.MsgType.PING, 1, b"ok"))
    assert [type(e) for e in events] == [P.FrameError, P.Frame]
    assert events[0].code == P.ErrorCode.OVERSIZE
    assert events[1] == P.Frame(P.MsgType.PING, 1, b"ok")


def test_payload_limits():
    P.build_packet(P.MsgType.PING, 1, b"x" * P.MAX_PAYLOAD)
    with pytest.raises(LinkError, match="exceeds"):
        P.build_packet(P.MsgType.PING, 1, b"x" * (P.MAX_PAYLOAD + 1))
    with pytest.raises(LinkError):
        P.build_packet(P.MsgType.PING, 70000, b"")


@pytest.mark.parametrize("extra", [1, 65])  # 16,449 B used to pass within the COBS slack
def test_a_payload_over_the_limit_is_refused_even_with_a_good_crc(extra):
    payload = b"\x00" * (P.MAX_PAYLOAD + extra)  # zeros: COBS adds 1 byte in all
    body = P.HEADER.pack(P.PROTOCOL_VERSION, P.MsgType.PING, 9, len(payload)) + payload
    packet = body + struct.pack(">H", P.crc16(body))
    wire = b"\x00" + P.cobs_encode(packet) + b"\x00"
    assert len(wire) - 2 <= P.MAX_ENCODED  # inside the decoder's COBS-size window
    (ev,) = _events(wire)
    assert isinstance(ev, P.FrameError) and ev.code == P.ErrorCode.BAD_LENGTH
    assert ev.seq == 9 and "exceeds the 16384-byte limit" in ev.reason


@pytest.mark.parametrize("raw", [b'{"a": ' * 5000 + b"1" + b"}" * 5000, b'{"x": NaN}',
                                 b'{"x": -Infinity}'])
def test_json_payloads_nested_or_with_non_numbers_are_link_errors(raw):
    with pytest.raises(LinkError, match="nested too deeply|not JSON"):
        P.decode_json(raw)


def test_max_size_frame_decodes():
    payload = bytes(np.random.default_rng(0).integers(0, 256, P.MAX_PAYLOAD, dtype=np.uint8))
    wire = P.encode_frame(P.MsgType.MODEL_CHUNK, 2, payload)
    assert _events(wire) == [P.Frame(P.MsgType.MODEL_CHUNK, 2, payload)]


# --- spectra ---------------------------------------------------------------------------------


def test_grid_spectrum_is_two_bytes_per_point_and_accurate():
    rng = np.random.default_rng(1)
    y = rng.normal(0.3, 0.2, 1392)
    enc = P.encode_spectrum_grid(y)
    assert len(enc) == 2 * 1392 + 12
    spec, end = P.decode_spectrum(enc)
    assert end == len(enc) and spec.grid_id == P.GRID_RAMANEDGE_1392
    step = (y.max() - y.min()) / 65535
    assert np.max(np.abs(spec.y - y)) <= step  # within one quantisation step
    np.testing.assert_allclose(spec.axis(), 200.0 + np.arange(1392))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 3000), st.floats(-100, 500), st.floats(0.05, 5), st.integers(0, 2**31))
def test_axis_spectrum_round_trip(n, x0, step, seed):
    rng = np.random.default_rng(seed)
    x = x0 + step * np.cumsum(rng.uniform(0.5, 1.5, n))
    y = rng.normal(1000, 300, n)
    enc = P.encode_spectrum_axis(x, y)
    assert len(enc) == 4 * n + 19
    spec, end = P.decode_spectrum(enc)
    assert end == len(enc)
    xr = x.max() - x.min()
    yr = y.max() - y.min()
    assert np.max(np.abs(spec.x - x)) <= xr / 65535 * 1.01 + 1e-4 * abs(x).max() * 1e-3
    assert np.max(np.abs(spec.y - y)) <= yr / 65535 * 1.01 + 1e-9


def test_a_minimum_between_float32_values_is_not_clipped():
    """The offset travels as float32: rounded *up* past the minimum it clipped that point by
    up to half a float32 step (found by the property test above)."""
    y = np.array([1212.3470083855, 1214.6287437])
    assert np.float32(y[0]) > y[0]  # the case: float32 rounds the minimum up
    spec, _ = P.decode_spectrum(P.encode_spectrum_axis(np.array([200.0, 201.0]), y))
    assert np.max(np.abs(spec.y - y)) <= (y[1] - y[0]) / 65535 * 1.01


def test_values_the_wire_cannot_carry_are_one_clear_error():
    """Finite but beyond float32 (the wire's offset and scale) was four overflow warnings and
    then 'NaN or infinite values' from the device; now the sender refuses and says why."""
    x = np.array([200.0, 201.0, 202.0])
    for bad_x, bad_y, what in ((x, np.array([1.0, 1e303, 2.0]), "intensities"),
                               (np.array([200.0, 1e300, 1e301]), np.ones(3), "wavenumbers")):
        with np.errstate(all="raise"), pytest.raises(P.LinkError, match=what):
            P.encode_spectrum_axis(bad_x, bad_y)
    with np.errstate(all="raise"), pytest.raises(P.LinkError, match="intensities"):
        P.encode_spectrum_grid(np.full(1392, 1e303))
    spec, _ = P.decode_spectrum(P.encode_spectrum_axis(x, np.array([1.0, 1e36, 2.0])))
    assert np.isfinite(spec.y).all() and spec.y.max() == pytest.approx(1e36, rel=1e-3)


def test_constant_spectrum_round_trips():
    spec, _ = P.decode_spectrum(P.encode_spectrum_grid(np.full(1392, 3.0)))
    np.testing.assert_allclose(spec.y, 3.0)


@pytest.mark.parametrize("bad", [b"", b"\x09", b"\x01\x01\x70\x05",
                                 b"\x01\x07\x70\x05" + b"\0" * 20,
                                 b"\x02\x05\x00" + b"\0" * 10])
def test_bad_spectrum_payloads_raise_link_error(bad):
    with pytest.raises(LinkError):
        P.decode_spectrum(bad)


def test_spectrum_encoders_reject_bad_input():
    with pytest.raises(LinkError):
        P.encode_spectrum_grid(np.zeros(100))
    with pytest.raises(LinkError):
        P.encode_spectrum_axis(np.arange(5.0), np.arange(4.0))
    with pytest.raises(LinkError):
        P.encode_spectrum_axis(np.arange(5.0), np.array([1, 2, np.nan, 4, 5.0]))


def test_classify_and_result_codecs():
    spec = P.encode_spectrum_grid(np.linspace(0, 1, 1392))
    k, s = P.decode_classify(P.encode_classify(spec, 5))
    assert k == 5 and s.grid_id == 1
    # asking for the prediction set is a flag an older device ignores (same payload otherwise)
    asked = P.encode_classify(spec, 5, want_set=True)
    assert P.classify_flags(asked) == P.CLASSIFY_WANT_SET
    assert P.classify_flags(P.encode_classify(spec, 5)) == 0
    assert P.decode_classify(asked)[1].y.tolist() == s.y.tolist()
    with pytest.raises(LinkError, match="trailing"):
        P.decode_classify(P.encode_classify(spec, 5) + b"x")
    r = P.Result(((3, "Quartz", 0.91), (0, "Calcite-β", 0.05)), True, 1234, 567, 0xDEADBEEF)
    back = P.decode_result(P.encode_result(r))
    assert back.unknown and back.compute_us == 1234 and back.infer_us == 567
    assert back.model_tag == 0xDEADBEEF and back.label == "Quartz"
    assert [t[:2] for t in back.top] == [(3, "Quartz"), (0, "Calcite-β")]
    assert abs(back.top[0][2] - 0.91) < 1 / 65535
    with pytest.raises(LinkError):
        P.decode_result(P.encode_result(r)[:-2])
    # partial coverage rides in flag bit 1 + a u16; a full answer keeps the old layout
    assert back.coverage == 1.0 and P.encode_result(r)[0] == 0x01
    assert len(P.encode_result(r)) == 14 + 2 * 5 + len("Quartz") + len("Calcite-β".encode())
    part = P.Result(r.top, False, 1, 2, 3, coverage=1099 / 1392)
    raw = P.encode_result(part)
    assert raw[0] == 0x02 and len(raw) == len(P.encode_result(r)) + 2
    got = P.decode_result(raw)
    assert abs(got.coverage - 1099 / 1392) < 1 / 65535 and not got.unknown
    assert got.top == back.top
    with pytest.raises(LinkError, match="truncated"):
        P.decode_result(raw[:15])
    # the prediction set rides in flag bit 2 after the top entries (issue 12)
    assert back.set is None
    pset = ((3, "Quartz"), (0, "Calcite-β"), (7, "Opal"))
    withset = P.Result(r.top, False, 1, 2, 3, coverage=0.5, set=pset)
    raw = P.encode_result(withset)
    assert raw[0] == 0x06
    got = P.decode_result(raw)
    assert got.set == pset and got.top == back.top and abs(got.coverage - 0.5) < 1 / 65535
    for cut in (1, 3, len("Opal") + 3):
        with pytest.raises(LinkError, match="truncated"):
            P.decode_result(raw[:-cut])
    assert P.decode_result(P.encode_result(P.Result(r.top, False, 1, 2, 3, set=()))).set == ()
    with pytest.raises(LinkError, match="does not fit"):
        P.encode_result(P.Result(r.top, False, 1, 2, 3, set=((0, "a"),) * (P.MAX_SET + 1)))


def test_error_chunk_head_add_json_codecs():
    assert P.decode_error(P.encode_error(P.ErrorCode.SPECTRUM, "no coverage")) == (
        P.ErrorCode.SPECTRUM, "no coverage")
    assert P.decode_chunk(P.encode_chunk(7, 1, 4096, b"abc")) == (7, 1, 4096, b"abc")
    spec = P.encode_spectrum_axis(np.arange(10.0), np.arange(10.0))
    label, s = P.decode_head_add(P.encode_head_add("Jarosite", spec))
    assert label == "Jarosite" and s.x is not None and s.x.size == 10
    with pytest.raises(LinkError):
        P.decode_head_add(b"\x05ab")
    assert P.decode_json(P.encode_json({"a": 1})) == {"a": 1}
    with pytest.raises(LinkError):
        P.decode_json(b"{nope")


def test_error_codes_retryable():
    assert P.ErrorCode.BAD_CRC.retryable
    assert not P.ErrorCode.SPECTRUM.retryable
    assert P.response_type(P.MsgType.CLASSIFY) == P.MsgType.RESULT
