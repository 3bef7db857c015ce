"""Reader for RRUFF Raman spectrum files (``##KEY=VALUE`` header + ``x, y`` rows).

One parser tolerates every quirk listed in ``../shared/data/rruff/SOURCE.md``:

* separators: ``x, y`` (comma + space), whitespace, or a mix (quirk 2); E-notation numbers;
* ``##END=`` optional, blank lines anywhere (quirk 3); CRLF or LF line ends (quirk 4);
* UTF-8 with a cp1252 fallback (quirk 5, Suenoite R250132);
* repeated header blocks and multi-line header values (quirk 6): the first value of a key
  wins; a non-``##`` line that is not a data row and comes before the first data row is a
  continuation of the previous header value;
* junk lines inside the data (quirk 7) are skipped and counted (``Spectrum.header`` does not
  hold them; :attr:`Spectrum.n_unparsed` does);
* non-monotonic axes (quirk 8) are sorted and duplicate wavenumbers averaged by
  :func:`ramanedge.grid.clean_axis`;
* partial coverage (quirk 9) is *not* an error here: coverage is checked when a spectrum is
  put on the model grid (:func:`ramanedge.grid.preprocess`);
* negative or saturated counts (quirk 11) are kept as they are;
* ``=`` inside header values (quirk 1): split on the first ``=`` only.

The rule for a data row is the one SOURCE.md gives: a line whose first two tokens (split on
commas and/or whitespace) parse as floats. Everything else is header, continuation or junk.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from ramanedge.errors import SpectrumError
from ramanedge.grid import clean_axis

__all__ = [
    "Spectrum",
    "decode_text",
    "display_names",
    "filename_fields",
    "is_non_mineral",
    "kind_from_name",
    "looks_like_rruff",
    "normalise_label",
    "parse_laser",
    "parse_rruff",
    "parse_rruff_text",
    "read_rruff",
    "strip_rruff_id",
]

_SPLIT = re.compile(r"[,;\s]+")
_ID = re.compile(r"^([A-Za-z]+\d+)")
_LASER = re.compile(r"^\s*(\d+(?:[.\-]\d+)?)\s*(?:nm)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class Spectrum:
    """One spectrum as read from a file.

    ``x`` (wavenumber, cm-1, strictly increasing) and ``y`` (intensity) are float64 arrays
    of equal length >= 2 with no NaN/inf. The RRUFF fields are ``None`` when the file does
    not say (e.g. a user's two-column CSV).
    """

    x: np.ndarray
    y: np.ndarray
    mineral: str | None = None
    """Display label: the ``##NAMES`` value as written (never the file-name spelling)."""
    rruff_id: str | None = None
    """Sample id (``##RRUFFID`` stripped of suffixes such as ``_a``, ``.3``, ``-4``)."""
    laser_nm: float | None = None
    kind: str | None = None
    """``"raw"``, ``"processed"`` or ``None`` when unknown."""
    path: str = ""
    header: dict[str, str] = field(default_factory=dict)
    n_unparsed: int = 0
    """Non-empty lines that are neither data rows, ``##`` header lines nor header
    continuations (``#`` comments, column titles such as ``X Y``, junk inside the data)."""
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        x, y = clean_axis(self.x, self.y)
        x.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.x.size)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode file bytes: UTF-8 (with or without BOM), else cp1252 (quirk 5).

    Returns ``(text, encoding)``. cp1252 leaves 5 byte values undefined; those are replaced,
    which only ever touches header text in the RRUFF files.
    """
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


def normalise_label(name: str) -> str:
    """Case- and punctuation-insensitive key of a mineral name (quirk 12).

    ``"Adamsite-(Y)"``, ``"AdamsiteY"`` and ``"adamsite (y)"`` all give ``"adamsitey"``. Use
    it to *merge* sets whose spellings differ; display the ``##NAMES`` value.
    """
    return re.sub(r"[\W_]+", "", name.casefold())


def display_names(names: Sequence[str]) -> list[str]:
    """One displayed spelling per mineral (quirk 12): each name maps to the most frequent
    spelling of its :func:`normalise_label` key (ties: the alphabetically first), so the
    label shown is always a real ``##NAMES`` value. Same length and order as ``names``."""
    by_key: dict[str, Counter[str]] = {}
    for n in names:
        by_key.setdefault(normalise_label(n), Counter())[n] += 1
    best = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in by_key.items()}
    return [best[normalise_label(n)] for n in names]


def is_non_mineral(spectrum: Spectrum, path: str) -> bool:
    """True for the non-mineral compounds of LR-Raman (quirk 13): a ``D``/``XD`` id in the
    header or in the file name's id field (the two can disagree)."""
    def d_id(rid: str | None) -> bool:
        return bool(rid) and rid.upper().startswith(("D", "XD"))

    fields = filename_fields(path)
    return d_id(spectrum.rruff_id) or (len(fields) > 1 and d_id(fields[1]))


def strip_rruff_id(raw: str) -> str | None:
    """``"R050441_a"`` -> ``"R050441"``, ``"X050012.3"`` -> ``"X050012"``; None if no id."""
    m = _ID.match(raw.strip())
    return m.group(1).upper() if m else None


def parse_laser(value: str | None) -> float | None:
    """Laser wavelength in nm from a header value or a file-name field (quirk 15).

    Accepts ``"532"``, ``"532 "``, ``"514.5"``, ``"458.5 nm"``, ``"514-5"``, ``"458-5nm"``;
    blank, ``"unknown"`` and anything else give ``None``.
    """
    if value is None:
        return None
    m = _LASER.match(value)
    if not m:
        return None
    nm = float(m.group(1).replace("-", "."))
    return nm if nm > 0 else None


def filename_fields(path: str) -> list[str]:
    """The ``__``-separated fields of a RRUFF file name (without extension).

    ``Mineral__ID__Scan__Laser__Angle__Orientation__Raman_Data_Kind__FileId``.
    """
    name = PurePosixPath(path.replace("\\", "/")).name
    stem = name[:-4] if name.lower().endswith(".txt") else name
    return stem.split("__")


def kind_from_name(path: str) -> str | None:
    """``"raw"``/``"processed"`` from a RRUFF file name, else from a folder name; else None."""
    norm = path.replace("\\", "/")
    name = PurePosixPath(norm).name.lower()
    if "raman_data_raw" in name:
        return "raw"
    if "raman_data_processed" in name:
        return "processed"
    for part in reversed(PurePosixPath(norm).parts[:-1]):
        p = part.lower()
        if p == "raw":
            return "raw"
        if p == "processed":
            return "processed"
    return None


def _kind_from_header(value: str | None) -> str | None:
    if not value:
        return None
    v = value.lower()
    if "raw" in v:
        return "raw"
    if "processed" in v:
        return "processed"
    return None


def _two_floats(line: str) -> tuple[float, float] | None:
    toks = _SPLIT.split(line.strip(), maxsplit=2)
    if len(toks) < 2:
        return None
    try:
        return float(toks[0]), float(toks[1])
    except ValueError:
        return None


def looks_like_rruff(text: str) -> bool:
    """True when the text starts (after blank lines) with a ``##KEY=`` header line."""
    for line in text.splitlines():
        s = line.strip()
        if s:
            return s.startswith("##") and "=" in s
    return False


def parse_rruff_text(text: str, path: str = "", *, encoding: str = "utf-8") -> Spectrum:
    """Parse the decoded text of a RRUFF file into a :class:`Spectrum`.

    Raises :class:`~ramanedge.errors.SpectrumError` when no data rows are found, fewer than
    2 remain, or values are NaN/inf.
    """
    header: dict[str, str] = {}
    xs: list[float] = []
    ys: list[float] = []
    last_key: str | None = None
    n_unparsed = 0
    fast = _fast_parse(text)
    if fast is not None:  # the common case: header lines, then clean numeric rows only
        header_lines, xy = fast
        n_comments = 0
        for line in header_lines:
            if line.startswith("##"):
                _add_header(header, line)
            else:
                n_comments += 1
        return _finish(header, xy[:, 0], xy[:, 1], n_comments, path, encoding)
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            last_key = None  # a continuation line follows its header line directly
            continue
        if line.startswith("##"):
            last_key = _add_header(header, line)
            continue
        if line.startswith("#"):  # a comment (e.g. instrument settings): not data
            n_unparsed += 1
            last_key = None
            continue
        pair = _two_floats(line)
        if pair is not None:
            xs.append(pair[0])
            ys.append(pair[1])
            last_key = None
            continue
        if not xs and last_key is not None:  # multi-line header value (quirk 6)
            header[last_key] = f"{header[last_key]} {line}".strip()
        else:
            n_unparsed += 1
    return _finish(header, xs, ys, n_unparsed, path, encoding)


def _add_header(header: dict[str, str], line: str) -> str | None:
    """Store one ``##KEY=VALUE`` line; returns the key if stored (continuations append)."""
    key, sep, value = line[2:].partition("=")
    key = key.strip().upper()
    if not sep or not key or key in header:  # repeated header block (quirk 6): first wins
        return None
    header[key] = value.strip()
    return key


def _fast_parse(text: str) -> tuple[list[str], np.ndarray] | None:
    """Vectorised path for files whose non-``#`` lines are all ``x, y`` rows; else None."""
    header_lines: list[str] = []
    rows: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        if line[0] == "#":
            header_lines.append(line)
        else:
            rows.append(line)
    if len(rows) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            xy = np.loadtxt(
                io.StringIO("\n".join(rows).replace(",", " ")),
                dtype=np.float64,
                comments=None,
                ndmin=2,
            )
    except (ValueError, UserWarning):
        return None
    if xy.shape != (len(rows), 2):
        return None
    return header_lines, xy


def _finish(
    header: dict[str, str],
    xs: list[float] | np.ndarray,
    ys: list[float] | np.ndarray,
    n_unparsed: int,
    path: str,
    encoding: str,
) -> Spectrum:
    where = f" in {path}" if path else ""
    if len(xs) == 0:
        raise SpectrumError(f"no data rows (lines starting with two numbers) found{where}")
    fields = filename_fields(path) if path else []

    mineral = header.get("NAMES") or None
    if mineral is None and len(fields) >= 2 and fields[0]:
        mineral = fields[0]
    rruff_id = strip_rruff_id(header.get("RRUFFID", ""))
    if rruff_id is None and len(fields) >= 2:
        rruff_id = strip_rruff_id(fields[1])
    laser = parse_laser(header.get("RAMAN WAVELENGTH"))
    if laser is None and len(fields) >= 8:
        laser = parse_laser(fields[3])
    kind = _kind_from_header(header.get("FILETYPE")) or (kind_from_name(path) if path else None)
    try:
        return Spectrum(
            x=np.asarray(xs, dtype=np.float64),
            y=np.asarray(ys, dtype=np.float64),
            mineral=mineral,
            rruff_id=rruff_id,
            laser_nm=laser,
            kind=kind,
            path=path,
            header=header,
            n_unparsed=n_unparsed,
            encoding=encoding,
        )
    except SpectrumError as e:
        raise SpectrumError(f"{e}{where}") from None


def parse_rruff(data: bytes, path: str = "") -> Spectrum:
    """Parse the bytes of a RRUFF spectrum file (any encoding quirk) into a Spectrum."""
    if not data.strip():
        raise SpectrumError(f"empty file{' ' + path if path else ''}")
    text, enc = decode_text(data)
    return parse_rruff_text(text, path, encoding=enc)


def read_rruff(path: str | os.PathLike[str]) -> Spectrum:
    """Read one RRUFF ``.txt`` file from disk."""
    p = os.fspath(path)
    with open(p, "rb") as f:
        data = f.read()
    return parse_rruff(data, p)


def header_summary(s: Spectrum) -> dict[str, Any]:
    """A small JSON-ready description of a spectrum (for ``ramanedge data info --file``)."""
    return {
        "path": s.path,
        "mineral": s.mineral,
        "rruff_id": s.rruff_id,
        "laser_nm": s.laser_nm,
        "kind": s.kind,
        "n_points": len(s),
        "x_min": float(s.x[0]),
        "x_max": float(s.x[-1]),
        "y_min": float(np.min(s.y)),
        "y_max": float(np.max(s.y)),
        "n_unparsed": s.n_unparsed,
        "encoding": s.encoding,
    }
