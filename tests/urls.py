"""Database URLs for libraries that do not take a libpq DSN (SQLAlchemy, and apps that
read one URL for both SQLAlchemy and pgjobs).

The test server is reached over TCP (the service Postgres) or a Unix socket (embedded
Postgres, whose "host" is a directory): a socket directory cannot stand in a URL's host,
so host and port go as query parameters, which libpq, psycopg's and asyncpg's dialects
all read.
"""

from __future__ import annotations

from urllib.parse import urlencode

from psycopg.conninfo import conninfo_to_dict


def database_url(dsn: str, scheme: str = "postgresql") -> str:
    """*dsn* as ``scheme://user@/dbname?host=...&port=...``."""
    info = conninfo_to_dict(dsn)
    query = urlencode({"host": info.get("host") or "127.0.0.1", "port": info.get("port") or 5432})
    return f"{scheme}://{info.get('user') or 'root'}@/{info['dbname']}?{query}"
