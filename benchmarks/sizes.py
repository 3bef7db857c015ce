"""Artifact sizes: every file of a model folder, and float32 vs int8 model bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ramanedge.manifest import MODEL_FILE, VARIANT_FILES


def artifact_sizes(model_dir: Path, run_dir: Path | None = None) -> dict[str, Any]:
    """Bytes of every file in ``model_dir`` (and ``model.keras`` of ``run_dir``).

    ``ratio_float32_to_int8``: ``model_float32.tflite`` / ``model.tflite`` when both exist.
    """
    files = {p.name: p.stat().st_size for p in sorted(Path(model_dir).iterdir())
             if p.is_file() and not p.name.startswith(".")}
    out: dict[str, Any] = {"folder": str(model_dir), "files": files,
                           "total_bytes": sum(files.values())}
    if run_dir is not None and (Path(run_dir) / "model.keras").is_file():
        out["keras_model_bytes"] = (Path(run_dir) / "model.keras").stat().st_size
    i8, f32 = files.get(MODEL_FILE), files.get(VARIANT_FILES["float32"])
    if i8 and f32:
        out["ratio_float32_to_int8"] = f32 / i8
    # what must go onto the rover: everything but the comparison variants
    variants = set(VARIANT_FILES.values())
    out["deploy_bytes"] = sum(v for k, v in files.items() if k not in variants)
    return out
