"""pgjobs for Django: add ``"pgjobs.contrib.django"`` to ``INSTALLED_APPS``.

* ``python manage.py pgjobs migrate`` creates or upgrades pgjobs' schema (its own
  version table, apart from Django's migrations), ``python manage.py pgjobs worker
  myapp.jobs:server`` runs a worker; every ``pgjobs`` command is there, on the database
  of :func:`dsn`.
* Enqueue with ``pgjobs.enqueue(django.db.connection, task)`` inside
  ``transaction.atomic()``: the job joins the transaction (psycopg 3 or psycopg2).
* In a sync handler, ``with pgjobs.contrib.django.atomic(ctx):`` is ``ctx.transaction()``
  for the ORM: the block's ORM writes and the job's completion commit together, in
  Django's own transaction on Django's connection.

* Under Django's test runner, ``TEST_RUNNER = "pgjobs.contrib.django.testing.DiscoverRunner"``
  adds pgjobs' schema to each PostgreSQL test database, so a ``TestCase`` enqueues through
  ``django.db.connection`` and runs the jobs with ``pgjobs.testing.drain(server, connection)``.

Settings: ``PGJOBS_DSN`` if set, else the ``DATABASES`` entry named by
``PGJOBS_DATABASE`` (``"default"`` by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import make_conninfo

from ..._ops import run

if TYPE_CHECKING:
    from ...context import Context

__all__ = ["atomic", "dsn"]

#: DATABASES keys and the libpq parameters they become.
_LIBPQ = {"NAME": "dbname", "USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}


def dsn(alias: str | None = None) -> str:
    """The database pgjobs uses: ``settings.PGJOBS_DSN``, else the ``DATABASES`` entry
    *alias* (default ``settings.PGJOBS_DATABASE``, else ``"default"``) as a libpq
    connection string, with its ``OPTIONS`` that libpq knows (``sslmode``, ...)."""
    from django.conf import settings

    explicit = getattr(settings, "PGJOBS_DSN", None)
    if explicit and alias is None:
        return str(explicit)
    return _conninfo(settings.DATABASES[alias or getattr(settings, "PGJOBS_DATABASE", "default")])


def _conninfo(database: dict[str, Any]) -> str:
    """A ``DATABASES`` entry as a libpq connection string."""
    params = {libpq: str(database[key]) for key, libpq in _LIBPQ.items() if database.get(key)}
    for option, value in (database.get("OPTIONS") or {}).items():
        if isinstance(value, str | int) and not isinstance(value, bool):
            params[option] = str(value)
    return make_conninfo(**params)


@contextmanager
def atomic(ctx: Context, using: str | None = None) -> Iterator[None]:
    """``ctx.transaction()`` for Django's ORM, in a sync handler::

        def ship(ctx, task):
            with pgjobs.contrib.django.atomic(ctx):
                Order.objects.filter(pk=task.payload["order"]).update(shipped=True)

    The block runs in ``transaction.atomic(using=using)``; when it ends without an
    exception the job is marked completed in that same transaction, which then commits:
    the ORM's writes and the job's completion commit together or not at all. If the job
    is no longer this attempt's (cancelled, or rescued), JobLostError is raised and the
    block's writes are rolled back. Inside an outer ``atomic()`` (a Django test case)
    the outer block commits them.
    """
    from django.db import DEFAULT_DB_ALIAS, connections, transaction

    transactions = ctx._require_transactions()
    connection = connections[using or DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        # A worker thread keeps its connection from job to job, as a server keeps one
        # from request to request: drop it when broken, as Django does per request.
        connection.close_if_unusable_or_obsolete()
    with transaction.atomic(using=using):
        yield
        run(connection, transactions.finish_op(ctx))
    ctx._committed = True
