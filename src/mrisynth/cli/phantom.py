"""`mrisynth phantom` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("phantom")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth phantom` is not built yet")
