"""Periodic jobs and leader election, against a real Postgres.

The scheduler's rules are tested one pass at a time, each given its time; the
election by its SQL statement; and the whole by three in-process workers with a
one-second interval, whose leader is stopped and then crashed: every tick must make
exactly one job throughout.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import pytest

import pgjobs
from pgjobs import _queries
from pgjobs._worker.leader import Elector
from pgjobs._worker.scheduler import Scheduler, SchedulerConfig
from pgjobs.cron import Cron, Every
from pgjobs.periodic import HANDOVER_MARGIN, LATE_GRACE, Handover, Periodic
from tests.test_worker import make_config, wait_until

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Q = _queries.queries()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tick_times(db: psycopg.Connection[Any], kind: str = "tick") -> list[datetime]:
    rows = db.execute("select run_at from pgjobs.jobs where kind = %s order by run_at", (kind,))
    return [row[0] for row in rows]


class Ticking(NamedTuple):
    """A scheduler, and the clock whose time each of its passes is given."""

    scheduler: Scheduler
    clock: Clock


async def one_pass(dsn: str, ticking: Ticking) -> int:
    """One pass at the clock's time; how many jobs it enqueued."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        result = await ticking.scheduler.run_once(conn, ticking.clock.now)
    return len(result.enqueued)


def scheduler(
    schedule: Cron | Every,
    clock: Clock,
    *,
    handover: Handover | None = None,
    catch_up: str = "skip",
    name: str = "tick",
) -> Ticking:
    periodic = Periodic(name, schedule, pgjobs.Task(name, queue="periodic"), catch_up)  # type: ignore[arg-type]
    config = SchedulerConfig(interval=1.0)
    return Ticking(Scheduler("pgjobs", config, [periodic], handover=handover), clock)


# --- defining periodic jobs -----------------------------------------------------------------


def test_server_periodic_defines_schedules() -> None:
    server = pgjobs.Server()
    every = server.periodic(timedelta(seconds=30), pgjobs.Task("ping"))
    assert (every.name, every.schedule, every.catch_up) == ("ping", Every(30.0), "skip")
    cron = server.periodic(
        "0 7 * * mon-fri", pgjobs.Task("digest"), name="morning", tz="Europe/Paris", catch_up="last"
    )
    assert isinstance(cron.schedule, Cron)
    assert str(cron.schedule.tz) == "Europe/Paris"
    assert server.registry.periodic() == [every, cron]
    assert server.periodic(90, pgjobs.Task("x")).schedule == Every(90.0)
    with pytest.raises(pgjobs.ConfigurationError, match="already registered"):
        server.periodic("* * * * *", pgjobs.Task("ping"))
    bad: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
        (("61 * * * *", pgjobs.Task("k")), {}, "outside 0-59"),
        ((timedelta(0), pgjobs.Task("k")), {}, "at least 1 second"),
        ((60, pgjobs.Task("k")), {"tz": "Europe/Paris"}, "tz applies to cron"),
        (("@daily", pgjobs.Task("k")), {"tz": "Nowhere/Special"}, "unknown time zone"),
        (("@daily", "k"), {}, "expected a pgjobs.Task"),
        (("@daily", pgjobs.Task("k")), {"name": ""}, "must not be empty"),
        (("@daily", pgjobs.Task("k")), {"catch_up": "all"}, "catch_up must be"),
        (("@daily", pgjobs.Task("k", unique_key="u")), {}, "must not set unique_key"),
        (("@daily", pgjobs.Task("k", run_at=T0)), {}, "must not set run_at"),
        (("@daily", pgjobs.Task("k", {"x": {1, 2}})), {}, "not JSON-serialisable"),
    ]
    for args, kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            server.periodic(*args, **kwargs)


def test_each_tick_has_its_own_key_run_at_and_window() -> None:
    periodic = Periodic("report", Cron("0 * * * *"), pgjobs.Task("report", {"a": 1}, delay=5))
    tick = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    task = periodic.task_for(tick, tick + timedelta(seconds=2))
    assert task.unique_key == "periodic:report:2026-11-23T13:00:00+00:00"
    assert periodic.key(tick.astimezone(Cron("* * * * *", "Asia/Tokyo").tz)) == task.unique_key
    assert task.run_at == tick + timedelta(seconds=5)
    assert task.delay is None
    assert (task.kind, task.payload, task.queue) == ("report", {"a": 1}, "default")
    # Held past the next tick (14:00) by twice the grace and the handover margin.
    assert task.unique_for == 3600 - 2 + 2 * LATE_GRACE + HANDOVER_MARGIN


def test_a_successor_resumes_from_its_predecessors_last_renewal() -> None:
    long_term = Handover(T0, T0 + timedelta(minutes=10))
    assert long_term.resume_from(3.0) == T0 + timedelta(minutes=10, seconds=-HANDOVER_MARGIN)
    # A term shorter than the margin: not before it started (it skipped what came before).
    short_term = Handover(T0, T0 + timedelta(seconds=10))
    assert short_term.resume_from(3.0) == T0
    # A term too short for a first pass: it may have done nothing, so go back the margin.
    blink = Handover(T0, T0 + timedelta(seconds=1))
    assert blink.resume_from(3.0) == T0 + timedelta(seconds=1 - HANDOVER_MARGIN)


# --- the scheduler, one pass at a time ---------------------------------------------------


async def test_without_a_predecessor_past_ticks_are_missed_and_skipped(dsn, db) -> None:
    clock = Clock(T0 + timedelta(seconds=5))
    minute = scheduler(Every(60), clock)
    assert await one_pass(dsn, minute) == 0  # the 12:00 tick came while nobody ran
    clock.now = T0 + timedelta(seconds=59)
    assert await one_pass(dsn, minute) == 0
    clock.now = T0 + timedelta(seconds=60)
    assert await one_pass(dsn, minute) == 1
    clock.now = T0 + timedelta(seconds=185)  # a slow pass: late ticks of this term still run
    assert await one_pass(dsn, minute) == 2
    assert await one_pass(dsn, minute) == 0
    assert tick_times(db) == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]


async def test_catch_up_last_runs_the_most_recent_missed_tick_once(dsn, db) -> None:
    clock = Clock(T0 + timedelta(hours=5))  # 17:00; the nightly 03:00 tick was missed
    nightly = scheduler(Cron("0 3 * * *"), clock, catch_up="last")
    assert await one_pass(dsn, nightly) == 1
    assert await one_pass(dsn, nightly) == 0
    # Another term (a restart) still within the key's window: the tick already ran.
    clock.now += timedelta(hours=2)
    assert await one_pass(dsn, scheduler(Cron("0 3 * * *"), clock, catch_up="last")) == 0
    assert tick_times(db) == [datetime(2026, 11, 23, 3, 0, tzinfo=UTC)]
    # The default skips it.
    skipping = scheduler(Cron("0 3 * * *"), clock, name="other")
    assert await one_pass(dsn, skipping) == 0


async def test_a_handover_enqueues_the_ticks_since_the_predecessor(dsn, db) -> None:
    clock = Clock(T0 + timedelta(seconds=1))
    first = scheduler(Every(10), clock)
    assert await one_pass(dsn, first) == 0
    clock.now = T0 + timedelta(seconds=31)
    assert await one_pass(dsn, first) == 3  # :10, :20, :30
    # The first leader dies right after renewing at :32; the next one is elected at :55.
    clock.now = T0 + timedelta(seconds=55)
    second = scheduler(Every(10), clock, handover=Handover(T0, T0 + timedelta(seconds=32)))
    assert await one_pass(dsn, second) == 2  # :40 and :50, late; :10 to :30 are duplicates
    expected = [T0 + timedelta(seconds=s) for s in (10, 20, 30, 40, 50)]
    assert tick_times(db) == expected
    # A predecessor last seen longer ago than the grace: its gap was missed.
    clock.now = T0 + timedelta(seconds=200)
    late = scheduler(Every(10), clock, handover=Handover(T0, T0 + timedelta(seconds=55)))
    assert await one_pass(dsn, late) == 0
    clock.now = T0 + timedelta(seconds=210)
    assert await one_pass(dsn, late) == 1
    assert tick_times(db) == [*expected, T0 + timedelta(seconds=210)]


async def test_two_leaders_at_once_cannot_double_a_tick(dsn, db) -> None:
    """A stalled leader that has not noticed it lost its term, and its successor."""
    clock = Clock(T0 + timedelta(seconds=0.5))
    stalled = Handover(T0 - timedelta(hours=1), T0 - timedelta(seconds=1))
    schedulers = [scheduler(Every(1), clock, handover=stalled) for _ in range(4)]
    for step in range(1, 20):
        clock.now = T0 + timedelta(seconds=step + 0.5)
        counts = await asyncio.gather(*(one_pass(dsn, s) for s in schedulers))
        # The first passes take over from :-31 (the handover margin), then one per step.
        assert sum(counts) == (32 if step == 1 else 1), counts
    found = tick_times(db)
    assert Counter(found).most_common(1)[0][1] == 1
    assert found == [T0 + timedelta(seconds=s) for s in range(-30, 20)]


# --- the election ---------------------------------------------------------------------------


def elect(db: psycopg.Connection[Any], worker: str, ttl: float = 5.0) -> tuple[Any, ...] | None:
    params = {"name": "default", "worker_id": worker, "ttl": ttl, "now": None}
    row: tuple[Any, ...] | None = db.execute(Q["leader_attempt_elect"], params).fetchone()
    return row


A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"


def test_the_election_statement(db) -> None:
    won = elect(db, A)
    assert won is not None
    elected_at, _, previous, _, previous_renewal = won
    assert (previous, previous_renewal) == (None, None)
    assert elect(db, B) is None  # A's term runs
    renewed = elect(db, A)
    assert renewed is not None
    assert renewed[0] == elected_at  # the same term
    assert str(renewed[2]) == A
    # A's term runs out: B takes over, and learns when A was last renewed.
    db.execute("update pgjobs.leader set expires_at = now() - interval '1 ms'")
    last_renewal = db.execute("select renewed_at from pgjobs.leader").fetchone()[0]
    taken = elect(db, B)
    assert taken is not None
    assert (str(taken[2]), taken[4]) == (A, last_renewal)
    assert elect(db, A) is None  # A cannot renew a term it lost
    # B resigns: its term ends at once and anyone can be elected.
    db.execute(Q["leader_resign"], {"name": "default", "worker_id": B, "now": None})
    assert db.execute(Q["leader_get"], {"name": "default"}).fetchone() is None
    again = elect(db, A)
    assert again is not None
    assert str(again[2]) == B
    assert again[0] > elected_at  # a new term
    # Resigning someone else's term does nothing.
    db.execute(Q["leader_resign"], {"name": "default", "worker_id": B, "now": None})
    live = db.execute(Q["leader_get"], {"name": "default"}).fetchone()
    assert live is not None
    assert str(live[0]) == A


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[list[pgjobs.Server]]]]:
    started: list[pgjobs.Server] = []

    async def start(
        count: int, config: pgjobs.Config, setup: Callable[[pgjobs.Server], None]
    ) -> list[pgjobs.Server]:
        for _ in range(count):
            server = pgjobs.Server()
            setup(server)
            await server.start(config)
            started.append(server)
        return started[-count:]

    yield start
    for server in started:
        await server.stop(timeout=1.0)


def elector(server: pgjobs.Server) -> Elector:
    assert server.worker is not None
    return server.worker._elector


def leaders(servers: list[pgjobs.Server]) -> list[pgjobs.Server]:
    return [s for s in servers if s.worker is not None and elector(s).leading]


async def crash_leadership(server: pgjobs.Server) -> None:
    """As if the leader's process died: its services stop, and its term is left to run
    out (no resignation)."""
    lost = elector(server)
    async with lost._lock:
        lost._closed = True
        await lost._stop_services()


@pytest.mark.through_pgbouncer
async def test_three_workers_one_leader_every_tick_once(dsn, db, servers) -> None:
    config = make_config(dsn, leader_interval=0.2, poll_interval=0.5)

    def setup(server: pgjobs.Server) -> None:
        server.periodic(timedelta(seconds=1), pgjobs.Task("tick", queue="periodic"))

    workers = await servers(3, config, setup)
    await wait_until(lambda: len(leaders(workers)) == 1, what="a leader")

    async def ticks_grow_by(count: int) -> None:
        start = len(tick_times(db))
        await wait_until(lambda: len(tick_times(db)) >= start + count, what=f"{count} ticks")

    await ticks_grow_by(3)
    # A graceful stop hands leadership over at once.
    first = leaders(workers)[0]
    await first.stop(timeout=1.0)
    remaining = [w for w in workers if w is not first]
    await wait_until(lambda: len(leaders(remaining)) == 1, what="a new leader")
    await ticks_grow_by(3)
    # A crash: the term runs out (3 x 0.2 s), then the last worker takes over.
    second = leaders(remaining)[0]
    await crash_leadership(second)
    last = [w for w in remaining if w is not second]
    await wait_until(lambda: len(leaders(last)) == 1, what="the last worker to lead")
    await ticks_grow_by(3)
    for server in workers:
        await server.stop(timeout=1.0)

    found = tick_times(db)
    # No tick twice, and no tick lost, across both changes of leader.
    assert Counter(found).most_common(1)[0][1] == 1
    span = int((found[-1] - found[0]).total_seconds())
    assert found == [found[0] + timedelta(seconds=s) for s in range(span + 1)]
    assert sum(elector(s).terms for s in workers if s.worker) <= 3


@pytest.mark.through_pgbouncer
async def test_a_leader_that_lost_its_term_stops_its_services(dsn, db, servers) -> None:
    config = make_config(dsn, leader_interval=0.2)
    [server] = await servers(1, config, lambda s: None)
    await wait_until(lambda: elector(server).leading, what="the leader")
    assert {t.get_name() for t in elector(server)._tasks} == {"pgjobs leader pruner"}
    # Someone else holds the term now (as after a stall longer than the term).
    db.execute(
        "update pgjobs.leader"
        " set worker_id = gen_random_uuid(), expires_at = now() + interval '1 hour'"
    )
    await wait_until(lambda: not elector(server).leading, what="the leader to step down")
    assert elector(server)._tasks == []
    db.execute("update pgjobs.leader set expires_at = now()")
    await wait_until(lambda: elector(server).leading, what="a new term")
    assert elector(server).terms == 2
