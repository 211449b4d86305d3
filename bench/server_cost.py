"""Where an enqueue's server work goes, counted: ``python -m bench.server_cost``.

On a shared two-core machine the timings of a one-row insert move by more than the
steps ``python -m bench.insert_cost`` means to show. This counts instead, as
``bench.client_cost`` does for the client: a throwaway cluster is made with pgjobs'
schema, then a single-user backend (``postgres --single``, no network, no other
process) runs under valgrind's callgrind, each statement prepared once and executed
``--calls`` times, then six times as many; the difference divided by the extra calls is
the server's instructions per statement: plan cache, executor, index entries, commit
(not the kernel's share of the WAL flush). Counts repeat to within about one per cent
(the tables grow from run to run), so a step of a few per cent shows.

Cases, each with the values a producer sends (queue, kind, payload) bound:

* ``plain``: the ceiling's INSERT (``plain_jobs``: id, kind, payload, created_at);
* ``jobs``: the same INSERT into ``pgjobs.jobs`` (its columns, defaults, rules, indexes);
* ``jobs returning id``: the same, returning the new id;
* ``job_insert_defaults``: the statement ``pgjobs.enqueue`` sends for a job due at once
  with the default options (the id, and the wakeup check).

``--to REVISION`` builds pgjobs' schema at an older migration, to count what a
migration changed. PostgreSQL refuses to run as root: as root, the cluster belongs to
the ``postgres`` user (``runuser``). Nothing here is part of the benchmark table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench import callgrind
from bench.systems import get
from pgjobs import _queries

DATABASE = "server_cost"
#: The values every case binds, in the order of its parameters $1, $2, $3.
#: Single-user mode's -j: a command ends at a semicolon followed by an empty line.
EXECUTE = "EXECUTE p('default', 'noop', '{\"seq\": 1}');\n\n"
JOBS_INSERT = "insert into pgjobs.jobs (queue, kind, payload) values ($1, $2, $3)"


def cases() -> dict[str, str]:
    """Every case's statement, with $1, $2, $3 for queue, kind and payload."""
    text = _queries.queries()["job_insert_defaults"].decode()
    defaults = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    for number, name in enumerate(("queue", "kind", "payload"), start=1):
        defaults = defaults.replace(f"%({name})s", f"${number}")
    if "%(" in defaults:
        raise RuntimeError("job_insert_defaults has parameters this profile does not bind")
    return {
        "plain": "insert into plain_jobs (kind, payload) values ($2, $3)",
        "jobs": JOBS_INSERT,
        "jobs returning id": JOBS_INSERT + " returning id",
        "job_insert_defaults": defaults.strip().rstrip(";"),
    }


def _as_owner(argv: Sequence[str]) -> list[str]:
    """*argv*, run as the user who may own a cluster."""
    if os.geteuid() != 0:
        return list(argv)
    if shutil.which("runuser") is None:
        raise RuntimeError("running as root needs runuser, to run PostgreSQL as postgres")
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: Sequence[str]) -> None:
    """Run *argv* as the cluster's owner; its output is shown only if it fails."""
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{done.stdout[-1000:]}{done.stderr[-1000:]}")


def _bindir(given: str | None) -> Path:
    if given:
        return Path(given)
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        raise RuntimeError("no pg_config on PATH: give --bindir")
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@contextmanager
def cluster(bindir: Path, revision: str | None = None) -> Iterator[Path]:
    """A throwaway cluster with pgjobs' schema (at *revision*, default the newest) and the
    plain table; yields its data directory, stopped, for single-user backends."""
    with tempfile.TemporaryDirectory(prefix="pgjobs_server_cost_") as work:
        root = Path(work)
        data = root / "data"
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bench"])
        options = f"-c listen_addresses='' -k {root} -p 5999"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-o", options]
        _run([*pg_ctl, "-l", str(root / "log"), "start"])
        try:
            admin = f"host={root} port=5999 user=bench dbname=postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"create database {DATABASE}".encode())
            dsn = f"host={root} port=5999 user=bench dbname={DATABASE}"
            migrate = [sys.executable, "-m", "pgjobs", "migrate", "--dsn", dsn]
            subprocess.run([*migrate, *(["--to", revision] if revision else [])], check=True)
            get("plain").install(dsn)
        finally:
            _run([*pg_ctl, "stop", "-m", "fast"])
        yield data


def instructions(bindir: Path, data: Path, statement: str, calls: int) -> int:
    """Instructions a single-user backend runs to prepare *statement* and execute it
    *calls* times, start-up included."""
    script = f"PREPARE p(text, text, jsonb) AS {statement};\n\n" + EXECUTE * calls
    backend = [str(bindir / "postgres"), "--single", "-j", "-D", str(data), DATABASE]
    done = subprocess.run(
        _as_owner(callgrind.argv(backend)), input=script, capture_output=True, text=True
    )
    if "ERROR:" in done.stderr:
        raise RuntimeError(f"the single-user backend failed:\n{done.stderr[-2000:]}")
    return callgrind.instructions(done)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--bindir", help="PostgreSQL's programs (default: pg_config --bindir)")
    parser.add_argument("--calls", type=int, default=200, help="executions in the shorter run")
    parser.add_argument(
        "--to", metavar="REVISION", help="pgjobs' schema at this migration (default: the newest)"
    )
    args = parser.parse_args()
    if not callgrind.available():
        return 1
    bindir = _bindir(args.bindir)
    extra = 5 * args.calls
    with cluster(bindir, args.to) as data:
        print(f"server instructions per statement (callgrind, {extra} calls beyond {args.calls})")
        plain = 0.0
        for name, statement in cases().items():
            short = instructions(bindir, data, statement, args.calls)
            long = instructions(bindir, data, statement, args.calls + extra)
            each = (long - short) / extra
            plain = plain or each
            print(f"  {name:20} {each:9,.0f}   {each / plain:5.2f}x the plain INSERT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
