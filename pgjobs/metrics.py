"""Prometheus metrics for workers and queues (needs the ``metrics`` extra:
``pip install "pgjobs[metrics]"``, which is ``prometheus-client``).

A worker's own metrics come from :class:`PrometheusObserver`, which the worker calls at
each claim, settled attempt and idle wait (``pgjobs worker ... --metrics-port 9464``
serves them). Queue depth and age are the database's, not a worker's: they come from
one ``queue_summary`` read per scrape, done only by the leader worker (so N workers do
not run N identical reads), or by the dashboard's ``/metrics``. docs/operations.md lists
every metric and its labels.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import admin
from ._dsn import resolve_dsn
from ._queries import DEFAULT_SCHEMA
from ._worker.observer import Observer
from .job import JobState

if TYPE_CHECKING:
    from ._worker.outcome import Outcome
    from ._worker.worker import Worker

__all__ = [
    "AttemptCollector",
    "HandlerConnectionCollector",
    "PrometheusObserver",
    "QueueCollector",
    "serve",
]

log = logging.getLogger("pgjobs.metrics")

#: Handler durations, in seconds: from a millisecond to the default 30 minute timeout.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
CLAIM_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200)


def _outcome_label(outcome: Outcome) -> str:
    if outcome.state == "scheduled":
        return "snoozed" if outcome.refund else "retried"
    return outcome.state  # completed, failed, cancelled


class QueueCollector(Collector):
    """Per queue: jobs by state, the oldest ready job's age, paused, from one
    ``queue_summary`` read, cached *ttl* seconds. *read* returns the summaries, or None
    to report nothing (a worker that is not the leader)."""

    def __init__(
        self, read: Callable[[], list[admin.QueueSummary] | None], *, ttl: float = 5.0
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[admin.QueueSummary] | None] = (float("-inf"), None)

    def _summaries(self) -> list[admin.QueueSummary] | None:
        with self._lock:
            at, summaries = self._cached
            if time.monotonic() - at >= self._ttl:
                summaries = self._read()
                self._cached = (time.monotonic(), summaries)
            return summaries

    def collect(self) -> Iterator[GaugeMetricFamily]:
        summaries = self._summaries()
        if summaries is None:
            return
        jobs = GaugeMetricFamily(
            "pgjobs_queue_jobs", "Jobs in the queue, by state", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "pgjobs_queue_oldest_ready_seconds",
            "Age of the oldest job ready to run (0 when none is)",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "pgjobs_queue_paused", "1 while the queue is paused", labels=["queue"]
        )
        for q in summaries:
            for state in JobState:
                jobs.add_metric([q.queue, state.value], getattr(q, state.value))
            age = q.oldest_ready_age.total_seconds() if q.oldest_ready_age else 0.0
            oldest.add_metric([q.queue], age)
            paused.add_metric([q.queue], 1.0 if q.paused else 0.0)
        yield from (jobs, oldest, paused)


def read_queues(dsn: str | None, schema: str) -> list[admin.QueueSummary]:
    """One ``queue_summary`` read on a short-lived connection (a scrape every 15 s or so
    does not need a pool)."""
    with psycopg.connect(resolve_dsn(dsn), autocommit=True, connect_timeout=5) as conn:
        return admin.queue_summary(conn, schema=schema)


class AttemptCollector(Collector):
    """Attempts by queue, kind and outcome, and their durations: tallied per attempt in
    plain lists (no lock, no prometheus_client call on the worker's hot path) and turned
    into ``pgjobs_jobs_finished_total`` and ``pgjobs_handler_duration_seconds`` at scrape.

    The worker's loop is the only writer; a scrape (another thread) copies each tally
    first, so at worst it misses the attempt being added as it reads.
    """

    def __init__(self) -> None:
        # (queue, kind, outcome) -> [count, sum of seconds, one count per bucket, +Inf last]
        self._tallies: dict[tuple[str, str, str], list[float]] = {}

    def add(self, queue: str, kind: str, outcome: str, seconds: float) -> None:
        key = (queue, kind, outcome)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0.0] * (len(DURATION_BUCKETS) + 3)
        tally[0] += 1
        tally[1] += seconds
        tally[2 + bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        finished = CounterMetricFamily(
            "pgjobs_jobs_finished",
            "Attempts by outcome: completed, failed, retried, snoozed, cancelled",
            labels=["queue", "kind", "outcome"],
        )
        durations = HistogramMetricFamily(
            "pgjobs_handler_duration_seconds",
            "Time from a handler's start to its attempt's outcome",
            labels=["queue", "kind"],
        )
        by_kind: dict[tuple[str, str], list[float]] = {}
        for (queue, kind, outcome), tally in list(self._tallies.items()):
            tally = list(tally)
            finished.add_metric([queue, kind, outcome], tally[0])
            merged = by_kind.setdefault((queue, kind), [0.0] * len(tally))
            for i, value in enumerate(tally):
                merged[i] += value
        for (queue, kind), tally in by_kind.items():
            counts = itertools.accumulate(tally[2:])
            bounds = [*map(floatToGoString, DURATION_BUCKETS), "+Inf"]
            durations.add_metric([queue, kind], list(zip(bounds, counts, strict=True)), tally[1])
        yield finished
        yield durations


class HandlerConnectionCollector(Collector):
    """Handlers that waited for a connection of the handler pools (``ctx.transaction()``,
    bounded by ``handler_pool_size``), and how long in all: the worker counts them as they
    happen (pgjobs/_worker/transactions.py); read here at scrape."""

    def __init__(self, worker: Callable[[], Worker | None]) -> None:
        self._worker = worker

    def collect(self) -> Iterator[CounterMetricFamily]:
        worker = self._worker()
        transactions = worker._transactions if worker is not None else None
        yield CounterMetricFamily(
            "pgjobs_handler_connection_waits",
            "Handlers that waited for a database connection for ctx.transaction() "
            "(all handler_pool_size in use)",
            value=transactions.waits if transactions is not None else 0,
        )
        yield CounterMetricFamily(
            "pgjobs_handler_connection_wait_seconds",
            "Seconds handlers spent waiting for a database connection for ctx.transaction()",
            value=transactions.waited if transactions is not None else 0.0,
        )


class PrometheusObserver(Observer):
    """A worker's metrics, in *registry* (a fresh one by default, so that several
    workers in one process do not collide). Give it to ``Server.observer`` before the
    worker starts, and serve ``observer.registry`` (see :func:`serve`)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        dsn: str | None = None,
        schema: str = DEFAULT_SCHEMA,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._dsn = dsn
        self._schema = schema
        self._worker: Worker | None = None
        r = self.registry
        self._attempts = AttemptCollector()
        r.register(self._attempts)
        self.claims = Histogram(
            "pgjobs_claim_batch_size",
            "Jobs returned by one claim",
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self.waits = Counter(
            "pgjobs_idle_waits", "Idle waits, by what ended them", ["ended_by"], registry=r
        )
        self._woken = self.waits.labels("wakeup")
        self._polled = self.waits.labels("poll")
        self.in_hand = Gauge("pgjobs_jobs_in_hand", "Jobs this worker is running", registry=r)
        self.concurrency = Gauge(
            "pgjobs_worker_concurrency", "Jobs this worker runs at once at most", registry=r
        )
        self.leader = Gauge("pgjobs_worker_leader", "1 while this worker is the leader", registry=r)
        r.register(HandlerConnectionCollector(lambda: self._worker))
        r.register(QueueCollector(self._leader_reads_queues))

    def attach(self, worker: Worker) -> None:
        self._worker = worker
        self.in_hand.set_function(lambda: len(worker._running))
        self.concurrency.set(worker.config.concurrency)
        self.leader.set_function(lambda: 1.0 if self._leading() else 0.0)
        self._dsn = self._dsn or worker.config.dsn
        self._schema = worker.config.schema

    def _leading(self) -> bool:
        elector = getattr(self._worker, "_elector", None)
        return bool(elector is not None and elector.leading)

    def _leader_reads_queues(self) -> list[admin.QueueSummary] | None:
        if not self._leading():
            return None
        try:
            return read_queues(self._dsn, self._schema)
        except psycopg.Error as exc:
            # The worker's own metrics still go out; only the queue gauges are missing.
            log.warning("metrics: cannot read the queues: %s", exc)
            return None

    def claimed(self, count: int) -> None:
        self.claims.observe(count)

    def settled(self, queue: str, kind: str, outcome: Outcome, seconds: float) -> None:
        self._attempts.add(queue, kind, _outcome_label(outcome), seconds)

    def waited(self, woken: bool) -> None:
        (self._woken if woken else self._polled).inc()


def serve(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> Any:
    """Serve *registry* at ``http://host:port/metrics`` from a daemon thread."""
    return start_http_server(port, addr=host, registry=registry)
