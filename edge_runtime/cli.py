"""``ramanedge classify`` and ``ramanedge head ...``: the rover-side commands.

These import only numpy, click, the TFLite runtime and ``ramanedge``'s core, never
TensorFlow. Exit status of ``classify`` and ``head add``: 0 when at least one file was
processed, 1 when every file failed (each failure is reported on its own line), 2 for a
bad model, store or option (one ``error: ...`` line, no traceback).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from edge_runtime.artifact import load_artifact
from edge_runtime.classify import Classifier, classify_paths
from edge_runtime.headstore import BASE, HeadStore, add_spectra
from edge_runtime.interpreter import MAX_THREADS, make_interpreter
from ramanedge.cli_options import FiniteFloatRange, coverage_options, coverage_policy
from ramanedge.errors import naming_file

_model_opt = click.option(
    "--model", "model_dir", required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model artifact folder (models/NAME with manifest.json, model.tflite, head.npz).",
)
_store_opt = click.option(
    "--store", "store_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
    help="Head store folder [default: MODEL/headstore].",
)
_threads_opt = click.option(
    "--threads", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True,
    help="CPU threads for the TFLite interpreter.",
)


def _existing_store(artifact, store_dir: Path | None) -> HeadStore | None:
    """The head store to read, or None (no store yet: the base head answers). A ``--store``
    given explicitly must exist: a mistyped path would silently answer with the base head."""
    store = HeadStore.open_existing(artifact, store_dir)
    if store is None and store_dir is not None:
        raise click.UsageError(f"--store {store_dir}: no head store there; expected a folder "
                               "made by 'ramanedge head add --store' (or drop --store for "
                               "MODEL/headstore)")
    return store


def _warn(problems: list[str]) -> None:
    for p in problems:
        click.echo(f"warning: {p}", err=True)


SET_SHOWN = 5
"""Labels of a prediction set printed in the text output (the JSON has all of them)."""


@click.command("classify")
@_model_opt
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of minerals reported per spectrum.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: path, top [{label, prob}], set, unknown, coverage, "
                   "error.")
@_threads_opt
@click.option("--edgetpu", is_flag=True, help="Run on a Coral Edge TPU (libedgetpu.so.1).")
@_store_opt
@click.option("--base-head", is_flag=True,
              help="Ignore the head store and use the artifact's own head.")
@coverage_options
def classify(model_dir: Path, paths: tuple[Path, ...], top_k: int, as_json: bool, threads: int,
             edgetpu: bool, store_dir: Path | None, base_head: bool, coverage_mode: str,
             min_coverage: float) -> None:
    """Classify raw spectra (RRUFF .txt, two-column CSV/TXT, .npy; files or folders).

    Prints the TOP_K most probable minerals per spectrum, flagged 'unknown' when the spectrum
    looks unlike every trained mineral, and the prediction set: the minerals that hold the
    true one with the artifact's coverage level (e.g. 95%) when the mineral is a known one.
    A spectrum covering only part of the model grid is
    padded and its covered fraction shown (--coverage). A file that cannot be classified
    gets its own error line and the batch goes on; the exit status is 1 only when every file
    failed.
    """
    policy = coverage_policy(coverage_mode, min_coverage)  # option errors before any load
    if base_head and store_dir is not None:
        raise click.UsageError("--base-head ignores the head store; drop --store or --base-head")
    artifact = load_artifact(model_dir)
    interpreter = make_interpreter(artifact.model_path, num_threads=threads, edgetpu=edgetpu)
    clf = Classifier(artifact, interpreter, top_k=top_k, coverage=policy)
    if not base_head:
        store = _existing_store(artifact, store_dir)
        if store is not None:
            clf = clf.with_active_head(store)
            _warn(store.problems)
    n_ok = n_bad = 0
    t0 = time.perf_counter()
    for r in classify_paths(clf, paths):
        if r.ok:
            n_ok += 1
        else:
            n_bad += 1
        if as_json:
            click.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        elif r.prediction is None:
            click.echo(f"{r.path}: error: {r.error}", err=True)
        else:
            p = r.prediction
            tops = ", ".join(f"{lab} {prob:.3f}" for lab, prob in p.top)
            if p.set is not None:
                shown = ", ".join(p.set[:SET_SHOWN])
                more = len(p.set) - SET_SHOWN
                level = clf.conformal_rule["level"]
                tops += (f"  [{100 * level:g}% set: {shown}"
                         + (f" +{more} more" if more > 0 else "") + "]")
            flag = "  [unknown: unlike every trained mineral]" if p.unknown else ""
            if p.coverage < 1.0:
                flag += f"  [covers {100 * p.coverage:.0f}% of the grid]"
            click.echo(f"{r.path}: {tops}{flag}")
    dt = time.perf_counter() - t0
    if not as_json:
        click.echo(f"classified {n_ok} of {n_ok + n_bad} files with head {clf.head_version} "
                   f"in {dt:.2f} s" + (f"; {n_bad} failed" if n_bad else ""), err=True)
    if n_ok == 0:
        sys.exit(1)


@click.group("head")
def head() -> None:
    """Teach the rover new minerals: store labelled spectra, retrain the softmax head.

    The int8 backbone stays frozen; only the final softmax layer is refitted on its D-dimensional
    features (old classes from the artifact's exemplars, new ones from stored samples).
    """


def _open(model_dir: Path, store_dir: Path | None, *, create: bool) -> HeadStore:
    return HeadStore.open(load_artifact(model_dir), store_dir, create=create)


@head.command("add")
@_model_opt
@click.option("--label", required=True, help="Mineral name of every spectrum given.")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_store_opt
@_threads_opt
def head_add(model_dir: Path, label: str, files: tuple[Path, ...], store_dir: Path | None,
             threads: int) -> None:
    """Store labelled spectra FILES (files or folders) as LABEL in the head store.

    Each 'stored' line is printed only once the sample is safely on disk. Run
    'ramanedge head retrain' afterwards to fit a head that knows LABEL.
    """
    artifact = load_artifact(model_dir)
    store = HeadStore.open(artifact, store_dir, create=True)
    clf = Classifier(artifact, make_interpreter(artifact.model_path, num_threads=threads))
    n_ok = n_bad = 0
    for path, sample, created, err in add_spectra(store, clf, label, files):
        if sample is None:
            n_bad += 1
            click.echo(naming_file(path, f"error: {err}"), err=True)
        else:
            n_ok += 1
            what = "stored" if created else "already stored"
            click.echo(f"{path}: {what} as sample {sample.id} ({sample.label})")
    _warn(store.problems)
    if n_ok == 0:
        sys.exit(1)


@head.command("retrain")
@_model_opt
@_store_opt
@_threads_opt
@click.option("--alpha", type=FiniteFloatRange(min=0.0), default=None,
              help="L2 anchor strength towards the base head [default: SoftmaxHead's].")
@click.option("--json", "as_json", is_flag=True, help="Print the new head's metadata as JSON.")
def head_retrain(model_dir: Path, store_dir: Path | None, threads: int, alpha: float | None,
                 as_json: bool) -> None:
    """Fit a new head on the artifact's exemplars and every stored sample; make it active."""
    from edge_runtime.head import SoftmaxHead

    artifact = load_artifact(model_dir)
    store = HeadStore.open(artifact, store_dir)
    clf = None

    def classifier() -> Classifier:  # made on first use: most retrains need no invoke
        nonlocal clf
        if clf is None:
            clf = Classifier(artifact, make_interpreter(artifact.model_path,
                                                        num_threads=threads))
        return clf

    def features_fn(grids):  # only for samples stored with another model file
        return classifier().features_batch(grids)

    def check(head, bank):  # classify's classifier with the new head and its samples' bank
        classifier().with_head(head, ood_bank=bank)  # (inside the store's lock: no store calls)

    est = SoftmaxHead() if alpha is None else SoftmaxHead(alpha=alpha)
    t0 = time.perf_counter()
    info = store.retrain(features_fn=features_fn, estimator=est, check=check)
    dt = time.perf_counter() - t0
    _warn(store.problems)
    if as_json:
        click.echo(json.dumps({**info.meta, "seconds": round(dt, 4)}, sort_keys=True))
        return
    m = info.meta
    click.echo(f"head {info.version} active: {len(m['labels'])} classes "
               f"({len(m['new_labels'])} added: {', '.join(m['new_labels']) or '-'}), "
               f"{m['n_samples']} samples + {m['n_exemplars']} exemplars, "
               f"train accuracy {m['train_accuracy']:.3f}, {dt:.2f} s")
    if m["n_exemplars"] == 0:
        click.echo("warning: the artifact has no exemplars.npz; old minerals are kept only by "
                   "the anchor to the base head (expect more forgetting)", err=True)
    if not m["converged"]:
        click.echo(f"warning: the fit stopped after {m['n_iter']} iterations without "
                   "converging; check the answers, or retrain with another --alpha (the "
                   "previous head stays available: 'ramanedge head rollback')", err=True)


@head.command("list")
@_model_opt
@_store_opt
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def head_list(model_dir: Path, store_dir: Path | None, as_json: bool) -> None:
    """Show the stored heads (active one marked *) and the samples per label."""
    artifact = load_artifact(model_dir)
    store = _existing_store(artifact, store_dir)
    if store is None:
        s = {"store": str(store_dir or model_dir / "headstore"), "active": BASE, "heads": [],
             "samples": {}, "n_samples": 0, "problems": []}
    else:
        s = store.summary()
    if as_json:
        click.echo(json.dumps(s, sort_keys=True))
        return
    click.echo(f"{'*' if s['active'] == BASE else ' '} base   {len(artifact.labels)} classes "
               f"(artifact {artifact.name})")
    for h in s["heads"]:
        new = ", ".join(h["new_labels"]) or "-"
        click.echo(f"{'*' if h['active'] else ' '} {h['version']}  {h['n_classes']} classes, "
                   f"added: {new}; {h['n_samples']} samples; {h['created']}")
    per = ", ".join(f"{k} ({v})" for k, v in sorted(s["samples"].items())) or "none"
    click.echo(f"samples: {s['n_samples']}: {per}")
    _warn(s["problems"])


@head.command("rollback")
@_model_opt
@_store_opt
@click.option("--to", "to", default=None,
              help="Version to activate (e.g. v0002, or 'base') [default: the one before].")
def head_rollback(model_dir: Path, store_dir: Path | None, to: str | None) -> None:
    """Make an earlier head active again (nothing is deleted; retrain or roll forward later)."""
    store = _open(model_dir, store_dir, create=False)
    version = store.rollback(to)
    _warn(store.problems)
    click.echo(f"active head: {version}")
