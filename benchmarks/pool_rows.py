"""Pool evaluation rows (``eval.jsonl`` of ``benchmarks.flight_eval`` and
``benchmarks.library_eval``) into the multi-split figures the docs quote.

    python -m benchmarks.pool_rows docs/flight-lib-stem4-ch2-eval.jsonl \\
        --recipe '*-refit+library' --split grouped

prints, for every figure the rows hold, its mean ± s.d. over the rows picked and the
per-row values (percent, except the set size and the AUROC). With ``--against FILE``
(``--against-recipe PATTERN``) it pairs each row with the row of the same split and seed
there and prints the differences instead (mean ± s.d., how many higher / lower):

    python -m benchmarks.pool_rows docs/flight-lib-ema-tr-eval.jsonl \\
        --recipe 'flight-stem4-ch2-ema-refit+library' \\
        --against docs/flight-lib-stem4-ch2-refit-tr-eval.jsonl \\
        --against-recipe 'flight-stem4-ch2-refit+library'
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
    "val_net_0": True, "val_net_15": True, "val_net_30": True,
    "test_set_coverage": True, "test_set_size": False, "test_known_flagged": True,
    "unseen_flagged": True, "unknown_auroc": False,
}


def read_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Every JSON row of ``paths`` (blank lines skipped); a line that is not a JSON object
    is a :class:`click.UsageError` naming the file and line."""
    rows = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.UsageError(f"{path} is not UTF-8 text (expected JSON rows, one a "
                                   f"line)") from None
        for n, line in enumerate(text.splitlines(), 1):
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


def _key(row: dict[str, Any]) -> tuple[str, str, Any]:
    return str(row.get("recipe")), str(row.get("split")), row.get("split_seed")


def unique(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """``rows`` if no two share recipe, split and seed (one export each), else a
    :class:`click.UsageError` naming the first repeated one."""
    seen = set()
    for r in rows:
        if _key(r) in seen:
            recipe, split, seed = _key(r)
            raise click.UsageError(f"{where} holds more than one row of {recipe} on {split} "
                                   f"split {seed}: pool one export of each run")
        seen.add(_key(r))
    return rows


def paired(rows: list[dict[str, Any]], ref: list[dict[str, Any]]) -> str:
    """The differences ``rows`` − ``ref``, each row paired with the reference row of the
    same split and seed (a markdown table: mean ± s.d., higher / lower, per pair), over the
    figures both hold; a row without its pair is a :class:`click.UsageError`."""
    for side in (rows, ref):
        keys = [(str(r.get("split")), r.get("split_seed")) for r in side]
        for k in keys:
            if keys.count(k) > 1:
                raise click.UsageError(f"more than one row on {k[0]} split {k[1]} on one side "
                                       f"of the pairing: pick one recipe (--recipe, "
                                       f"--against-recipe)")
    by = {(str(r.get("split")), r.get("split_seed")): r for r in ref}
    pairs = []
    for r in rows:
        k = (str(r.get("split")), r.get("split_seed"))
        if k not in by:
            raise click.UsageError(f"no reference row for {r.get('recipe')} on {k[0]} split "
                                   f"{k[1]}")
        pairs.append((r, by[k]))
    out = [f"{len(pairs)} pairs: " + ", ".join(f"{a.get('split')} {a.get('split_seed')}"
                                               for a, _ in pairs), "",
           "| figure | difference, mean ± s.d. | higher / lower | per pair |", "|---|---|---|---|"]
    for key, pct in FIGURES.items():
        if any(a.get(key) is None or b.get(key) is None for a, b in pairs):
            continue
        d = np.array([float(a[key]) - float(b[key]) for a, b in pairs]) * (100.0 if pct else 1.0)
        nd = 3 if key == "unknown_auroc" else 2
        sd = f" ± {d.std(ddof=1):.{nd}f}" if len(d) > 1 else ""
        # differences within rounding of zero are ties, not wins or losses
        hi, lo = int((d > 1e-9).sum()), int((d < -1e-9).sum())
        out.append(f"| {key} | {d.mean():+.{nd}f}{sd} | {hi} / {lo} | "
                   + ", ".join(f"{x:+.{nd}f}" for x in d) + " |")
    return "\n".join(out)


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
@click.option("--against", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Pair each row with this file's row of the same split and "
                                 "seed and print the differences.")
@click.option("--against-recipe", default="*", show_default=True,
              help="Shell pattern the --against rows' recipe must match.")
@one_line_errors
def main(files: tuple[Path, ...], recipe: str, split: str | None, against: Path | None,
         against_recipe: str) -> None:
    """Mean ± s.d. of the rover-path figures over the rows of FILES picked (or, with
    --against, of their differences from a reference run by run)."""
    where = ", ".join(map(str, files))
    rows = pick(read_rows(list(files)), recipe, split)
    if not rows:
        raise click.UsageError(f"no rows with a recipe matching {recipe!r}"
                               + (f" on a {split} split" if split else "") + f" in {where}")
    unique(rows, where)
    if against is None:
        click.echo(table(rows))
        return
    ref = pick(read_rows([against]), against_recipe, split)
    if not ref:
        raise click.UsageError(f"no rows with a recipe matching {against_recipe!r} in "
                               f"{against}")
    click.echo(paired(rows, ref))  # which refuses two rows of one split and seed


if __name__ == "__main__":
    main()
