"""Transactional enqueue: put jobs in the caller's transaction, never commit it.

Whatever connection you pass is used as it is: inside ``conn.transaction()`` the jobs
appear when that transaction commits and never if it rolls back; on an autocommit
connection each call commits on its own. pgjobs never calls ``commit()`` here.

Every common driver is accepted, and the job joins its transaction: psycopg 3, psycopg2
connections and cursors, SQLAlchemy ``Connection``/``Session`` (psycopg or psycopg2
dialect) and Django's connection on the sync face; psycopg 3 ``AsyncConnection``,
asyncpg connections and SQLAlchemy ``AsyncConnection``/``AsyncSession`` (psycopg or
asyncpg dialect) on the async one (see :mod:`pgjobs._drivers`).

Unique tasks (``Task(unique_key=...)``) claim their key in the same transaction (see
``pgjobs/sql/unique.sql``): every enqueue function accepts them and returns, for a
duplicate, the id of the job that holds the key; :func:`enqueue_unique` also says
whether it was a duplicate.

The public names here are declared once, in ``pgjobs.__all__``, which re-exports them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

import psycopg

from . import _queries, _tracing
from ._ops import ATOMIC, Copy, Op, Statement, run, run_async
from .errors import InvalidTaskError
from .task import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RETRY,
    DEFAULT_PRIORITY,
    DEFAULT_TIMEOUT,
    Task,
    encode_payload,
)

#: What psycopg_connection passes through as it is (a tuple: ``A | B`` would build a
#: union object at every enqueue).
_PSYCOPG_CONNECTIONS = (psycopg.Connection, psycopg.AsyncConnection)

#: Claims of one unique key in one enqueue: a key whose holder looked finished is
#: released and claimed again, which settles it (see unique_insert_op).
_MAX_CLAIMS = 3


class EnqueueResult(NamedTuple):
    """What enqueueing a unique task did: ``job_id, duplicate = enqueue_unique(...)``.

    :ivar id: the new job's id, or for a duplicate the id of the job holding the key
        (which may have finished, and been deleted, since).
    :ivar duplicate: True when the key was held, so no job was added.
    """

    id: int
    duplicate: bool


@runtime_checkable
class Enqueuer(Protocol):
    """Anything that can enqueue tasks: :class:`pgjobs.Client`, a test double, your own.

    Application code that accepts an ``Enqueuer`` does not care where jobs go.
    """

    def enqueue(self, task: Task, *, conn: Any = None) -> int: ...

    def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]: ...


@runtime_checkable
class AsyncEnqueuer(Protocol):
    """The async twin of :class:`Enqueuer` (implemented by :class:`pgjobs.AsyncClient`)."""

    async def enqueue(self, task: Task, *, conn: Any = None) -> int: ...

    async def enqueue_many(self, tasks: Iterable[Task], *, conn: Any = None) -> list[int]: ...


def insert_op(task: Task, schema: str, max_payload_bytes: int) -> Op[int]:
    """The operation behind every single enqueue.

    One of three inserts, the one with the fewest parameters the task allows: every
    parameter sent costs the client (``python -m bench.client_cost``), and most jobs are
    due at once with the default options.
    """
    if not isinstance(task, Task):
        raise InvalidTaskError(f"expected a pgjobs.Task, got {type(task).__name__}")
    if task.unique_key is not None:
        result = yield from unique_insert_op(task, schema, max_payload_bytes)
        return result.id
    if _tracing.hook is not None:
        traced = functools.partial(_traced_insert_op, task, schema, max_payload_bytes)
        return (yield from _tracing.hook.send("enqueue", (task,), traced))
    statements = _queries.queries(schema)
    payload = encode_payload(task.payload, max_payload_bytes)
    if task.run_at is not None or task.delay is not None:
        params = _params(task, payload)
        params.update(run_at=task.run_at, delay=task.delay)
        rows = yield Statement(statements["job_insert"], params)
    elif (
        task.priority == DEFAULT_PRIORITY
        and task.max_retry == DEFAULT_MAX_RETRY
        and task.timeout == DEFAULT_TIMEOUT
    ):
        defaults = {"queue": task.queue, "kind": task.kind, "payload": payload}
        rows = yield Statement(statements["job_insert_defaults"], defaults)
    else:
        rows = yield Statement(statements["job_insert_available"], _params(task, payload))
    return int(rows[0][0])


def _traced_insert_op(
    task: Task, schema: str, max_payload_bytes: int, trace_context: str | None
) -> Op[int]:
    """insert_op with tracing on: the general insert, with the trace context."""
    params = _params(task, encode_payload(task.payload, max_payload_bytes))
    params.update(run_at=task.run_at, delay=task.delay, trace_context=trace_context)
    rows = yield Statement(_queries.queries(schema)["job_insert_traced"], params)
    return int(rows[0][0])


def _params(task: Task, payload: str) -> dict[str, Any]:
    """The parameters of every insert but job_insert_defaults'. Only a job that is not
    due at once needs run_at and delay (see job_insert_available): each parameter sent
    costs the client."""
    return {
        "queue": task.queue,
        "kind": task.kind,
        "payload": payload,
        "priority": task.priority,
        "max_retry": task.max_retry,
        "timeout": task.timeout,
    }


def unique_insert_op(task: Task, schema: str, max_payload_bytes: int) -> Op[EnqueueResult]:
    """The operation behind a single enqueue of a unique task.

    One statement claims the key and inserts the job if the key is now ours. A key held
    until its job finishes, whose job this statement could not see unfinished, is
    released by a second statement (a newer snapshot, after the first locked the key
    row: see pgjobs/sql/unique.sql) if that job really finished, and claimed again: the
    key row is then deleted by this transaction, so no other enqueuer can claim it first.
    If the release finds the job unfinished after all (or, on an autocommit connection,
    the key already taken by another enqueuer), the key is claimed once more, with a
    snapshot that sees its holder.
    """
    if not isinstance(task, Task):
        raise InvalidTaskError(f"expected a pgjobs.Task, got {type(task).__name__}")
    if task.unique_key is None:
        raise InvalidTaskError("enqueue_unique needs a task with a unique_key")
    if _tracing.hook is not None:
        traced = functools.partial(_unique_insert_op, task, schema, max_payload_bytes)
        return (yield from _tracing.hook.send("enqueue_unique", (task,), traced))
    return (yield from _unique_insert_op(task, schema, max_payload_bytes, None))


def _unique_insert_op(
    task: Task, schema: str, max_payload_bytes: int, trace_context: str | None
) -> Op[EnqueueResult]:
    """unique_insert_op once the task is checked; *trace_context* as job_insert_traced's."""
    statements = _queries.queries(schema)
    params = _params(task, encode_payload(task.payload, max_payload_bytes))
    params.update(
        run_at=task.run_at,
        delay=task.delay,
        unique_key=task.unique_key,
        unique_for=task.unique_for,
        trace_context=trace_context,
    )
    for attempt in range(_MAX_CLAIMS):
        rows = yield Statement(statements["job_insert_unique"], params)
        holder, inserted, until_finished, unfinished, _ = rows[0]
        if inserted:
            return EnqueueResult(int(holder), False)
        if not until_finished or unfinished or attempt == _MAX_CLAIMS - 1:
            return EnqueueResult(int(holder), True)
        yield Statement(
            statements["unique_key_release_finished"],
            {"keys": [task.unique_key], "holders": [holder]},
        )
    raise AssertionError("unreachable")  # pragma: no cover


def insert_many_op(tasks: Iterable[Task], schema: str, max_payload_bytes: int) -> Op[list[int]]:
    """The operation behind every bulk enqueue: ids in input order (for a duplicate, the
    id of the job holding its key)."""
    results = yield from insert_many_results_op(tasks, schema, max_payload_bytes)
    return [result.id for result in results]


def insert_many_results_op(
    tasks: Iterable[Task], schema: str, max_payload_bytes: int
) -> Op[list[EnqueueResult]]:
    """Bulk enqueue: ids, the unique keys, one COPY, and the wakeups.

    Every task is validated and encoded before anything is sent, so one bad task means
    nothing is written. Three round trips whatever the count (see job_reserve_ids), and
    one more when some tasks are unique (COPY cannot resolve conflicts, so their keys
    are claimed first by unique_key_claim_many, and only the jobs that won their key
    are copied). Of several tasks with one key in a batch, the first claims it and the
    others are its duplicates.
    """
    encoded: list[tuple[Task, str]] = []
    for index, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise InvalidTaskError(
                f"tasks[{index}]: expected a pgjobs.Task, got {type(task).__name__}"
            )
        try:
            encoded.append((task, encode_payload(task.payload, max_payload_bytes)))
        except InvalidTaskError as exc:
            # Say which task, keeping the exception's type and attributes (size, limit).
            exc.args = (f"tasks[{index}]: {exc}",)
            raise
    if not encoded:
        return []
    if _tracing.hook is not None:
        traced = functools.partial(_copy_op, encoded, schema)
        return (yield from _tracing.hook.send("enqueue_many", [t for t, _ in encoded], traced))
    return (yield from _copy_op(encoded, schema, None))


def _copy_op(
    encoded: list[tuple[Task, str]], schema: str, trace_context: str | None
) -> Op[list[EnqueueResult]]:
    """insert_many_results_op once every task is encoded; *trace_context* as
    job_insert_traced's, the same for every job of the call."""
    yield ATOMIC  # the ids' keys, the jobs and the wake-ups commit together
    statements = _queries.queries(schema)
    reserved = yield Statement(statements["job_reserve_ids"], {"count": len(encoded)})
    now, ids = reserved[0]
    # The first task of each unique key claims it for its reserved id.
    first_of: dict[str, int] = {}
    for index, (task, _) in enumerate(encoded):
        if task.unique_key is not None:
            first_of.setdefault(task.unique_key, index)
    holders: dict[str, int] = {}
    if first_of:
        holders = yield from _claim_keys(
            statements, {key: (ids[i], encoded[i][0].unique_for) for key, i in first_of.items()}
        )
    results = []
    rows: list[tuple[Any, ...]] = []
    due_queues: set[str] = set()
    for index, (job_id, (task, payload)) in enumerate(zip(ids, encoded, strict=True)):
        if task.unique_key is not None:
            holder = holders[task.unique_key]
            if holder != job_id or first_of[task.unique_key] != index:
                results.append(EnqueueResult(int(holder), True))
                continue
        results.append(EnqueueResult(int(job_id), False))
        run_at = task.run_at or (now + timedelta(seconds=task.delay) if task.delay else now)
        state = "available" if run_at <= now else "scheduled"
        if state == "available":
            due_queues.add(task.queue)
        rows.append(
            (
                job_id,
                task.queue,
                task.kind,
                payload,
                task.priority,
                task.max_retry,
                timedelta(seconds=task.timeout),
                run_at,
                state,
            )
        )
    if rows and trace_context is not None:
        rows = [(*row, trace_context) for row in rows]
        yield Copy(statements["job_copy_traced"], rows)
    elif rows:
        yield Copy(statements["job_copy"], rows)
    if due_queues:
        yield Statement(statements["queue_wake"], {"queues": sorted(due_queues)})
    return results


def _claim_keys(
    statements: dict[str, bytes], claims: dict[str, tuple[int, float | None]]
) -> Op[dict[str, int]]:
    """Claim each key for its id (as unique_insert_op, for many keys at once); return
    each key's holder, which is the id given when the key was claimed."""
    holders: dict[str, int] = {}
    pending = claims
    for attempt in range(_MAX_CLAIMS):
        keys = sorted(pending)
        rows = yield Statement(
            statements["unique_key_claim_many"],
            {
                "keys": keys,
                "ids": [pending[key][0] for key in keys],
                "unique_for": [pending[key][1] for key in keys],
            },
        )
        finished: dict[str, int] = {}
        for key, holder, until_finished, unfinished in rows:
            holders[key] = int(holder)
            if holder != pending[key][0] and until_finished and not unfinished:
                finished[key] = int(holder)
        if not finished or attempt == _MAX_CLAIMS - 1:
            break
        yield Statement(
            statements["unique_key_release_finished"],
            {"keys": list(finished), "holders": list(finished.values())},
        )
        pending = {key: claims[key] for key in finished}
    return holders


def psycopg_connection(conn: Any) -> Any:
    """Return the psycopg 3 connection under *conn*, whatever wraps it.

    Accepts a psycopg ``Connection``/``AsyncConnection``, a SQLAlchemy ``Connection`` or
    ``Session`` on the psycopg dialect, and Django's ``connection`` on psycopg 3. The
    transaction stays the wrapper's: pgjobs only adds statements to it. For functions
    that need psycopg 3 itself (the enqueue functions take other drivers too).
    """
    if isinstance(conn, _PSYCOPG_CONNECTIONS):
        return conn
    from ._drivers import sync_driver

    try:
        driver = sync_driver(conn)
    except TypeError:
        driver = None
    if isinstance(driver, psycopg.Connection):
        return driver
    raise TypeError(
        "this function needs psycopg 3: pass a psycopg 3 connection, or a SQLAlchemy "
        f"connection/session or Django connection that uses psycopg 3, not a {type(conn).__name__}"
    )


# The public functions: each of the sync ones is written from its async twin by
# scripts/gen_sync.py. The module doc says which connections each face accepts.


# sync: begin enqueue (generated by scripts/gen_sync.py from the async code: do not edit)
def enqueue(
    conn: Any,
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> int:
    """Add *task* to the queue within *conn*'s current transaction; return the job id (for
    a unique task whose key is held, the id of the job holding it)."""
    return run(conn, insert_op(task, schema, max_payload_bytes), "pgjobs.enqueue")


def enqueue_many(
    conn: Any,
    tasks: Iterable[Task],
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> list[int]:
    """Add all *tasks* within *conn*'s transaction; ids in input order (for a unique task
    whose key is held, the id of the job holding it)."""
    return run(conn, insert_many_op(tasks, schema, max_payload_bytes), "pgjobs.enqueue_many")


def enqueue_unique(
    conn: Any,
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> EnqueueResult:
    """Enqueue a task that has a ``unique_key`` within *conn*'s transaction; return the job
    id and whether it was a duplicate (then the id is that of the job holding the key).

    A second enqueuer of the same key waits until the first one's transaction ends, then
    sees its job (a duplicate) or, if it rolled back, claims the key itself.
    """
    return run(conn, unique_insert_op(task, schema, max_payload_bytes), "pgjobs.enqueue_unique")


# sync: end enqueue


# async: begin enqueue
async def enqueue_async(
    conn: Any,
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> int:
    """Add *task* to the queue within *conn*'s current transaction; return the job id (for
    a unique task whose key is held, the id of the job holding it)."""
    return await run_async(conn, insert_op(task, schema, max_payload_bytes), "pgjobs.enqueue_async")


async def enqueue_many_async(
    conn: Any,
    tasks: Iterable[Task],
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> list[int]:
    """Add all *tasks* within *conn*'s transaction; ids in input order (for a unique task
    whose key is held, the id of the job holding it)."""
    return await run_async(
        conn, insert_many_op(tasks, schema, max_payload_bytes), "pgjobs.enqueue_many_async"
    )


async def enqueue_unique_async(
    conn: Any,
    task: Task,
    *,
    schema: str = _queries.DEFAULT_SCHEMA,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> EnqueueResult:
    """Enqueue a task that has a ``unique_key`` within *conn*'s transaction; return the job
    id and whether it was a duplicate (then the id is that of the job holding the key).

    A second enqueuer of the same key waits until the first one's transaction ends, then
    sees its job (a duplicate) or, if it rolled back, claims the key itself.
    """
    return await run_async(
        conn, unique_insert_op(task, schema, max_payload_bytes), "pgjobs.enqueue_unique_async"
    )


# async: end enqueue
