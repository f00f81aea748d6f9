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


class NetworkPath(click.ParamType):
    """A run folder or a snapshot file (`folder_only`: a run folder), refused at parse time
    with what the typed path is (a training archive, an NVIDIA pickle, a missing run) and what
    was expected; the loaders check the same way (`training.network_path`)."""

    name = "path"

    def __init__(self, folder_only: bool = False) -> None:
        self.folder_only = folder_only

    def convert(self, value, param, ctx) -> Path:
        from mrisynth.errors import CheckpointError
        from mrisynth.training.network_path import check_network_path

        if isinstance(value, Path):
            return value
        try:
            return check_network_path(value, folder_only=self.folder_only)
        except CheckpointError as e:
            self.fail(str(e), param, ctx)
