"""Many worker processes on one database (issue 22, part 3): ``python -m bench.fleet``.

* drain: N jobs (default 200,000) with 1, 4 and 32 processes (concurrency 20 each, as
  4 "hosts" named through ``PGJOBS_WORKER_HOST``) while a producer enqueues more; every
  job must run exactly once and none be left. Prints jobs/s while the whole fleet runs
  (``rate``: the middle 80 % of the handler runs, by time), jobs/s from the first handler
  run to the last (``rate_whole``: 32 processes starting on 2 cores take seconds of it),
  how long after the first handler run every process that ran a job had run its first
  (and how many ran none), commits in the database per job run (whether a larger fleet
  batches worse), and the server connections per worker process (pg_stat_activity);
* ``--pgbouncer``: the same 32 processes through a PgBouncer in transaction mode
  (tests/pgbouncer.py) and its server connections;
* shares: 8 processes on ``critical=6,default=3,low=1``, the queues of the first 6,000
  jobs run cluster-wide;
* rolling: 8 processes stopped one by one (SIGTERM), each once its replacement is up,
  under a producer at a rate the fleet keeps up with: every job exactly once, and how
  long jobs waited from their enqueue's commit to their handler (against poll_interval).

Each run gets a fresh database on ``--dsn`` (an admin DSN, default the local service),
or with ``--private N`` on a Postgres of our own (initdb on a free port, through
tests/replicated.py) with ``max_connections = N``, for fleets the shared server has no
room for. Worker connections are counted by their ``application_name``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

import pgjobs
from pgjobs import migrate

REPO = Path(__file__).resolve().parent.parent
APP = "bench.apps.fleet_app:server"
HOSTS = 4
#: The workers' application_name, by which their server connections are counted.
WORKER_APP = "pgjobs-fleet"


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)".encode())
        conn.execute(f"create database {name}".encode())
    dsn = make_conninfo(admin, dbname=name)
    migrate.upgrade(dsn)
    return dsn


class Fleet:
    def __init__(self, dsn: str, out: Path, queues: str, concurrency: int = 20) -> None:
        self.dsn, self.out, self.queues, self.concurrency = dsn, out, queues, concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.worker_dsn = make_conninfo(dsn, application_name=WORKER_APP)

    def start(self, count: int, version: str = "1") -> None:
        for _ in range(count):
            index = len(self.procs)
            env = dict(
                os.environ,
                FLEET_OUT=str(self.out),
                FLEET_QUEUES=self.queues,
                FLEET_CONCURRENCY=str(self.concurrency),
                FLEET_VERSION=version,
                PGJOBS_WORKER_HOST=f"host-{index % HOSTS}",
            )
            log = open(self.out / f"worker-{index}.log", "wb")  # noqa: SIM115 - kept by Popen
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pgjobs", "worker", APP, "--dsn", self.worker_dsn],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def wait_registered(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                row = conn.execute("select count(*) from pgjobs.workers").fetchone()
            if row and row[0] >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(f"fewer than {count} workers registered in {timeout}s")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=60)

    def results(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.out.glob("*.json")]


def commits(dsn: str) -> int:
    """Transactions committed in *dsn*'s database so far: the fleet's statements, which
    are autocommit, plus the producer's and this script's few (and, through PgBouncer,
    its own ``server_check_query`` before each hand-out of a server connection)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select xact_commit from pg_stat_database where datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


def remaining(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("select count(*) from pgjobs.jobs").fetchone()
        return int(row[0]) if row else 0


def produce(
    dsn: str,
    stop: threading.Event,
    made: list[int],
    limit: int = 10**9,
    *,
    batch: int = 100,
    pause: float = 0.01,
    committed: dict[int, float] | None = None,
) -> None:
    """Enqueue *batch* jobs every *pause* seconds; *committed*: when each id's enqueue
    returned (its commit), for waits."""
    with pgjobs.Client(dsn) as client:
        while not stop.is_set() and len(made) < limit:
            ids = client.enqueue_many([pgjobs.Task("fleet") for _ in range(batch)])
            if committed is not None:
                now = time.time()
                committed.update((job_id, now) for job_id in ids)
            made.extend(ids)
            time.sleep(pause)


def worker_connections(dsn: str) -> int:
    """Server connections of the fleet's workers now (LISTEN, pool, handler pools)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s", (WORKER_APP,)
        ).fetchone()
        return int(row[0]) if row else 0


def drain(
    admin: str, processes: int, jobs: int, *, bouncer: Any = None, timeout: float = 900
) -> dict[str, Any]:
    name = f"fleet_{processes}"
    dsn = fresh_database(admin, name)
    worker_dsn = bouncer.dsn(dsn) if bouncer else dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, jobs, 50_000):
            batch = min(50_000, jobs - start)
            pgjobs.enqueue_many(conn, [pgjobs.Task("fleet") for _ in range(batch)])
        conn.execute("vacuum analyze pgjobs.jobs")
    out = Path(tempfile.mkdtemp(prefix="fleet-"))
    fleet = Fleet(worker_dsn, out, "default=1")
    started = time.monotonic()
    committed = commits(dsn)
    fleet.start(processes)
    stop, made = threading.Event(), []
    # The producer adds a tenth more while the fleet drains.
    producer = threading.Thread(target=produce, args=(dsn, stop, made, jobs // 10))
    producer.start()
    peak = 0
    peak_bouncer = 0
    try:
        while not (not producer.is_alive() and remaining(dsn) == 0):
            time.sleep(0.5)
            peak = max(peak, worker_connections(dsn))
            if bouncer:
                peak_bouncer = max(peak_bouncer, bouncer.server_connections(name))
            if time.monotonic() - started > timeout:
                left = remaining(dsn)
                raise RuntimeError(f"{processes} processes: {left} jobs left after {timeout}s")
    finally:
        stop.set()
        producer.join()
        fleet.stop_all()
    # The statistics collector reports at most every second: a late count is a low one.
    time.sleep(1.0)
    committed = commits(dsn) - committed
    results = fleet.results()
    ran = [job for result in results for job in result["ran"]]
    ids = Counter(job[0] for job in ran)
    times = sorted(job[2] for job in ran)
    first, last = times[len(times) // 10], times[len(times) * 9 // 10]
    idle = sum(1 for result in results if not result["ran"])
    all_running = max(min(job[2] for job in result["ran"]) for result in results if result["ran"])
    total = jobs + len(made)
    return {
        "processes": processes,
        "jobs": total,
        "ran": len(ran),
        "distinct": len(ids),
        "twice": sum(1 for c in ids.values() if c > 1),
        "left": remaining(dsn),
        "rate": round((len(times) * 9 // 10 - len(times) // 10) / (last - first)),
        "rate_whole": round(len(ran) / (times[-1] - times[0])),
        "all_running_after_s": round(all_running - times[0], 1),
        "processes_that_ran_none": idle,
        "commits_per_job": round(committed / max(1, len(ran)), 2),
        # Through PgBouncer, pg_stat_activity shows PgBouncer's server connections, which
        # carry the application_name of whichever client last used them.
        "worker_connections": None if bouncer else peak,
        "per_process": None if bouncer else round(peak / processes, 1),
        "pgbouncer_server_connections": peak_bouncer if bouncer else None,
    }


def shares(admin: str) -> dict[str, Any]:
    dsn = fresh_database(admin, "fleet_shares")
    weights = {"critical": 6, "default": 3, "low": 1}
    with psycopg.connect(dsn, autocommit=True) as conn:
        pgjobs.enqueue_many(
            conn, [pgjobs.Task("fleet", queue=q) for q in weights for _ in range(20_000)]
        )
    out = Path(tempfile.mkdtemp(prefix="fleet-"))
    fleet = Fleet(dsn, out, ",".join(f"{q}={w}" for q, w in weights.items()))
    fleet.start(8)
    while remaining(dsn) > 0:
        time.sleep(0.5)
    fleet.stop_all()
    ran = sorted((job for r in fleet.results() for job in r["ran"]), key=lambda j: j[2])
    first = Counter(job[1] for job in ran[:6000])
    return {q: round(100 * first[q] / 6000, 1) for q in weights}


def rolling(admin: str) -> dict[str, Any]:
    dsn = fresh_database(admin, "fleet_rolling")
    out = Path(tempfile.mkdtemp(prefix="fleet-"))
    fleet = Fleet(dsn, out, "default=1")
    fleet.start(8, version="1")
    fleet.wait_registered(8)
    stop, made, committed = threading.Event(), [], {}
    # 20 jobs every 20 ms, well within what 7 processes run: a job waits only for a worker
    # to notice it, which a deploy must not delay beyond a poll interval.
    producer = threading.Thread(
        target=produce,
        args=(dsn, stop, made),
        kwargs={"batch": 20, "pause": 0.02, "committed": committed},
    )
    producer.start()
    for index in range(8):
        # As an orchestrator with a readiness check would: the new process is up (its
        # row registered) before the old one is told to stop.
        fleet.start(1, version="2")
        fleet.wait_registered(9)
        fleet.stop(fleet.procs[index])
    stop.set()
    producer.join()
    fleet.wait_registered(8)  # a process stopped before it set its signal handlers writes nothing
    deadline = time.monotonic() + 120
    while remaining(dsn) and time.monotonic() < deadline:
        time.sleep(0.2)
    fleet.stop_all()
    runs = [job for r in fleet.results() for job in r["ran"]]
    ran = Counter(job[0] for job in runs)
    first = {}
    for job_id, _, at in sorted(runs, key=lambda job: job[2]):
        first.setdefault(job_id, at)
    waits = sorted(first[i] - committed[i] for i in first if i in committed)
    return {
        "enqueued": len(made),
        "ran": sum(ran.values()),
        "missing": len(set(made) - set(ran)),
        "twice": sum(1 for c in ran.values() if c > 1),
        "left": remaining(dsn),
        "versions": dict(Counter(r["version"] for r in fleet.results())),
        "wait_p50_ms": round(1000 * waits[len(waits) // 2], 1),
        "wait_p99_ms": round(1000 * waits[int(len(waits) * 0.99)], 1),
        "wait_max_ms": round(1000 * waits[-1], 1),
        "poll_interval_ms": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--processes", default="1,4,32")
    parser.add_argument("--only", default="drain,pgbouncer,shares,rolling")
    parser.add_argument(
        "--private",
        type=int,
        metavar="MAX_CONNECTIONS",
        help="run on a Postgres of our own with this max_connections, not on --dsn",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    sys.path.insert(0, str(REPO))
    server = None
    if args.private:
        from tests.replicated import Pair

        server = Pair(synchronous=False, max_connections=args.private).start_primary()
        args.dsn = server.dsn(0)
    try:
        run(args, only)
    finally:
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, only: set[str]) -> None:
    if "drain" in only:
        for count in map(int, args.processes.split(",")):
            print(json.dumps(drain(args.dsn, count, args.jobs)), flush=True)
    if "pgbouncer" in only:
        from tests.pgbouncer import PgBouncer

        bouncer = PgBouncer(args.dsn).start()
        try:
            print(json.dumps(drain(args.dsn, 32, args.jobs, bouncer=bouncer)), flush=True)
        finally:
            bouncer.stop()
    if "shares" in only:
        print(json.dumps({"shares_first_6000": shares(args.dsn)}), flush=True)
    if "rolling" in only:
        print(json.dumps({"rolling": rolling(args.dsn)}), flush=True)


if __name__ == "__main__":
    main()
