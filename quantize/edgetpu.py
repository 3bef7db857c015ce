"""Static Edge TPU compatibility check of a ``.tflite`` model, op by op.

The model's flatbuffer is parsed directly (``ai_edge_litert``'s generated schema; TensorFlow's
copy as a fallback), so the check needs neither TensorFlow nor an Edge TPU compiler. Each
operator of the main subgraph, in execution order, is tested against the rules of Coral's
"TensorFlow models on the Edge TPU" page (coral.ai/docs/edgetpu/models-intro):

- the op must be in the supported-operations table (:data:`SUPPORTED_OPS`); ``LEAKY_RELU``,
  for instance, is not: use ReLU or PReLU for an Edge TPU build;
- every tensor must be 8-bit quantised (``int8``/``uint8``; constant ``int32`` tensors such
  as biases and shapes are fine), of static size, and with at most 3 dimensions larger
  than 1 (the innermost three);
- a few per-op limits from the same table (no fused activation on pooling/concatenation,
  default weight format for fully-connected layers, softmax on at most 16,000 values, the
  same dilation in x and y for convolutions).

The compiler maps ops to the Edge TPU until the first op it cannot map; that op and every
op after it run on the CPU, even supported ones ("More than one subgraph is not
supported"). :func:`check_edgetpu` reproduces that partitioning, so the report says
where the graph would fall back.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import ModelError


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - only without ai-edge-litert
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


# Supported operations from Coral's table (compiler 16). Note: DEQUANTIZE is *not* in it.
SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS", "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL",
        "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
        "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
        "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
        "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)

HINTS: dict[str, str] = {
    "LEAKY_RELU": "train with --activation relu or prelu for an Edge TPU build",
    "DEQUANTIZE": "export with int8 inputs/outputs (no float ops)",
}

QUANTISED_TYPES = ("INT8", "UINT8")
CONSTANT_TYPES = ("INT8", "UINT8", "INT32")
SOFTMAX_MAX_ELEMENTS = 16_000


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph as stored in the flatbuffer."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    constant: bool
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class OpInfo:
    """One operator of the main subgraph, in execution order."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]


@dataclass(frozen=True)
class Graph:
    """The main subgraph of a ``.tflite`` model: tensors, ops, signature names."""

    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    signature_inputs: dict[str, int]
    signature_outputs: dict[str, int]
    n_subgraphs: int

    def op_counts(self) -> dict[str, int]:
        """``{op name: count}`` in first-seen order."""
        return dict(Counter(o.op for o in self.ops))

    def float_ops(self) -> list[OpInfo]:
        """Ops that read or write a non-constant floating-point tensor."""
        bad = []
        for o in self.ops:
            for t in (*o.inputs, *o.outputs):
                if t >= 0 and not self.tensors[t].constant and self.tensors[t].dtype.startswith(
                    ("FLOAT", "BFLOAT")
                ):
                    bad.append(o)
                    break
        return bad


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _text(v: bytes | str) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def read_graph(src: str | os.PathLike | bytes) -> Graph:
    """Parse a ``.tflite`` file (path or bytes) into a :class:`Graph` (no TensorFlow needed).

    Raises :class:`~ramanedge.errors.ModelError` when the bytes are not a TFLite model.
    """
    if isinstance(src, bytes | bytearray):
        buf = bytes(src)
        where = "model bytes"
    else:
        p = Path(src)
        if not p.is_file():
            raise ModelError(f"{p} is not a file; expected a .tflite model")
        buf = p.read_bytes()
        where = str(p)
    schema = _schema()
    # A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"{where} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # flatbuffers raises bare errors on corrupt data
        raise ModelError(f"{where} could not be parsed as a TFLite model: {e}") from None
    if not model.subgraphs:
        raise ModelError(f"{where} has no subgraph")
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    opt_fields = {"fusedActivationFunction", "weightsFormat", "dilationWFactor",
                  "dilationHFactor", "keepNumDims", "padding"}
    sg = model.subgraphs[0]
    buffers = model.buffers or []
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        shape = tuple(int(v) for v in (t.shape if t.shape is not None else ()))
        sig = tuple(int(v) for v in t.shapeSignature) if t.shapeSignature is not None else shape
        b = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
        constant = b is not None and (
            (b.data is not None and len(b.data) > 0) or int(getattr(b, "size", 0) or 0) > 0
        )
        q = t.quantization
        scale = zp = None
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scale = float(np.asarray(q.scale).ravel()[0])
            zp = int(np.asarray(q.zeroPoint).ravel()[0]) if q.zeroPoint is not None else 0
        name = _text(t.name)
        tensors.append(TensorInfo(i, name, type_names.get(t.type, str(t.type)), shape, sig,
                                  constant, scale, zp))
    ops = []
    for i, o in enumerate(sg.operators or []):
        code = model.operatorCodes[o.opcodeIndex]
        c = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(c, f"OP_{c}")
        if name == "CUSTOM" and code.customCode:
            cc = code.customCode
            name = f"CUSTOM:{cc.decode() if isinstance(cc, bytes) else cc}"
        opts = {}
        if o.builtinOptions is not None:
            opts = {k: v for k, v in vars(o.builtinOptions).items() if k in opt_fields}
        ins = tuple(int(v) for v in (o.inputs if o.inputs is not None else ()))
        outs = tuple(int(v) for v in (o.outputs if o.outputs is not None else ()))
        ops.append(OpInfo(i, name, ins, outs, opts))
    sig_in: dict[str, int] = {}
    sig_out: dict[str, int] = {}
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex == 0:
            for tm in sd.inputs or []:
                sig_in[_text(tm.name)] = int(tm.tensorIndex)
            for tm in sd.outputs or []:
                sig_out[_text(tm.name)] = int(tm.tensorIndex)
            break
    return Graph(
        tensors=tuple(tensors),
        ops=tuple(ops),
        inputs=tuple(int(v) for v in sg.inputs),
        outputs=tuple(int(v) for v in sg.outputs),
        signature_inputs=sig_in,
        signature_outputs=sig_out,
        n_subgraphs=len(model.subgraphs),
    )


@dataclass(frozen=True)
class OpReport:
    """Where one op would run and why."""

    index: int
    op: str
    on_tpu: bool
    status: str


@dataclass(frozen=True)
class EdgeTPUReport:
    """Op-by-op Edge TPU mapping of a model; ``passed`` when nothing falls back to the CPU."""

    source: str
    ops: tuple[OpReport, ...]
    notes: tuple[str, ...] = ()

    @property
    def n_tpu(self) -> int:
        """Ops mapped to the Edge TPU."""
        return sum(o.on_tpu for o in self.ops)

    @property
    def n_cpu(self) -> int:
        """Ops that would run on the CPU."""
        return len(self.ops) - self.n_tpu

    @property
    def first_fallback(self) -> OpReport | None:
        """The first op the compiler could not map (where the graph falls back), or None."""
        return next((o for o in self.ops if not o.on_tpu), None)

    @property
    def passed(self) -> bool:
        """True when every op maps to the Edge TPU."""
        return self.n_cpu == 0 and not self.notes

    def format(self) -> str:
        """Human-readable table plus a one-line verdict."""
        w = max([len(o.op) for o in self.ops] + [2])
        lines = [f"Edge TPU check of {self.source}", f"{'#':>3}  {'op':<{w}}  where  status"]
        for o in self.ops:
            where = "TPU" if o.on_tpu else "CPU"
            lines.append(f"{o.index:>3}  {o.op:<{w}}  {where:<5}  {o.status}")
        lines.extend(f"note: {n}" for n in self.notes)
        ff = self.first_fallback
        if self.passed:
            lines.append(f"PASS: all {len(self.ops)} ops map to the Edge TPU")
        elif ff is not None:
            lines.append(
                f"FAIL: {self.n_tpu} of {len(self.ops)} ops map to the Edge TPU; the graph falls "
                f"back to the CPU at op #{ff.index} {ff.op} ({ff.status}) and runs "
                f"{self.n_cpu} ops there"
            )
        else:
            lines.append("FAIL: see notes")
        return "\n".join(lines)


def _tensor_problem(t: TensorInfo) -> str | None:
    if t.constant:
        if t.dtype not in CONSTANT_TYPES:
            return f"Tensor {t.name!r} has unsupported data type {t.dtype}"
        return None
    if t.dtype not in QUANTISED_TYPES:
        return f"Tensor {t.name!r} has unsupported data type {t.dtype} (needs int8/uint8)"
    if any(d < 0 for d in t.shape_signature):
        return f"Tensor {t.name!r} has a dynamic size {list(t.shape_signature)}"
    if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
        return (f"Tensor {t.name!r} {list(t.shape)} has more than 3 dimensions "
                f"larger than 1")
    return None


def _op_problem(o: OpInfo, g: Graph) -> str | None:
    if o.op not in SUPPORTED_OPS:
        hint = HINTS.get(o.op)
        return "Operation not supported" + (f" ({hint})" if hint else "")
    for t in (*o.inputs, *o.outputs):
        if t >= 0:
            p = _tensor_problem(g.tensors[t])
            if p:
                return p
    act = o.options.get("fusedActivationFunction", 0)
    if o.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION") and act:
        return "Fused activation function is not supported on this op"
    if o.op == "FULLY_CONNECTED" and o.options.get("weightsFormat", 0) != 0:
        return "Only the default weights format is supported for FULLY_CONNECTED"
    if o.op == "SOFTMAX" and o.inputs:
        shape = g.tensors[o.inputs[0]].shape
        if int(np.prod(shape)) > SOFTMAX_MAX_ELEMENTS or sum(d > 1 for d in shape) > 1:
            return f"SOFTMAX needs a 1-D input of at most {SOFTMAX_MAX_ELEMENTS} values"
    if o.op == "CONV_2D" and o.options.get("dilationWFactor", 1) != o.options.get(
        "dilationHFactor", 1
    ):
        return "CONV_2D needs the same dilation in x and y"
    return None


def check_graph(g: Graph, source: str = "model") -> EdgeTPUReport:
    """Apply the Edge TPU rules and the first-unsupported-op partitioning to a graph."""
    reports = []
    fallen = False
    for o in g.ops:
        problem = _op_problem(o, g)
        if fallen:
            status = problem or "More than one subgraph is not supported"
            reports.append(OpReport(o.index, o.op, False, status))
        elif problem:
            fallen = True
            reports.append(OpReport(o.index, o.op, False, problem))
        else:
            reports.append(OpReport(o.index, o.op, True, "Mapped to Edge TPU"))
    notes = []
    for i in g.inputs:
        p = _tensor_problem(g.tensors[i])
        if p:
            notes.append(f"model input: {p}")
    if g.n_subgraphs > 1:
        notes.append(f"model has {g.n_subgraphs} subgraphs; only the first was checked")
    return EdgeTPUReport(source, tuple(reports), tuple(notes))


def check_edgetpu(src: str | os.PathLike | bytes) -> EdgeTPUReport:
    """Edge TPU report for a ``.tflite`` file, raw model bytes, or an artifact folder.

    For a folder, the model named in its ``manifest.json`` is checked (falling back to
    ``model.tflite`` when there is no manifest).
    """
    if isinstance(src, bytes | bytearray):
        return check_graph(read_graph(src), "model bytes")
    p = Path(src)
    if p.is_dir():
        from ramanedge.manifest import MANIFEST_NAME, MODEL_FILE, read_manifest

        if (p / MANIFEST_NAME).is_file():
            p = p / read_manifest(p).model_file
        else:
            p = p / MODEL_FILE
            if not p.is_file():
                raise ModelError(f"{src} holds neither {MANIFEST_NAME} nor {MODEL_FILE}")
    elif not p.exists():
        raise ModelError(f"{p} does not exist; expected a model folder or a .tflite file")
    return check_graph(read_graph(p), str(p))
