"""The model manifest: the one contract between ``quantize`` and ``edge_runtime``.

An artifact is a folder holding :data:`MODEL_FILE` (``model.tflite``), :data:`HEAD_FILE`
(``head.npz``), optionally :data:`EXEMPLARS_FILE` (``exemplars.npz``) and the ground-only
:data:`VARIANT_FILES`, and :data:`MANIFEST_NAME` (``manifest.json``). Every file name of the
contract is defined here and nowhere else. The manifest is JSON only and records: schema
version, labels in output order, the spectral grid, the normalisation, the model config, the
quantisation parameters of every input/output tensor, the training split's hash, metrics,
the sha256 of every file, and a sha256 of the manifest itself (``manifest_sha256``, over the
canonical JSON of all other keys) so a hand-edited manifest is detected too.

This module holds the whole contract:

- names: :data:`MANIFEST_NAME`, :data:`MODEL_FILE`, :data:`HEAD_FILE`, :data:`EXEMPLARS_FILE`,
  :data:`CALIBRATION_FILE`, :data:`LIBRARY_FILE`, :data:`VARIANT_FILES`, :data:`HEADSTORE_DIR`;
- section builders (what ``quantize`` writes): :class:`QuantParams` (one quantisation entry,
  :meth:`QuantParams.to_dict`), :func:`quantization_section`, :func:`model_section`,
  :func:`head_section`, :func:`exemplars_entry`, :func:`variant_entry`,
  :func:`unknown_section`, :func:`conformal_section`, :func:`library_section`,
  :func:`manifest_data`;
- checks: :func:`validate` (structure, run by every :class:`Manifest`), :func:`check_tensors`
  (the quantisation entries against the grid, the labels and the head section);
- I/O: :func:`write_manifest` and :func:`read_manifest` (schema, the manifest's own sha256,
  every file's sha256).

``quantize`` writes with :func:`write_manifest` (once per artifact); ``edge_runtime`` reads
with :func:`read_manifest` and :func:`check_tensors` before a model is used. TensorFlow-free.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ramanedge.errors import ManifestError, ModelError
from ramanedge.fsutil import atomic_write_text, sha256_bytes, sha256_file
from ramanedge.grid import DEFAULT_GRID, GridSpec

if TYPE_CHECKING:  # pragma: no cover
    from ramanedge.library import LibraryConfig

#: The manifest version this code writes. Version 2 (2026-12-06): the ``library`` section
#: must hold ``power`` (the match runs on grid spectra raised to it). Rover code that reads
#: only version 1 predates the key and would ignore it, matching a library raised to 1/4
#: against spectra that are not; it refuses a version-2 manifest instead ("schema_version 2
#: is not supported"), so an artifact updated without its runtime fails loudly. Version 3
#: (2026-12-08): the ``library`` section must hold ``lag_penalty`` (the prior on the match's
#: lag); version-2 code would ignore it and answer otherwise than the sets were calibrated.
SCHEMA_VERSION = 3
#: The versions this code reads: 1 (``library.power`` absent = 1, the match before the key;
#: version-1 manifests written on 2026-12-06 before the bump carry it), 2
#: (``library.lag_penalty`` absent = 0, every lag alike) and 3.
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
#: The full-int8 TFLite model (``manifest.model.file``).
MODEL_FILE = "model.tflite"
#: The float softmax head ``W`` (D, K), ``b`` (K,) (``manifest.head.file``).
HEAD_FILE = "head.npz"
#: Exemplar int8 features and class ids of training spectra (``manifest.head.exemplars``).
EXEMPLARS_FILE = "exemplars.npz"
#: Int8 features and class ids of the conformal calibration spectra (held-out validation
#: specimens, ``manifest.conformal.file``): the rover recalibrates its prediction sets from
#: them after an onboard head retrain.
CALIBRATION_FILE = "calibration.npz"
#: The spectral library: high-passed labelled spectra (of the split parts ``library.parts``)
#: and class ids (``manifest.library.file``, :mod:`ramanedge.library`), blended into the answer.
LIBRARY_FILE = "library.npz"
#: The split parts a library may hold (``library.parts``; ``quantize``: train, + val by default).
LIBRARY_PARTS = ("train", "val")
#: What ``ramanedge quantize --library-spectra`` (and ``benchmarks.library_eval``) may ask the
#: library to hold, the default first.
LIBRARY_SPECTRA = ("train+val", "train")
#: Ground-only float comparison models by precision (``manifest.variants.P.file``).
VARIANT_FILES: Mapping[str, str] = MappingProxyType(
    {"float32": "model_float32.tflite", "float16": "model_float16.tflite"})
#: A manifest is a few kB; anything far larger is not one (and is not read into memory).
MAX_MANIFEST_BYTES = 4 << 20
#: The onboard head store's folder name beside a local artifact's files (reserved: no artifact
#: file may take it).
HEADSTORE_DIR = "headstore"
NORMALISATIONS = ("max",)
#: How the rover's base classification gets its probabilities (``head.base_output``).
BASE_OUTPUTS = ("head", "probs")
#: how head.npz may store its weights (the rover computes in float32)
HEAD_DTYPES = ("float16", "float32")
REQUIRED_KEYS = (
    "schema_version",
    "name",
    "labels",
    "grid",
    "normalisation",
    "model",
    "quantization",
    "files",
)
#: Plausible range of an int8 tensor's scale. A value outside it is a damaged or hand-made
#: manifest (1e308 overflows float32 on the first dequantisation).
MIN_SCALE, MAX_SCALE = 1e-12, 1e12


def _canonical(d: dict[str, Any]) -> bytes:
    body = {k: v for k, v in d.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantisation of one tensor: ``real = scale * (q - zero_point)``.

    One entry of the manifest's ``quantization`` section (:meth:`from_dict` /
    :meth:`to_dict`); the rover's int8 helpers (:mod:`edge_runtime.interpreter`) quantise and
    dequantise with it.
    """

    index: int
    scale: float
    zero_point: int
    shape: tuple[int, ...]
    dtype: str = "int8"
    name: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and MIN_SCALE <= self.scale <= MAX_SCALE):
            raise ModelError(f"tensor {self.name or self.index}: quantisation scale must be a "
                             f"number in [{MIN_SCALE:g}, {MAX_SCALE:g}], got {self.scale!r}")
        if self.dtype != "int8":
            raise ModelError(f"tensor {self.name or self.index}: expected an int8 tensor, "
                             f"got {self.dtype!r}")
        if not -128 <= self.zero_point <= 127:
            raise ModelError(f"tensor {self.name or self.index}: int8 zero point must be in "
                             f"-128..127, got {self.zero_point}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantParams:
        """From a manifest ``quantization`` entry (``index, scale, zero_point, shape, dtype``)."""
        try:
            if not isinstance(d, dict):
                raise TypeError(f"expected an object, got {type(d).__name__}")
            for key in ("index", "zero_point"):
                # int(0.5) would silently truncate a hand-edited zero point to 0
                if type(d.get(key)) is not int:
                    raise ValueError(f"{key!r} must be an integer, got {d.get(key)!r}")
            if type(d.get("scale")) not in (int, float):
                raise ValueError(f"'scale' must be a number, got {d.get('scale')!r}")
            if not isinstance(d.get("shape"), (list, tuple)) or any(
                    type(v) is not int for v in d["shape"]):
                raise ValueError(f"'shape' must be a list of integers, got {d.get('shape')!r}")
            return cls(
                index=int(d["index"]),
                scale=float(d["scale"]),
                zero_point=int(d["zero_point"]),
                shape=tuple(int(s) for s in d["shape"]),
                dtype=str(d.get("dtype", "int8")),
                name=str(d.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"quantisation entry {d!r} is invalid: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The manifest ``quantization`` entry of this tensor (inverse of :meth:`from_dict`)."""
        return {"index": self.index, "name": self.name, "shape": list(self.shape),
                "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``data`` is the full JSON object as read or to be written.

    Convenience properties expose the parts every consumer needs; anything else (metrics,
    model config, the unknown-mineral threshold) is read from ``data`` directly.
    """

    data: dict[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        validate(self.data)

    @property
    def name(self) -> str:
        """The artifact's name."""
        return str(self.data["name"])

    @property
    def labels(self) -> list[str]:
        """Mineral labels in the model's output order."""
        return list(self.data["labels"])

    @property
    def grid(self) -> GridSpec:
        """The spectral grid the model expects."""
        return GridSpec.from_dict(self.data["grid"])

    @property
    def normalisation(self) -> str:
        """The normalisation method name (``"max"``)."""
        return str(self.data["normalisation"]["method"])

    @property
    def model_file(self) -> str:
        """File name of the TFLite model inside the artifact folder."""
        return str(self.data["model"]["file"])

    @property
    def head_file(self) -> str:
        """File name of the float head (``head.file``, :data:`HEAD_FILE` by default)."""
        return str((self.data.get("head") or {}).get("file", HEAD_FILE))

    @property
    def exemplars_file(self) -> str | None:
        """File name of the exemplar features (``head.exemplars``), or ``None``."""
        name = (self.data.get("head") or {}).get("exemplars")
        return name if isinstance(name, str) else None

    @property
    def library_file(self) -> str | None:
        """File name of the spectral library (``library.file``), or ``None``."""
        name = (self.data.get("library") or {}).get("file")
        return name if isinstance(name, str) else None

    @property
    def library_parts(self) -> tuple[str, ...]:
        """The split parts whose spectra the library holds (``library.parts``; a library
        written before the key: ``("train",)``; no library: ``()``): answers to spectra of
        these parts are matched against themselves."""
        library = self.data.get("library")
        if not library:
            return ()
        return tuple(library.get("parts") or ("train",))

    @property
    def calibration_file(self) -> str | None:
        """File name of the calibration spectra's features (``conformal.file`` or
        ``unknown.file``, :data:`CALIBRATION_FILE`), or ``None``."""
        for section in ("conformal", "unknown"):
            name = (self.data.get(section) or {}).get("file")
            if isinstance(name, str):
                return name
        return None

    @property
    def base_output(self) -> str:
        """``head.base_output``: ``"head"`` or ``"probs"`` (the default, older artifacts)."""
        return str((self.data.get("head") or {}).get("base_output", "probs"))

    @property
    def quantization(self) -> dict[str, Any]:
        """Per-tensor ``{"scale", "zero_point", "dtype", "shape"}`` for inputs and outputs."""
        return dict(self.data["quantization"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """``{file name: {"sha256", "bytes"}}`` for every file of the artifact."""
        return dict(self.data["files"])

    @property
    def comparison_files(self) -> frozenset[str]:
        """Files named by ``variants`` (the ground-only float32/float16 comparison models).

        They are checksummed like every file but are optional: the rover never loads them,
        uplinks leave them out, and an artifact folder without them is complete.
        """
        variants = self.data.get("variants") or {}
        names = {v.get("file") for v in variants.values() if isinstance(v, dict)}
        # the model itself can never be optional, whatever a hand-made manifest says
        return frozenset(n for n in names if isinstance(n, str) and n in self.data["files"]
                         and n != self.model_file)

    @property
    def flight_files(self) -> dict[str, dict[str, Any]]:
        """:attr:`files` without :attr:`comparison_files`: what goes onto the rover."""
        skip = self.comparison_files
        return {k: v for k, v in self.files.items() if k not in skip}


def validate(d: Any) -> None:
    """Check the manifest's structure; raise :class:`ManifestError` naming what is wrong."""
    if not isinstance(d, dict):
        raise ManifestError(f"manifest must be a JSON object, got {type(d).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ManifestError(f"manifest is missing keys: {', '.join(missing)}")
    # type check too: JSON true / 1.0 compare equal to 1 in Python
    version = d["schema_version"]
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
        raise ManifestError(
            f"manifest schema_version {version!r} is not supported; expected one of "
            f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} (this code writes {SCHEMA_VERSION})"
        )
    labels = d["labels"]
    if not (isinstance(labels, list) and labels and all(isinstance(s, str) for s in labels)):
        raise ManifestError("manifest 'labels' must be a non-empty list of strings")
    if len(set(labels)) != len(labels):
        raise ManifestError("manifest 'labels' contains duplicates")
    for lab in labels:
        # labels are printed on terminals and sent over the link: no escape sequences
        if not _printable(lab, 100):
            raise ManifestError(f"manifest label {lab[:40]!r} must be 1-100 printable "
                                "characters (no control characters)")
    check_name(d["name"])
    try:
        GridSpec.from_dict(d["grid"])
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"manifest 'grid' is invalid: {e}") from None
    norm = d["normalisation"]
    if not isinstance(norm, dict) or norm.get("method") not in NORMALISATIONS:
        raise ManifestError(
            f"manifest 'normalisation.method' must be one of {NORMALISATIONS}, got {norm!r}"
        )
    model = d["model"]
    if not isinstance(model, dict) or not isinstance(model.get("file"), str):
        raise ManifestError("manifest 'model.file' must name the model file")
    files = d["files"]
    if not isinstance(files, dict) or model["file"] not in files:
        raise ManifestError("manifest 'files' must list the model file with its sha256")
    for name, meta in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ManifestError(f"manifest file name {name!r} must be a plain file name")
        if name == HEADSTORE_DIR:
            raise ManifestError(f"manifest 'files' must not list {HEADSTORE_DIR!r} (reserved for "
                                "the onboard head store)")
        if name == MANIFEST_NAME:
            raise ManifestError(f"manifest 'files' must not list {MANIFEST_NAME} (the manifest "
                                "itself is checked by manifest_sha256)")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise ManifestError(f"manifest entry for {name!r} has no sha256")
    if not isinstance(d["quantization"], dict):
        raise ManifestError("manifest 'quantization' must be an object")
    _validate_references(d)


def _printable(s: str, max_len: int) -> bool:
    """1..``max_len`` characters, not all blank, no control characters (C0, DEL, C1)."""
    return (0 < len(s) <= max_len and bool(s.strip())
            and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in s))


def check_name(name: Any) -> None:
    """An artifact's name, printed on terminals and sent over the link like its labels:
    1-200 printable characters (:class:`ManifestError` otherwise)."""
    if not (isinstance(name, str) and _printable(name, 200)):
        raise ManifestError(f"manifest 'name' must be 1-200 printable characters (no control "
                            f"characters), got {name!r:.60}")


def _is_int(v: Any) -> bool:
    return type(v) is int


def _shown(key: Any) -> str:
    """A key read from a manifest, fit for a one-line message: as it is when printable,
    else its repr (a newline or control character in a crafted key stays visible, escaped)."""
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def _listed(d: dict[str, Any], where: str, name: Any) -> None:
    """A file the runtime may open must be a plain name listed (and so sha256-checked) in
    ``files``: nothing outside the artifact folder, nothing unverified."""
    if not isinstance(name, str) or name not in d["files"]:
        raise ManifestError(f"manifest '{where}' must name a file listed in 'files' "
                            f"(a plain file name inside the artifact), got {name!r}")


def _validate_references(d: dict[str, Any]) -> None:
    """Optional sections: their types, and every file they name (see :func:`_listed`)."""
    head = d.get("head")
    if head is not None:
        if not isinstance(head, dict):
            raise ManifestError(f"manifest 'head' must be an object, got {type(head).__name__}")
        _listed(d, "head.file", head.get("file", HEAD_FILE))
        if head.get("exemplars") is not None:
            _listed(d, "head.exemplars", head["exemplars"])
        dim = head.get("feature_dim")
        if dim is not None and not (_is_int(dim) and dim > 0):
            raise ManifestError(f"manifest 'head.feature_dim' must be a positive integer, "
                                f"got {dim!r}")
        k = head.get("n_classes")
        if k is not None and not (_is_int(k) and k == len(d["labels"])):
            raise ManifestError(f"manifest 'head.n_classes' must be the number of labels "
                                f"({len(d['labels'])}), got {k!r}")
        dt = head.get("dtype")
        if dt is not None and dt not in HEAD_DTYPES:
            raise ManifestError(f"manifest 'head.dtype' must be one of "
                                f"{', '.join(HEAD_DTYPES)}, got {dt!r}")
        out = head.get("base_output", "probs")
        if out not in BASE_OUTPUTS:
            raise ManifestError(f"manifest 'head.base_output' must be 'head' or 'probs', "
                                f"got {out!r}")
    variants = d.get("variants")
    if variants is not None:
        if not isinstance(variants, dict):
            raise ManifestError("manifest 'variants' must be an object {name: {\"file\": ...}}")
        for key, v in variants.items():
            if not isinstance(v, dict):
                raise ManifestError(f"manifest 'variants.{_shown(key)}' must be an object")
            _listed(d, f"variants.{_shown(key)}.file", v.get("file"))
    unknown = d.get("unknown")
    if unknown is not None and unknown != {}:
        if not isinstance(unknown, dict):
            raise ManifestError(f"manifest 'unknown' must be an object or null, got "
                                f"{type(unknown).__name__}")
        t = unknown.get("threshold")
        if type(t) not in (int, float) or not math.isfinite(t):
            raise ManifestError(f"manifest 'unknown.threshold' must be a finite number, got {t!r}")
        if not isinstance(unknown.get("method"), str):
            raise ManifestError("manifest 'unknown.method' must name the rule (a string)")
        if unknown.get("file") is not None:
            _listed(d, "unknown.file", unknown["file"])
    library = d.get("library")
    if library is not None:
        from ramanedge.library import LibraryConfig

        if not isinstance(library, dict):
            raise ManifestError(f"manifest 'library' must be an object or null, got "
                                f"{type(library).__name__}")
        _listed(d, "library.file", library.get("file"))
        rows = library.get("rows")
        if not (_is_int(rows) and rows >= 1):
            raise ManifestError(f"manifest 'library.rows' must be a whole number >= 1, got "
                                f"{rows!r}")
        for key, since in (("power", 2), ("lag_penalty", 3)):
            if d["schema_version"] >= since and key not in library:
                raise ManifestError(f"manifest 'library.{key}' is missing (required since "
                                    f"schema_version {since})")
        parts = library.get("parts", ["train"])
        if not (isinstance(parts, list) and parts
                and all(p in LIBRARY_PARTS for p in parts) and len(set(parts)) == len(parts)):
            raise ManifestError(f"manifest 'library.parts' must list split parts from "
                                f"{', '.join(LIBRARY_PARTS)} once each, got {parts!r}")
        try:
            LibraryConfig.from_dict(library)
        except ModelError as e:
            raise ManifestError(f"manifest {e}") from None
    conformal = d.get("conformal")
    if conformal is not None and conformal != {}:
        if not isinstance(conformal, dict):
            raise ManifestError(f"manifest 'conformal' must be an object or null, got "
                                f"{type(conformal).__name__}")
        for key in ("level", "threshold"):
            v = conformal.get(key)
            if type(v) not in (int, float) or not 0.0 <= v <= 1.0:
                raise ManifestError(f"manifest 'conformal.{key}' must be a number in [0, 1], "
                                    f"got {v!r}")
        if conformal.get("file") is not None:
            _listed(d, "conformal.file", conformal["file"])


# ----------------------------------------------------------------------------- cross-checks


@dataclass(frozen=True)
class Tensors:
    """The int8 model's input and its two outputs as the manifest's ``quantization`` records
    them, checked against the grid, the labels and the head section by :func:`check_tensors`."""

    input: QuantParams
    probs: QuantParams
    features: QuantParams

    @property
    def feature_dim(self) -> int:
        """Dimension D of the ``features`` output."""
        return int(self.features.shape[-1])


def _quant_entry(q: dict[str, Any], *path: str) -> QuantParams:
    node: Any = q
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ManifestError(f"manifest 'quantization.{'.'.join(path)}' is missing")
        node = node[key]
    try:
        return QuantParams.from_dict(node)
    except ModelError as e:
        raise ManifestError(f"manifest 'quantization.{'.'.join(path)}': {e}") from None


def check_tensors(manifest: Manifest) -> Tensors:
    """Parse the quantisation entries and check the sections against each other.

    Everything that needs neither the model file nor an array: the entries of the input and
    both outputs (int8, integer index and zero point, scale in [``MIN_SCALE``,
    ``MAX_SCALE``]), their shapes (``[1, grid points]``, ``[1, K labels]``, ``[1, D]``), the
    head file listed in ``files`` and ``head.feature_dim`` equal to D. Raises
    :class:`ManifestError`. (That the entries are the model file's own tensors is checked
    when an interpreter exists: :func:`edge_runtime.interpreter.check_tensor`.)
    """
    q = manifest.quantization
    t = Tensors(input=_quant_entry(q, "input"), probs=_quant_entry(q, "outputs", "probs"),
                features=_quant_entry(q, "outputs", "features"))
    n_points = manifest.grid.n_points
    k = len(manifest.labels)
    if t.input.shape != (1, n_points):
        raise ManifestError(f"model input shape {list(t.input.shape)} does not match the grid "
                            f"({n_points} points); expected [1, {n_points}]")
    if t.probs.shape != (1, k):
        raise ManifestError(f"model 'probs' shape {list(t.probs.shape)} does not match the "
                            f"{k} labels; expected [1, {k}]")
    if len(t.features.shape) != 2 or t.features.shape[0] != 1:
        raise ManifestError(f"model 'features' shape {list(t.features.shape)}; expected [1, D]")
    if manifest.head_file not in manifest.files:
        raise ManifestError(f"the head file {manifest.head_file!r} is not listed in the "
                            "manifest 'files'")
    dim = (manifest.data.get("head") or {}).get("feature_dim")
    if dim is not None and int(dim) != t.feature_dim:
        raise ManifestError(f"manifest 'head.feature_dim' is {dim} but the model's features "
                            f"have {t.feature_dim} dimensions")
    return t


# ----------------------------------------------------------------------------- section builders


def quantization_section(input_q: QuantParams, outputs: Mapping[str, QuantParams],
                         **extra: Any) -> dict[str, Any]:
    """``{"input": {...}, "outputs": {name: {...}}, **extra}`` (e.g. ``calibration``)."""
    return {"input": input_q.to_dict(),
            "outputs": {k: q.to_dict() for k, q in outputs.items()}, **extra}


def model_section(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``model`` section of a full-int8 :data:`MODEL_FILE` (``extra``: e.g. ``ops``)."""
    return {"file": MODEL_FILE, "precision": "int8", "config": dict(config), **extra}


def exemplars_entry(per_class: int) -> dict[str, Any]:
    """The ``head`` keys naming :data:`EXEMPLARS_FILE` (``per_class`` exemplars per class)."""
    return {"exemplars": EXEMPLARS_FILE, "exemplars_per_class": int(per_class)}


def head_section(*, feature_dim: int, n_classes: int, base_output: str,
                 exemplars_per_class: int = 0, dtype: str = "float32") -> dict[str, Any]:
    """The ``head`` section: :data:`HEAD_FILE`, its shape, how it stores ``W`` (``dtype``:
    ``float16`` or ``float32``; the rover computes in float32), the base output and, when
    ``exemplars_per_class > 0``, the :func:`exemplars_entry`."""
    if base_output not in BASE_OUTPUTS:
        raise ManifestError(f"manifest 'head.base_output' must be 'head' or 'probs', "
                            f"got {base_output!r}")
    if dtype not in HEAD_DTYPES:
        raise ManifestError(f"manifest 'head.dtype' must be one of {', '.join(HEAD_DTYPES)}, "
                            f"got {dtype!r}")
    sec: dict[str, Any] = {"file": HEAD_FILE, "feature_dim": int(feature_dim),
                           "n_classes": int(n_classes), "base_output": base_output,
                           "dtype": dtype}
    if exemplars_per_class > 0:
        sec.update(exemplars_entry(exemplars_per_class))
    return sec


def variant_entry(precision: str, **figures: Any) -> dict[str, Any]:
    """One ``variants`` entry: the ground-only float ``precision`` model of
    :data:`VARIANT_FILES` (float input) and its measured ``figures`` (top1, agreement)."""
    if precision not in VARIANT_FILES:
        raise ManifestError(f"no comparison variant {precision!r}; expected one of "
                            f"{', '.join(VARIANT_FILES)}")
    return {"file": VARIANT_FILES[precision], "precision": precision, "input_dtype": "float32",
            **figures}


def unknown_section(rule: dict[str, Any], *, split: str,
                    previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``unknown`` section: a calibrated ``rule`` (see
    :func:`edge_runtime.ood.calibrate_unknown`), the split it was calibrated on and, when it
    supersedes one, the ``previous`` rule (without that rule's own ``previous``)."""
    section = {**rule, "split": split}
    if previous:
        section["previous"] = {k: v for k, v in previous.items() if k != "previous"}
    return section


def conformal_section(rule: dict[str, Any], *, split: str, with_file: bool) -> dict[str, Any]:
    """The ``conformal`` section: a calibrated prediction-set ``rule`` (see
    :func:`edge_runtime.conformal.calibrate_sets`), the split it was calibrated on and, with
    ``with_file``, :data:`CALIBRATION_FILE` (the calibration spectra's int8 features, for the
    rover's recalibration after a head retrain)."""
    section = {**rule, "split": split}
    if with_file:
        section["file"] = CALIBRATION_FILE
    return section


def library_section(config: LibraryConfig, *, rows: int,
                    parts: Sequence[str] = ("train",)) -> dict[str, Any]:
    """The ``library`` section: the :class:`~ramanedge.library.LibraryConfig` ``config``, the
    number of library spectra, the split parts they come from (``parts``: a record; the
    rover's answer does not depend on it) and :data:`LIBRARY_FILE`."""
    return {**config.to_dict(), "rows": int(rows), "parts": list(parts), "file": LIBRARY_FILE}


def manifest_data(*, name: str, labels: list[str], model: dict[str, Any],
                  quantization: dict[str, Any], head: dict[str, Any], files: list[str],
                  **sections: Any) -> dict[str, Any]:
    """A new artifact's manifest before :func:`write_manifest` checksums ``files``.

    Adds the fixed parts of the contract (the model grid, max normalisation, the creation
    time); ``sections``: ``training``, ``metrics``, ``unknown``, ``variants``, ...
    """
    return {
        "name": name,
        "labels": [str(s) for s in labels],
        "grid": DEFAULT_GRID.to_dict(),
        "normalisation": {"method": "max"},
        "model": model,
        "quantization": quantization,
        "head": head,
        **sections,
        "files": {f: {} for f in files},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ----------------------------------------------------------------------------- reading, writing


def write_manifest(folder: str | os.PathLike, data: dict[str, Any]) -> Manifest:
    """Checksum the artifact's files, then write ``manifest.json`` atomically.

    ``data["files"]`` may list the file names with empty dicts; their sha256 and size are
    computed here from the files in ``folder``. Returns the validated :class:`Manifest`.
    """
    folder = Path(folder)
    data = dict(data)
    data.setdefault("schema_version", SCHEMA_VERSION)
    files = {}
    for name in data.get("files", {}):
        p = folder / name
        if not p.is_file():
            raise ManifestError(f"artifact file {p} does not exist")
        files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    data["files"] = files
    validate(data)
    data["manifest_sha256"] = sha256_bytes(_canonical(data))
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Manifest(data)


def read_manifest(folder: str | os.PathLike, *, verify_files: bool = True) -> Manifest:
    """Read and validate ``folder/manifest.json``.

    Checks the schema, the manifest's own checksum and (by default) the sha256 of every
    listed file. Any mismatch raises :class:`ManifestError` saying which file is wrong.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ManifestError(f"model folder {folder} "
                            f"{'is a file' if folder.exists() else 'does not exist'}; expected "
                            "an artifact folder (manifest.json, model.tflite, ...)")
    if not path.is_file():
        raise ManifestError(f"{path} not found: not a ramanedge model artifact")
    if path.is_symlink() or not path.is_file():
        raise ManifestError(f"{path} must be a regular file (symlinks are refused)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path} is {path.stat().st_size} bytes; a manifest is at most "
                            f"{MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise ManifestError(f"{path} is nested too deeply to be a manifest") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    expected = data.get("manifest_sha256")
    if not isinstance(expected, str):
        raise ManifestError(f"{path} has no manifest_sha256")
    if sha256_bytes(_canonical(data)) != expected:
        raise ManifestError(f"{path} was modified after it was written (manifest sha256 mismatch)")
    manifest = Manifest(data)
    if verify_files:
        verify_artifact_files(folder, manifest)
    return manifest


def verify_artifact_files(folder: str | os.PathLike, manifest: Manifest, *,
                          known: Mapping[str, str] | None = None) -> None:
    """Check every file listed in the manifest against its sha256.

    A missing comparison variant (:attr:`Manifest.comparison_files`) is allowed; a present
    one must match like any other file. ``known``: ``{name: sha256}`` of files the caller
    has just hashed (the device's store, once per commit), used instead of hashing again.
    """
    folder = Path(folder)
    known = known or {}
    optional = manifest.comparison_files
    for name, meta in manifest.files.items():
        p = folder / name
        if not p.exists() and not p.is_symlink() and name in optional:
            continue
        if p.is_symlink():
            raise ManifestError(f"artifact file {p} is a symlink; every file must be a regular "
                                "file inside the artifact")
        if not p.is_file():
            raise ManifestError(f"artifact file {p} listed in the manifest is missing")
        sha = known[name] if name in known else sha256_file(p)
        if sha != meta["sha256"]:
            raise ManifestError(f"artifact file {p} does not match its sha256 in the manifest")
