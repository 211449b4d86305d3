"""Prometheus metrics: a worker's outcomes, durations, claims and idle waits; queue depth
from the leader's one read and from the dashboard's /metrics; ``--metrics-port``."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

import pgjobs
from pgjobs import metrics
from pgjobs._worker.observer import Observer
from pgjobs._worker.outcome import Outcome
from tests.apps.procs import WorkerProcess

pytestmark = pytest.mark.timeout(120)


def make_config(dsn: str, **overrides: Any) -> pgjobs.Config:
    settings: dict[str, Any] = {"dsn": dsn, "poll_interval": 0.2, "shutdown_timeout": 2.0}
    return pgjobs.Config(**(settings | overrides))


async def wait_until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up after {limit}s waiting for {what}"
        await asyncio.sleep(0.02)


def sample(observer: metrics.PrometheusObserver, name: str, **labels: str) -> float:
    return observer.registry.get_sample_value(name, labels) or 0.0


def finished(observer: metrics.PrometheusObserver, queue: str, kind: str, outcome: str) -> float:
    labels = {"queue": queue, "kind": kind, "outcome": outcome}
    return sample(observer, "pgjobs_jobs_finished_total", **labels)


async def test_a_worker_counts_outcomes_durations_and_claims(dsn, db, running) -> None:
    server = pgjobs.Server()
    observer = metrics.PrometheusObserver()
    server.observer = observer

    @server.handler("ok")
    async def ok(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        pass

    @server.handler("broken")
    async def broken(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise RuntimeError("always")

    @server.handler("flaky")
    async def flaky(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("once")

    @server.handler("quitter")
    async def quitter(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        raise pgjobs.Cancel("not needed")

    await running(server, make_config(dsn, backoff=lambda attempt, error: 0.05))
    tasks = [pgjobs.Task("ok", queue="default") for _ in range(5)]
    tasks += [
        pgjobs.Task("broken", max_retry=0),
        pgjobs.Task("flaky", max_retry=3),
        pgjobs.Task("quitter"),
    ]
    pgjobs.enqueue_many(db, tasks)
    await wait_until(lambda: finished(observer, "default", "ok", "completed") == 5, "5 ok jobs")
    await wait_until(lambda: finished(observer, "default", "flaky", "completed") == 1, "flaky")
    assert finished(observer, "default", "flaky", "retried") == 1
    assert finished(observer, "default", "broken", "failed") == 1
    assert finished(observer, "default", "quitter", "cancelled") == 1
    durations = sample(
        observer, "pgjobs_handler_duration_seconds_count", queue="default", kind="ok"
    )
    assert durations == 5
    assert sample(observer, "pgjobs_claim_batch_size_sum") == 5 + 1 + 1 + 1 + 1
    assert sample(observer, "pgjobs_claim_batch_size_count") >= 1
    assert sample(observer, "pgjobs_worker_concurrency") == 10
    await wait_until(lambda: sample(observer, "pgjobs_jobs_in_hand") == 0, "no job in hand")


async def test_a_snooze_is_counted_as_snoozed(dsn, db, running) -> None:
    server = pgjobs.Server()
    observer = metrics.PrometheusObserver()
    server.observer = observer
    runs: list[int] = []

    @server.handler("sleepy")
    async def sleepy(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise pgjobs.Snooze(0.05)

    await running(server, make_config(dsn))
    pgjobs.enqueue(db, pgjobs.Task("sleepy"))
    await wait_until(lambda: finished(observer, "default", "sleepy", "completed") == 1, "done")
    assert finished(observer, "default", "sleepy", "snoozed") == 1
    assert finished(observer, "default", "sleepy", "retried") == 0


async def test_wakeups_and_polls_are_told_apart(dsn, db, running) -> None:
    server = pgjobs.Server()
    observer = metrics.PrometheusObserver()
    server.observer = observer
    done = asyncio.Event()

    @server.handler("ok")
    async def ok(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        done.set()

    # A long poll interval: the job below can only be picked up this fast by a wakeup.
    await running(server, make_config(dsn, poll_interval=30.0))
    worker = server.worker
    assert worker is not None
    # Idle polls double from 2 ms: after 8 of them the next lasts half a second, so a job
    # picked up now is picked up by its NOTIFY, not by a quick poll.
    await wait_until(
        lambda: sample(observer, "pgjobs_idle_waits_total", ended_by="poll") >= 8,
        "the quick polls to be over",
    )
    assert worker._waiting
    pgjobs.enqueue(db, pgjobs.Task("ok"))
    await asyncio.wait_for(done.wait(), 10)
    assert sample(observer, "pgjobs_idle_waits_total", ended_by="wakeup") >= 1


async def test_handlers_waiting_for_a_connection_are_counted(dsn, db, running) -> None:
    """Three handlers in ctx.transaction() with handler_pool_size 1: two wait for the
    connection, and the metrics say how many waited and for how long."""
    import threading

    server = pgjobs.Server()
    observer = metrics.PrometheusObserver()
    server.observer = observer
    proceed = threading.Event()

    @server.handler("tx")
    def tx(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
        with ctx.transaction() as conn:
            conn.execute("select 1")
            proceed.wait(30)

    assert sample(observer, "pgjobs_handler_connection_waits_total") == 0
    await running(server, make_config(dsn, concurrency=3, handler_pool_size=1))
    pgjobs.enqueue_many(db, [pgjobs.Task("tx") for _ in range(3)])
    worker = server.worker
    assert worker is not None

    def waiting() -> int:
        pool = worker._transactions._sync_pool if worker._transactions else None
        return pool.get_stats().get("requests_waiting", 0) if pool else 0

    await wait_until(lambda: waiting() == 2, "two handlers waiting for the connection")
    await asyncio.sleep(0.1)  # longer than a wait the worker leaves uncounted
    proceed.set()
    await wait_until(
        lambda: sample(observer, "pgjobs_handler_connection_waits_total") == 2, "two waits"
    )
    assert sample(observer, "pgjobs_handler_connection_wait_seconds_total") >= 0.2


async def test_the_leader_alone_reports_queue_depth(dsn, db, running) -> None:
    server = pgjobs.Server()
    observer = metrics.PrometheusObserver()
    server.observer = observer
    pgjobs.enqueue_many(db, [pgjobs.Task("later", queue="unserved") for _ in range(3)])
    pgjobs.admin.pause_queue(db, "unserved")
    await running(server, make_config(dsn, leader_interval=0.2))
    await wait_until(lambda: sample(observer, "pgjobs_worker_leader") == 1, "leadership")
    available = sample(observer, "pgjobs_queue_jobs", queue="unserved", state="available")
    assert available == 3
    assert sample(observer, "pgjobs_queue_paused", queue="unserved") == 1
    assert sample(observer, "pgjobs_queue_oldest_ready_seconds", queue="unserved") > 0

    follower = metrics.PrometheusObserver()
    assert follower.registry.get_sample_value("pgjobs_worker_leader") == 0  # no worker
    assert (
        follower.registry.get_sample_value(
            "pgjobs_queue_jobs", {"queue": "unserved", "state": "available"}
        )
        is None
    )


def test_the_queue_collector_caches_its_read() -> None:
    reads: list[float] = []

    def read() -> list[pgjobs.admin.QueueSummary]:
        reads.append(time.monotonic())
        return []

    collector = metrics.QueueCollector(read, ttl=60)
    list(collector.collect())
    list(collector.collect())
    assert len(reads) == 1


def test_a_worker_has_no_observer_unless_given_one() -> None:
    assert pgjobs.Server().observer is None
    # The interface's defaults do nothing, so an observer overrides only what it needs.
    Observer().claimed(1)
    Observer().waited(True)


def test_worker_metrics_port_serves_prometheus_text(dsn: str, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        pgjobs.enqueue_many(conn, [pgjobs.Task("record") for _ in range(4)])
    worker = WorkerProcess(dsn, tmp_path, "--metrics-port", str(port))
    try:
        worker.wait_started()
        deadline = time.monotonic() + 30
        while True:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            text = body.decode()
            line = 'pgjobs_jobs_finished_total{kind="record",outcome="completed",queue="default"}'
            if f"{line} 4.0" in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert "pgjobs_handler_duration_seconds_bucket" in text
        assert "pgjobs_claim_batch_size_bucket" in text
        assert "pgjobs_jobs_in_hand" in text
    finally:
        worker.kill()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in worker.log()


def test_the_dashboard_serves_queue_metrics(dsn: str, db: psycopg.Connection[Any]) -> None:
    pytest.importorskip("starlette", reason="the dashboard extra is not installed")
    from starlette.testclient import TestClient

    from pgjobs import dashboard

    pgjobs.enqueue_many(db, [pgjobs.Task("a", queue="mail") for _ in range(2)])
    with TestClient(dashboard.app(dsn, token="s3cret")) as client:
        assert client.get("/metrics").status_code == 401
        page = client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/plain")
        assert 'pgjobs_queue_jobs{queue="mail",state="available"} 2.0' in page.text
        assert 'pgjobs_queue_paused{queue="mail"} 0.0' in page.text


def test_attempt_durations_fall_in_cumulative_buckets() -> None:
    from prometheus_client import CollectorRegistry

    attempts = metrics.AttemptCollector()
    registry = CollectorRegistry()
    registry.register(attempts)
    for outcome, seconds in (("completed", 0.0005), ("completed", 0.001), ("failed", 0.02)):
        attempts.add("mail", "send", outcome, seconds)
    attempts.add("mail", "send", "retried", 100.0)

    def bucket(le: str) -> float | None:
        labels = {"queue": "mail", "kind": "send", "le": le}
        return registry.get_sample_value("pgjobs_handler_duration_seconds_bucket", labels)

    assert [bucket("0.001"), bucket("0.005"), bucket("0.05"), bucket("60.0")] == [2, 2, 3, 3]
    assert bucket("300.0") == 4
    assert bucket("+Inf") == 4
    labels = {"queue": "mail", "kind": "send"}
    assert registry.get_sample_value("pgjobs_handler_duration_seconds_count", labels) == 4
    total = registry.get_sample_value("pgjobs_handler_duration_seconds_sum", labels)
    assert total == pytest.approx(100.0215)
    completed = {"queue": "mail", "kind": "send", "outcome": "completed"}
    assert registry.get_sample_value("pgjobs_jobs_finished_total", completed) == 2


def test_the_docs_and_the_grafana_dashboard_name_the_metrics_that_exist() -> None:
    import json
    import re
    from datetime import timedelta

    docs = Path(__file__).resolve().parent.parent / "docs"
    observer = metrics.PrometheusObserver()
    observer.settled("q", "k", Outcome(1, 1, "completed"), 0.1)
    summary = pgjobs.admin.QueueSummary(
        "q", False, None, 0, 1, 0, 0, 0, 0, timedelta(seconds=1), 0, 0, 0, 1, 1
    )
    observer.registry.register(metrics.QueueCollector(lambda: [summary]))
    exported = {family.name for family in observer.registry.collect()}
    section = (docs / "operations.md").read_text().split("## Prometheus metrics", 1)[1]
    documented = {
        re.sub(r"_total$", "", name) for name in re.findall(r"^\| `(\w+)`", section, re.M)
    }
    assert documented == exported
    grafana = json.loads((docs / "grafana-pgjobs.json").read_text())
    queried = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for panel in grafana["panels"]
        for target in panel["targets"]
        for name in re.findall(r"pgjobs_\w+", target["expr"])
    }
    assert queried <= exported
