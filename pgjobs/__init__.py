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
from .backoff import Backoff, default_backoff
from .client import AsyncClient, Client
from .config import Config
from .context import Context, JobCancelled
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
from .registry import Handler, HandlerObject, Registration, Registry
from .server import Server
from .task import Task

__all__ = [
    "AsyncClient",
    "AsyncEnqueuer",
    "Backoff",
    "Client",
    "Config",
    "ConfigurationError",
    "Context",
    "DuplicateHandlerError",
    "Enqueuer",
    "Handler",
    "HandlerNotFoundError",
    "HandlerObject",
    "InvalidTaskError",
    "JobCancelled",
    "JobControl",
    "MigrationError",
    "PayloadError",
    "PayloadTooLargeError",
    "PgjobsError",
    "Registration",
    "Registry",
    "SchemaError",
    "Server",
    "SkipRetry",
    "Task",
    "__version__",
    "default_backoff",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
]
