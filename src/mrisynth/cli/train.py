"""`mrisynth train` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("train")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth train` is not built yet")
