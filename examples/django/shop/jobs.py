"""The shop's worker: ``python manage.py pgjobs worker shop.jobs:server``."""

import pgjobs
from pgjobs.contrib.django import atomic
from shop.models import Order

server = pgjobs.Server()


@server.handler("send_receipt")
def send_receipt(ctx: pgjobs.Context, task: pgjobs.Task) -> None:
    # Sending the email goes here (at least once: a provider that deduplicates on
    # f"order-{order}" makes it once). Then the ORM write and the job's completion
    # commit together.
    with atomic(ctx):
        Order.objects.filter(pk=task.payload["order"]).update(receipt_sent=True)
