"""Where the database is: a DSN from an argument or the environment, and how to print it safely."""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigurationError

__all__ = ["ENV_VARS", "redact", "resolve_dsn"]

#: Looked up in this order when no DSN is given.
ENV_VARS = ("PGJOBS_DSN", "DATABASE_URL")


def resolve_dsn(dsn: str | None = None) -> str:
    """Return *dsn*, else ``$PGJOBS_DSN``, else ``$DATABASE_URL``; raise if none is set."""
    if dsn:
        return dsn
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    raise ConfigurationError(
        "no database given: pass --dsn/dsn=..., or set PGJOBS_DSN or DATABASE_URL "
        "(for example postgresql://user@localhost:5432/app)"
    )


def redact(dsn: str) -> str:
    """*dsn* in key=value form without its password, for logs and error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable DSN>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**params)  # type: ignore[arg-type]
