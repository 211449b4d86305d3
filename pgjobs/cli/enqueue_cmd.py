"""``pgjobs enqueue KIND PAYLOAD_JSON``: add a job from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from .._enqueue import enqueue
from ..errors import InvalidArgumentError
from ..task import DEFAULT_MAX_RETRY, DEFAULT_QUEUE, DEFAULT_TIMEOUT, Task
from ._output import call, new_parser
from ._parse import parse_duration

EXAMPLES = """
pgjobs enqueue send_email '{"to": "ada@example.com"}'
pgjobs enqueue rebuild_index '{}' --queue low --delay 10m --priority 5
pgjobs enqueue report '{"month": "2026-11"}' --run-at 2026-12-01T06:00:00+01:00 --timeout 2h
echo '{"big": "payload"}' | pgjobs enqueue import_rows -
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "enqueue",
        help="add a job",
        description="""
            Enqueue one job and print its id. The options and checks are those of
            pgjobs.Task; durations take a unit (90s, 15m, 2h, 7d).
        """,
        examples=EXAMPLES,
        run=run,
    )
    parser.add_argument("kind", metavar="KIND", help="the job's kind (its handler's name)")
    parser.add_argument(
        "payload",
        metavar="PAYLOAD_JSON",
        nargs="?",
        default="{}",
        help="the payload as JSON (default {}); - reads it from standard input",
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help=f"default {DEFAULT_QUEUE}")
    parser.add_argument("--priority", type=int, default=0, help="lower runs first (default 0)")
    parser.add_argument(
        "--max-retry",
        type=int,
        default=DEFAULT_MAX_RETRY,
        help=f"retries after the first attempt (default {DEFAULT_MAX_RETRY})",
    )
    parser.add_argument(
        "--timeout",
        default=f"{DEFAULT_TIMEOUT:g}s",
        help=f"how long one attempt may run (default {DEFAULT_TIMEOUT / 60:g}m)",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--delay", help="run after this long, such as 30s or 2h")
    when.add_argument("--run-at", help="run at this ISO 8601 time with a UTC offset")


def _payload(text: str) -> object:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"PAYLOAD_JSON is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("PAYLOAD_JSON is nested too deeply") from None
    except ValueError as exc:  # an integer too long for Python to read
        raise InvalidArgumentError(f"PAYLOAD_JSON cannot be read: {exc}") from None


def _run_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgumentError(
            f"--run-at {text!r} is not an ISO 8601 time, such as 2026-12-01T06:00:00+00:00"
        ) from None


def run(args: argparse.Namespace) -> int:
    task = Task(
        args.kind,
        _payload(args.payload),
        queue=args.queue,
        priority=args.priority,
        max_retry=args.max_retry,
        timeout=parse_duration(args.timeout),
        delay=parse_duration(args.delay) if args.delay else None,
        run_at=_run_at(args.run_at),
    )
    print(call(args, enqueue, task))
    return 0
