"""quantize.edgetpu: op-by-op Edge TPU check; LeakyReLU flagged, ReLU / PReLU pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quantize.edgetpu import (
    Graph,
    OpInfo,
    TensorInfo,
    check_edgetpu,
    check_graph,
    read_graph,
)
from ramanedge.errors import ModelError

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ramanedge.cli", "quantize", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, synthetic_data):
    """int8 .tflite files of untrained ReLU / PReLU models and a float32 ReLU one.

    Edge TPU compatibility depends on ops and dtypes, not on the weights, so the models are
    not trained; they are calibrated on synthetic spectra.
    """
    import keras

    from quantize.convert import convert, dual_output_model, export_saved_model
    from trainer.model import ModelConfig, build_model

    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("edgetpu")
    Xtr, _ = synthetic_data.part("train")
    files = {}
    for act in ("relu", "prelu"):
        model = build_model(4, ModelConfig(arch="paper", dense_units=32, activation=act))
        sm = out / f"sm_{act}"
        export_saved_model(dual_output_model(model), sm, 1392)
        files[act] = out / f"{act}.tflite"
        files[act].write_bytes(convert(sm, "int8", Xtr[:20]))
        if act == "relu":
            files["relu_float32"] = out / "relu_float32.tflite"
            files["relu_float32"].write_bytes(convert(sm, "float32"))
    return files


def test_leaky_relu_artifact_is_flagged_where_it_falls_back(tiny_artifact: Path) -> None:
    report = check_edgetpu(tiny_artifact)
    assert not report.passed
    first = report.first_fallback
    assert first is not None and first.op == "LEAKY_RELU"
    assert "Operation not supported" in first.status
    # everything before the first LeakyReLU maps, everything from it on runs on the CPU
    assert all(o.on_tpu for o in report.ops[: first.index])
    assert not any(o.on_tpu for o in report.ops[first.index:])
    later = [o for o in report.ops[first.index + 1:] if o.op != "LEAKY_RELU"]
    assert later and all(o.status == "More than one subgraph is not supported" for o in later)
    # the ops listed are the model's: 4 LeakyReLU (3 conv blocks + dense), 2 FC, 1 softmax
    names = [o.op for o in report.ops]
    assert names.count("LEAKY_RELU") == 4
    assert names.count("FULLY_CONNECTED") == 2 and names[-1] == "SOFTMAX"
    text = report.format()
    assert "FAIL" in text and f"op #{first.index} LEAKY_RELU" in text


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_relu_and_prelu_models_map_entirely(converted, act: str) -> None:
    report = check_edgetpu(converted[act])
    assert report.passed, report.format()
    assert report.n_cpu == 0 and report.n_tpu == len(report.ops) > 5
    ops = {o.op for o in report.ops}
    assert "LEAKY_RELU" not in ops
    if act == "prelu":
        assert "PRELU" in ops
    assert report.format().splitlines()[-1].startswith("PASS")


def test_float_model_is_flagged_for_its_dtype(converted) -> None:
    report = check_edgetpu(converted["relu_float32"])
    assert not report.passed
    assert "FLOAT32" in report.first_fallback.status


def test_cli_exit_codes(converted, tiny_artifact: Path) -> None:
    ok = _cli("--check", "edgetpu", str(converted["relu"]))
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout and "CONV_2D" in ok.stdout
    bad = _cli("--check", "edgetpu", str(tiny_artifact))
    assert bad.returncode == 1
    assert "LEAKY_RELU" in bad.stdout and "FAIL" in bad.stdout
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("kind", ["missing", "not_tflite", "empty_folder"])
def test_cli_bad_input_is_one_line(tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        target = tmp_path / "nope.tflite"
    elif kind == "not_tflite":
        target = tmp_path / "x.tflite"
        target.write_bytes(b"definitely not a flatbuffer")
    else:
        target = tmp_path
    r = _cli("--check", "edgetpu", str(target))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


def test_read_graph_rejects_garbage() -> None:
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        read_graph(b"\x00" * 100)
    with pytest.raises(ModelError, match="could not be parsed"):
        read_graph(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)


def test_check_is_tensorflow_free(converted) -> None:
    code = ("import sys; from quantize.edgetpu import check_edgetpu; "
            f"r = check_edgetpu({str(converted['relu'])!r}); assert r.passed; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------ rules on hand-built graphs (no TF)


def _t(i, dtype="INT8", shape=(1, 8), sig=None, const=False) -> TensorInfo:
    return TensorInfo(i, f"t{i}", dtype, tuple(shape), tuple(sig or shape), const, 0.1, 0)


def _graph(ops, tensors) -> Graph:
    return Graph(tuple(tensors), tuple(ops), (0,), (tensors[-1].index,), {}, {}, 1)


def _chain(*specs):
    """Ops applied in sequence on int8 [1, 8] tensors: spec = (op name, options)."""
    tensors = [_t(0)]
    ops = []
    for i, (name, opts) in enumerate(specs):
        tensors.append(_t(i + 1))
        ops.append(OpInfo(i, name, (i,), (i + 1,), dict(opts)))
    return ops, tensors


def test_partition_stops_at_first_unsupported_op() -> None:
    ops, tensors = _chain(("FULLY_CONNECTED", {}), ("DEQUANTIZE", {}), ("RELU", {}),
                          ("SOFTMAX", {}))
    r = check_graph(_graph(ops, tensors))
    assert [o.on_tpu for o in r.ops] == [True, False, False, False]
    assert r.first_fallback.op == "DEQUANTIZE" and r.n_cpu == 3


@pytest.mark.parametrize(
    "op, opts, message",
    [
        ("MAX_POOL_2D", {"fusedActivationFunction": 1}, "Fused activation"),
        ("AVERAGE_POOL_2D", {"fusedActivationFunction": 3}, "Fused activation"),
        ("FULLY_CONNECTED", {"weightsFormat": 1}, "default weights format"),
        ("CONV_2D", {"dilationWFactor": 2, "dilationHFactor": 1}, "same dilation"),
        ("CUSTOM:Foo", {}, "Operation not supported"),
        ("HARD_SWISH", {}, "Operation not supported"),
    ],
)
def test_op_specific_limits(op: str, opts: dict, message: str) -> None:
    ops, tensors = _chain((op, opts))
    r = check_graph(_graph(ops, tensors))
    assert not r.passed and message in r.ops[0].status


def test_tensor_rules() -> None:
    ops, tensors = _chain(("RELU", {}))
    tensors[1] = _t(1, shape=(1, 8), sig=(-1, 8))
    assert "dynamic size" in check_graph(_graph(ops, tensors)).ops[0].status
    tensors[1] = _t(1, shape=(2, 1, 4, 8))
    assert "more than 3 dimensions" in check_graph(_graph(ops, tensors)).ops[0].status
    tensors[1] = _t(1, shape=(1, 1, 4, 8))  # only the innermost three are > 1: fine
    assert check_graph(_graph(ops, tensors)).passed
    tensors[1] = _t(1, dtype="INT16")
    assert "INT16" in check_graph(_graph(ops, tensors)).ops[0].status
    # constant int32 (bias / shape) tensors are fine, constant float ones are not
    ops = [OpInfo(0, "FULLY_CONNECTED", (0, 2, 3), (1,), {})]
    good = [_t(0), _t(1), _t(2, const=True), _t(3, "INT32", (8,), const=True)]
    assert check_graph(_graph(ops, good)).passed
    bad = [_t(0), _t(1), _t(2, const=True), _t(3, "FLOAT32", (8,), const=True)]
    assert "FLOAT32" in check_graph(_graph(ops, bad)).ops[0].status


def test_softmax_size_limit() -> None:
    ops, tensors = _chain(("SOFTMAX", {}))
    tensors[0] = _t(0, shape=(1, 16_001))
    assert "16000" in check_graph(_graph(ops, tensors)).ops[0].status
    tensors[0] = _t(0, shape=(1, 16_000))
    tensors[1] = _t(1, shape=(1, 16_000))
    assert check_graph(_graph(ops, tensors)).passed


def test_graph_helpers_on_real_model(tiny_artifact: Path) -> None:
    g = read_graph(tiny_artifact / "model.tflite")
    assert g.float_ops() == []
    assert set(g.signature_outputs) == {"probs", "features"}
    assert g.tensors[g.inputs[0]].shape == (1, 1392)
    assert g.tensors[g.inputs[0]].dtype == "INT8"
    counts = g.op_counts()
    assert counts["CONV_2D"] == 3 and counts["MAX_POOL_2D"] == 3
    assert sum(counts.values()) == len(g.ops)
    assert np.all([t.dtype in ("INT8", "INT32") for t in g.tensors])
