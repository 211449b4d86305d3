"""pgjobs: a transactional, Postgres-only job queue for Python.

Jobs are rows in ``<schema>.jobs``. Enqueue them inside your own transaction and they
exist exactly when it commits::

    import pgjobs, psycopg

    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("insert into orders ...")
        pgjobs.enqueue(conn, pgjobs.Task("send_receipt", {"order": 42}))

Everything public is importable from here; submodules whose names start with an
underscore are private.
"""

from ._version import __version__
from .client import AsyncClient, Client
from .enqueue import (
    AsyncEnqueuer,
    Enqueuer,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)
from .errors import (
    ConfigurationError,
    DuplicateHandlerError,
    HandlerNotFoundError,
    InvalidTaskError,
    JobControl,
    MigrationError,
    PayloadError,
    PayloadTooLargeError,
    PgjobsError,
    SchemaError,
    SkipRetry,
)
from .task import Task

__all__ = [
    "AsyncClient",
    "AsyncEnqueuer",
    "Client",
    "ConfigurationError",
    "DuplicateHandlerError",
    "Enqueuer",
    "HandlerNotFoundError",
    "InvalidTaskError",
    "JobControl",
    "MigrationError",
    "PayloadError",
    "PayloadTooLargeError",
    "PgjobsError",
    "SchemaError",
    "SkipRetry",
    "Task",
    "__version__",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
]
