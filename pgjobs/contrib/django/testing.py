"""pgjobs under Django's test runner.

In settings::

    TEST_RUNNER = "pgjobs.contrib.django.testing.DiscoverRunner"

Django builds its test databases from Django migrations only, and pgjobs' schema is not
one of them. This runner adds pgjobs' schema to every PostgreSQL test database as
Django creates it: a ``django.test.TestCase`` can then enqueue through
``django.db.connection`` and run the jobs with ``pgjobs.testing.drain(server,
connection)`` inside the test's own transaction, which Django rolls back after the test.

A project with its own runner mixes :class:`PgjobsTestRunnerMixin` in before it.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models.signals import post_migrate
from django.test.runner import DiscoverRunner as _DjangoDiscoverRunner

from ... import migrate
from . import _conninfo

__all__ = ["DiscoverRunner", "PgjobsTestRunnerMixin"]

_RECEIVER = "pgjobs.contrib.django.testing"


class PgjobsTestRunnerMixin:
    """Adds pgjobs' schema to each PostgreSQL test database the runner sets up."""

    def setup_databases(self, **kwargs: Any) -> Any:
        migrated: set[str] = set()

        def add_schema(using: str) -> None:
            connection = connections[using]
            if using in migrated or connection.vendor != "postgresql":
                return
            migrated.add(using)
            # settings_dict names the test database by now, whatever PGJOBS_DSN says.
            migrate.upgrade(_conninfo(connection.settings_dict))

        def after_migrate(sender: Any, using: str, **_: Any) -> None:
            add_schema(using)

        # Django's migrate ends with post_migrate, before --parallel clones the database:
        # the clones carry the schema.
        post_migrate.connect(after_migrate, weak=False, dispatch_uid=_RECEIVER)
        try:
            old_config = super().setup_databases(**kwargs)  # type: ignore[misc]
        finally:
            post_migrate.disconnect(dispatch_uid=_RECEIVER)
        # post_migrate is sent per app with models; a project with none still gets it here.
        for connection, _old_name, _destroy in old_config:
            add_schema(connection.alias)
        return old_config


class DiscoverRunner(PgjobsTestRunnerMixin, _DjangoDiscoverRunner):
    """Django's ``DiscoverRunner``, with pgjobs' schema in the test databases."""
