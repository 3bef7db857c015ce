"""``ramanedge data``: build and inspect the RRUFF data sets and their splits.

Commands::

    ramanedge data build --data DIR --name rruff-raw [--min-spectra 8] [--cache DIR]
    ramanedge data split --data DIR --name rruff-raw --kind grouped --seed 0 --out split.csv
    ramanedge data info  [--data DIR] [--name rruff-raw] [--split F] [--file SPECTRUM] [--json]

Bad input (missing data folder, empty archive, unknown paths in a split file, a mineral
with too few spectra, ...) ends with one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ramanedge.paths import default_cache_dir, default_data_root

_NAMES = ("rruff-raw", "rruff-clean", "rruff-processed")


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


def _common(f):  # type: ignore[no-untyped-def]
    f = click.option("--cache", "cache", type=click.Path(path_type=Path), default=None,
                     help="Cache folder (default $RAMANEDGE_CACHE or .cache/ramanedge).")(f)
    f = click.option("--min-spectra", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Keep minerals with at least this many spectra.")(f)
    f = click.option("--name", type=click.Choice(_NAMES), default="rruff-raw",
                     show_default=True, help="Data set.")(f)
    f = click.option("--data", "data", type=click.Path(path_type=Path), default=None,
                     help="RRUFF data folder or archive (default $RAMANEDGE_DATA or "
                     "../shared/data/rruff).")(f)
    return f


def _build(data: Path | None, name: str, min_spectra: int, cache: Path | None,
           minerals: tuple[str, ...] = (), quiet: bool = False):  # type: ignore[no-untyped-def]
    from ramanedge.dataset import build_dataset

    root = data if data is not None else default_data_root()
    return build_dataset(
        root, name, min_spectra=min_spectra, minerals=list(minerals) or None,
        cache_dir=cache if cache is not None else default_cache_dir(),
        progress=None if quiet else _echo_err,
    )


@click.group()
def data() -> None:
    """Build and inspect the RRUFF data sets and splits."""


@data.command("build")
@_common
@click.option("--mineral", "minerals", multiple=True,
              help="Keep only this mineral (##NAMES spelling; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build_cmd(data: Path | None, name: str, min_spectra: int, cache: Path | None,
              minerals: tuple[str, ...], as_json: bool) -> None:
    """Parse the RRUFF files into a cached data set and print a summary."""
    t0 = time.perf_counter()
    ds = _build(data, name, min_spectra, cache, minerals)
    summary = ds.summary()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    click.echo(f"data set      {s['name']} (min_spectra={s['min_spectra']}) from {s['root']}")
    click.echo(f"spectra       {s['spectra']}")
    click.echo(f"minerals      {s['minerals']}")
    click.echo(f"samples       {s['samples']}")
    click.echo("lasers        " + ", ".join(f"{k}: {v}" for k, v in s["lasers"].items()))
    click.echo("skipped       " + ", ".join(f"{k}: {v}" for k, v in s["skipped"].items()))
    if "seconds" in s:
        click.echo(f"time          {s['seconds']} s")


@data.command("split")
@_common
@click.option("--kind", type=click.Choice(["grouped", "random"]), default="grouped",
              show_default=True, help="grouped: by RRUFF sample id; random: per spectrum.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Split CSV to write (columns path,split).")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def split_cmd(data: Path | None, name: str, min_spectra: int, cache: Path | None, kind: str,
              seed: int, out: Path, force: bool) -> None:
    """Write a train/val/test split CSV of a data set."""
    from ramanedge.errors import DataError
    from ramanedge.splits import make_split, split_counts, write_split_csv

    if out.exists() and not force:
        raise DataError(f"{out} exists; pass --force to overwrite it")
    if out.exists() and out.is_dir():
        raise DataError(f"{out} is a folder; expected a CSV file path")
    ds = _build(data, name, min_spectra, cache)
    split = make_split(ds, kind=kind, seed=seed)
    sha = write_split_csv(out, ds, split)
    c = split_counts(split)
    click.echo(f"wrote {out}: {kind} split of {ds.name} seed {seed}: train {c['train']}, "
               f"val {c['val']}, test {c['test']} (sha256 {sha[:16]})")


@data.command("info")
@_common
@click.option("--split", "split_file", type=click.Path(path_type=Path), default=None,
              help="Also check and summarise this split CSV.")
@click.option("--file", "spectrum_file", type=click.Path(path_type=Path), default=None,
              help="Only describe one spectrum file (RRUFF .txt, CSV/TXT or .npy).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--top", type=click.IntRange(0, 10_000), default=10, show_default=True,
              help="Show the N minerals with most spectra.")
def info_cmd(data: Path | None, name: str, min_spectra: int, cache: Path | None,
             split_file: Path | None, spectrum_file: Path | None, as_json: bool,
             top: int) -> None:
    """Summarise a data set (and optionally a split CSV), or describe one spectrum file."""
    if spectrum_file is not None:
        from ramanedge.io.columns import read_spectrum
        from ramanedge.io.rruff import header_summary

        d = header_summary(read_spectrum(spectrum_file))
        if as_json:
            click.echo(json.dumps(d, indent=2))
        else:
            for k, v in d.items():
                click.echo(f"{k:13s} {v}")
        return
    ds = _build(data, name, min_spectra, cache, quiet=as_json)
    s = ds.summary()
    counts = sorted(ds.counts().items(), key=lambda kv: (-kv[1], kv[0]))
    s["top_minerals"] = dict(counts[: max(0, top)])
    if split_file is not None:
        from ramanedge.splits import UNUSED, read_split_csv, split_counts, split_sha256

        sp = read_split_csv(split_file, ds)
        s["split"] = {"file": str(split_file), **split_counts(sp),
                      "unused": int((sp == UNUSED).sum()), "sha256": split_sha256(ds, sp)}
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    _print_summary(s)
    click.echo("top minerals  " + ", ".join(f"{k}: {v}" for k, v in s["top_minerals"].items()))
    if "split" in s:
        sp = s["split"]
        click.echo(f"split         train {sp['train']}, val {sp['val']}, test {sp['test']}"
                   + (f", not named {sp['unused']}" if sp["unused"] else "")
                   + f" (sha256 {sp['sha256'][:16]})")
