"""One job's data, handler, middleware, error hook or result never takes down a worker.

Rows of every shape the table and ``pgjobs.enqueue`` accept are claimed in one batch
with innocent jobs: the worker stays up, the innocent jobs complete, a row that cannot
be decoded fails its own job for good with the reason as its error, and the worker
goes on claiming.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from tests.test_worker import make_config, wait_until

pytestmark = pytest.mark.timeout(120)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: Payloads (JSON text) that jsonb holds and Python's decoder refuses, and why.
UNDECODABLE = {
    "nested 5,000 deep": (nested(5000), "RecursionError"),
    "a 5,000-digit integer": ("1" + "0" * 5000, "ValueError"),
    "1e5000 as a numeric": ("1e5000", "ValueError"),
    "a deep list inside an object": ('{"a": ' + nested(5000) + "}", "RecursionError"),
}

#: Payloads (JSON text) that are odd but decode: their jobs run like any other.
DECODABLE = {
    "top-level null": "null",
    "top-level true": "true",
    "top-level number": "1",
    "top-level string": '"s"',
    "top-level array": "[]",
    "top-level object": "{}",
    "1e400 as a numeric": "1e400",
    "1e-400 as a numeric": "1e-400",
    "a NUL-adjacent control character": '"a\\u0001b\\u001f"',
    "an escaped surrogate pair": '"\\ud83d\\ude00"',
    "a 4,000-digit integer": "1" + "0" * 3999,
    "nested 500 deep": nested(500),
}

#: Errors columns (JSON text) of shapes pgjobs never writes, which the table admits: the
#: job runs, with the value as its ctx.errors.
ODD_ERRORS = ["5", '"s"', '{"attempt": 1}', '[1, null, "x"]', '[{"attempt": "one", "at": 5}]']

#: Payloads Postgres refuses, so no row can hold them.
REFUSED_BY_POSTGRES = ['"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\u0000"']


def deepest_accepted(db: psycopg.Connection[Any]) -> list[int]:
    """The deep nestings beyond 5,000 that this server's stack depth admits as jsonb."""
    depths = []
    for depth in (10_000, 20_000, 100_000):
        try:
            db.execute("select %s::text::jsonb", (nested(depth),))
        except psycopg.errors.StatementTooComplex:
            continue
        depths.append(depth)
    return depths


def insert(db: psycopg.Connection[Any], kind: str, payload: str, errors: str | None = None) -> int:
    """A row written straight into the table, as the table's owner may."""
    row = db.execute(
        "insert into pgjobs.jobs (kind, payload, errors)"
        " values (%s, %s::text::jsonb, %s::text::jsonb) returning id",
        (kind, payload, errors),
    ).fetchone()
    assert row is not None
    return int(row[0])


def enqueue_sql(db: psycopg.Connection[Any], kind: str, payload: str) -> int:
    """A job made by the SQL function, as an enqueue-only role may."""
    row = db.execute("select pgjobs.enqueue(%s, %s::text::jsonb)", (kind, payload)).fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def recorded(server: pgjobs.Server) -> Iterator[dict[int, Any]]:
    ran: dict[int, Any] = {}

    @server.handler("innocent")
    async def innocent(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran[ctx.job_id] = task.payload

    @server.handler("odd")
    def odd(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        ran[ctx.job_id] = task.payload

    yield ran


async def assert_still_claiming(db: psycopg.Connection[Any], ran: dict[int, Any]) -> None:
    later = enqueue_sql(db, "innocent", '{"after": true}')
    await wait_until(lambda: later in ran, what="a job enqueued after the poison rows")


def test_postgres_refuses_lone_surrogates_and_nul(db) -> None:
    for text in REFUSED_BY_POSTGRES:
        with pytest.raises(psycopg.errors.DataError):
            db.execute("select %s::text::jsonb", (text,))


async def test_poison_rows_fail_alone_and_the_batch_runs(dsn, db, running) -> None:
    innocent: list[int] = []
    poison: dict[int, str] = {}
    odd: dict[int, str] = {}
    cases = dict(UNDECODABLE)
    for depth in deepest_accepted(db):
        cases[f"nested {depth:,} deep"] = (nested(depth), "RecursionError")
    for (_, (payload, reason)), by_function in zip(
        cases.items(), [True, False] * len(cases), strict=False
    ):
        innocent.append(enqueue_sql(db, "innocent", "{}"))
        # Both ways in: the function (any enqueuer) and the table (its owner).
        add = enqueue_sql if by_function and len(payload) < 1_000_000 else insert
        poison[add(db, "innocent", payload)] = reason
    for payload in DECODABLE.values():
        innocent.append(enqueue_sql(db, "innocent", "{}"))
        odd[enqueue_sql(db, "odd", payload)] = payload
    for errors in ODD_ERRORS:
        innocent.append(insert(db, "innocent", "{}", errors))
    big = '"' + "x" * 3_000_000 + '"'  # over the function's limit: only the table takes it
    odd[insert(db, "odd", big)] = big
    # Errors of earlier attempts are decoded per row too.
    bad_errors = insert(db, "innocent", "{}", errors=nested(5000))
    poison[bad_errors] = "RecursionError"

    server = pgjobs.Server()
    with recorded(server) as ran:
        await running(server, make_config(dsn, concurrency=50))
        worker = server.worker
        assert worker is not None
        await wait_until(
            lambda: all(job in ran for job in innocent + list(odd)), what="the innocent jobs"
        )
        for job_id, reason in poison.items():
            row = await wait_for_final(db, job_id)
            assert row["state"] == "failed", row["state"]
            assert row["attempt"] == 1  # failed for good: a retry would read the same row
            assert "UnrunnableJobError: its row cannot be decoded" in row["last_error"]
            assert reason in row["last_error"]
            assert job_id not in ran
        await assert_still_claiming(db, ran)
        assert not worker._failed.is_set()
    assert ran[next(iter(odd))] is None  # top-level null
    assert len(ran[max(odd)]) == 3_000_000


def job_row(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """What became of a job, without its payload: the test's own driver would fail to
    decode the payloads this file is about."""
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "select state, attempt, last_error, result::text as result, run_at"
            " from pgjobs.jobs where id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None, f"job {job_id} is gone"
    return row


async def wait_for_final(db: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    await wait_until(lambda: job_row(db, job_id)["state"] == "failed", what=f"job {job_id} failed")
    return job_row(db, job_id)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def self_containing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


#: Return values that jsonb cannot hold: the job completes without a result.
BAD_RESULTS = {
    "not JSON": object(),
    "NUL": "a\x00b",
    "lone surrogate": "\ud800",
    "huge int": 10**5000,
    "contains itself": self_containing(),
    "NaN": float("nan"),
}

#: Exceptions whose text Postgres cannot store as it is, or cannot get at all.
BAD_ERRORS = {
    "NUL": ValueError("a\x00b"),
    "lone surrogate": ValueError("\ud800"),
    "unprintable": Unprintable(),
}


async def test_hostile_handlers_hooks_and_middleware_fail_their_job_only(dsn, db, running) -> None:
    server = pgjobs.Server()
    hooked: list[int] = []

    @server.on_error
    def failing_hook(ctx: pgjobs.Context, task: pgjobs.Task, error: BaseException) -> None:
        hooked.append(ctx.job_id)
        raise RuntimeError("the error hook fails")

    @contextlib.contextmanager
    def middleware(ctx: pgjobs.Context, task: pgjobs.Task) -> Iterator[None]:
        if task.payload.get("middleware") == "enter":
            raise RuntimeError("middleware fails on the way in")
        yield
        if task.payload.get("middleware") == "exit":
            raise RuntimeError("middleware fails on the way out")

    server.use(middleware)

    @server.handler("result")
    async def returns(ctx: pgjobs.Context, task: pgjobs.Task) -> Any:
        return BAD_RESULTS[task.payload["name"]]

    @server.handler("raise")
    def raises(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise BAD_ERRORS[task.payload["name"]]

    @server.handler("snooze")
    async def snoozes(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Snooze(float("inf"))

    @server.handler("plain")
    async def plain(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    tasks = [pgjobs.Task("result", payload={"name": n}) for n in BAD_RESULTS]
    tasks += [pgjobs.Task("raise", payload={"name": n}, max_retry=0) for n in BAD_ERRORS]
    tasks += [
        pgjobs.Task("plain", payload={"middleware": m}, max_retry=0) for m in ("enter", "exit")
    ]
    tasks += [pgjobs.Task("snooze")]
    ids = pgjobs.enqueue_many(db, tasks)
    results, errors, middle, (snoozed,) = (
        ids[: len(BAD_RESULTS)],
        ids[len(BAD_RESULTS) : -3],
        ids[-3:-1],
        ids[-1:],
    )
    await running(server, make_config(dsn, concurrency=50, completed_retention=None))
    worker = server.worker
    assert worker is not None
    for job_id in results:
        row = await wait_for_state_any(db, job_id, {"completed"})
        assert row["result"] is None
    for job_id in [*errors, *middle]:
        row = await wait_for_state_any(db, job_id, {"failed"})
        assert row["last_error"]
    texts = [job_row(db, job_id)["last_error"] for job_id in errors]
    assert texts[0].startswith("ValueError: a\\x00b")
    assert texts[1].startswith("ValueError: \\ud800")
    assert texts[2].startswith("Unprintable: <unprintable Unprintable object>")
    assert "on the way in" in job_row(db, middle[0])["last_error"]
    assert "on the way out" in job_row(db, middle[1])["last_error"]
    row = await wait_for_state_any(db, snoozed, {"scheduled"})
    assert row["run_at"].year > 2100  # as far off as the database can hold, not an error
    assert set(hooked) == {*errors, *middle}
    later = pgjobs.enqueue(db, pgjobs.Task("plain"))
    await wait_for_state_any(db, later, {"completed"})
    assert not worker._failed.is_set()


async def wait_for_state_any(
    db: psycopg.Connection[Any], job_id: int, states: set[str]
) -> dict[str, Any]:
    await wait_until(lambda: job_row(db, job_id)["state"] in states, what=f"job {job_id} {states}")
    return job_row(db, job_id)


@pytest.mark.parametrize("payload", [nested(5000), "1" + "0" * 5000])
@pytest.mark.parametrize("errors", [None, "5", '["not an entry"]', nested(5000)])
def test_jobs_show_shows_a_job_whose_row_python_cannot_decode(
    capsys, dsn, db, payload: str, errors: str | None
) -> None:
    from pgjobs.cli import main

    job_id = insert(db, "innocent", payload, errors)
    for argv in (["jobs", "show", str(job_id)], ["jobs", "show", str(job_id), "--json"]):
        assert main([*argv, "--dsn", dsn]) == 0
        out = capsys.readouterr().out
        assert "bytes of JSON that Python cannot decode" in out


async def test_the_completer_writes_around_an_outcome_the_database_refuses(
    dsn, db, running
) -> None:
    """Outcomes are made storable where they are decided; should one still be refused,
    the rest of its batch is written, and its own job fails with the database's error."""
    from pgjobs._worker.outcome import Outcome

    server = pgjobs.Server()
    started: set[int] = set()
    release = asyncio.Event()

    @server.handler("block")
    async def block(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        started.add(ctx.job_id)
        await release.wait()

    good, nul, far = pgjobs.enqueue_many(db, [pgjobs.Task("block") for _ in range(3)])
    await running(server, make_config(dsn, completed_retention=None))
    worker = server.worker
    assert worker is not None
    await wait_until(lambda: started == {good, nul, far}, what="three running jobs")
    completer = worker._completer
    assert completer is not None
    completer.add(Outcome(good, 1, "completed"))
    completer.add(Outcome(nul, 1, "failed", error="a NUL \x00 the driver refuses"))
    completer.add(Outcome(far, 1, "scheduled", delay=1e300, error="past any timestamp"))
    await wait_until(
        lambda: (
            [job_row(db, j)["state"] for j in (good, nul, far)] == ["completed", "failed", "failed"]
        ),
        what="the outcomes written",
    )
    assert "was refused" in job_row(db, nul)["last_error"]
    assert "was refused" in job_row(db, far)["last_error"]
    release.set()
    later = pgjobs.enqueue(db, pgjobs.Task("block"))
    await wait_until(lambda: job_row(db, later)["state"] == "completed", what="a later job")
    assert not worker._failed.is_set()


async def test_a_handler_raising_cancelled_error_fails_its_attempt(dsn, db, running) -> None:
    server = pgjobs.Server()

    @server.handler("cancels_itself")
    async def cancels_itself(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise asyncio.CancelledError("not the worker's")

    job_id = pgjobs.enqueue(db, pgjobs.Task("cancels_itself", max_retry=0))
    await running(server, make_config(dsn))
    await wait_until(lambda: job_row(db, job_id)["state"] == "failed", what="the job failed")
    assert job_row(db, job_id)["last_error"].startswith("CancelledError: not the worker's")
    worker = server.worker
    assert worker is not None
    assert not worker._failed.is_set()
