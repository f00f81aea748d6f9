"""Keeping the secret links out of the server's log.

A reader's or the organiser's token is part of every URL they request, and both werkzeug's
request log and Flask's error log print the URL; terminal output and log files get pasted into
tickets and chats. Every record of those loggers has its `/r/TOKEN` and `/o/TOKEN` replaced.
"""

from __future__ import annotations

import logging
import re

_TOKEN_PATH = re.compile(r"/([ro])/[^/\s?#\"']+")
LOGGERS = ("werkzeug", "mrisynth.readerstudy.app")  # request log; Flask's app.logger


def redact(text: str) -> str:
    """`text` with each `/r/TOKEN` or `/o/TOKEN` shown as `/r/...`."""
    return _TOKEN_PATH.sub(r"/\1/...", text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message (arguments merged in) without the tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactTokens()


def install_log_redaction() -> None:
    """Attach the filter to the loggers that name URLs (idempotent)."""
    for name in LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
