"""Spectra I/O: one reader per format and the data sources they come from.

* :mod:`ramanedge.io.rruff` - RRUFF ``.txt`` files (every quirk of SOURCE.md), labels, ids;
* :mod:`ramanedge.io.columns` - two-column CSV/TXT and ``.npy`` pairs, and
  :func:`read_spectrum`, which dispatches on content;
* :mod:`ramanedge.io.sources` - spectrum files in folders, ``.zip`` and ``.tar.xz`` archives,
  read without unpacking to disk, and :func:`expand_paths` for the files and folders a user
  names on the command line.
"""

from ramanedge.io.columns import parse_columns, parse_npy, parse_spectrum, read_spectrum
from ramanedge.io.rruff import (
    Spectrum,
    normalise_label,
    parse_rruff,
    read_rruff,
    strip_rruff_id,
)
from ramanedge.io.sources import (
    SourceFile,
    expand_paths,
    iter_spectrum_files,
    source_fingerprint,
)

__all__ = [
    "SourceFile",
    "Spectrum",
    "expand_paths",
    "iter_spectrum_files",
    "normalise_label",
    "parse_columns",
    "parse_npy",
    "parse_rruff",
    "parse_spectrum",
    "read_rruff",
    "read_spectrum",
    "source_fingerprint",
    "strip_rruff_id",
]
