"""A Django TestCase for tests/test_django.py: ``python -m django test
tests.apps.django_testcase`` with the settings in tests.apps.django_site, which install
no app with models (so Django sends no post_migrate)."""

from django.db import connection
from django.test import TestCase

import pgjobs
from pgjobs import testing

server = pgjobs.Server()
ran: list[int] = []


@server.handler("note")
def note(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    ran.append(task.payload["n"])


class EnqueueAndDrain(TestCase):
    def test_a_job_enqueued_through_djangos_connection_runs(self) -> None:
        job_id = pgjobs.enqueue(connection, pgjobs.Task("note", {"n": 7}))
        [run] = testing.drain(server, connection)
        assert (run.job_id, run.state, ran) == (job_id, "completed", [7])
