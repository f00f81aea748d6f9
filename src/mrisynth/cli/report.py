"""`mrisynth report` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("report")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth report` is not built yet")
