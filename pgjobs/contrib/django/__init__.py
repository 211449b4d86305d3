"""pgjobs for Django: add ``"pgjobs.contrib.django"`` to ``INSTALLED_APPS``.

* ``python manage.py pgjobs migrate`` creates or upgrades pgjobs' schema (its own
  version table, apart from Django's migrations), ``python manage.py pgjobs worker
  myapp.jobs:server`` runs a worker; every ``pgjobs`` command is there, on the database
  of :func:`dsn`.
* Enqueue with ``pgjobs.enqueue(django.db.connection, task)`` inside
  ``transaction.atomic()``: the job joins the transaction (psycopg 3 or psycopg2).

Settings: ``PGJOBS_DSN`` if set, else the ``DATABASES`` entry named by
``PGJOBS_DATABASE`` (``"default"`` by default).
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

__all__ = ["dsn"]

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
    database: dict[str, Any] = settings.DATABASES[
        alias or getattr(settings, "PGJOBS_DATABASE", "default")
    ]
    params = {libpq: str(database[key]) for key, libpq in _LIBPQ.items() if database.get(key)}
    for option, value in (database.get("OPTIONS") or {}).items():
        if isinstance(value, str | int) and not isinstance(value, bool):
            params[option] = str(value)
    return make_conninfo(**params)
