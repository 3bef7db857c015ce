"""Default locations: the RRUFF data root and the cache folder.

The data are never copied into the repository. The default data root is
``$RAMANEDGE_DATA`` or ``../shared/data/rruff`` (relative to the working directory); the
cache is ``$RAMANEDGE_CACHE`` or ``.cache/ramanedge`` in the working directory (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """Where the RRUFF spectra are read from unless a path is given."""
    env = os.environ.get("RAMANEDGE_DATA")
    return Path(env) if env else Path("..") / "shared" / "data" / "rruff"


def default_cache_dir() -> Path:
    """Where parsed data sets and other derived files are cached."""
    env = os.environ.get("RAMANEDGE_CACHE")
    return Path(env) if env else Path(".cache") / "ramanedge"
