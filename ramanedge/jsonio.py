"""Strict JSON out: every file and answer the project writes is standard JSON.

Python's :func:`json.dumps` writes ``NaN`` / ``Infinity`` for non-finite floats, which no
standard parser reads; :func:`json_ready` turns them into ``null`` (and numpy scalars,
tuples and paths into plain JSON types), :func:`dumps` then refuses anything left over.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["dumps", "json_ready"]


def json_ready(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None``, numpy scalars as Python numbers, tuples
    as lists, paths as strings and dict keys as strings."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # numpy scalar (no numpy import needed here)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """:func:`json.dumps` of :func:`json_ready` ``(obj)``, strict (``allow_nan=False``)."""
    return json.dumps(json_ready(obj), allow_nan=False, **kw)
