"""Log records of a run's start (resume, transfer adaptations, hints) held until its `log.txt`
is open, then written into it: the run folder is created only after the inputs are checked,
so what was said while checking them would otherwise reach the console but never the file.
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

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        pkg = logging.getLogger(_PACKAGE)
        pkg.addHandler(self)
        self._attached = True
        if pkg.getEffectiveLevel() > logging.INFO:  # as the log file will: INFO lines too
            pkg.setLevel(logging.INFO)

    def detach(self) -> None:
        if self._attached:
            logging.getLogger(_PACKAGE).removeHandler(self)
            self._attached = False

    def replay_into(self, handler: logging.Handler | None) -> None:
        """Stop holding and write the held records into `handler` only (the console has
        shown them already); their timestamps are those of the moment they were logged."""
        self.detach()
        records, self.records = self.records, []
        if handler is None:
            return
        for record in records:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextlib.contextmanager
def holding() -> Iterator[HeldRecords]:
    """Hold mrisynth's records from now; released however the block ends."""
    held = HeldRecords()
    held.attach()
    try:
        yield held
    finally:
        held.detach()
