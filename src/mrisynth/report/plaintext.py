"""Text on the report page: every string that reaches HTML passes through `plain` or `inline_html`.

Strings come from run files (verdicts, snapshot names, options) that anyone can write, so the
page shows them as plain text: Markdown marks are dropped (a reader should never see literal
backticks, `**` or `[text](url)`), control characters removed and length bounded. The report's
own notes may mark commands with backticks; `inline_html` turns those into <code> elements.
"""

from __future__ import annotations

import html
import re
import unicodedata

MAX_TEXT = 600  # characters kept of one string from a run file

_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\n]*)\)")  # [text](url) and ![alt](src)
_EMPHASIS = re.compile(r"(\*\*|__|~~)")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def plain(value: object, limit: int = MAX_TEXT) -> str:
    """Any value -> one line of plain text without Markdown marks, at most `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    text = _LINK.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EMPHASIS.sub("", text).replace("`", "'")
    text = re.sub(r"^\s*#+\s+", "", text)  # a heading mark at the start
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escape(value: object, limit: int = MAX_TEXT) -> str:
    """Plain text, HTML-escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(plain(value, limit), quote=True)


def inline_html(text: str) -> str:
    """The report's own text: `command` spans become <code>, the rest is plain and escaped."""
    parts: list[str] = []
    last = 0
    for m in _CODE_SPAN.finditer(text):
        parts.append(_segment(text[last : m.start()]))
        parts.append(f"<code>{escape(m.group(1))}</code>")
        last = m.end()
    parts.append(_segment(text[last:]))
    return "".join(parts)


def _segment(text: str) -> str:
    """Escaped plain text keeping one space at either end (the gap next to a code span)."""
    body = escape(text)
    lead = " " if text[:1].isspace() and body else ""
    trail = " " if text[-1:].isspace() and body else ""
    return lead + body + trail
