"""``ramanedge quantize``: export a training run as a full-int8 artifact, or check a model.

    ramanedge quantize runs/NAME --out models/NAME [--calib-size 100] [--also float32,float16]
                       [--gate-on probs|head] [--exemplars 10] [--no-library]
                       [--library-spectra train+val|train] [--lag-penalty 0.1]
                       [--allow-accuracy-drop] [--overwrite] [--data DIR]
    ramanedge quantize --check edgetpu models/NAME        # or a .tflite file

Bad input (missing run, unusable --out, failed parity gate, ...) is reported in one line
and exit status 2 by ``ramanedge.cli.main``. ``--check edgetpu`` prints the op-by-op
report and exits 1 when any op would fall back to the CPU. The work itself is
:func:`quantize.export.quantize_run` (and :mod:`quantize.sweep`, :mod:`quantize.edgetpu`).
"""

from __future__ import annotations

from pathlib import Path

import click

from quantize.exemplars import DEFAULT_PER_CLASS
from ramanedge.cli_options import FiniteFloatRange
from ramanedge.errors import DataError, ManifestError
from ramanedge.library import LibraryConfig
from ramanedge.manifest import HEAD_DTYPES, LIBRARY_SPECTRA, check_name
from ramanedge.splits import DEFAULT_CALIB_SIZE

#: the shipped library match, whose defaults the help names
_MATCH = LibraryConfig()

CHECKS = ("edgetpu",)


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _parse_also(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip().lower() for v in value.split(",") if v.strip())


@click.command("quantize")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Artifact folder to write (e.g. models/NAME).")
@click.option("--name", default=None, help="Artifact name (default: the --out folder name).")
@click.option("--calib-size", type=click.IntRange(min=1), default=DEFAULT_CALIB_SIZE,
              show_default=True,
              help="Training spectra in the stratified int8 calibration set.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the calibration-set draw.")
@click.option("--also", default="", metavar="PRECISIONS",
              help="Extra TFLite files for comparison: float32, float16 (comma-separated).")
@click.option("--allow-accuracy-drop", is_flag=True,
              help="Write the artifact even when the int8 parity gate fails.")
@click.option("--gate-on", type=click.Choice(("probs", "head")), default="head",
              show_default=True,
              help="Gate the int8 'probs' output, or the float head.npz on the int8 features.")
@click.option("--exemplars", type=click.IntRange(min=0), default=DEFAULT_PER_CLASS,
              show_default=True, metavar="PER_CLASS",
              help="Exemplar features per class stored in the artifact for the onboard "
                   "retrainer and the knn_cosine unknown rule (quantize.exemplars); 0 = none.")
@click.option("--head-dtype", type=click.Choice(HEAD_DTYPES), default="float16",
              show_default=True,
              help="How head.npz stores its weights (the gate judges the stored head).")
@click.option("--set-level", type=FiniteFloatRange(0.0, 1.0, max_open=True), default=0.95,
              show_default=True,
              help="Coverage level of the prediction sets, calibrated on the validation "
                   "split (split-conformal, edge_runtime.conformal); 0 = no sets.")
@click.option("--library/--no-library", default=True, show_default=True,
              help="Store the labelled spectra (--library-spectra) as a spectral library and "
                   "blend its lag-tolerant match into the rover's answer (ramanedge.library; "
                   "docs/parts/flight.md).")
@click.option("--library-spectra", type=click.Choice(LIBRARY_SPECTRA), show_default=True,
              default=LIBRARY_SPECTRA[0], help="What the library holds: the training and "
              "validation spectra (more specimens a mineral; the validation answers that "
              "calibrate the sets are made without themselves) or the training spectra only. "
              "A few-label run's library holds its labelled training spectra only.")
@click.option("--lag-penalty", type=FiniteFloatRange(0.0, 1.0), default=None,
              metavar="LAMBDA",
              help="The library match's prior that calibration offsets are small: each "
                   f"lag d's cosine less LAMBDA * (d / {_MATCH.reach} cm-1)^2 (default "
                   f"{_MATCH.lag_penalty:g}; 0 = every lag alike, full tolerance of a "
                   f"{_MATCH.reach} cm-1 offset; docs/parts/flight.md, \"A prior on the "
                   "lag\").")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact at --out.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="RRUFF data root, if not the one recorded in the run.")
@click.option("--check", type=click.Choice(CHECKS), default=None,
              help="Check SOURCE (artifact folder or .tflite) instead of exporting.")
@click.option("--calib-sweep", default=None, metavar="SIZES",
              help="Instead of exporting, measure int8 parity for these calibration sizes "
                   "(e.g. 20,50,100,200,all) on the run's test split and print a table.")
@click.option("--seeds", default="0,1,2", show_default=True, metavar="SEEDS",
              help="Calibration draws per size for --calib-sweep.")
def quantize(source: Path, out: Path | None, name: str | None, calib_size: int, seed: int,
             also: str, allow_accuracy_drop: bool, gate_on: str, exemplars: int,
             head_dtype: str, set_level: float, library: bool, library_spectra: str,
             lag_penalty: float | None, overwrite: bool,
             data_root: Path | None, check: str | None, calib_sweep: str | None,
             seeds: str) -> None:
    """Export the run SOURCE as a full-int8 TFLite artifact (or, with --check edgetpu, check
    an artifact folder or .tflite SOURCE).

    The int8 model is calibrated on a stratified draw from the run's training split and must
    match the float model on the test split (top-1 drop <= 1 point, argmax agreement >= 98%)
    before anything is written; the folder is built aside and renamed into place.
    """
    if out is not None and (check is not None or calib_sweep is not None):
        mode = "--check" if check is not None else "--calib-sweep"
        raise click.UsageError(f"{mode} measures and writes nothing; drop --out (or drop "
                               f"{mode} to export)")
    if check is not None:
        _check(source, check)
        return
    if calib_sweep is not None:
        _sweep(source, calib_sweep, seeds, data_root)
        return
    if out is None:
        raise click.UsageError("--out is required (e.g. --out models/NAME)")
    if lag_penalty is not None and not library:
        raise click.UsageError("--lag-penalty sets the library's match; drop it or drop "
                               "--no-library")
    from dataclasses import replace

    from quantize.export import QuantizeConfig, quantize_run

    match = _MATCH if lag_penalty is None else replace(_MATCH, lag_penalty=lag_penalty)

    try:
        config = QuantizeConfig(calib_size=calib_size, seed=seed, also=_parse_also(also),
                                allow_accuracy_drop=allow_accuracy_drop, overwrite=overwrite,
                                gate_on=gate_on, exemplars_per_class=exemplars,
                                head_dtype=head_dtype, conformal_level=set_level,
                                library=match if library else None,
                                library_with_validation=library_spectra == "train+val")
    except ValueError as e:  # the one QuantizeConfig value click's types do not check
        raise click.BadParameter(str(e), param_hint="--also") from None
    _check_run_folder(source)
    try:  # the name the manifest will carry, checked before minutes of conversion
        check_name(name or out.name)
    except ManifestError as e:
        raise click.BadParameter(str(e), param_hint="--name" if name else "--out") from None
    result = quantize_run(source, out, config=config, name=name, data_root=data_root,
                          log=_echo)
    m = result.manifest.data["metrics"]
    sizes = ", ".join(f"{f} {n / 1024:.1f} KiB" for f, n in result.sizes.items())
    click.echo(
        f"wrote {result.out_dir}: int8 top-1 {100 * m['int8']['top1']:.2f}% "
        f"(float {100 * m['float']['top1']:.2f}%, drop {m['drop_points']:.2f} pts), "
        f"agreement {100 * m['agreement']:.2f}% on {m['n_test']} test spectra "
        f"(float head on int8 features: top-1 {100 * m['head']['top1']:.2f}%, agreement "
        f"{100 * m['head']['agreement']:.2f}%); gate on {m['gate']['on']}: "
        f"{'passed' if m['gate']['passed'] else 'FAILED (written with --allow-accuracy-drop)'}"
        + (f"; with the spectral library: top-1 {100 * m['library']['test_top1']:.2f}%"
           if m.get("library") else "")
        + f"; {sizes}"
    )


def _check_run_folder(source: Path) -> None:
    """A one-line error unless SOURCE is a folder (a run of ``ramanedge train``)."""
    if source.is_dir():
        return
    what = "is a file, not a run folder" if source.exists() else "does not exist"
    raise DataError(f"run folder {source} {what}; expected the output of 'ramanedge train' "
                    "(e.g. runs/NAME)")


def _int_list(value: str, option: str, allow_all: bool = False) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for tok in value.split(","):
        tok = tok.strip().lower()
        if not tok:
            continue
        if allow_all and tok == "all":
            out.append(None)
        elif tok.isdigit() and (int(tok) > 0 or option == "--seeds"):
            out.append(int(tok))
        else:
            raise click.BadParameter(f"expected comma-separated positive integers"
                                     f"{' or all' if allow_all else ''}, got {tok!r}",
                                     param_hint=option)
    if not out:
        raise click.BadParameter("no value given", param_hint=option)
    return tuple(out)


def _sweep(source: Path, sizes: str, seeds: str, data_root: Path | None) -> None:
    from quantize.sweep import calibration_sweep, sweep_table
    from trainer.run import load_run

    size_list = _int_list(sizes, "--calib-sweep", allow_all=True)
    seed_list = tuple(int(s) for s in _int_list(seeds, "--seeds"))
    _check_run_folder(source)
    run = load_run(source, data_root=data_root)
    Xtr, ytr = run.subset("train")
    Xte, yte = run.subset("test")
    rows = calibration_sweep(run.model, train_X=Xtr, train_y=ytr, test_X=Xte, test_y=yte,
                             sizes=size_list, seeds=seed_list, log=_echo)
    click.echo(f"run {source}: {len(yte)} test spectra, {len(run.labels)} classes, "
               f"float top-1 {100 * rows[0]['float_top1']:.2f}%")
    click.echo(sweep_table(rows))


def _check(source: Path, kind: str) -> None:
    from quantize.edgetpu import check_edgetpu

    report = check_edgetpu(source)
    click.echo(report.format())
    if not report.passed:
        # SystemExit, not click's Exit: ramanedge.cli.main runs click with
        # standalone_mode=False, which turns click.exceptions.Exit into a return value.
        raise SystemExit(1)
