"""`mrisynth demo` (being built: see the issue that adds it)."""

import click

from mrisynth.errors import MrisynthError


@click.command("demo")
def command() -> None:
    """Not built yet."""
    raise MrisynthError("`mrisynth demo` is not built yet")
