"""Where an enqueue's client time goes: ``python -m bench.client_cost``.

The enqueue workloads time ``pgjobs.enqueue`` against a one-row INSERT through psycopg,
and on this shared machine a few microseconds of Python are lost in the noise of the
timings. This counts instead: ``valgrind --tool=callgrind`` runs each way of enqueueing
in a child process, twice (``--calls`` and three times as many), and the difference
divided by the extra calls is the client's instructions per call, start-up excluded.
Counts repeat to within about 2 % from run to run, whatever else the machine does.
They cover Python, psycopg and libpq, not the kernel (the round trip itself) nor the
server (see ``python -m bench.insert_cost`` for that).

* ``plain``: the ceiling's INSERT, ``conn.execute`` with two parameters;
* ``psycopg``: ``job_insert_defaults`` sent by a kept psycopg cursor, as pgjobs does,
  with the parameters built by hand: what psycopg and libpq cost on their own;
* ``pgjobs``: ``pgjobs.enqueue(conn, Task(kind, payload))``.

Nothing here is part of the benchmark table; it is a profile to read beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import psycopg

import pgjobs
from bench import callgrind, pg
from bench.systems import get
from pgjobs import _queries
from pgjobs.task import Task

WAYS = ("plain", "psycopg", "pgjobs")


def _enqueuer(way: str, conn: psycopg.Connection[Any]) -> Any:
    """A function of ``i`` that enqueues one job *way*."""
    if way == "plain":
        plain = "insert into plain_jobs (kind, payload) values (%s, %s::jsonb)"
        return lambda i: conn.execute(plain, ("noop", json.dumps({"seq": i})))
    if way == "psycopg":
        insert = _queries.queries("pgjobs")["job_insert_defaults"]
        cursor = conn.cursor()

        def raw(i: int) -> None:
            params = {"queue": "default", "kind": "noop", "payload": json.dumps({"seq": i})}
            cursor.execute(insert, params)
            cursor.fetchall()

        return raw
    return lambda i: pgjobs.enqueue(conn, Task("noop", {"seq": i}))


def child(way: str, dsn: str, calls: int) -> None:
    """Enqueue *calls* jobs *way* (what valgrind runs)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        enqueue = _enqueuer(way, conn)
        for i in range(calls):
            enqueue(i)


def instructions(way: str, dsn: str, calls: int) -> int:
    """Instructions the child runs for *calls* enqueues, start-up included."""
    child = [sys.executable, "-m", "bench.client_cost", "--child", way, dsn, str(calls)]
    return callgrind.instructions(
        subprocess.run(callgrind.argv(child), capture_output=True, text=True)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--calls", type=int, default=500, help="enqueues in the shorter run")
    parser.add_argument("--child", nargs=3, metavar=("WAY", "DSN", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, dsn, calls = args.child
        child(way, dsn, int(calls))
        return 0
    if not callgrind.available():
        return 1
    with pg.fresh_database(args.dsn, "client_cost") as dsn:
        get("pgjobs").install(dsn)
        get("plain").install(dsn)
        extra = 2 * args.calls
        print(f"instructions per call (callgrind, {extra} calls beyond {args.calls})")
        for way in WAYS:
            short = instructions(way, dsn, args.calls)
            long = instructions(way, dsn, args.calls + extra)
            print(f"  {way:8} {(long - short) / extra:9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
