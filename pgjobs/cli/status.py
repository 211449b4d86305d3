"""``pgjobs status``: queues by state, throughput and live workers; ``--watch`` refreshes."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime

from .. import admin
from ._output import (
    Figure,
    add_json_option,
    age,
    connect,
    count,
    duration,
    new_parser,
    print_json,
    refresh_seconds,
    table,
)

EXAMPLES = """
pgjobs status                 # one table of queues by state, then the live workers
pgjobs status --watch         # refresh every 2 seconds until Ctrl-C
pgjobs status --watch 10      # every 10 seconds
pgjobs status --json | jq '.queues[] | select(.available > 1000)'
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "status",
        help="queues by state, throughput and live workers",
        description="""
            Show every queue with its jobs by state, how long its oldest ready job has
            waited, its attempts in the last minute (completed, retried after a failure,
            failed or cancelled for good; as pgjobs.stats counts them) and the live
            workers serving it; then the live workers. Reads the queue_summary and
            live_workers views.
        """,
        examples=EXAMPLES,
        run=run,
    )
    add_json_option(parser)
    parser.add_argument(
        "--watch",
        nargs="?",
        type=refresh_seconds,
        const=2.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    # For tests: stop after this many refreshes.
    parser.add_argument("--refreshes", type=count, default=None, help=argparse.SUPPRESS)


def render(queues: list[admin.QueueSummary], workers: list[admin.WorkerInfo]) -> str:
    rows = [
        [
            q.queue,
            "paused" if q.paused else "active",
            q.scheduled,
            q.available,
            q.running,
            q.completed,
            q.failed,
            q.cancelled,
            duration(q.oldest_ready_age),
            q.completed_last_minute,
            q.retried_last_minute,
            q.failed_last_minute,
            q.workers,
        ]
        for q in queues
    ]
    headers = [
        "queue",
        "state",
        "scheduled",
        "available",
        "running",
        "completed",
        "failed",
        "cancelled",
        "oldest ready",
        "done/min",
        "retried/min",
        "failed/min",
        "workers",
    ]
    out = [table(headers, rows) if rows else "no queues: no job, worker or queue setting yet"]
    out.append("")
    if workers:
        now = datetime.now(workers[0].started_at.tzinfo)
        worker_rows = [
            [
                str(w.id)[:8],
                w.host,
                w.pid,
                ",".join(w.queues),
                Figure(f"{w.running}/{w.concurrency}"),
                "waiting" if w.waiting else "working",
                age(w.heartbeat_at, now),
                duration(now - w.started_at),
                w.version,
            ]
            for w in workers
        ]
        out.append(
            table(
                ["worker", "host", "pid", "queues", "busy", "state", "heartbeat", "up", "version"],
                worker_rows,
            )
        )
    else:
        out.append("no live worker (none sent a heartbeat in the last 60 s)")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    with connect(args) as conn:
        refreshes = 0
        while True:
            queues = admin.queue_summary(conn, schema=args.schema)
            workers = admin.live_workers(conn, schema=args.schema)
            if args.json:
                print_json({"queues": queues, "workers": workers})
            else:
                if args.watch is not None:
                    if sys.stdout.isatty():
                        sys.stdout.write("\033[H\033[2J")
                    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
                    print(f"pgjobs status at {now}, every {args.watch:g}s (Ctrl-C to stop)\n")
                print(render(queues, workers))
            sys.stdout.flush()
            refreshes += 1
            if args.watch is None or (args.refreshes is not None and refreshes >= args.refreshes):
                return 0
            try:
                time.sleep(args.watch)
            except KeyboardInterrupt:
                return 0
