"""The `mrisynth` command: one sub-command per pipeline stage.

Each stage's command lives in its own module here and only parses options, calls a library
function, and prints a summary. Heavy imports (torch, pydicom) happen inside the commands so
that `mrisynth --help` is instant.
"""

from __future__ import annotations

import logging
import sys

import click

from mrisynth import __version__
from mrisynth.cli import (
    dataset,
    demo,
    downstream,
    export,
    generate,
    import_nvidia,
    metrics,
    phantom,
    prepare,
    project,
    readerstudy,
    report,
    train,
    weights,
)
from mrisynth.cli.option_values import check_option_values
from mrisynth.errors import MrisynthError


class _Group(click.Group):
    """Every problem a user can cause is one line `Error: ...` and exit status 1.

    MrisynthError carries its own message; click's usage errors (bad option values, missing
    arguments) lose their multi-line usage banner; an OSError naming a path (a folder that
    cannot be created, a read-only file system) is the last resort, so that no path the user
    types ends in a traceback.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:  # `mrisynth --bogus`: the group's own options
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `mrisynth` alone: its help
                raise
            raise click.ClickException(_one_line(_usage_line(e, ctx.command_path))) from None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta[_COMMAND_KEY] = f"{ctx.command_path} {name}"  # for errors that lack a context
        if cmd is not None:
            check_option_values(ctx, cmd, rest, name)  # `--outdir --quick`: no value
        return name, cmd, rest

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MrisynthError as e:
            raise click.ClickException(_one_line(str(e))) from None
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `mrisynth weights` alone (click >= 8.2)
                raise
            command = ctx.meta.get(_COMMAND_KEY, ctx.command_path)
            raise click.ClickException(_one_line(_usage_line(e, command))) from None
        except click.ClickException as e:  # raised by a command itself
            e.message = _one_line(e.format_message())
            raise
        except OSError as e:
            if e.filename is None:
                raise
            raise click.ClickException(
                _one_line(f"{e.filename}: {e.strerror or e}; check the path and its permissions")
            ) from None


_COMMAND_KEY = "mrisynth.command"


def _one_line(message: str) -> str:
    """A message as one line: a path typed with a newline or other control character in it
    is shown escaped (`a\\nb`), as Python writes it, not broken over lines."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _usage_line(e: click.UsageError, command: str) -> str:
    """click's message plus where to read the command's options, on one line (`command`:
    the sub-command being parsed, for errors such as a missing option value that carry no
    context of their own)."""
    cmd = e.ctx.command_path if e.ctx is not None else command
    return f"{e.format_message()} (see `{cmd} --help`)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mrisynth")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """mrisynth: abdominal MRI DICOM -> StyleGAN2-ADA -> synthetic images and their evaluation.

    Stages: phantom (demo data), prepare, dataset, train, metrics, generate, report;
    `demo` runs them all on built-in data. Beyond: reader-study, downstream, import-nvidia,
    project, export.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


for _module in (phantom, prepare, dataset, train, metrics, weights, generate, report, demo):
    cli.add_command(_module.command)
cli.add_command(readerstudy.command)
cli.add_command(import_nvidia.command)
cli.add_command(project.command)
cli.add_command(downstream.command)
cli.add_command(export.command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="mrisynth")
