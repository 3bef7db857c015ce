"""Shared helpers of the benchmarks: timing statistics, board names, JSON, subprocesses.

Where the figures were measured is :func:`ramanedge.machine.machine_info` (shared with the
serial-link replay).

Nothing here imports TensorFlow or the TFLite runtime, so the edge-only probes
(:mod:`benchmarks.edge_probe`) can use it without changing what they measure.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ramanedge.jsonio import json_ready
from ramanedge.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: Environment for every benchmark child process: quiet TensorFlow, fixed BLAS threads.
BASE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Summary of per-call wall times (given in seconds) in milliseconds.

    Keys: ``n``, ``median``, ``p99``, ``mean``, ``min``, ``p90``. ``{"n": 0}`` when empty.
    """
    v = np.asarray(seconds, dtype=np.float64) * 1e3
    if v.size == 0:
        return {"n": 0}
    return {
        "n": int(v.size),
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "p99": float(np.percentile(v, 99)),
        "mean": float(v.mean()),
        "min": float(v.min()),
    }


def time_calls(fn: Callable[[int], Any], n: int) -> list[float]:
    """Call ``fn(i)`` for ``i`` in ``range(n)``; return each call's wall time in seconds."""
    out = [0.0] * n
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def interleaved(methods: dict[str, Callable[[int], Any]], n_items: int, *, rounds: int,
                warmup: int, progress: Callable[[str], None] | None = None
                ) -> dict[str, list[float]]:
    """Time several methods on the same items, interleaved round by round.

    Each method is first warmed up with ``warmup`` calls (not recorded). Then, ``rounds``
    times, every method in turn is called once per item ``0..n_items-1``. Interleaving spreads
    the load of a shared machine evenly over the methods, so their *ratios* are meaningful
    even when absolute times drift. Returns per-call seconds per method.
    """
    for name, fn in methods.items():
        for i in range(warmup):
            fn(i % n_items)
        if progress:
            progress(f"    warmed up {name}")
    times: dict[str, list[float]] = {k: [] for k in methods}
    for r in range(rounds):
        for name, fn in methods.items():
            times[name].extend(time_calls(fn, n_items))
        if progress:
            progress(f"    round {r + 1}/{rounds}")
    return times


def int8_call(interpreter: Any, X: np.ndarray, input_q: Any, output_q: Any
              ) -> Callable[[int], np.ndarray]:
    """``call(i)``: spectrum ``X[i]`` through an int8 interpreter the rover's way (quantise
    with ``input_q``, invoke, dequantise the output ``output_q``), the call the latency
    figures time. The runtime is imported only when this is called."""
    from edge_runtime.interpreter import get_output_float, set_input_int8

    def call(i: int) -> np.ndarray:
        set_input_int8(interpreter, X[i], input_q)
        interpreter.invoke()
        return get_output_float(interpreter, output_q)

    return call


def mean_sd_pct(rows: Sequence[dict[str, Any]], key: str) -> tuple[float, float | None]:
    """Mean and s.d. (``ddof=1``) of ``100 * row[key]`` over ``rows``; the s.d. is ``None``
    for a single row (there is no spread to show)."""
    v = 100 * np.array([r[key] for r in rows])
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


def format_mean_sd_pct(rows: Sequence[dict[str, Any]], key: str) -> str:
    """:func:`mean_sd_pct` as table text: ``"81.2 ± 1.3"``, or ``"81.2"`` for one row."""
    mean, sd = mean_sd_pct(rows, key)
    return f"{mean:.1f}" if sd is None else f"{mean:.1f} ± {sd:.1f}"


def board_name() -> str:
    """Default name of this machine's reference file, e.g. ``x86_64-2core-amd-epyc-7b13``:
    architecture, core count and CPU model, so figures from two machines never share a file."""
    import re

    model = re.sub(r"@.*$", "", cpu_model().lower())  # the clock: not part of the model
    model = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b", "", model)
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-")
    return f"{platform.machine()}-{os.cpu_count()}core" + (f"-{slug}" if slug else "")


def package_versions(names: Sequence[str] = ("numpy", "tensorflow", "tensorflow-cpu", "keras",
                                               "ai-edge-litert", "scikit-learn")
                     ) -> dict[str, str]:
    """Installed versions of the packages that matter for the numbers (without importing)."""
    from importlib import metadata

    out = {}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def git_commit(repo: Path = REPO) -> str | None:
    """Short commit hash of the working tree (``+dirty`` when modified), or None."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def child_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """Environment for a child process: BLAS/OpenMP threads = ``threads``, quiet TF."""
    env = dict(os.environ)
    env.update(BASE_ENV)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    # the children must import this checkout, wherever they are started from
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in
                                                       env.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    env.update(extra)
    return env


def run_streaming(cmd: Sequence[str], *, env: dict[str, str] | None = None,
                  cwd: Path | None = None, prefix: str = "    | ",
                  echo: Callable[[str], None] | None = None,
                  timeout: float | None = None) -> tuple[int, list[str], float]:
    """Run ``cmd``, echoing each output line (stdout and stderr merged) with ``prefix``.

    Returns ``(exit status, output lines, wall seconds)``. Visible progress for long steps.
    """
    say = echo or (lambda s: print(s, flush=True))
    t0 = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd, text=True, bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            say(prefix + line)
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
                break
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return rc, lines, time.perf_counter() - t0


def run_json(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
             echo: Callable[[str], None] | None = None, timeout: float | None = None
             ) -> dict[str, Any]:
    """Run a benchmark worker whose **last stdout line** is a JSON object; return it.

    Worker stderr is echoed (progress). Raises ``RuntimeError`` with the tail of the output
    when the worker fails.
    """
    say = echo or (lambda s: print(s, flush=True))
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, cwd=cwd, text=True)
    out_lines: list[str] = []
    import threading

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out_lines.append(line.rstrip("\n"))

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    err_tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        line = line.rstrip("\n")
        err_tail = (err_tail + [line])[-30:]
        if not _noise(line):
            say("    " + line)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{' '.join(map(str, cmd))} timed out after {timeout} s") from None
    th.join(5)
    if rc != 0 or not out_lines:
        tail = "\n".join(err_tail[-15:] + out_lines[-5:])
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed (exit {rc}):\n{tail}")
    return json.loads(out_lines[-1])


def _noise(line: str) -> bool:
    """TensorFlow/absl chatter that is not progress."""
    return (line.startswith(("W0000", "I0000", "WARNING: All log messages", "E0000"))
            or "oneDNN custom operations" in line or "cuda" in line.lower()
            or "XNNPACK delegate" in line or "computation placer" in line
            or "UserWarning" in line or line.strip() == "warnings.warn(")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines results file (blank lines skipped)."""
    return [json.loads(s) for s in Path(path).read_text(encoding="utf-8").splitlines()
            if s.strip()]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN -> null), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(obj), indent=2) + "\n", encoding="utf-8")


def _clean(obj: Any) -> Any:
    return json_ready(obj)


def rel(path: Path | str) -> str:
    """``path`` relative to the repository when inside it (for reports), else as given."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(path)


def python() -> str:
    """The Python interpreter running the benchmarks (used for every child process)."""
    return sys.executable


def grouped_eval_folders(eval_dir: Path, recipe: str) -> list[Path]:
    """The ``RECIPE-grouped<seed>`` folders of a multi-split evaluation
    (:mod:`benchmarks.flight_eval`) that hold both ``run/`` and ``model/``, sorted; a
    ``click.UsageError`` (one line) when there is none."""
    import click

    folders = sorted(p for p in Path(eval_dir).glob(f"{recipe}-grouped*")
                     if (p / "run").is_dir() and (p / "model").is_dir())
    if not folders:
        raise click.UsageError(f"no {recipe}-grouped<seed> folders with run/ and model/ in "
                               f"{eval_dir}")
    return folders


def known_and_rare(data_root: Path) -> tuple[Any, Any]:
    """``(rruff-raw with >= 8 spectra per mineral, the rarer minerals it leaves out)``: the
    known minerals of every evaluation and the pool of the unknown-mineral halves."""
    from ramanedge.dataset import build_dataset, load_heldout

    return (build_dataset(data_root, "rruff-raw", min_spectra=8),
            load_heldout(data_root, "rruff-raw", min_spectra=8))


class OpenSetSplit(NamedTuple):
    """One grouped split as an open-set probe sees it (:func:`open_set_splits`)."""

    folder: Path
    classifier: Any
    features: dict[str, np.ndarray]
    """Dequantised int8 features: each requested split part of the known minerals, plus
    ``"neg"`` / ``"eval"``: the run's own negatives / evaluation halves."""
    names: dict[str, np.ndarray]
    """Mineral names of the known parts' spectra."""
    spectra: dict[str, np.ndarray]
    """Grid spectra of the known parts."""


def open_set_splits(data_root: Path, eval_dir: Path, recipe: str,
                    parts: Sequence[str] = ("val", "test")) -> Iterator[OpenSetSplit]:
    """For each grouped split of a multi-split evaluation, what an open-set probe scores
    (:class:`OpenSetSplit`); the split's halves come from its ``run/unknown_minerals.json``
    (required: ``click.UsageError`` without it)."""
    import click

    from benchmarks.transfer_experiment import extract
    from edge_runtime.artifact import load_artifact
    from edge_runtime.classify import Classifier
    from edge_runtime.interpreter import make_interpreter
    from ramanedge.splits import read_split_csv

    folders = grouped_eval_folders(eval_dir, recipe)
    ds, held = known_and_rare(data_root)
    rare = np.asarray(held.minerals).astype(str)
    labels = np.asarray(ds.minerals).astype(str)
    for f in folders:
        record = f / "run" / "unknown_minerals.json"
        if not record.is_file():
            raise click.UsageError(f"{record} is missing: the probe needs the run's own "
                                   "negatives/evaluation halves")
        halves = json.loads(record.read_text())
        art = load_artifact(f / "model")
        clf = Classifier(art, make_interpreter(art.model_path, num_threads=1))
        split = read_split_csv(f / "run" / "split.csv", ds)
        known = np.isin(labels, list(art.labels))
        rows = {p: known & (split == p) for p in parts}
        feats = {p: extract(clf, ds.X[m])[1] for p, m in rows.items()}
        feats["neg"] = extract(clf, held.X[np.isin(rare, halves["negatives"])])[1]
        feats["eval"] = extract(clf, held.X[np.isin(rare, halves["evaluation"])])[1]
        yield OpenSetSplit(f, clf, feats, {p: labels[m] for p, m in rows.items()},
                           {p: ds.X[m] for p, m in rows.items()})


def library_holds_validation(art: Any) -> bool:
    """Whether the artifact's spectral library holds its split's validation spectra
    (manifest ``library.parts``; ``ramanedge quantize``'s default since 2026-12-06)."""
    return "val" in art.manifest.library_parts


def validation_answerer(clf: Any, X_train: np.ndarray, y_train: np.ndarray) -> Any:
    """``clf`` (an ``edge_runtime`` classifier of the base head) as it should answer its
    split's *validation* spectra: itself, or, when its library holds them
    (:func:`library_holds_validation`), the same classifier with the library of the
    training spectra ``X_train`` / ``y_train`` (class ids; a few-label run's labelled ones)
    alone: the library ``quantize`` calibrated with, where no spectrum matches itself."""
    from ramanedge.library import SpectralLibrary

    if clf.library is None or not library_holds_validation(clf.artifact):
        return clf
    lib = SpectralLibrary.build(X_train, y_train, clf.library.n_classes, clf.library.config)
    return clf.with_head(None, library=lib)


def screen_library(art: Any) -> Any:
    """The artifact's library for a screen that chooses on validation; a usage error when
    there is none, or when it holds the validation spectra (they would match themselves:
    export with ``--library-spectra train`` for screens)."""
    import click

    lib = art.load_library()
    if lib is None:
        raise click.UsageError(f"{art.folder} has no spectral library")
    if library_holds_validation(art):
        raise click.UsageError(f"{art.folder}'s library holds the validation spectra, which "
                               "would match themselves in a screen chosen on validation; "
                               "export with --library-spectra train")
    return lib


def comma_list(text: str, option: str, kind: type = int) -> list[Any]:
    """``"0,1,2"`` as a list of ``kind`` (empty items skipped); a bad item ends the command
    with one usage line naming ``option`` (e.g. ``"--seeds"``)."""
    import click

    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise click.UsageError(f"{option} must be comma-separated {what}, got {text!r}") \
            from None


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a benchmark command's function so that the project's own errors (a missing
    data folder, split file or artifact, ...) end it with one line and exit status 1, as
    ``ramanedge`` does, instead of a traceback."""
    import functools

    import click

    from ramanedge.errors import RamanEdgeError

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RamanEdgeError as e:
            raise click.ClickException(str(e)) from None

    return run


def open_set_command(fn: Callable[..., Any]) -> Any:
    """The command line of an open-set probe over a multi-split evaluation: ``--data``,
    ``--eval`` (the folder of ``RECIPE-grouped<seed>`` runs), ``--recipe``, ``--out``;
    the project's errors end it with one line (:func:`one_line_errors`)."""
    import click

    fn = one_line_errors(fn)
    for opt in reversed((
            click.option("--data", "data_root", type=click.Path(path_type=Path),
                         required=True),
            click.option("--eval", "eval_dir", type=click.Path(path_type=Path),
                         required=True),
            click.option("--recipe", default="flight-oe", show_default=True),
            click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
                         default=None))):
        fn = opt(fn)
    return click.command()(fn)
