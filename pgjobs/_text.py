"""Text safe to print on a terminal: what came from the database (a queue, kind, error or
payload, written by whoever can enqueue) with its control characters shown as escapes.
Printed raw, an escape sequence in one would run in the reader's terminal (set the window
title, clear the screen, hide text). Other Unicode is printed as it is.

The operator commands print through it (``pgjobs.cli._output``), and so do the log lines
of ``python -m pgjobs`` (``pgjobs._logging``), which name kinds and quote errors.
"""

from __future__ import annotations

import unicodedata

__all__ = ["clean", "escape_json"]

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Bidirectional embeddings, overrides and isolates: they reorder the text around them.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe(char: str) -> bool:
    """A character a terminal acts on instead of showing: C0 and C1 controls and DEL
    (category Cc), line and paragraph separators, and bidirectional controls."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI


def _escape(char: str) -> str:
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def clean(value: object, *, lines: bool = False) -> str:
    """*value* as text safe to print on a terminal: control characters as escapes
    (``\\x1b``, ``\\n``, ``\\x9b``). With *lines*, line breaks are kept (a traceback
    stays readable) and every other control character is escaped."""
    text = str(value)
    if text.isprintable():  # nearly always: nothing to look at character by character
        return text
    if lines:
        return "\n".join(clean(line) for line in text.split("\n"))
    return "".join(_escape(char) if unsafe(char) else char for char in text)


def escape_json(text: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` made safe to print: json
    escapes C0 controls in strings itself (the line breaks left are the layout's); the
    rest of what :func:`clean` escapes can only stand inside a string, where ``\\uXXXX``
    is valid and decodes to the same value."""
    if text.isascii():
        return text
    return "".join(
        f"\\u{ord(char):04x}" if char > "\x7e" and unsafe(char) else char for char in text
    )
