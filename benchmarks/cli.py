"""``ramanedge bench``: run the benchmarks and write ``docs/benchmarks.md`` (+ JSON, plots).

    ramanedge bench --data ../shared/data/rruff            # everything (make bench)
    ramanedge bench --quick --skip-train                   # minutes: reuse runs, short timing
    ramanedge bench --smoke --out /tmp/bench/benchmarks.md # seconds-scale check of the code
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click

from ramanedge.errors import DataError


def _ints(value: str, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {value!r}") \
            from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{what} must be positive integers, got {value!r}")
    return out


@click.command("bench")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="RRUFF data root [default: $RAMANEDGE_DATA or ../shared/data/rruff].")
@click.option("--model", type=click.Path(path_type=Path), default=Path("models/default"),
              show_default=True, help="The int8 artifact to benchmark.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), default=Path("runs/default"),
              show_default=True, help="The training run the artifact was exported from.")
@click.option("--out", "out_md", type=click.Path(path_type=Path), default=None,
              help="Markdown report [default: docs/benchmarks.md; with --smoke "
                   "bench_out/smoke/benchmarks.md]. JSON and img/ go next to it.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("bench_out"),
              show_default=True, help="Folder for intermediate files (git-ignored).")
@click.option("--quick", is_flag=True, help="Shorter timing, no training, serial on 40 spectra.")
@click.option("--smoke", is_flag=True, help="Seconds-scale run of every section but the sweep.")
@click.option("--skip-train", is_flag=True,
              help="Never train: reuse existing runs (missing sweep points are reported).")
@click.option("--only", default=None, metavar="SECTIONS",
              help="Comma-separated subset of: latency, memory, sizes, accuracy, head, sweep, "
                   "serial.")
@click.option("--threads", default="1,2", show_default=True, help="Latency thread counts.")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Timing rounds per method (default by mode).")
@click.option("--serial-limit", type=click.IntRange(min=1), default=None,
              help="Spectra per serial replay (default: the whole test split).")
@click.option("--board", default=None,
              help="Name of benchmarks/reference/BOARD.json written by a full run "
                   "[default: MACHINE-NcoreCPU, e.g. x86_64-2core-amd-epyc-7b13].")
@click.option("--demo-report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The demo's wall-time record to include [default: "
                   "runs/demo/demo_report.json].")
@click.option("--note", "notes", multiple=True,
              help="A remark printed under 'Notes' in the report (repeatable).")
def bench(data_root: Path | None, model: Path, run_dir: Path, out_md: Path | None, work: Path,
          quick: bool, smoke: bool, skip_train: bool, only: str | None, threads: str,
          rounds: int | None, serial_limit: int | None, board: str | None,
          demo_report: Path | None, notes: tuple[str, ...]) -> None:
    """Measure latency, memory, start-up, sizes, accuracy, the pooling sweep, onboard head
    retraining and the serial link of the default int8 model; write docs/benchmarks.md.

    Not a test: numbers depend on the machine and its load. A full run retrains missing
    sweep points and may take an hour on 2 cores; --quick/--smoke are for checks.
    """
    from benchmarks.common import REPO
    from benchmarks.suite import SECTIONS, BenchConfig
    from ramanedge.paths import default_data_root

    if quick and smoke:
        raise click.UsageError("--quick and --smoke are exclusive")
    root = Path(data_root) if data_root is not None else default_data_root()
    if not (root / "manifest.csv").is_file() and not root.is_dir():
        raise DataError(f"data root {root} does not exist; pass --data DIR (the RRUFF folder, "
                        "e.g. ../shared/data/rruff)")
    sections = SECTIONS
    if only:
        sections = tuple(s.strip() for s in only.split(",") if s.strip())
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            raise click.BadParameter(f"unknown section(s) {', '.join(bad)}; expected "
                                     f"{', '.join(SECTIONS)}", param_hint="--only")
    mode = "smoke" if smoke else "quick" if quick else "full"
    if out_md is None:
        out_md = (work / "smoke" / "benchmarks.md") if smoke else REPO / "docs" / "benchmarks.md"
    cmd = "ramanedge bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "bench" else "ramanedge bench"
    if board is None and mode == "full":
        from benchmarks.common import board_name

        board = board_name()
    cfg = BenchConfig.for_mode(mode, data_root=root.resolve(), run=run_dir.resolve(),
                               model=model.resolve(), work=work.resolve(),
                               out_md=out_md.resolve(), skip_train=skip_train,
                               sections=sections, command=cmd.strip(), board=board,
                               notes=tuple(notes), demo_report=demo_report)
    if smoke:
        cfg = replace(cfg, sections=tuple(s for s in cfg.sections if s != "sweep" or only))
    th = _ints(threads, "--threads")
    cfg = replace(cfg, threads=th if not smoke or threads != "1,2" else cfg.threads)
    if rounds is not None:
        cfg = replace(cfg, rounds=rounds)
    if serial_limit is not None:
        cfg = replace(cfg, serial_limit=serial_limit)
    from benchmarks.suite import run_suite

    run_suite(cfg)
