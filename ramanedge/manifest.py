"""The model manifest: the one contract between ``quantize`` and ``edge_runtime``.

An artifact is a folder holding ``model.tflite`` (plus any other listed files, e.g.
``head.npz``) and ``manifest.json``. The manifest is JSON only and records: schema version,
labels in output order, the spectral grid, the normalisation, the model config, the
quantisation parameters of every input/output tensor, the training split's hash, metrics,
the sha256 of every file, and a sha256 of the manifest itself (``manifest_sha256``, over the
canonical JSON of all other keys) so a hand-edited manifest is detected too.

``quantize`` writes with :func:`write_manifest`; ``edge_runtime`` reads with
:func:`read_manifest`, which validates everything before a model is used.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramanedge.errors import ManifestError
from ramanedge.fsutil import atomic_write_text, sha256_bytes, sha256_file
from ramanedge.grid import GridSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: A manifest is a few kB; anything far larger is not one (and is not read into memory).
MAX_MANIFEST_BYTES = 4 << 20
#: The onboard head store's folder name beside a local artifact's files (reserved: no artifact
#: file may take it).
HEADSTORE_DIR = "headstore"
NORMALISATIONS = ("max",)
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


def _canonical(d: dict[str, Any]) -> bytes:
    body = {k: v for k, v in d.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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
    if type(d["schema_version"]) is not int or d["schema_version"] != SCHEMA_VERSION:
        raise ManifestError(
            f"manifest schema_version {d['schema_version']!r} is not supported; "
            f"expected {SCHEMA_VERSION}"
        )
    labels = d["labels"]
    if not (isinstance(labels, list) and labels and all(isinstance(s, str) for s in labels)):
        raise ManifestError("manifest 'labels' must be a non-empty list of strings")
    if len(set(labels)) != len(labels):
        raise ManifestError("manifest 'labels' contains duplicates")
    for lab in labels:
        # labels are printed on terminals and sent over the link: no escape sequences
        if not lab.strip() or len(lab) > 100 or any(ord(c) < 32 or 127 <= ord(c) < 160
                                                    for c in lab):
            raise ManifestError(f"manifest label {lab[:40]!r} must be 1-100 printable "
                                "characters (no control characters)")
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


def _is_int(v: Any) -> bool:
    return type(v) is int


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
        _listed(d, "head.file", head.get("file", "head.npz"))
        if head.get("exemplars") is not None:
            _listed(d, "head.exemplars", head["exemplars"])
        dim = head.get("feature_dim")
        if dim is not None and not (_is_int(dim) and dim > 0):
            raise ManifestError(f"manifest 'head.feature_dim' must be a positive integer, "
                                f"got {dim!r}")
        out = head.get("base_output", "probs")
        if out not in ("head", "probs"):
            raise ManifestError(f"manifest 'head.base_output' must be 'head' or 'probs', "
                                f"got {out!r}")
    variants = d.get("variants")
    if variants is not None:
        if not isinstance(variants, dict):
            raise ManifestError("manifest 'variants' must be an object {name: {\"file\": ...}}")
        for key, v in variants.items():
            if not isinstance(v, dict):
                raise ManifestError(f"manifest 'variants.{key}' must be an object")
            _listed(d, f"variants.{key}.file", v.get("file"))
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
        raise ManifestError(f"model folder {folder} does not exist")
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


def verify_artifact_files(folder: str | os.PathLike, manifest: Manifest) -> None:
    """Check every file listed in the manifest against its sha256.

    A missing comparison variant (:attr:`Manifest.comparison_files`) is allowed; a present
    one must match like any other file.
    """
    folder = Path(folder)
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
        if sha256_file(p) != meta["sha256"]:
            raise ManifestError(f"artifact file {p} does not match its sha256 in the manifest")
