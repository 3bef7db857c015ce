"""Pool evaluation rows (``eval.jsonl`` of ``benchmarks.flight_eval`` and
``benchmarks.library_eval``) into the multi-split figures the docs quote.

    python -m benchmarks.pool_rows docs/flight-lib-stem4-ch2-eval.jsonl \\
        --recipe '*-refit+library' --split grouped

prints, for every figure the rows hold, its mean ± s.d. over the rows picked and the
per-row values (percent, except the set size and the AUROC).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.common import one_line_errors

#: the rover-path figures of a row, in the docs' order; ``True``: shown in percent
FIGURES: dict[str, bool] = {
    "int8_0": True, "int8_15": True, "int8_30": True,
    "net_0": True, "net_15": True, "net_30": True,
    "val_int8_0": True, "val_int8_15": True, "val_int8_30": True,
    "test_set_coverage": True, "test_set_size": False, "test_known_flagged": True,
    "unseen_flagged": True, "unknown_auroc": False,
}


def read_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Every JSON row of ``paths`` (blank lines skipped); a line that is not a JSON object
    is a :class:`click.UsageError` naming the file and line."""
    rows = []
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise click.UsageError(f"{path}:{n} is not a JSON row ({e.msg})") from None
            if not isinstance(row, dict):
                raise click.UsageError(f"{path}:{n} is not a JSON object")
            rows.append(row)
    return rows


def pick(rows: list[dict[str, Any]], recipe: str, split: str | None) -> list[dict[str, Any]]:
    """The rows whose ``recipe`` matches the shell pattern ``recipe`` and, if given, whose
    ``split`` is ``split`` (``grouped`` or ``random``)."""
    return [r for r in rows if fnmatch.fnmatchcase(str(r.get("recipe", "")), recipe)
            and (split is None or r.get("split") == split)]


def pooled(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per figure present in every row: ``{"mean", "sd" (None for one row), "values"}``,
    in percent where :data:`FIGURES` says so."""
    out = {}
    for key, pct in FIGURES.items():
        if not rows or any(r.get(key) is None for r in rows):
            continue
        v = np.array([float(r[key]) for r in rows]) * (100.0 if pct else 1.0)
        out[key] = {"mean": float(v.mean()),
                    "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
                    "values": [float(x) for x in v]}
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """:func:`pooled` as a markdown table, the rows' recipes, splits and seeds above it."""
    runs = sorted({(str(r.get("recipe")), str(r.get("split")), r.get("split_seed"))
                   for r in rows}, key=str)
    head = [f"{len(rows)} rows: " + ", ".join(f"{a} {b} {c}" for a, b, c in runs), "",
            "| figure | mean ± s.d. | per row |", "|---|---|---|"]
    for key, f in pooled(rows).items():
        nd = 3 if key == "unknown_auroc" else 2
        ms = f"{f['mean']:.{nd}f}" + ("" if f["sd"] is None else f" ± {f['sd']:.{nd}f}")
        head.append(f"| {key} | {ms} | " + ", ".join(f"{x:.{nd}f}" for x in f["values"]) + " |")
    return "\n".join(head)


@click.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--recipe", default="*", show_default=True,
              help="Shell pattern the rows' recipe must match, e.g. '*-refit+library'.")
@click.option("--split", type=click.Choice(["grouped", "random"]), default=None,
              help="Only rows of this kind of split (default: both).")
@one_line_errors
def main(files: tuple[Path, ...], recipe: str, split: str | None) -> None:
    """Mean ± s.d. of the rover-path figures over the rows of FILES picked."""
    rows = pick(read_rows(list(files)), recipe, split)
    if not rows:
        raise click.UsageError(f"no rows with a recipe matching {recipe!r}"
                               + (f" on a {split} split" if split else "")
                               + " in " + ", ".join(map(str, files)))
    click.echo(table(rows))


if __name__ == "__main__":
    main()
