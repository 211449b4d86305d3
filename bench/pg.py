"""Admin side of the benchmark: fresh databases, activity counters, server facts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
PREFIX = "bench_"


def admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def dsn_for(admin_dsn: str, dbname: str) -> str:
    """The admin DSN pointed at another database of the same server."""
    return make_conninfo(admin_dsn, dbname=dbname)


@contextmanager
def fresh_database(admin_dsn: str, label: str, template: str | None = None) -> Iterator[str]:
    """Create a database for one system and one workload; drop it afterwards.

    It is empty, or a copy of the database of the DSN *template*. The name carries our
    pid so that :func:`drop_leftovers` can tell a database of a crashed run from one
    that is in use.
    """
    name = f"{PREFIX}{label}_{os.getpid()}"
    create = sql.SQL("create database {}").format(sql.Identifier(name))
    if template is not None:
        source = conninfo_to_dict(template)["dbname"]
        create = sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(str(source))
        )
    with admin(admin_dsn) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(create)
    try:
        yield dsn_for(admin_dsn, name)
    finally:
        with admin(admin_dsn) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def drop_leftovers(admin_dsn: str) -> list[str]:
    """Drop bench databases left by runs whose process is gone (a kill -9, a crash)."""
    dropped = []
    with admin(admin_dsn) as conn:
        rows = conn.execute(
            "select datname from pg_database where datname like %s", (PREFIX + "%",)
        ).fetchall()
        for (name,) in rows:
            pid = name.rsplit("_", 1)[-1]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
                dropped.append(name)
    return dropped


@dataclass(frozen=True)
class Counters:
    """Cumulative commits in one database and WAL position of the server."""

    commits: int
    wal: int

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.commits - other.commits, self.wal - other.wal)


def counters(admin_dsn: str, dsn: str, *, settle: bool = True, timeout: float = 10.0) -> Counters:
    """Read commits and WAL once every session of *dsn*'s database has ended.

    Backends flush their statistics when they exit, so waiting for the database to have
    no sessions makes ``xact_commit`` exact (``settle=False`` reads at once, for a
    database a worker stays connected to). The admin session sits in another database,
    so reading does not count.
    """
    dbname = conninfo_to_dict(dsn)["dbname"]
    deadline = time.monotonic() + timeout
    with admin(admin_dsn) as conn:
        while settle and time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where datname = %s and backend_type = 'client backend'",
                (dbname,),
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.02)
        conn.execute("select pg_stat_clear_snapshot()")
        row = conn.execute(
            "select xact_commit, pg_current_wal_lsn() - '0/0'::pg_lsn"
            " from pg_stat_database where datname = %s",
            (dbname,),
        ).fetchone()
    assert row is not None
    return Counters(int(row[0]), int(row[1]))


def wal_position(conn: psycopg.Connection[Any]) -> int:
    """The server's current WAL position, in bytes."""
    row = conn.execute("select pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def settle(dsn: str) -> None:
    """Give every system the same start: visibility map set, statistics fresh, and the
    filling's dirty pages written out.

    The checkpoint matters for large fills: 10M retained rows leave gigabytes of dirty
    buffers and WAL behind, and a checkpoint writing them out during the timed drain
    would be charged to the drain (it cost the 10M-retained run 11-24 % of its rate,
    while the same claim and finish SQL under pgbench ran as fast as without them).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze")
        conn.execute("checkpoint")


def server_facts(admin_dsn: str) -> dict[str, str]:
    """Postgres version and the settings that move these numbers."""
    names = (
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "wal_level",
        "max_wal_size",
        "checkpoint_timeout",
    )
    with admin(admin_dsn) as conn:
        facts = {"version": str(conn.execute("show server_version").fetchone()[0])}  # type: ignore[index]
        for name in names:
            row = conn.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()
            facts[name] = str(row[0]) if row else "?"
    return facts
