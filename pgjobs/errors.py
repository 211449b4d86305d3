"""The exceptions pgjobs raises, and the ones a handler raises to steer its job.

Everything pgjobs raises on its own account derives from :class:`PgjobsError`, so
``except pgjobs.PgjobsError`` catches all of it; each class also derives from the
built-in it refines (``ValueError``, ``LookupError``) so generic code keeps working::

    PgjobsError
    ├── ConfigurationError (ValueError)      bad Config, DSN, import path or weight
    ├── InvalidTaskError (ValueError)        a Task that cannot be enqueued
    │   ├── PayloadError                     payload is not JSON-serialisable
    │   └── PayloadTooLargeError             payload over the size limit
    ├── DuplicateHandlerError (ValueError)   a second handler for the same kind
    ├── HandlerNotFoundError (LookupError)   no handler for a kind
    ├── SchemaError                          the pgjobs schema is missing or out of date
    └── MigrationError                       migrations could not be found or run

Handler control flow (raised *by* handlers, not errors of pgjobs)::

    JobControl (Exception)
    └── SkipRetry                            fail the job now, whatever retries remain

Database errors are psycopg's own (:mod:`psycopg.errors`); pgjobs does not wrap them,
so a caller's transaction handling sees exactly what Postgres said.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "InvalidTaskError",
    "JobControl",
    "MigrationError",
    "PayloadError",
    "PayloadTooLargeError",
    "PgjobsError",
    "SchemaError",
    "SkipRetry",
]


class PgjobsError(Exception):
    """Base class of every error pgjobs raises."""


class ConfigurationError(PgjobsError, ValueError):
    """A configuration value is invalid: caught before anything runs."""


class InvalidTaskError(PgjobsError, ValueError):
    """A task cannot be enqueued as given; nothing was written."""


class PayloadError(InvalidTaskError):
    """The payload cannot be stored as JSON (not serialisable, NaN, NUL characters)."""


class PayloadTooLargeError(InvalidTaskError):
    """The encoded payload is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes as JSON, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class DuplicateHandlerError(PgjobsError, ValueError):
    """A handler is already registered for this kind."""


class HandlerNotFoundError(PgjobsError, LookupError):
    """No handler is registered for this kind."""


class SchemaError(PgjobsError):
    """The pgjobs schema is missing or older than this version of pgjobs expects."""


class MigrationError(PgjobsError):
    """Migrations could not be located or applied."""


class JobControl(Exception):
    """Base of the exceptions a handler raises to decide its job's fate."""


class SkipRetry(JobControl):
    """Raise from a handler to fail the job at once, without using its remaining retries.

    The message is recorded as the job's ``last_error``.
    """
