"""Click options shared by several commands (rover and ground side alike; no heavy imports)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ramanedge.grid import COVERAGE_MODES, DEFAULT_MIN_COVERAGE, CoveragePolicy
from ramanedge.paths import default_data_root


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and infinities (a NaN compares false
    with both bounds, so ``FloatRange`` lets it through)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


def data_root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--data DIR`` (parameter ``data_root``, a ``Path``): the RRUFF data root, default
    :func:`ramanedge.paths.default_data_root` (``$RAMANEDGE_DATA`` or ``../shared/data/rruff``)."""
    return click.option(
        "--data", "data_root", type=click.Path(path_type=Path), default=default_data_root,
        show_default="$RAMANEDGE_DATA or ../shared/data/rruff", help="RRUFF data root.")(f)


def coverage_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--coverage pad|refuse`` and ``--min-coverage F``: the policy for spectra that cover
    only part of the model grid (shared by ``classify`` and ``device serve``)."""
    f = click.option(
        "--min-coverage", type=FiniteFloatRange(0.0, 1.0), default=DEFAULT_MIN_COVERAGE,
        show_default=True,
        help="pad: refuse spectra covering less than this fraction of the model grid.")(f)
    return click.option(
        "--coverage", "coverage_mode", type=click.Choice(COVERAGE_MODES), default="pad",
        show_default=True,
        help="Spectra covering part of the grid (200-1591 cm-1): pad (hold the edge values, "
             "as in training; the answer reports the covered fraction) or refuse.")(f)


def coverage_policy(mode: str, min_coverage: float) -> CoveragePolicy:
    """The :class:`~ramanedge.grid.CoveragePolicy` of the two options. Inside a command, a
    ``--min-coverage`` given on the command line together with ``--coverage refuse`` (which
    needs the full grid and would silently ignore it) is a usage error."""
    ctx = click.get_current_context(silent=True)
    if (mode == "refuse" and ctx is not None and "min_coverage" in ctx.params
            and ctx.get_parameter_source("min_coverage")
            is click.core.ParameterSource.COMMANDLINE):
        raise click.UsageError("--min-coverage applies to --coverage pad only; --coverage "
                               "refuse accepts only spectra covering the whole grid")
    return CoveragePolicy(mode=mode, min_fraction=1.0 if mode == "refuse" else min_coverage)
