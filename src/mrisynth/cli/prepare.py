"""`mrisynth prepare` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("prepare")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth prepare` is not built yet")
