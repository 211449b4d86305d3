"""The Django app config of pgjobs.contrib.django."""

from __future__ import annotations

from django.apps import AppConfig


class PgjobsConfig(AppConfig):
    name = "pgjobs.contrib.django"
    label = "pgjobs"
    verbose_name = "pgjobs"
