"""A Postgres failover under a draining worker and a producer (issue 22, part 2).

Two servers started here (tests/replicated.py): a primary and a streaming standby from
``pg_basebackup -R``. The worker and the producer use one multi-host DSN with
``target_session_attrs=read-write`` and are never told about the failover. While they
run, the primary is stopped (``fast``, or ``immediate`` as if it crashed) and the
standby promoted. Then, on the new primary:

* the worker and the producer carried on by themselves (the producer's enqueues and the
  worker's completions after the promotion prove it);
* every job the standby had before the promotion is completed, none left ``running``;
* every handler's ``ctx.atransaction()`` effect exists exactly once per completed job,
  and each job's handler ran at least once;
* with ``synchronous_commit = remote_apply`` and a synchronous standby, every enqueue the
  producer saw acknowledged is there; with asynchronous replication an immediate stop
  may lose the last ones acknowledged (Postgres's own promise), and the test counts them.

The time from the promotion to the first job completed on the new primary is printed
(``-s`` shows it). Sizes: ``PGJOBS_FAILOVER_JOBS`` jobs in the backlog (default 3,000;
the issue's 20,000 with ``PGJOBS_FAILOVER_JOBS=20000``, which also runs every pairing of
replication mode and stop mode rather than each mode once).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import migrate
from tests.replicated import Pair, bindir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(bindir() is None, reason="no Postgres binaries to start servers with"),
]

JOBS = int(os.environ.get("PGJOBS_FAILOVER_JOBS", "3000"))
CONFIG = {
    "lease": 3.0,
    "heartbeat_interval": 0.5,
    "lease_grace": 0.5,
    "rescue_interval": 0.5,
    "poll_interval": 0.2,
    "concurrency": 20,
    "shutdown_timeout": 2.0,
    "completed_retention": 3600,  # completed jobs stay, so that the test can count them
}


#: (synchronous standby, stop mode) pairs run. Each mode of each kind once by default,
#: which keeps the suite's time down; all four with PGJOBS_FAILOVER_JOBS set.
CASES = [
    pytest.param(synchronous, stop, id=f"{'remote_apply' if synchronous else 'async'}-{stop}")
    for synchronous in (False, True)
    for stop in ("fast", "immediate")
    if "PGJOBS_FAILOVER_JOBS" in os.environ or synchronous == (stop == "fast")
]


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    servers = Pair(synchronous=request.param).start()
    try:
        migrate.upgrade(servers.dsn(0))
        with psycopg.connect(servers.dsn(0), autocommit=True) as conn:
            conn.execute("create table effects (job_id bigint not null, n int not null)")
        yield servers
    finally:
        servers.stop()


class Run:
    """What the handler, the producer and the clock saw."""

    def __init__(self) -> None:
        self.ran: set[int] = set()
        self.completed_at: list[float] = []
        self.acknowledged: list[int] = []
        self.producer_errors = 0
        self.enqueued_after_promotion = 0
        self.promoted_at: float | None = None


def one_value(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return row[0]


async def produce(client: pgjobs.AsyncClient, run: Run, stop: asyncio.Event) -> None:
    n = JOBS
    while not stop.is_set():
        try:
            await client.enqueue(pgjobs.Task("effect", {"n": n}))
        except (psycopg.Error, OSError):
            run.producer_errors += 1
            await asyncio.sleep(0.05)
            continue
        run.acknowledged.append(n)
        if run.promoted_at is not None:
            run.enqueued_after_promotion += 1
        n += 1
        await asyncio.sleep(0.002)


@pytest.mark.parametrize(("pair", "stop_mode"), CASES, indirect=["pair"])
async def test_a_failover_loses_no_committed_job(pair: Pair, stop_mode: str, running) -> None:
    dsn = pair.multi_host_dsn()
    with psycopg.connect(pair.dsn(0), autocommit=True) as conn:
        pgjobs.enqueue_many(conn, [pgjobs.Task("effect", {"n": n}) for n in range(JOBS)])
    run = Run()
    server = pgjobs.Server()

    @server.handler("effect")
    async def effect(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        run.ran.add(task.payload["n"])
        async with ctx.atransaction() as conn:
            await conn.execute(
                "insert into effects (job_id, n) values (%s, %s)", (ctx.job_id, task.payload["n"])
            )
        run.completed_at.append(time.monotonic())

    await running(server, pgjobs.Config(dsn=dsn, **CONFIG))
    stop_producer = asyncio.Event()
    async with pgjobs.AsyncClient(dsn) as client:
        producer = asyncio.create_task(produce(client, run, stop_producer))
        while len(run.completed_at) < JOBS // 4:  # noqa: ASYNC110 - the handler counts
            await asyncio.sleep(0.01)
        # What the standby has now, from its own view (hot standby reads).
        await asyncio.to_thread(pair.stop_primary, stop_mode)
        on_standby = set(
            one_value(pair.dsn(1), "select coalesce(array_agg(id), '{}') from pgjobs.jobs")
        )
        await asyncio.to_thread(pair.promote_standby)
        run.promoted_at = time.monotonic()
        deadline = time.monotonic() + 120
        while run.enqueued_after_promotion < 50 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stop_producer.set()
        await producer
    assert run.enqueued_after_promotion >= 50, "the producer did not reconnect"

    new_primary = pair.dsn(1)

    def unfinished() -> int:
        return int(
            one_value(
                new_primary,
                "select count(*) from pgjobs.jobs "
                "where state not in ('completed', 'failed', 'cancelled')",
            )
        )

    deadline = time.monotonic() + 120
    while unfinished() and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.1)
    assert unfinished() == 0, "jobs left unfinished on the new primary"

    with psycopg.connect(new_primary, autocommit=True) as conn:
        states = dict(conn.execute("select id, state from pgjobs.jobs").fetchall())
        effects = dict(
            conn.execute("select job_id, count(*) from effects group by job_id").fetchall()
        )
        numbers = {row[0] for row in conn.execute("select (payload->>'n')::int from pgjobs.jobs")}
    # Every job the standby had at promotion is there and completed, with one effect.
    assert on_standby <= states.keys()
    assert all(state == "completed" for state in states.values()), set(states.values())
    assert {job_id: effects.get(job_id, 0) for job_id in states} == dict.fromkeys(states, 1)
    assert numbers <= run.ran  # each handler ran at least once
    lost = sorted(set(run.acknowledged) - numbers)
    if pair.synchronous:
        assert lost == [], f"acknowledged enqueues lost despite remote_apply: {lost[:10]}"
    elif stop_mode == "fast":
        assert lost == [], "a clean stop sends all WAL to the standby first"
    first = min(t for t in run.completed_at if t > run.promoted_at) - run.promoted_at
    print(
        f"\nfailover ({'remote_apply' if pair.synchronous else 'async'}, {stop_mode}): "
        f"{JOBS} jobs + {len(run.acknowledged)} enqueued by the producer, "
        f"{len(on_standby)} on the standby at promotion; first job completed "
        f"{first * 1000:.0f} ms after promotion; {len(run.ran)} handler runs, "
        f"{sum(effects.values())} effects for {len(states)} jobs; "
        f"{len(lost)} acknowledged enqueues lost; {run.producer_errors} producer errors"
    )
