"""One exception tree for the whole toolchain (pyserial style).

Every error a user can cause derives from :class:`RamanEdgeError`; the CLI turns any of
them into one line on stderr and a non-zero exit, without a traceback.
"""

from __future__ import annotations


class RamanEdgeError(Exception):
    """Base class of every error ramanedge raises on purpose."""


class SpectrumError(RamanEdgeError, ValueError):
    """A spectrum file or array is not usable (empty, not a spectrum, NaN/inf, ...)."""


class CoverageError(SpectrumError):
    """A spectrum does not cover the whole model grid (200-1591 cm-1)."""


class DataError(RamanEdgeError):
    """A data folder, archive, data set or split cannot be used as asked."""


class ManifestError(RamanEdgeError):
    """A model artifact's manifest is missing, malformed, or does not match its files."""


class ModelError(RamanEdgeError):
    """A model cannot be built, loaded, exported or run as asked."""


class HeadStoreError(RamanEdgeError):
    """The onboard head store cannot complete the request."""


class LinkError(RamanEdgeError):
    """The serial link or the device protocol failed."""


def naming_file(path: object, message: str) -> str:
    """``message`` as one line about the file ``path``: prefixed with ``PATH: `` unless it
    names the file already (many readers' messages do: "empty file (PATH)")."""
    return message if str(path) in message else f"{path}: {message}"
