"""A Django settings module for the pgjobs.contrib.django tests: ``DATABASES["default"]``
is the libpq connection string in ``$PGJOBS_TEST_DJANGO_DB``."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["PGJOBS_TEST_DJANGO_DB"])

SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = ["pgjobs.contrib.django"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db["dbname"],
        "USER": _db.get("user", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "OPTIONS": {"application_name": "pgjobs-django-test"},
    }
}

# When set, pgjobs uses it instead of DATABASES.
PGJOBS_DSN = os.environ.get("PGJOBS_TEST_DJANGO_PGJOBS_DSN")
