"""``python manage.py pgjobs COMMAND ...``: the ``pgjobs`` command line on Django's database.

Arguments are passed to ``pgjobs`` as they are (``manage.py pgjobs worker --help``).
The database is ``pgjobs.contrib.django.dsn()``, given to pgjobs as ``$PGJOBS_DSN``: an
explicit ``--dsn``, or the ``dsn`` of a worker's own ``pgjobs.Config``, still wins.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pgjobs import cli
from pgjobs.contrib.django import dsn


def _run(arguments: Sequence[str]) -> int:
    if not arguments:
        raise CommandError("name a pgjobs command: migrate, worker, status, ...")
    os.environ["PGJOBS_DSN"] = dsn()
    return cli.main(list(arguments))


class Command(BaseCommand):
    help = "Run a pgjobs command (migrate, worker, status, ...) on Django's database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help="pgjobs arguments")

    def run_from_argv(self, argv: list[str]) -> None:
        # Every argument is pgjobs', --help included: Django's own parser is not asked.
        raise SystemExit(_run(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:
        """For ``call_command("pgjobs", "migrate")``."""
        arguments = [*args, *options["arguments"]]
        code = _run(arguments)
        if code:
            raise CommandError(f"pgjobs {arguments[0]} exited with status {code}")
