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

from ._enqueue import (
    AsyncEnqueuer,
    Enqueuer,
    EnqueueResult,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
    enqueue_unique,
    enqueue_unique_async,
)
from ._logging import configure as configure_logging
from ._version import __version__
from .backoff import Backoff, default_backoff
from .client import AsyncClient, Client
from .config import Config
from .context import Context
from .errors import (
    Cancel,
    ConfigurationError,
    DuplicateHandlerError,
    HandlerNotFoundError,
    InvalidArgumentError,
    InvalidTaskError,
    JobCancelled,
    JobControl,
    JobLostError,
    JobNotFoundError,
    JobStateError,
    MigrationError,
    PayloadError,
    PayloadTooLargeError,
    PgjobsError,
    QueueNotFoundError,
    SchemaError,
    SkipRetry,
    Snooze,
)
from .job import Job, JobState
from .middleware import ErrorHook, Middleware
from .registry import Handler, HandlerObject, Registration, Registry
from .server import Server
from .task import Task

__all__ = [
    "AsyncClient",
    "AsyncEnqueuer",
    "Backoff",
    "Cancel",
    "Client",
    "Config",
    "ConfigurationError",
    "Context",
    "DuplicateHandlerError",
    "EnqueueResult",
    "Enqueuer",
    "ErrorHook",
    "Handler",
    "HandlerNotFoundError",
    "HandlerObject",
    "InvalidArgumentError",
    "InvalidTaskError",
    "Job",
    "JobCancelled",
    "JobControl",
    "JobLostError",
    "JobNotFoundError",
    "JobState",
    "JobStateError",
    "Middleware",
    "MigrationError",
    "PayloadError",
    "PayloadTooLargeError",
    "PgjobsError",
    "QueueNotFoundError",
    "Registration",
    "Registry",
    "SchemaError",
    "Server",
    "SkipRetry",
    "Snooze",
    "Task",
    "__version__",
    "configure_logging",
    "default_backoff",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "enqueue_unique",
    "enqueue_unique_async",
]
