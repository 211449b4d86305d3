import psycopg

import pgjobs


def test_commit_is_visible_and_rollback_is_not(dsn: str, db: psycopg.Connection) -> None:
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            committed = pgjobs.enqueue(conn, pgjobs.Task("a"))
        try:
            with conn.transaction():
                pgjobs.enqueue(conn, pgjobs.Task("b"))
                raise RuntimeError
        except RuntimeError:
            pass
    rows = db.execute("select id, kind from pgjobs.jobs").fetchall()
    assert rows == [(committed, "a")]
