"""The order and its receipt job are written in one transaction: both or neither."""

import json

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import pgjobs
from shop.models import Order


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    email = json.loads(request.body)["email"]
    with transaction.atomic():
        order = Order.objects.create(email=email)
        job_id = pgjobs.enqueue(connection, pgjobs.Task("send_receipt", {"order": order.pk}))
    return JsonResponse({"order": order.pk, "job": job_id}, status=201)


@require_GET
def order(request: HttpRequest, pk: int) -> JsonResponse:
    found = get_object_or_404(Order, pk=pk)
    return JsonResponse({"order": found.pk, "receipt_sent": found.receipt_sent})
