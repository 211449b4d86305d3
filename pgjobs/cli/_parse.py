"""Durations as an operator types them (``7d``, ``1h30m``); the library's own functions
take a ``timedelta`` or seconds. (Job ids typed as text, which the dashboard's URLs
have too, are read by :func:`pgjobs.job.parse_id`.)"""

from __future__ import annotations

import re
from datetime import timedelta

from ..errors import InvalidArgumentError

__all__ = ["parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """A duration from ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``, ``"1h30m"``,
    ``"500ms"``, or a plain number of seconds; never negative."""
    compact = text.strip().replace(" ", "")
    try:
        seconds = float(compact)
    except ValueError:
        parts = _DURATION_PART.findall(compact)
        if not compact or "".join(n + u for n, u in parts).lower() != compact.lower():
            raise InvalidArgumentError(
                f"invalid duration {text!r}: use a number and a unit, such as 90s, 15m, "
                "12h, 7d or 1h30m (m is minutes)"
            ) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
    if not seconds >= 0:  # also NaN
        raise InvalidArgumentError(f"a duration must not be negative, not {text!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidArgumentError(f"duration {text!r} is too long") from None
