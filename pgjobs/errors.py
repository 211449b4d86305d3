"""The exceptions pgjobs raises, and the ones a handler raises to steer its job.

Everything pgjobs raises on its own account derives from :class:`PgjobsError`, so
``except pgjobs.PgjobsError`` catches all of it; each class also derives from the
built-in it refines (``ValueError``, ``LookupError``) so generic code keeps working::

    PgjobsError
    ├── ConfigurationError (ValueError)      bad Config, DSN, import path or weight
    ├── InvalidArgumentError (ValueError)    a bad job id, state, limit or duration
    ├── InvalidTaskError (ValueError)        a Task that cannot be enqueued
    │   ├── PayloadError                     payload is not JSON-serialisable
    │   └── PayloadTooLargeError             payload over the size limit
    ├── DuplicateHandlerError (ValueError)   a second handler for the same kind
    ├── HandlerNotFoundError (LookupError)   no handler for a kind
    ├── JobNotFoundError (LookupError)       an operation names a job that does not exist
    ├── QueueNotFoundError (LookupError)     no job, worker or setting names this queue
    ├── JobStateError                        the job's state does not allow the operation
    ├── SchemaError                          the pgjobs schema is missing or out of date
    ├── MigrationError                       migrations could not be found or run
    ├── JobLostError                         the job is no longer this attempt's
    └── JobCancelled                         ctx.raise_if_cancelled(): the job is cancelled

"No such job" is one rule: a read of one job (``Client.get``, ``admin.get_job``,
``testing.get_job``) returns None, since a completed job is deleted unless retained; an
operation that acts on a job (``admin.retry_job``, ``cancel_job``, ``why``,
``testing.run_job``) raises :class:`JobNotFoundError`.

Handler control flow (raised *by* handlers, not errors of pgjobs)::

    JobControl (Exception)
    ├── SkipRetry                            fail the job now, whatever retries remain
    ├── Snooze                               run it again later, without using an attempt
    └── Cancel                               end it as cancelled

Database errors are psycopg's own (:mod:`psycopg.errors`); pgjobs does not wrap them,
so a caller's transaction handling sees exactly what Postgres said. The exception is a
pgjobs statement naming an object the database lacks: that is a :class:`SchemaError`
saying to migrate, with Postgres's error as its ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "Cancel",
    "ConfigurationError",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "InvalidArgumentError",
    "InvalidTaskError",
    "JobCancelled",
    "JobControl",
    "JobLostError",
    "JobNotFoundError",
    "JobStateError",
    "MigrationError",
    "PayloadError",
    "PayloadTooLargeError",
    "PgjobsError",
    "QueueNotFoundError",
    "SchemaError",
    "SkipRetry",
    "Snooze",
]


class PgjobsError(Exception):
    """Base class of every error pgjobs raises."""


class ConfigurationError(PgjobsError, ValueError):
    """A configuration value is invalid: caught before anything runs."""


class InvalidArgumentError(PgjobsError, ValueError):
    """An argument of an operation is malformed: a job id, a state name, a limit, a
    duration. Raised before anything is sent."""


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


class JobNotFoundError(PgjobsError, LookupError):
    """An operation on one job names a job that does not exist: never enqueued, not
    visible to this connection (enqueued in a transaction not yet committed), or
    finished and deleted. Reads of one job return None instead."""


class QueueNotFoundError(PgjobsError, LookupError):
    """No job, worker or queue setting names this queue (``pause_queue(force=True)``
    pauses it anyway)."""


class JobStateError(PgjobsError):
    """The job's state does not allow the operation: cancelling a completed job,
    retrying a running one, running one in a test that is not available or scheduled."""


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


class Snooze(JobControl):
    """Raise from a handler to run the job again after *seconds*, as if this attempt had
    not happened: the attempt count is given back and no error is recorded."""

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            raise ValueError(f"Snooze needs a number of seconds, 0 or more, not {seconds!r}")
        super().__init__(f"snoozed for {seconds:g}s")
        self.seconds = float(seconds)


class Cancel(JobControl):
    """Raise from a handler to end the job as ``cancelled`` (not failed, never retried);
    *reason* is recorded as its ``last_error``."""

    def __init__(self, reason: str = "cancelled by its handler") -> None:
        super().__init__(reason)
        self.reason = reason


class JobLostError(PgjobsError):
    """The job is no longer this attempt's to finish: an operator cancelled it, or its
    lease expired and it was rescued. Raised by ``ctx.transaction()`` when it rolls back
    the handler's work for that reason."""


class JobCancelled(PgjobsError):
    """Raised by :meth:`pgjobs.Context.raise_if_cancelled` in a sync handler once its job
    is cancelled; the message is the cause (``timeout``, ``shutdown`` or ``cancelled``).

    Let it propagate: the worker records the attempt as any other error the handler
    raises, and for a cancelled job that outcome changes nothing (an operator's cancel
    has already ended the job; a timeout is recorded as timed out).
    """
