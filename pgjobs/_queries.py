"""Named SQL statements, loaded from ``pgjobs/sql/*.sql``.

Each statement in those files starts with a ``-- name: entity_verb`` line. The files are
read once; ``{schema}`` is substituted per schema name and the result cached. Statements
are kept as ``bytes`` because psycopg sends bytes as-is and types them as a query.

The only thing ever substituted is the schema name, and :func:`check_schema_name`
restricts it to a lowercase identifier that needs no quoting (not a reserved word, not
``pg_...``), so it is equally safe as an identifier (``pgjobs.jobs``) and inside a
literal (the NOTIFY channel ``'pgjobs_wakeup'``).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_SCHEMA",
    "check_schema_name",
    "control_channel",
    "finished_channel",
    "queries",
    "wakeup_channel",
]

DEFAULT_SCHEMA = "pgjobs"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
# Words Postgres reserves (pg_get_keywords() catcode 'R' and 'T'): as a schema name each
# would need quoting, and the statements here never quote it. tests/test_migrate.py checks
# this list against the server's own.
_RESERVED = frozenset(
    [
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "system_user",  # reserved since Postgres 16
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    ]
)
_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
#: A line that holds only a comment. The files explain each statement at length; what is
#: sent leaves those lines out, which keeps the longest statements under the 4,096 bytes
#: up to which psycopg caches a query's conversion (job_finish_many was 5,263 bytes and
#: was parsed again at every outcome batch), and off the wire.
_COMMENT_LINE = re.compile(r"^[ \t]*--.*\n", re.MULTILINE)


def check_schema_name(schema: str) -> str:
    """Return *schema* if it is a valid pgjobs schema name, else raise ConfigurationError."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
        raise ConfigurationError(
            f"schema name {schema!r} is not allowed: use 1 to 41 lowercase letters, "
            "digits and underscores, not starting with a digit"
        )
    if schema in _RESERVED or schema.startswith("pg_"):
        reason = "is reserved by Postgres" if schema in _RESERVED else "starts with pg_"
        raise ConfigurationError(f"schema name {schema!r} is not allowed: it {reason}")
    return schema


def wakeup_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which workers of *schema* are woken."""
    return f"{check_schema_name(schema)}_wakeup"


def finished_channel(schema: str) -> str:
    """The channel on which a client waiting for a job hears that it finished (payload:
    the job id). Sent only for jobs with a row in ``waiters``."""
    return f"{check_schema_name(schema)}_finished"


def control_channel(schema: str) -> str:
    """The channel on which workers of *schema* receive control messages (JSON), such as
    ``{"action": "cancel", "job_id": 42}``."""
    return f"{check_schema_name(schema)}_control"


@functools.cache
def _source() -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(resources.files("pgjobs").joinpath("sql").iterdir(), key=str):
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME_LINE.split(entry.read_text(encoding="utf-8"))
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice in pgjobs/sql")
            found[name] = _COMMENT_LINE.sub("", body).strip().rstrip(";")
    return found


def names() -> frozenset[str]:
    """Every query name defined in the SQL files."""
    return frozenset(_source())


@functools.cache
def queries(schema: str = DEFAULT_SCHEMA) -> dict[str, bytes]:
    """All named statements with ``{schema}`` filled in, as bytes ready for psycopg."""
    check_schema_name(schema)
    return {name: body.replace("{schema}", schema).encode() for name, body in _source().items()}
