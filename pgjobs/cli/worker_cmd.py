"""``pgjobs worker``: run a worker process for the handlers of an application."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from typing import Any

from .._logging import FORMATS
from ..config import parse_queues
from ..errors import ConfigurationError
from ..server import Server

EXAMPLES = """\
examples:
  pgjobs worker myapp.jobs:server
  pgjobs worker myapp.jobs:server --queues critical=6,default=3,low=1 --concurrency 20
  pgjobs worker myapp.jobs:server --strict --queues critical=3,default=2,low=1
  pgjobs worker myapp.jobs:server --no-listen --poll-interval 0.5   # behind PgBouncer
  pgjobs worker myapp.jobs:server --log-format json                 # for a log pipeline
  pgjobs worker myapp.jobs:server --jobs-log-level WARNING          # no line per success
  pgjobs worker myapp.jobs:server --metrics-port 9464 --metrics-host 0.0.0.0

Weighted queues: under load each queue gets its weight's share of the work (6/3/1 is
60/30/10); a queue with nothing ready lends its share to the others. --strict drains
the heaviest queue first instead. SIGTERM or Ctrl-C stops gracefully; a second Ctrl-C
stops at once (unfinished jobs go back to their queue).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a worker for MODULE:SERVER",
        description="Run a pgjobs worker for the Server object at MODULE:ATTRIBUTE. Options "
        "given here override the server's Config.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", metavar="MODULE:SERVER", help="where the pgjobs.Server is")
    parser.add_argument(
        "--dsn", help="database (default: the Config's, $PGJOBS_DSN, $DATABASE_URL)"
    )
    parser.add_argument("--schema", help="the pgjobs schema (default: the Config's)")
    parser.add_argument("--concurrency", type=int, help="jobs run at once")
    parser.add_argument(
        "--handler-pool-size",
        type=int,
        metavar="N",
        help="most connections handlers hold at once through ctx.transaction() (default 10)",
    )
    parser.add_argument("--queues", help="queues and weights, as critical=6,default=3,low=1")
    parser.add_argument(
        "--strict", action="store_true", default=None, help="strict priority by weight"
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        help="how long a graceful stop waits for running jobs",
    )
    parser.add_argument(
        "--wait-for-db",
        type=float,
        metavar="SECONDS",
        help="how long to keep trying a database that cannot be reached yet (default 30)",
    )
    parser.add_argument(
        "--no-listen",
        dest="listen",
        action="store_false",
        default=None,
        help="poll only, no LISTEN/NOTIFY (for PgBouncer transaction pooling)",
    )
    parser.add_argument(
        "--poll-interval", type=float, metavar="SECONDS", help="seconds between polls when idle"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port, at /metrics (needs pgjobs[metrics])",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for a remote scraper)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text lines, or one JSON object a line with each job's fields as keys "
        "(default: $PGJOBS_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--jobs-log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the per-job lines (logger pgjobs.jobs): INFO logs every job, "
        "WARNING only failures, DEBUG adds tracebacks (default: --log-level)",
    )
    parser.set_defaults(func=run)


def load_server(path: str) -> Server:
    """Import ``module:attribute`` and return the Server found there."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"invalid app {path!r}: use MODULE:ATTRIBUTE, as myapp.jobs:server"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does, for the `pgjobs` script too
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
        raise
    target: Any = module
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not isinstance(target, Server):
        raise ConfigurationError(f"{path} is a {type(target).__name__}, not a pgjobs.Server")
    return target


def run(args: argparse.Namespace) -> int:
    if args.jobs_log_level is not None:
        logging.getLogger("pgjobs.jobs").setLevel(args.jobs_log_level)
    server = load_server(args.app)
    overrides: dict[str, Any] = {}
    if args.queues is not None:
        overrides["queues"] = parse_queues(args.queues)
    for option, field in (
        ("dsn", "dsn"),
        ("schema", "schema"),
        ("concurrency", "concurrency"),
        ("handler_pool_size", "handler_pool_size"),
        ("strict", "strict_priority"),
        ("shutdown_timeout", "shutdown_timeout"),
        ("wait_for_db", "wait_for_db"),
        ("listen", "listen"),
        ("poll_interval", "poll_interval"),
    ):
        value = getattr(args, option)
        if value is not None:
            overrides[field] = value
    config = dataclasses.replace(server.config, **overrides)
    if args.metrics_port is not None:
        serve_metrics(server, args.metrics_host, args.metrics_port)
    server.run(config)
    return 0


def serve_metrics(server: Server, host: str, port: int) -> None:
    try:
        from .. import metrics
    except ImportError as exc:
        raise ConfigurationError(
            f'--metrics-port needs the metrics extra: pip install "pgjobs[metrics]" ({exc})'
        ) from exc
    observer = metrics.PrometheusObserver()
    server.observer = observer
    try:
        metrics.serve(observer.registry, port, host)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    print(f"pgjobs worker: metrics at http://{host}:{port}/metrics", flush=True)
