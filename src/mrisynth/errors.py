"""Exception types whose messages say what went wrong, where, and how to fix it.

The CLI turns any MrisynthError into a single line `error: <message>` and a non-zero exit.
"""

from __future__ import annotations


class MrisynthError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""


class InputError(MrisynthError):
    """A bad input file or folder (names the path and the problem)."""


class ConfigError(MrisynthError):
    """Inconsistent or impossible options."""


class MissingDependencyError(MrisynthError):
    """An optional package or a weight file is missing (says what to install or copy where)."""


class CheckpointError(MrisynthError):
    """A checkpoint that cannot be read or does not match the run."""


class DiskFullError(MrisynthError):
    """No space (or quota) left while writing an output: names the file and the space needed."""
