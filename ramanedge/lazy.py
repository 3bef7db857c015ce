"""Lazy package exports (PEP 562): a package's public names, imported on first use.

``edge_runtime`` and ``device_sim`` export their stable API from the package itself while
``import edge_runtime`` stays as light as before: nothing of a submodule (nor the TFLite
runtime behind it) is loaded until one of its names is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]],
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in submodules.

    ``exports``: submodule name -> the public names it defines. ``__getattr__(name)`` imports
    ``package.submodule`` on first use and caches the value in the package; any other name
    raises :class:`AttributeError`. Use as
    ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)`` in the package's
    ``__init__.py``.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})

    return __getattr__, __dir__
