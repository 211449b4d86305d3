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
* ``pgjobs``: ``pgjobs.enqueue(conn, Task(kind, payload))``;
* ``client``, ``async_client``: ``Client.enqueue(Task(kind, payload))`` on its own pool of
  one connection, and ``AsyncClient``'s, awaited in one coroutine (the paths the README
  shows: the pool's checkout and return, and for the async client the event loop's
  wait for the socket, are what they add).

Nothing here is part of the benchmark table; it is a profile to read beside it.

``--check`` is the guard CI runs (``.ci/run``): it counts ``psycopg`` and ``pgjobs`` only
and fails if pgjobs' count per call, as a multiple of psycopg's, has grown by more than
``TOLERANCE`` over the ratio kept in ``bench/client_cost.json`` (``--update`` writes it).
A ratio, not a count, so that a new psycopg or Python, which moves both, does not trip
it; what it catches is work added to pgjobs' own enqueue path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

import pgjobs
from bench import callgrind, pg
from bench.systems import get
from pgjobs import _queries
from pgjobs.task import Task

WAYS = ("plain", "psycopg", "pgjobs", "client", "async_client")
#: Where --check finds, and --update writes, the kept ratio.
KEPT = Path(__file__).with_name("client_cost.json")
#: How much the ratio may grow before --check fails.
TOLERANCE = 0.15


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
    if way == "client":
        with pgjobs.Client(dsn, max_connections=1) as client:
            for i in range(calls):
                client.enqueue(Task("noop", {"seq": i}))
        return
    if way == "async_client":
        asyncio.run(_async_client(dsn, calls))
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        enqueue = _enqueuer(way, conn)
        for i in range(calls):
            enqueue(i)


async def _async_client(dsn: str, calls: int) -> None:
    async with pgjobs.AsyncClient(dsn, max_connections=1) as client:
        for i in range(calls):
            await client.enqueue(Task("noop", {"seq": i}))


def instructions(way: str, dsn: str, calls: int) -> int:
    """Instructions the child runs for *calls* enqueues, start-up included."""
    child = [sys.executable, "-m", "bench.client_cost", "--child", way, dsn, str(calls)]
    return callgrind.instructions(
        subprocess.run(callgrind.argv(child), capture_output=True, text=True)
    )


def per_call(way: str, dsn: str, calls: int) -> float:
    """The client's instructions per enqueue *way*, start-up excluded."""
    extra = 2 * calls
    return (instructions(way, dsn, calls + extra) - instructions(way, dsn, calls)) / extra


def check(dsn: str, calls: int, *, update: bool) -> int:
    """Compare pgjobs' instructions per enqueue, per psycopg's, with the kept ratio."""
    psycopg_cost = per_call("psycopg", dsn, calls)
    pgjobs_cost = per_call("pgjobs", dsn, calls)
    ratio = pgjobs_cost / psycopg_cost
    print(f"instructions per enqueue: pgjobs {pgjobs_cost:,.0f}, psycopg {psycopg_cost:,.0f}")
    if update:
        KEPT.write_text(json.dumps({"pgjobs_per_psycopg": round(ratio, 3)}, indent=2) + "\n")
        print(f"kept ratio {ratio:.3f} in {KEPT.name}")
        return 0
    kept = float(json.loads(KEPT.read_text())["pgjobs_per_psycopg"])
    limit = kept * (1 + TOLERANCE)
    verdict = "ok" if ratio <= limit else "FAILED"
    print(f"pgjobs / psycopg = {ratio:.3f} (kept {kept:.3f}, limit {limit:.3f}): {verdict}")
    if ratio > limit:
        print(
            "the enqueue path does more client work than it did: profile it with "
            "`python -m bench.client_cost`, or if the cost is meant, run "
            "`python -m bench.client_cost --check --update`",
            file=sys.stderr,
        )
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.client_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--dsn", default=pg.DEFAULT_ADMIN_DSN, help="an admin DSN of the server")
    parser.add_argument("--calls", type=int, default=500, help="enqueues in the shorter run")
    parser.add_argument(
        "--check", action="store_true", help="fail if pgjobs/psycopg grew past the kept ratio"
    )
    parser.add_argument("--update", action="store_true", help="with --check: keep this ratio")
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
        if args.check:
            return check(dsn, args.calls, update=args.update)
        extra = 2 * args.calls
        print(f"instructions per call (callgrind, {extra} calls beyond {args.calls})")
        for way in WAYS:
            short = instructions(way, dsn, args.calls)
            long = instructions(way, dsn, args.calls + extra)
            print(f"  {way:12} {(long - short) / extra:9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
