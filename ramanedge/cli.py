"""The ``ramanedge`` command line: one click group, subcommands loaded lazily.

Each part owns its commands in its own ``cli`` module; this group imports a module only
when its command runs, so ``ramanedge classify`` on the rover never imports TensorFlow.
Every :class:`~ramanedge.errors.RamanEdgeError` (and a few OS errors) becomes one line on
stderr and exit status 2, never a traceback.
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
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            missing = e.name or "?"
            msg = f"'{cmd_name}' is not available: module {missing} is not installed"

            @click.command(
                cmd_name, help=spec[1], context_settings={"ignore_unknown_options": True}
            )
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(msg)

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
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except RamanEdgeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        click.echo(f"error: {e.strerror or e}: {e.filename}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    # without standalone mode click returns ctx.exit(n)'s code instead of exiting
    if isinstance(rv, int) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":  # pragma: no cover
    main()
