"""The demo's console: its own step lines are the output, so log records that reach it read like
them (`Warning: ...`, not `WARNING mrisynth.metrics.runner.verdicts: ...`). Only the console
handler the CLI set up changes, and only while the demo runs; log files (a run's log.txt) have
handlers of their own and keep the full format with the logger's name."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _PlainWarnings(logging.Formatter):
    """`Warning: message` for a warning; every other level as the console had it."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.WARNING:
            return f"Warning: {record.getMessage()}"
        return self.inner.format(record)


def _consoles() -> list[logging.Handler]:
    """The root's plain stream handlers (the CLI's stderr); file handlers are subclasses."""
    return [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


@contextlib.contextmanager
def demo_console() -> Iterator[None]:
    """While the demo runs: the console keeps the level `-v` chose (training lowers mrisynth's
    level to INFO for its log.txt) and shows warnings as the demo's own lines."""
    root = logging.getLogger()
    saved = [(h, h.level, h.formatter) for h in _consoles()]
    for handler, level, formatter in saved:
        if level == logging.NOTSET:
            handler.setLevel(root.level)
        handler.setFormatter(_PlainWarnings(formatter))
    try:
        yield
    finally:
        for handler, level, formatter in saved:
            handler.setLevel(level)
            handler.setFormatter(formatter)
