"""The one TFLite interpreter factory and the int8 tensor helpers (pycoral style).

:func:`make_interpreter` is the only place that knows which TFLite runtime is installed:
``ai-edge-litert`` first (the maintained wheel, Linux x86_64/aarch64), the older
``tflite-runtime`` wheel as a fallback (still the one packaged for some Raspberry Pi / Coral
images), and the Edge TPU delegate (``libedgetpu.so.1``) when asked for. TensorFlow itself
is never imported: the rover computer does not have it.

Everything else takes the interpreter as an argument (free functions, as in ``pycoral.adapters``)
so callers decide threads and delegates once and tests can pass any interpreter in.
The model is full-int8, so inputs are quantised and outputs dequantised here explicitly with
the scale/zero-point recorded in the manifest (:class:`ramanedge.manifest.QuantParams`, one
``quantization`` entry), never by the runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from ramanedge.errors import ModelError
from ramanedge.manifest import QuantParams

#: the most CPU threads an interpreter may be given (a rover computer has a handful of
#: cores; far larger values crash the runtime instead of failing cleanly)
MAX_THREADS = 64

#: Edge TPU runtime library name per platform (as in pycoral.utils.edgetpu).
EDGETPU_SHARED_LIB: str = {
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}.get(platform.system(), "libedgetpu.so.1")


def _runtime() -> tuple[Any, Any, str]:
    """Return ``(Interpreter class, load_delegate, runtime name)`` of the installed runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError:
        pass
    raise ModelError(
        "no TFLite runtime is installed: install 'ai-edge-litert' (pip install ramanedge[edge]) "
        "or 'tflite-runtime'"
    )


def runtime_name() -> str:
    """Name of the TFLite runtime :func:`make_interpreter` uses (``ai-edge-litert`` or
    ``tflite-runtime``); raises :class:`ModelError` when neither is installed."""
    return _runtime()[2]


def make_interpreter(
    model: str | os.PathLike | bytes,
    *,
    num_threads: int = 1,
    edgetpu: bool = False,
    device: str | None = None,
) -> Any:
    """Create a TFLite interpreter for ``model`` (a file path or the model's bytes, as
    pycoral's ``make_interpreter``) with its tensors allocated.

    Every interpreter in the project comes from here: the rover's classifier, the onboard
    head retrainer, the quantiser's parity gate (which runs the converted bytes before any
    file is written) and the benchmarks.

    ``num_threads``: CPU threads for the kernels (>= 1; one thread by default so latency is
    predictable on a shared rover computer). ``edgetpu=True`` loads the Edge TPU delegate
    (``libedgetpu.so.1``); ``device`` is passed to it (e.g. ``"usb"``, ``"pci:0"``).
    Raises :class:`ModelError` when the file is missing, is not a TFLite model, no runtime is
    installed, or the Edge TPU delegate / device is not present.
    """
    if not 1 <= int(num_threads) <= MAX_THREADS:
        raise ModelError(f"num_threads must be in 1..{MAX_THREADS}, got {num_threads}")
    content: bytes | None = None
    if isinstance(model, bytes | bytearray | memoryview):
        content = bytes(model)
        path = "<model bytes>"
        if not content:
            raise ModelError("the model bytes are empty; expected a TFLite flatbuffer")
    else:
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelError(f"model file {path} does not exist")
    interpreter_cls, load_delegate, name = _runtime()
    delegates = []
    if edgetpu:
        options = {"device": device} if device else {}
        try:
            # probe the library first: a failed load_delegate() leaves a half-built Delegate
            # whose destructor raises (ai-edge-litert 2.x)
            ctypes.CDLL(EDGETPU_SHARED_LIB)
            delegates.append(load_delegate(EDGETPU_SHARED_LIB, options))
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelError(
                f"the Edge TPU delegate {EDGETPU_SHARED_LIB} could not be loaded "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); install the Edge "
                "TPU runtime (libedgetpu1-std) and plug in the accelerator, or run without "
                "--edgetpu on the CPU"
            ) from None
    try:
        source = {"model_content": content} if content is not None else {"model_path": path}
        with _native_log_captured() as log:
            interpreter = interpreter_cls(
                **source,
                num_threads=int(num_threads),
                experimental_delegates=delegates or None,
            )
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        extra = f" ({log.text().strip().splitlines()[-1]})" if log.text().strip() else ""
        raise ModelError(f"{path} could not be loaded by {name}: {e}{extra}") from None
    return interpreter


#: Set to 1 to see the runtime's own log lines (e.g. "INFO: Created TensorFlow Lite XNNPACK
#: delegate for CPU") on stderr.
VERBOSE_ENV = "RAMANEDGE_VERBOSE"


class _CapturedLog:
    def __init__(self) -> None:
        self.data = b""

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@contextlib.contextmanager
def _native_log_captured() -> Iterator[_CapturedLog]:
    """Keep the runtime's C++ log lines (written to file descriptor 2) out of the user's
    terminal while an interpreter is built; with ``$RAMANEDGE_VERBOSE`` they pass through.
    What was written is kept, so a load failure can quote it."""
    log = _CapturedLog()
    if os.environ.get(VERBOSE_ENV):
        yield log
        return
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters)
        yield log
        return
    try:
        # an anonymous in-memory file (no tempfile import on the rover: it pulls in modules)
        memfd = hasattr(os, "memfd_create")
        fd = os.memfd_create("ramanedge-runtime-log") if memfd else os.open(os.devnull,
                                                                            os.O_RDWR)
        os.dup2(fd, 2)
    except OSError:  # out of descriptors, a sandbox: no capture, the lines pass through
        os.close(saved)
        yield log
        return
    try:
        yield log
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if memfd:
            size = os.fstat(fd).st_size
            log.data = os.pread(fd, 64 * 1024, max(0, size - 64 * 1024))  # the tail
        os.close(fd)


def quantize_int8(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Float -> int8 with ``round(x / scale) + zero_point``, saturated to [-128, 127].

    Explicit rather than left to the runtime because the model is full-int8 (the Edge TPU
    only takes int8 tensors) and we want the exact rounding the quantiser's parity check
    used. Saturation matters: max-normalised raw spectra can dip below 0 (negative counts),
    which the calibrated input range may not cover; those samples clip to the range edge
    instead of wrapping around.
    """
    # in place on one float32 buffer (the per-spectrum path: no temporaries); np.rint is
    # np.round's half-to-even rounding
    x = np.asarray(x, dtype=np.float32)
    q = np.divide(x, np.float32(qp.scale), out=np.empty(x.shape, np.float32))
    np.rint(q, out=q)
    q += np.float32(qp.zero_point)
    np.maximum(q, np.float32(-128), out=q)
    np.minimum(q, np.float32(127), out=q)
    return q.astype(np.int8)


def dequantize_int8(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """int8 -> float32 with ``scale * (q - zero_point)``.

    Computed in place on one float32 copy: int8 values and their differences are exact in
    float32, and a single buffer keeps the peak memory of large exemplar banks low.
    """
    out = np.subtract(q, np.float32(qp.zero_point), dtype=np.float32)
    out *= np.float32(qp.scale)
    return out


def set_input_int8(interpreter: Any, x: np.ndarray, qp: QuantParams) -> None:
    """Quantise one float spectrum ``x`` and copy it into the interpreter's input tensor."""
    x = np.asarray(x, dtype=np.float32).reshape(qp.shape)
    interpreter.set_tensor(qp.index, quantize_int8(x, qp))


def get_output_float(interpreter: Any, qp: QuantParams) -> np.ndarray:
    """Dequantised copy of output tensor ``qp.index`` (call after ``interpreter.invoke()``)."""
    return dequantize_int8(interpreter.get_tensor(qp.index), qp)


def check_tensor(interpreter: Any, qp: QuantParams, *, output: bool) -> None:
    """Check that the interpreter's tensor ``qp.index`` has the manifest's shape and dtype.

    Catches a manifest and a model file that do not belong together before any inference.
    """
    details = interpreter.get_output_details() if output else interpreter.get_input_details()
    kind = "output" if output else "input"
    for d in details:
        if int(d["index"]) == qp.index:
            shape = tuple(int(s) for s in d["shape"])
            dtype = np.dtype(d["dtype"]).name
            if shape != qp.shape or dtype != qp.dtype:
                raise ModelError(
                    f"model {kind} tensor {qp.index} is {dtype}{list(shape)} but the manifest "
                    f"says {qp.dtype}{list(qp.shape)}"
                )
            # the manifest's (scale, zero point) are what the rover quantises with; a model
            # file swapped under a re-hashed manifest would otherwise run with wrong roundings
            scale, zero_point = d.get("quantization", (qp.scale, qp.zero_point))
            if int(zero_point) != qp.zero_point or not np.isclose(
                    float(scale), qp.scale, rtol=1e-6, atol=0.0):
                raise ModelError(
                    f"model {kind} tensor {qp.index} is quantised with scale {float(scale):.6g}, "
                    f"zero point {int(zero_point)} but the manifest says scale {qp.scale:.6g}, "
                    f"zero point {qp.zero_point}; the model file and manifest do not belong "
                    "together")
            return
    have = sorted(int(d["index"]) for d in details)
    raise ModelError(f"the model has no {kind} tensor with index {qp.index} (has {have})")


def tensor_quant(detail: dict[str, Any], name: str = "") -> QuantParams:
    """:class:`QuantParams` of one ``get_input_details()``/``get_output_details()`` entry."""
    scale, zero_point = detail["quantization"]
    return QuantParams(index=int(detail["index"]), scale=float(scale),
                       zero_point=int(zero_point),
                       shape=tuple(int(s) for s in detail["shape"]),
                       dtype=np.dtype(detail["dtype"]).name, name=name)


def model_tensors(interpreter: Any, output_names: tuple[str, ...] = ("probs", "features"),
                  ) -> tuple[QuantParams, dict[str, QuantParams]]:
    """``(input, {output name: params})`` read from the converted model itself.

    Outputs are found by the signature's names (``probs``, ``features``); a model without a
    named signature falls back to telling them apart by width (features are wider than the
    class probabilities only in the paper family, so the signature is what the exporter
    relies on). Used by the exporter to write the manifest's ``quantization`` section, so
    the rover reads back exactly what the converter produced.
    """
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise ModelError(f"expected one input tensor, found {len(inputs)}")
    details = {int(d["index"]): d for d in interpreter.get_output_details()}
    sigs = interpreter.get_signature_list() if hasattr(interpreter, "get_signature_list") else {}
    outs: dict[str, int] = {}
    if sigs:
        runner = interpreter.get_signature_runner(next(iter(sigs)))
        outs = {k: int(v["index"]) for k, v in runner.get_output_details().items()}
    if set(output_names) <= set(outs):
        chosen = {k: details[outs[k]] for k in output_names}
    else:
        if len(details) != len(output_names):
            raise ModelError(f"expected {len(output_names)} outputs "
                             f"({', '.join(output_names)}), found {len(details)}")
        ordered = sorted(details.values(), key=lambda d: int(d["shape"][-1]))
        chosen = dict(zip(output_names, ordered, strict=True))
    return (tensor_quant(inputs[0], "spectrum"),
            {k: tensor_quant(d, k) for k, d in chosen.items()})


def run_int8_batch(interpreter: Any, X: np.ndarray, input_q: QuantParams,
                   outputs: dict[str, QuantParams]) -> dict[str, np.ndarray]:
    """Run every row of ``X`` (N, points) through the int8 model, one invoke per spectrum.

    The rover's own path: :func:`set_input_int8` (quantise), ``invoke``,
    :func:`get_output_float` (dequantise) for each named output. Returns
    ``{name: float32 (N, width)}``. The parity gate, the exemplar bank, the head retrainer and
    the benchmarks all call this, so what the gate judged is what flies.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != input_q.shape[-1]:
        raise ModelError(f"expected spectra of shape (N, {input_q.shape[-1]}), got {X.shape}")
    res = {k: np.empty((X.shape[0], int(np.prod(q.shape[1:]))), dtype=np.float32)
           for k, q in outputs.items()}
    for i, row in enumerate(X):
        set_input_int8(interpreter, row, input_q)
        interpreter.invoke()
        for k, q in outputs.items():
            res[k][i] = get_output_float(interpreter, q).reshape(-1)
    return res
