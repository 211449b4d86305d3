"""Settings of the example shop. The database is ``$SHOP_DATABASE`` (a libpq connection
string or URL), else ``postgresql://localhost/shop``; pgjobs uses the same one
(``pgjobs.contrib.django`` reads ``DATABASES``)."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ.get("SHOP_DATABASE", "postgresql://localhost/shop"))

SECRET_KEY = "example-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["shop", "pgjobs.contrib.django"]
# `manage.py test` adds pgjobs' schema to the test database.
TEST_RUNNER = "pgjobs.contrib.django.testing.DiscoverRunner"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}
