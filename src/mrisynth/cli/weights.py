"""`mrisynth weights` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("weights")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth weights` is not built yet")
