"""Listening for readers, and keeping the secret links out of the server's log.

`listen` binds the socket itself, so a bad --host or a busy port is one `Error:` line (werkzeug
prints its own bare message and exits). A reader's or the organiser's token is part of every
URL they request, and both werkzeug's request log and Flask's error log print the URL; terminal
output and log files get pasted into tickets and chats. Every record of those loggers has its
`/r/TOKEN` and `/o/TOKEN` replaced. Replies name no server software or version (`Server:`)."""

from __future__ import annotations

import logging
import re
import socket

from werkzeug.serving import WSGIRequestHandler

from mrisynth.errors import ConfigError

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


SERVER_NAME = "reader-study"


class NeutralHandler(WSGIRequestHandler):
    """werkzeug's handler without `Server: Werkzeug/x.y Python/x.y` on every reply (error
    replies of the HTTP layer included): a version number only helps an attacker pick an
    exploit."""

    def version_string(self) -> str:
        return SERVER_NAME


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one), or a ConfigError."""
    if not host.strip() or host.startswith("unix://"):
        raise ConfigError(f"--host {host!r}: give an IP address or name, e.g. 127.0.0.1")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as werkzeug chooses
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as e:
        raise ConfigError(
            f"--host {host} --port {port}: cannot listen ({e.strerror or e}); check the "
            "address or choose another --port"
        ) from None
