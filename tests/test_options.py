"""``ramanedge.options``: one declaration per setting, parsed, converted and range-checked."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ramanedge.errors import LinkError
from ramanedge.options import check_options, format_options, option, parse_options


@dataclass(frozen=True)
class Knobs:
    """A settings class as the trainer and the simulator declare theirs."""

    level: float = option(0.0, within=(0.0, 1.0), key="lvl")
    count: int = option(2, within=(0, None))
    seed: int = option(0)
    note: str = "not an option"

    def __post_init__(self) -> None:
        check_options(self, what="knob", error=LinkError)


def parse(text: str | None) -> Knobs:
    return parse_options(text, Knobs, what="knob", example="lvl=0.5", error=LinkError)


def test_parse_converts_by_field_type_and_round_trips() -> None:
    k = parse(" LVL=0.25, count=3.0,seed=7,")
    assert k == Knobs(level=0.25, count=3, seed=7)
    assert isinstance(k.count, int) and isinstance(k.level, float)
    assert format_options(k) == "lvl=0.25,count=3,seed=7"
    assert parse(format_options(k)) == k
    for off in (None, "", "none", "OFF", "0"):
        assert parse(off) == Knobs()


def test_construction_converts_and_checks_ranges() -> None:
    assert Knobs(level=1, count=4.0) == Knobs(level=1.0, count=4)
    for bad, needle in ((dict(level=1.5), "level must be in [0, 1]"),
                        (dict(level=float("nan")), "level must be in [0, 1]"),
                        (dict(count=-1), "count must be >= 0"),
                        (dict(count=2.5), "count needs a whole number"),
                        (dict(seed=True), "seed needs a whole number")):
        with pytest.raises(LinkError, match=needle.replace("[", r"\[")):
            Knobs(**bad)


@pytest.mark.parametrize(("text", "needle"), [
    ("lvl", "bad knob item 'lvl'; expected KEY=VALUE with KEY one of lvl, count, seed"),
    ("note=x", "KEY one of lvl, count, seed (e.g. lvl=0.5)"),
    ("lvl=abc", "knob lvl needs a number, got 'abc'"),
    ("count=1.5", "knob count needs a whole number, got '1.5'"),
    ("lvl=2", "knob level must be in [0, 1], got 2.0"),
])
def test_bad_strings_give_one_line_in_the_callers_error_type(text: str, needle: str) -> None:
    with pytest.raises(LinkError) as e:
        parse(text)
    assert needle in str(e.value) and "\n" not in str(e.value)
