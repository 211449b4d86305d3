"""``pgjobs jobs list`` and ``pgjobs jobs show ID``."""

from __future__ import annotations

import argparse

from .. import admin
from ..job import Job, JobState, not_found, parse_id
from ._output import (
    Figure,
    add_job_id,
    add_json_option,
    age,
    call,
    clean,
    count,
    duration,
    json_text,
    new_parser,
    print_json,
    table,
    timestamp,
)

EXAMPLES = """
pgjobs jobs list                                 # the 50 newest jobs
pgjobs jobs list --state failed --queue email    # failed jobs of one queue
pgjobs jobs list --kind send_receipt --limit 10 --json
pgjobs jobs show 42                              # everything about job 42, payload included
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "jobs",
        help="list jobs, or show one",
        description="List jobs (newest first) or show everything about one job.",
        examples=EXAMPLES,
        database=False,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = new_parser(
        actions,
        "list",
        help="the newest jobs, optionally filtered",
        description="List jobs, newest first, without their payloads.",
        examples="""
        pgjobs jobs list --state failed
        pgjobs jobs list --queue email --kind send_receipt --limit 200
        """,
        run=run_list,
    )
    listing.add_argument(
        "--state", choices=[str(state) for state in JobState], help="only jobs in this state"
    )
    listing.add_argument("--queue", help="only jobs of this queue")
    listing.add_argument("--kind", help="only jobs of this kind")
    listing.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    add_json_option(listing)

    show = new_parser(
        actions,
        "show",
        help="everything about one job",
        description="Show one job: its state, times, attempts, worker, payload, result and errors.",
        examples="""
        pgjobs jobs show 42
        pgjobs jobs show 42 --json | jq .payload
        """,
        run=run_show,
    )
    add_job_id(show)
    add_json_option(show)


def _first_line(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _run_at(job: admin.JobSummary | Job) -> str:
    """When the job runs (next); ``-`` once it finished, since it never will again."""
    return "-" if job.state.finished else age(job.run_at)


def run_list(args: argparse.Namespace) -> int:
    jobs = call(
        args,
        admin.list_jobs,
        state=args.state,
        queue=args.queue,
        kind=args.kind,
        limit=args.limit,
    )
    if args.json:
        print_json(jobs)
        return 0
    if not jobs:
        print("no jobs match")
        return 0
    rows = [
        [
            job.id,
            job.state,
            job.queue,
            job.kind,
            job.priority,
            Figure(f"{job.attempt}/{job.max_retry + 1}"),
            age(job.created_at),
            _run_at(job),
            _first_line(job.last_error),
        ]
        for job in jobs
    ]
    headers = ["id", "state", "queue", "kind", "priority", "attempt", "created", "run at", "error"]
    print(table(headers, rows))
    return 0


def run_show(args: argparse.Namespace) -> int:
    job_id = parse_id(args.id)
    job = call(args, admin.get_job, job_id)
    if job is None:
        raise not_found(job_id)
    if args.json:
        print_json(job)
        return 0
    worker = "-"
    if job.worker_id is not None:
        where = f" (host {job.worker_host}, pid {job.worker_pid})" if job.worker_host else ""
        worker = f"{job.worker_id}{where}"
    fields = [
        ("id", job.id),
        ("kind", job.kind),
        ("queue", job.queue),
        ("state", job.state),
        ("priority", job.priority),
        ("attempt", f"{job.attempt} of {job.max_retry + 1} allowed (max_retry {job.max_retry})"),
        ("timeout", duration(job.timeout)),
        ("created", f"{timestamp(job.created_at)} ({age(job.created_at)})"),
        ("run at", timestamp(job.run_at) + ("" if job.state.finished else f" ({_run_at(job)})")),
        ("started", timestamp(job.started_at)),
        ("finished", timestamp(job.finished_at)),
        ("lease until", timestamp(job.lease_expires_at)),
        ("worker", worker),
        ("last error", job.last_error or "-"),
    ]
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        # Only an error keeps its line breaks (a traceback); a queue or kind is one line.
        text = clean(value, lines=name == "last error").replace("\n", "\n" + " " * (width + 2))
        print(f"{name.ljust(width)}  {text}")
    for name, value in (("payload", job.payload), ("result", job.result)):
        if name == "payload" or value is not None:
            print(f"{name}:")
            print("  " + json_text(value).replace("\n", "\n  "))
    if job.errors:
        print("errors:")
        for entry in job.errors if isinstance(job.errors, list) else [job.errors]:
            if not isinstance(entry, dict):  # not one the worker wrote: show it as it is
                print("  " + json_text(entry).replace("\n", "\n  "))
                continue
            error = clean(entry.get("error", ""), lines=True).replace("\n", "\n      ")
            attempt, at = clean(entry.get("attempt")), clean(entry.get("at"))
            print(f"  attempt {attempt} at {at}:\n      {error}")
    return 0
