"""Readers for what users feed the rover: two-column text files and ``.npy`` arrays.

Two-column text (``.csv``, ``.txt``, ``.tsv``, ``.dat``): one ``wavenumber, intensity`` pair per
line, separated by a comma, semicolon, tab or spaces; extra columns are ignored. A file
whose numbers use decimal commas (``150,37;14,379`` or tab-separated, as spreadsheets in
many locales export them: the columns split by semicolons or blanks, commas inside the
numbers, no decimal point anywhere) is read as such. Header lines
(e.g. ``wavenumber,intensity``) and ``#`` comments before or between rows are skipped, but a
file must contain at least 2 data rows and every data row must have two numbers.

``.npy``: a float array of shape ``(N, 2)`` (columns wavenumber, intensity) or ``(2, N)``
(rows wavenumber, intensity), ``N >= 2``; when both readings are possible (``(2, 2)``) the
``(N, 2)`` reading wins. Object arrays are refused (``allow_pickle=False``).

:func:`read_spectrum` dispatches on content, not only on the extension: a file starting with
``##KEY=`` is parsed as RRUFF whatever its name; a file starting with the numpy magic is read
as ``.npy``; known binary formats (PNG, JPEG, zip, gzip, PDF, ...) are refused clearly.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

import numpy as np

from ramanedge.errors import SpectrumError
from ramanedge.io.rruff import Spectrum, decode_text, looks_like_rruff, parse_rruff_text

__all__ = ["parse_columns", "parse_npy", "parse_spectrum", "read_spectrum"]

_SPLIT = re.compile(r"[,;\s]+")
_SPLIT_DECIMAL_COMMA = re.compile(r"[;\s]+")
_DECIMAL_COMMA_NUMBER = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")


def _decimal_comma(lines: list[str]) -> bool:
    """Whether the numeric rows use decimal commas: no row has a decimal point, every row
    splits into >= 2 fields at semicolons or blanks, every comma sits between digits of a
    number (``150,37``, ``-1,5e3``), and the fields are told apart without the comma (a
    semicolon or tab in every row, or a comma in every field). Anything else keeps the
    comma as a separator (``150,37 5`` stays 150 and 37)."""
    numeric = [ln for ln in lines if ln[:1] in set("+-.0123456789")]
    if not numeric or any("." in ln for ln in numeric):
        return False
    fields = [[t for t in _SPLIT_DECIMAL_COMMA.split(ln) if t] for ln in numeric]
    if not all(len(f) >= 2 for f in fields):
        return False
    with_comma = [t for f in fields for t in f if "," in t]
    if not with_comma or not all(_DECIMAL_COMMA_NUMBER.match(t) for t in with_comma):
        return False
    return all((";" in ln or "\t" in ln) or all("," in t for t in f)
               for ln, f in zip(numeric, fields, strict=True))


_NPY_MAGIC = b"\x93NUMPY"
_BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a zip archive (use it as a data source: ramanedge data build --data)",
    b"\x1f\x8b": "a gzip file",
    b"\xfd7zXZ": "an xz file (use it as a data source: ramanedge data build --data)",
    b"%PDF": "a PDF document",
    b"BZh": "a bzip2 file",
}


def _describe_binary(data: bytes) -> str | None:
    for magic, what in _BINARY_MAGIC.items():
        if data.startswith(magic):
            return what
    if b"\x00" in data[:4096]:
        return "a binary file"
    return None


def parse_columns(data: bytes, path: str = "") -> Spectrum:
    """Parse a two-column text spectrum (wavenumber, intensity).

    Raises :class:`SpectrumError` for an empty file, a file with only one numeric column,
    fewer than 2 data rows, NaN/inf values, or text that holds no numeric rows at all.
    """
    where = f" ({path})" if path else ""
    if not data.strip():
        raise SpectrumError(f"empty file{where}; expected two columns: wavenumber, intensity")
    text, _ = decode_text(data)
    xs: list[float] = []
    ys: list[float] = []
    one_column = 0
    other = 0
    lines = [ln for ln in (raw.strip() for raw in text.splitlines())
             if ln and not ln.startswith("#")]
    comma = _decimal_comma(lines)
    for line in lines:
        if comma:  # "150,37;14,379": fields at semicolons/blanks, the comma is the point
            toks = [t.replace(",", ".") for t in _SPLIT_DECIMAL_COMMA.split(line) if t]
        else:
            toks = [t for t in _SPLIT.split(line) if t]
        if not toks:  # separators only (",", ";;")
            other += 1
            continue
        try:
            vals = [float(t) for t in toks[:2]]
        except ValueError:
            other += 1
            continue
        if len(vals) == 1:
            one_column += 1
            continue
        xs.append(vals[0])
        ys.append(vals[1])
    if not xs:
        if one_column:
            raise SpectrumError(
                f"only one numeric column found{where}; expected two columns: "
                "wavenumber, intensity"
            )
        raise SpectrumError(
            f"no numeric rows found{where}; expected two columns: wavenumber, intensity"
        )
    if one_column:
        raise SpectrumError(
            f"{one_column} row(s) with a single number{where}; expected two columns: "
            "wavenumber, intensity on every row"
        )
    if other > max(5, len(xs)):
        raise SpectrumError(
            f"mostly non-numeric text{where} ({other} text lines, {len(xs)} numeric rows); "
            "expected two columns: wavenumber, intensity"
        )
    try:
        return Spectrum(x=np.asarray(xs), y=np.asarray(ys), path=path)
    except SpectrumError as e:
        raise SpectrumError(f"{e}{where}") from None


def parse_npy(data: bytes, path: str = "") -> Spectrum:
    """Parse ``.npy`` bytes holding an ``(N, 2)`` or ``(2, N)`` numeric array."""
    where = f" ({path})" if path else ""
    try:
        # read the header first: it may claim a shape far larger than the bytes that follow
        # (193 bytes claiming (10**12, 2)); refuse before numpy allocates anything
        buf = io.BytesIO(data)
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read_header(buf, max_header_size=10_000)
        need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if dtype.hasobject or need > len(data) - buf.tell():
            raise ValueError(f"its header claims shape {shape} of {dtype} ({need:,} bytes) "
                             f"but the file holds {len(data) - buf.tell():,} bytes of data")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy parses a hostile header with ast/tokenize,
        # which raise TokenError, SyntaxError, RecursionError, ...: all mean "not an array"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SpectrumError(f"not a readable .npy array{where}: {msg}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise SpectrumError(
            f"a .npy spectrum must be a numeric array{where}, got dtype "
            f"{getattr(arr, 'dtype', type(arr))}"
        )
    if arr.ndim == 2 and arr.shape[1] == 2:
        x, y = arr[:, 0], arr[:, 1]
    elif arr.ndim == 2 and arr.shape[0] == 2:
        x, y = arr[0], arr[1]
    else:
        raise SpectrumError(
            f"a .npy spectrum must have shape (N, 2) or (2, N){where}, got {arr.shape}"
        )
    try:
        return Spectrum(x=x.astype(np.float64), y=y.astype(np.float64), path=path)
    except SpectrumError as e:
        raise SpectrumError(f"{e}{where}") from None


def parse_spectrum(data: bytes, path: str = "") -> Spectrum:
    """Dispatch on content: ``.npy`` magic, RRUFF ``##`` header, binary refusal, columns."""
    where = f" ({path})" if path else ""
    if not data.strip():
        raise SpectrumError(f"empty file{where}; expected a spectrum")
    if data.startswith(_NPY_MAGIC):
        return parse_npy(data, path)
    if path.lower().endswith(".npy"):
        raise SpectrumError(f"not a .npy file{where}: the numpy header is missing")
    what = _describe_binary(data)
    if what is not None:
        raise SpectrumError(f"not a spectrum{where}: this is {what}")
    text, enc = decode_text(data)
    if looks_like_rruff(text):
        return parse_rruff_text(text, path, encoding=enc)
    return parse_columns(data, path)


def read_spectrum(path: str | os.PathLike[str]) -> Spectrum:
    """Read one spectrum file of any supported format (RRUFF ``.txt``, CSV/TXT, ``.npy``).

    Raises :class:`SpectrumError` for unusable content and :class:`FileNotFoundError` /
    :class:`IsADirectoryError` for a bad path (the CLI reports both in one line).
    """
    p = Path(path)
    limit = max_input_bytes()
    # stat first: a FIFO would block for ever and /dev/zero never ends
    st = p.stat()
    if p.is_dir():
        raise IsADirectoryError(21, "is a folder", str(path))
    if not stat.S_ISREG(st.st_mode):
        raise SpectrumError(f"{path} is not a regular file (a device, FIFO or socket); "
                            "expected a spectrum file")
    if st.st_size > limit:
        raise SpectrumError(f"{path} is {st.st_size:,} bytes, over the {limit:,}-byte limit for "
                            f"one spectrum (set ${MAX_INPUT_ENV} to raise it)")
    with open(p, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise SpectrumError(f"{path} is over the {limit:,}-byte limit for one spectrum")
    return parse_spectrum(data, str(path))


#: Environment variable overriding :data:`MAX_INPUT_BYTES` (bytes).
MAX_INPUT_ENV = "RAMANEDGE_MAX_INPUT_BYTES"
#: Largest spectrum file read (16 MiB; a RRUFF file is ~50 kB, 16 MiB of text ~ 1 M points).
MAX_INPUT_BYTES = 16 << 20


def max_input_bytes() -> int:
    """The size limit for one spectrum file: ``$RAMANEDGE_MAX_INPUT_BYTES`` or the default."""
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return MAX_INPUT_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise SpectrumError(f"${MAX_INPUT_ENV} must be a number of bytes, got {raw!r}") from None
    if value < 1:
        raise SpectrumError(f"${MAX_INPUT_ENV} must be >= 1, got {value}")
    return value
