"""Settings that are frozen dataclasses and are written ``key=value[,key=value]`` on a command line.

One declaration per setting: :func:`option` gives a dataclass field its default, its allowed
range and, when it differs from the field name, its command-line key. From these
declarations

- :func:`check_options` (called by the class's ``__post_init__``) converts every option field
  to its declared type (``int`` or ``float``) and checks its range;
- :func:`parse_options` reads ``"shift=5,noise=0.01"`` into the class (``""``, ``"none"``,
  ``"off"`` and ``"0"`` give the defaults) and :func:`format_options` writes it back.

Every message is one line naming the setting and what is allowed; each caller passes the
exception type its users expect (``ValueError`` for the trainer's augmentation,
:class:`~ramanedge.errors.LinkError` for the simulator's line faults).

    @dataclass(frozen=True)
    class Noise:
        level: float = option(0.0, within=(0.0, 1.0), key="noise")
        seed: int = option(0)

        def __post_init__(self) -> None:
            check_options(self, what="noise")

    parse_options("noise=0.1,seed=3", Noise, what="noise", example="noise=0.1")
"""

from __future__ import annotations

import math
from dataclasses import Field, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

OFF_WORDS = ("", "none", "off", "0")
"""Option strings that mean "all defaults" (everything off, for the fault and augmentation
settings)."""

_RANGE = "ramanedge.options.range"
_KEY = "ramanedge.options.key"


def option(default: Any, *, within: tuple[float | None, float | None] = (None, None),
           key: str | None = None) -> Any:
    """A dataclass field of ``default`` that must lie in ``within`` (``(lo, hi)``, both ends
    allowed, ``None`` = unbounded) and is written ``key=...`` on a command line (default:
    the field name)."""
    return field(default=default, metadata={_RANGE: within, _KEY: key})


def range_of(cls: Any, name: str) -> tuple[float | None, float | None]:
    """The allowed range of ``cls``'s :func:`option` field ``name`` (another setting that
    feeds it declares the same bounds by asking, not by copying them)."""
    for f in _options(cls):
        if f.name == name:
            return f.metadata[_RANGE]
    raise KeyError(f"{getattr(cls, '__name__', cls)} has no option field {name!r}")


def _options(cls_or_obj: Any) -> list[Field]:
    return [f for f in fields(cls_or_obj) if _RANGE in f.metadata]


def _key(f: Field) -> str:
    return f.metadata[_KEY] or f.name


def _kind(f: Field) -> str:
    """``"int"`` or ``"float"``: the declared type (a string under postponed annotations)."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind not in ("int", "float"):
        raise TypeError(f"option field {f.name} must be declared int or float, not {kind!r}")
    return kind


def _number(value: Any, kind: str) -> int | float:
    """``value`` (a number or its text) as ``kind``; ``ValueError`` when it is not one.

    An int option takes a whole number written either way (``5`` or ``5.0``).
    """
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, str):
        value = value.strip()
        if kind == "int":
            try:
                return int(value)
            except ValueError:
                pass
        value = float(value)
    if kind == "float":
        return float(value)
    if isinstance(value, int):
        return value
    f = float(value)
    if not (math.isfinite(f) and f.is_integer()):
        raise ValueError("not a whole number")
    return int(f)


def _needs(kind: str) -> str:
    return "a whole number" if kind == "int" else "a number"


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"in [{lo:g}, {hi:g}]"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}"


def check_options(obj: Any, *, what: str, error: type[Exception] = ValueError) -> None:
    """Convert each :func:`option` field of the frozen dataclass ``obj`` to its declared type
    and check it lies in its range; raise ``error`` naming ``what`` and the field otherwise."""
    for f in _options(obj):
        kind, value = _kind(f), getattr(obj, f.name)
        try:
            number = _number(value, kind)
        except (TypeError, ValueError):
            raise error(f"{what} {f.name} needs {_needs(kind)}, got {value!r}") from None
        lo, hi = f.metadata[_RANGE]
        if (lo is not None and not number >= lo) or (hi is not None and not number <= hi):
            raise error(f"{what} {f.name} must be {_range_text(lo, hi)}, got {number}")
        object.__setattr__(obj, f.name, number)


def parse_options(text: str | None, cls: type[T], *, what: str, example: str,
                  error: type[Exception] = ValueError) -> T:
    """Read ``"key=value,key=value"`` into the dataclass ``cls`` (fields not named keep their
    defaults; ``None`` and :data:`OFF_WORDS` give all defaults).

    Keys are the :func:`option` keys, case-insensitive; values are converted by the field's
    type and range-checked by the class. Raises ``error`` with one line naming the bad item
    and the allowed keys (``example`` shows a valid string).
    """
    if text is None or text.strip().lower() in OFF_WORDS:
        return cls()
    by_key = {_key(f): f for f in _options(cls)}
    values: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not name and not sep:
            continue  # an empty item, e.g. a trailing comma
        if not sep or name not in by_key:
            raise error(f"bad {what} item {item.strip()!r}; expected KEY=VALUE with KEY one of "
                        f"{', '.join(by_key)} (e.g. {example})")
        f = by_key[name]
        try:
            values[f.name] = _number(value, _kind(f))
        except ValueError:
            raise error(f"{what} {name} needs {_needs(_kind(f))}, got {value.strip()!r}") \
                from None
    return cls(**values)


def format_options(obj: Any) -> str:
    """``"key=value,..."`` of every :func:`option` field of ``obj``: the inverse of
    :func:`parse_options`."""
    return ",".join(f"{_key(f)}={getattr(obj, f.name)}" for f in _options(obj))
