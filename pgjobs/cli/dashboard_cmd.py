"""``pgjobs dashboard``: serve the web dashboard (needs the ``dashboard`` extra)."""

from __future__ import annotations

import argparse
import os

from .._dsn import redact
from ..errors import ConfigurationError
from ._common import dsn_from, schema_from
from ._output import new_parser

EXAMPLES = """
pgjobs dashboard                                   # http://127.0.0.1:8080, this machine only
pgjobs dashboard --read-only --port 9000
PGJOBS_DASHBOARD_TOKEN=s3cret pgjobs dashboard --host 0.0.0.0
"""

TOKEN_ENV = "PGJOBS_DASHBOARD_TOKEN"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = new_parser(
        subparsers,
        "dashboard",
        help="serve the web dashboard",
        description="""
            Serve the web dashboard: queues with their throughput, jobs with filters,
            retry, cancel and delete, workers, health checks. It binds 127.0.0.1 unless
            told otherwise, and refuses any other address without a token. Needs pip
            install "pgjobs[dashboard]".
        """,
        examples=EXAMPLES,
        run=run,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--read-only", action="store_true", help="show everything, offer no action")
    parser.add_argument(
        "--token",
        default=None,
        help=f"a secret every page asks for (default: ${TOKEN_ENV}); needed off loopback",
    )
    parser.set_defaults(log_level="INFO")


def run(args: argparse.Namespace) -> int:
    from ..dashboard import is_loopback

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and token is None:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {args.host} without a token: anyone who can "
            "reach that address could read every payload and retry, cancel or delete jobs. "
            f"Set {TOKEN_ENV} (or pass --token), or bind 127.0.0.1"
        )
    try:
        import uvicorn

        from ..dashboard import app
    except ImportError as exc:
        raise ConfigurationError(
            f'the dashboard needs its extra: pip install "pgjobs[dashboard]" ({exc})'
        ) from exc
    dsn = dsn_from(args)
    application = app(dsn, schema=schema_from(args), read_only=args.read_only, token=token)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pgjobs dashboard: http://{host}:{args.port}/ on {redact(dsn)}", flush=True)
    uvicorn.run(application, host=args.host, port=args.port, log_level="warning")
    return 0
