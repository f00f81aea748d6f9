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
from mrisynth.cli import dataset, demo, generate, metrics, phantom, prepare, report, train, weights
from mrisynth.errors import MrisynthError


class _Group(click.Group):
    """Turns MrisynthError into a one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MrisynthError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mrisynth")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """mrisynth: abdominal MRI DICOM -> StyleGAN2-ADA -> synthetic images and their evaluation.

    Stages: phantom (demo data), prepare, dataset, train, metrics, generate, report;
    `demo` runs them all on built-in data.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


for _module in (phantom, prepare, dataset, train, metrics, weights, generate, report, demo):
    cli.add_command(_module.command)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="mrisynth")
