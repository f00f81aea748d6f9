"""`mrisynth dataset` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("dataset")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth dataset` is not built yet")
