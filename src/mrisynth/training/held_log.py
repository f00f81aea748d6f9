"""Log records of a run's start (resume, transfer adaptations, hints) held until its `log.txt`
is open, then written into it: the run folder is created only after the inputs are checked,
so what was said while checking them would otherwise reach the console but never the file.

The console gets the held INFO lines only then too (warnings at once): a run refused while its
inputs are checked prints its one `Error:` line, not `archive ...: 44 images` before it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

_PACKAGE = "mrisynth"


class HeldRecords(logging.Handler):
    """Keeps mrisynth's INFO-and-up records until `replay_into` hands them to the log file."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._attached = False
        self._consoles: list[logging.Handler] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        pkg = logging.getLogger(_PACKAGE)
        pkg.addHandler(self)
        self._attached = True
        if pkg.getEffectiveLevel() > logging.INFO:  # as the log file will: INFO lines too
            pkg.setLevel(logging.INFO)
        self._consoles = [h for h in logging.getLogger().handlers
                          if type(h) is logging.StreamHandler]  # fmt: skip
        for console in self._consoles:
            console.addFilter(_warnings_only)

    def detach(self) -> None:
        for console in self._consoles:
            console.removeFilter(_warnings_only)
        if self._attached:
            logging.getLogger(_PACKAGE).removeHandler(self)
            self._attached = False

    def replay_into(self, handler: logging.Handler | None) -> None:
        """Stop holding and write the held records into `handler` (the file) and the held
        INFO lines to the console; their timestamps are those of the moment they were logged."""
        consoles = self._consoles
        self.detach()
        records, self.records = self.records, []
        for record in records:
            if handler is not None and record.levelno >= handler.level:
                handler.handle(record)
            if not _warnings_only(record):  # held back from the console until now
                for console in consoles:
                    if record.levelno >= console.level:
                        console.handle(record)


def _warnings_only(record: logging.LogRecord) -> bool:
    """Console filter while holding: mrisynth's INFO lines wait for `replay_into`."""
    return record.levelno > logging.INFO or not record.name.startswith(_PACKAGE)


@contextlib.contextmanager
def holding() -> Iterator[HeldRecords]:
    """Hold mrisynth's records from now; released however the block ends."""
    held = HeldRecords()
    held.attach()
    try:
        yield held
    finally:
        held.detach()
