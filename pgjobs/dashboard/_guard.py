"""Who may see the dashboard and change things through it.

* With a token, every page needs it: from the session cookie that the login form sets,
  or an ``Authorization: Bearer`` header (for scripts). The cookie holds a digest of the
  token, never the token itself.
* Every POST, token or not, must come from the dashboard's own pages: a browser's
  ``Sec-Fetch-Site`` and ``Origin`` headers, when sent, must say same origin, and the
  form's CSRF field must match the per-browser cookie (signed with a per-process key, so
  another site cannot plant a pair that matches).
* Read-only refuses every POST but the login.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "Guard", "is_loopback"]

SESSION_COOKIE = "pgjobs_dashboard_session"
CSRF_COOKIE = "pgjobs_dashboard_csrf"


def is_loopback(host: str) -> bool:
    """Whether binding *host* keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _digest(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


class Guard:
    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._key = secrets.token_bytes(32)

    def session_value(self) -> str:
        assert self.token is not None
        return _digest(self.token.encode(), "pgjobs dashboard session")

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def signed_in(self, request: Request) -> bool:
        if self.token is None:
            return True
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return self.token_matches(authorization[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session_value().encode())

    @staticmethod
    def new_csrf_cookie() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, cookie: str) -> str:
        """The value the forms carry for the browser whose CSRF cookie is *cookie*."""
        return _digest(self._key, cookie)

    def csrf_ok(self, request: Request, field: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not field:
            return False
        return hmac.compare_digest(field.encode(), self.csrf_token(cookie).encode())

    @staticmethod
    def same_origin(request: Request) -> bool:
        """False when the browser says the request comes from another site."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            return origin != "null" and urlsplit(origin).netloc == host
        return True
