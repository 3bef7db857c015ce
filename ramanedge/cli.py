"""The ``ramanedge`` command line: one click group, subcommands loaded lazily.

Each part owns its commands in its own ``cli`` module; this group imports a module only
when its command runs, so ``ramanedge classify`` on the rover never imports TensorFlow.
Every :class:`~ramanedge.errors.RamanEdgeError` (and a few OS errors) becomes one line on
stderr and exit status 2, never a traceback; so does a usage error (a value click cannot
parse, an unknown option or command: click's message and where to find the help).
"""

from __future__ import annotations

import importlib
import sys

import click

from ramanedge.errors import RamanEdgeError

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("ramanedge.data_cli:data", "Build and inspect the RRUFF data sets and splits."),
    "train": ("trainer.cli:train", "Train the pooled 1D CNN on a data set."),
    "refit": ("trainer.cli:refit", "Train a run's recipe again on training + validation."),
    "pretrain": ("trainer.cli:pretrain", "Self-supervised pretraining on every RRUFF spectrum."),
    "evaluate": ("trainer.cli:evaluate", "Evaluate a trained run (accuracy, shifts, confusion)."),
    "baselines": ("trainer.cli:baselines", "k-NN and SVM baselines on the same split."),
    "quantize": ("quantize.cli:quantize", "Export a run as a full-int8 TFLite artifact."),
    "classify": ("edge_runtime.cli:classify", "Classify raw spectra with an artifact."),
    "head": ("edge_runtime.cli:head", "Onboard softmax-head retraining for new minerals."),
    "device": ("device_sim.cli:device", "Run the rover-computer side of the serial link."),
    "sim": ("device_sim.cli:sim", "Host side: replay spectra over a simulated serial link."),
    "bench": ("benchmarks.cli:bench", "Run the benchmarks and write docs/benchmarks.md."),
    "explain": ("trainer.explain:explain", "Grad-CAM explanation of a classification."),
}


#: top-level module -> the extra of ``pip install ramanedge[EXTRA]`` that provides it
EXTRAS: dict[str, str] = {
    "tensorflow": "train", "keras": "train", "matplotlib": "train", "h5py": "train",
    "sklearn": "baselines", "serial": "sim", "psutil": "sim", "ai_edge_litert": "edge",
    "tflite_runtime": "edge", "hypothesis": "dev", "pytest": "dev",
}


#: modules a command needs beyond the core; checked (not imported) before the command runs,
#: so a rover-only install answers "install the extra" before any argument checking
REQUIRES: dict[str, tuple[str, ...]] = {
    "train": ("tensorflow", "keras"), "refit": ("tensorflow", "keras"),
    "pretrain": ("tensorflow", "keras"),
    "evaluate": ("tensorflow", "keras"),
    "quantize": ("tensorflow", "keras"), "explain": ("tensorflow", "keras", "matplotlib"),
    "baselines": ("sklearn",),
}


def _missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be found (without importing it), or None."""
    import importlib.util

    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                return m
        except (ImportError, ValueError):
            return m
    return None


def missing_module_message(cmd_name: str, module: str | None) -> str:
    """One line saying which extra a command needs when ``module`` is not installed."""
    top = (module or "?").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return f"'ramanedge {cmd_name}' is not available: module {top} is not installed"
    return (f"'ramanedge {cmd_name}' needs the '{extra}' extra (module {top} is not "
            f"installed); install it with: pip install 'ramanedge[{extra}]'")


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        target = spec[0]
        module_name, attr = target.split(":")
        try:
            absent = _missing(REQUIRES.get(cmd_name, ()))
            if absent is not None:
                raise ModuleNotFoundError(f"No module named {absent!r}", name=absent)
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            msg = missing_module_message(cmd_name, e.name)

            @click.command(
                cmd_name, help=spec[1], context_settings={"ignore_unknown_options": True}
            )
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise RamanEdgeError(msg)

            return unavailable
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="ramanedge")
def cli() -> None:
    """Mineral identification from raw Raman spectra, from training to the rover computer."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected errors into one line and exit status 2."""
    try:
        rv = cli.main(args=argv, prog_name="ramanedge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # a value click cannot parse, an unknown option or command
        where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message().rstrip('.')}{where}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except RamanEdgeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:  # a file or folder the command needed (missing, a folder, no access)
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"error: {e.strerror or e}{where}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as e:  # an optional dependency imported inside a command
        cmd = next((a for a in (argv if argv is not None else sys.argv[1:]) if a in COMMANDS),
                   "?")
        click.echo(f"error: {missing_module_message(cmd, e.name)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    # without standalone mode click returns ctx.exit(n)'s code instead of exiting
    if isinstance(rv, int) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":  # pragma: no cover
    main()
