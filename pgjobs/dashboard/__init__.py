"""A web dashboard for pgjobs: queues, jobs, workers and health, in a browser.

Needs the ``dashboard`` extra (``pip install "pgjobs[dashboard]"``: Starlette, Jinja2,
uvicorn). Run it with ``pgjobs dashboard``, or mount :func:`app` in your own ASGI
application behind your own authentication; docs/dashboard.md has both.
"""

from __future__ import annotations

from ._app import app
from ._guard import is_loopback

__all__ = ["app", "is_loopback"]
