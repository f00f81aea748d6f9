"""`mrisynth generate` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("generate")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth generate` is not built yet")
