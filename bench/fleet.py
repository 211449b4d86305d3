"""Many worker processes on one database (issue 22, part 3): ``python -m bench.fleet``.

* drain: N jobs (default 200,000) with 1, 4 and 32 processes (concurrency 20 each, as
  4 "hosts" named through ``PGJOBS_WORKER_HOST``) while a producer enqueues more; every
  job must run exactly once and none be left. Prints jobs/s from the first handler run
  to the last, and the server connections per worker process (pg_stat_activity);
* ``--pgbouncer``: the same 32 processes through a PgBouncer in transaction mode
  (tests/pgbouncer.py) and its server connections;
* shares: 8 processes on ``critical=6,default=3,low=1``, the queues of the first 6,000
  jobs run cluster-wide;
* rolling: 8 processes stopped one by one (SIGTERM) while a new one starts each time,
  under a producer: every job exactly once.

Each run gets a fresh database on ``--dsn`` (an admin DSN, default the local service).
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
                    [sys.executable, "-m", "pgjobs", "worker", APP, "--dsn", self.dsn],
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


def remaining(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("select count(*) from pgjobs.jobs").fetchone()
        return int(row[0]) if row else 0


def produce(dsn: str, stop: threading.Event, made: list[int], limit: int = 10**9) -> None:
    with pgjobs.Client(dsn) as client:
        while not stop.is_set() and len(made) < limit:
            made.extend(client.enqueue_many([pgjobs.Task("fleet") for _ in range(100)]))
            time.sleep(0.01)


def drain(admin: str, processes: int, jobs: int, *, bouncer: Any = None) -> dict[str, Any]:
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
    fleet.start(processes)
    stop, made = threading.Event(), []
    # The producer adds a tenth more while the fleet drains.
    producer = threading.Thread(target=produce, args=(dsn, stop, made, jobs // 10))
    producer.start()
    peak = 0
    peak_bouncer = 0
    while True:
        time.sleep(0.5)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity where datname = %s "
                "and pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
            peak = max(peak, row[0] if row else 0)
            left = conn.execute("select count(*) from pgjobs.jobs").fetchone()
        if bouncer:
            peak_bouncer = max(peak_bouncer, bouncer.server_connections(name))
        if not producer.is_alive() and left and left[0] == 0:
            break
    producer.join()
    fleet.stop_all()
    ran = [job for result in fleet.results() for job in result["ran"]]
    ids = Counter(job[0] for job in ran)
    times = sorted(job[2] for job in ran)
    total = jobs + len(made)
    return {
        "processes": processes,
        "jobs": total,
        "ran": len(ran),
        "distinct": len(ids),
        "twice": sum(1 for c in ids.values() if c > 1),
        "left": remaining(dsn),
        "rate": round(len(ran) / (times[-1] - times[0])),
        "peak_connections": peak,
        "per_process": round(peak / processes, 1),
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
    stop, made = threading.Event(), []
    producer = threading.Thread(target=produce, args=(dsn, stop, made))
    producer.start()
    for index in range(8):
        fleet.start(1, version="2")
        fleet.stop(fleet.procs[index])
    stop.set()
    producer.join()
    deadline = time.monotonic() + 120
    while remaining(dsn) and time.monotonic() < deadline:
        time.sleep(0.2)
    fleet.stop_all()
    ran = Counter(job[0] for r in fleet.results() for job in r["ran"])
    return {
        "enqueued": len(made),
        "ran": sum(ran.values()),
        "missing": len(set(made) - set(ran)),
        "twice": sum(1 for c in ran.values() if c > 1),
        "left": remaining(dsn),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://root@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--processes", default="1,4,32")
    parser.add_argument("--only", default="drain,pgbouncer,shares,rolling")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "drain" in only:
        for count in map(int, args.processes.split(",")):
            print(json.dumps(drain(args.dsn, count, args.jobs)), flush=True)
    if "pgbouncer" in only:
        sys.path.insert(0, str(REPO))
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
