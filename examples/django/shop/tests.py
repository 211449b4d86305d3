"""Run by Django's test runner: ``python manage.py test shop``. The settings'
TEST_RUNNER (pgjobs.contrib.django.testing.DiscoverRunner) adds pgjobs' schema to the
test database; the jobs are run by pgjobs.testing.drain in the test's own transaction,
which Django rolls back after each test."""

from django.db import connection
from django.test import TestCase

import pgjobs
from pgjobs import testing
from pgjobs.contrib.django import atomic
from shop.jobs import server
from shop.models import Order


class OrderTests(TestCase):
    def test_an_order_sends_its_receipt(self) -> None:
        response = self.client.post(
            "/orders", {"email": "a@example.com"}, content_type="application/json"
        )
        order = response.json()["order"]
        [run] = testing.drain(server, connection)
        assert (run.job_id, run.state) == (response.json()["job"], "completed")
        assert Order.objects.get(pk=order).receipt_sent


class FailingHandlerTests(TestCase):
    def test_a_failing_handler_undoes_its_orm_writes(self) -> None:
        failing = pgjobs.Server()

        @failing.handler("send_receipt")
        def send_receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
            with atomic(ctx):
                Order.objects.filter(pk=task.payload["order"]).update(receipt_sent=True)
                raise RuntimeError("the mail server is down")

        order = Order.objects.create(email="a@example.com")
        pgjobs.enqueue(connection, pgjobs.Task("send_receipt", {"order": order.pk}))
        [run] = testing.drain(failing, connection)
        assert run.state == "scheduled"  # to be retried
        order.refresh_from_db()
        assert not order.receipt_sent
