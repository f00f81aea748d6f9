"""`mrisynth metrics` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("metrics")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth metrics` is not built yet")
