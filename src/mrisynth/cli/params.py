"""click parameter types for paths the user names on the command line."""

from __future__ import annotations

import stat
from pathlib import Path

import click


class RegularFile(click.Path):
    """An existing regular file (or a link to one): a pipe, device or socket named here would
    block the read forever or never end, so it is refused before anything opens it."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx) -> Path:
        path = super().convert(value, param, ctx)
        if not stat.S_ISREG(Path(path).stat().st_mode):
            self.fail(f"{value}: not a regular file (a pipe, device or socket)", param, ctx)
        return path
