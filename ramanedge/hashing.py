"""Hash constructors for the rover side that do not load OpenSSL.

``import hashlib`` loads OpenSSL's libcrypto, which costs ~3.8 MB of resident memory on the
x86_64 bench machine (measured: ``docs/parts/sim.md``, "device memory"); the device process
has a 60 MB budget and only needs SHA-256 (artifact and file checks) and BLAKE2b (request
de-duplication). CPython ships both as built-in modules (``_sha2``/``_sha256`` and
``_blake2``: its own implementations, the ones ``hashlib`` falls back to without OpenSSL),
with the same digests and the same ``update``/``digest``/``hexdigest`` interface. Where a
build lacks them, ``hashlib``'s constructors are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["blake2b", "sha256"]

sha256: Any
blake2b: Any
try:  # CPython >= 3.12
    from _sha2 import sha256  # type: ignore[no-redef]
except ImportError:
    try:  # CPython 3.11
        from _sha256 import sha256  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover - builds without the built-in module
        from hashlib import sha256  # type: ignore[no-redef]
try:
    from _blake2 import blake2b  # type: ignore[no-redef]
except ImportError:  # pragma: no cover
    from hashlib import blake2b  # type: ignore[no-redef]
