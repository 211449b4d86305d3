"""Schedules for periodic jobs: cron expressions and fixed intervals, time-zone aware.

A schedule is a sequence of *ticks*, instants at which a periodic job is due. Both
kinds answer two questions, in aware UTC datetimes: :meth:`~Cron.next_after` (the first
tick strictly after a moment) and :meth:`~Cron.last_at_or_before` (the latest tick at or
before it).

Cron syntax (five fields, as in Vixie cron / cronie)::

    ┌──────── minute        0-59
    │ ┌────── hour          0-23
    │ │ ┌──── day of month  1-31
    │ │ │ ┌── month         1-12 or jan-dec
    │ │ │ │ ┌ day of week   0-7 or sun-sat (0 and 7 are Sunday)
    * * * * *

Each field is ``*`` or a comma-separated list of values (``5``, ``mon``), ranges
(``1-5``, ``mon-fri``) and steps (``*/15``, ``0-30/10``, ``10/20`` meaning ``10-59/20``).
Names are case-insensitive. Shortcuts: ``@yearly`` (``@annually``), ``@monthly``,
``@weekly``, ``@daily`` (``@midnight``), ``@hourly``. When both day fields are
restricted, a day matches if *either* does (``0 0 1 * mon``: the 1st and every Monday);
a day field that starts with ``*`` (``*`` or ``*/2``) counts as unrestricted, as in
cron. A schedule that can never fire (``0 0 30 2 *``) is refused.

Time zones: a cron schedule is read in wall-clock time of its zone (``tz``, an IANA
name such as ``"Europe/Paris"``; default UTC). On the night clocks go forward, times in
the skipped hour do not exist: their ticks happen once, at the end of the gap (a daily
``30 2 * * *`` runs at 03:00 that day). When clocks go back, the repeated hour ticks
once, at its first pass. Intervals (:class:`Every`) count real elapsed time from the
Unix epoch, so they ignore time zones and DST entirely.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError

__all__ = ["Cron", "Every", "Schedule", "parse_schedule"]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
#: A zone's offset at a moment is compared with its offsets this long before and after,
#: more than any change of a zone's UTC offset (DST and otherwise), to know how far
#: around the moment's wall-clock time to look for ticks.
_OFFSET_SPAN = timedelta(hours=26)
#: No valid schedule is further than this between ticks (29 February, on a Friday ...).
_SEARCH_YEARS = 30


class Schedule(Protocol):
    """What the periodic scheduler needs from a schedule."""

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after *moment* (aware), in UTC."""
        ...

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest tick at or before *moment* (aware), in UTC."""
        ...


def _aware(moment: datetime, what: str = "moment") -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, not {moment!r}")
    return moment


@dataclass(frozen=True, slots=True)
class Every:
    """A tick every *seconds*, at whole multiples of it since the Unix epoch (UTC).

    ``Every(300)`` ticks at :00, :05, :10 ... of every hour; ``Every(86400)`` at
    midnight UTC. Every worker computes the same ticks without talking to the others.
    """

    seconds: float

    def __post_init__(self) -> None:
        seconds = self.seconds
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 1
        ):
            raise ConfigurationError(
                f"a periodic interval must be at least 1 second, not {self.seconds!r}"
            )
        object.__setattr__(self, "seconds", float(seconds))

    def _index(self, moment: datetime) -> int:
        elapsed = (_aware(moment) - _EPOCH) / timedelta(seconds=1)
        return math.floor(elapsed / self.seconds)

    def _tick(self, index: int) -> datetime:
        return _EPOCH + timedelta(seconds=index * self.seconds)

    def next_after(self, moment: datetime) -> datetime:
        index = self._index(moment)
        while self._tick(index) <= moment:  # float rounding at exact multiples
            index += 1
        while index > 0 and self._tick(index - 1) > moment:
            index -= 1
        return self._tick(index)

    def last_at_or_before(self, moment: datetime) -> datetime:
        index = self._index(moment)
        while self._tick(index) > moment:
            index -= 1
        while self._tick(index + 1) <= moment:
            index += 1
        return self._tick(index)

    def __str__(self) -> str:
        return f"every {self.seconds:g}s"


def _field(text: str, low: int, high: int, names: Sequence[str] | None, what: str) -> list[int]:
    """The sorted values one cron field allows."""
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.strip().lower()
        if names is not None and token in names:
            return names.index(token) + (1 if what == "month" else 0)
        if not token.isdigit():
            raise ConfigurationError(f"cron {what} field {text!r}: {token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise ConfigurationError(f"cron {what} field {text!r}: {value} is outside {low}-{high}")
        return value

    for part in text.split(","):
        if not part:
            raise ConfigurationError(f"cron {what} field {text!r}: an empty list item")
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ConfigurationError(
                    f"cron {what} field {text!r}: step {step_text!r} must be a whole number "
                    "of at least 1"
                )
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start_text, _, end_text = span.partition("-")
            first, last = number(start_text), number(end_text)
            if first > last:
                raise ConfigurationError(
                    f"cron {what} field {text!r}: range {span!r} runs backwards"
                )
        else:
            first = number(span)
            last = high if slash else first  # "10/20" means 10-max/20
        values.update(range(first, last + 1, step))
    return sorted(values)


class Cron:
    """A cron schedule read in wall-clock time of *tz* (see the module docstring).

    :param expression: five fields, or a shortcut such as ``@daily``.
    :param tz: an IANA zone name or a :class:`datetime.tzinfo`; default UTC.

    Raises :class:`~pgjobs.errors.ConfigurationError` for a malformed expression, an
    unknown zone, or a schedule that never fires.
    """

    __slots__ = (
        "_days",
        "_dom_star",
        "_dow",
        "_dow_star",
        "_fixed",
        "_hours",
        "_minutes",
        "_months",
        "expression",
        "tz",
    )

    def __init__(self, expression: str, tz: str | tzinfo = "UTC") -> None:
        if not isinstance(expression, str):
            raise ConfigurationError(f"a cron expression must be a string, not {expression!r}")
        self.expression = expression
        text = _SHORTCUTS.get(expression.strip().lower(), expression)
        fields = text.split()
        if len(fields) != 5:
            raise ConfigurationError(
                f"cron expression {expression!r} must have 5 fields (minute hour day-of-month "
                f"month day-of-week) or be one of {', '.join(_SHORTCUTS)}; it has {len(fields)}"
            )
        self._minutes = _field(fields[0], 0, 59, None, "minute")
        self._hours = _field(fields[1], 0, 23, None, "hour")
        self._days = _field(fields[2], 1, 31, None, "day-of-month")
        self._months = _field(fields[3], 1, 12, _MONTHS, "month")
        # 0-7 with 7 = Sunday; stored as Python weekdays (Monday 0 ... Sunday 6).
        self._dow = sorted(
            {(d - 1) % 7 for d in _field(fields[4], 0, 7, [*_DAYS, "sun"], "day-of-week")}
        )
        self._dom_star = fields[2].startswith("*")
        self._dow_star = fields[4].startswith("*")
        self.tz = _zone(tz)
        self._fixed = _is_utc(self.tz)
        # With a restricted day of week some day matches every week; with days of the
        # month alone, one of them must exist in one of the months.
        if self._dow_star and not any(
            self._days[0] <= (29 if month == 2 else calendar.monthrange(2001, month)[1])
            for month in self._months
        ):
            raise ConfigurationError(
                f"cron expression {expression!r} never fires: no chosen month has day "
                f"{self._days[0]}"
            )

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={str(self.tz)!r})"

    def __str__(self) -> str:
        return f"cron {self.expression!r} ({self.tz})"

    # --- wall-clock matching -----------------------------------------------------------

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self._days
        dow = day.weekday() in self._dow
        if self._dom_star or self._dow_star:
            return dom and dow  # one of them is unrestricted
        return dom or dow

    def _naive_next(self, after: datetime) -> datetime:
        """The first matching naive wall-clock minute strictly after *after*."""
        c = after.replace(second=0, microsecond=0) + _MINUTE
        limit = c.year + _SEARCH_YEARS
        while c.year <= limit:
            if c.month not in self._months:
                i = bisect_right(self._months, c.month)
                c = (
                    c.replace(month=self._months[i], day=1, hour=0, minute=0)
                    if i < len(self._months)
                    else c.replace(year=c.year + 1, month=self._months[0], day=1, hour=0, minute=0)
                )
                continue
            if not self._day_matches(c):
                c = c.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if c.hour not in self._hours:
                i = bisect_right(self._hours, c.hour)
                if i < len(self._hours):
                    c = c.replace(hour=self._hours[i], minute=0)
                else:
                    c = c.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if c.minute not in self._minutes:
                i = bisect_right(self._minutes, c.minute)
                if i < len(self._minutes):
                    c = c.replace(minute=self._minutes[i])
                else:
                    c = c.replace(minute=0) + timedelta(hours=1)
                continue
            return c
        raise RuntimeError(f"{self}: no tick within {_SEARCH_YEARS} years")  # pragma: no cover

    def _naive_prev(self, at: datetime) -> datetime:
        """The last matching naive wall-clock minute at or before *at*."""
        c = at.replace(second=0, microsecond=0)
        limit = c.year - _SEARCH_YEARS
        while c.year >= limit:
            if c.month not in self._months:
                i = bisect_left(self._months, c.month)
                first = c.replace(day=1, hour=0, minute=0)
                if i > 0:
                    month = self._months[i - 1]
                    last_day = calendar.monthrange(c.year, month)[1]
                    c = first.replace(month=month, day=last_day, hour=23, minute=59)
                else:
                    month = self._months[-1]
                    last_day = calendar.monthrange(c.year - 1, month)[1]
                    c = first.replace(
                        year=c.year - 1, month=month, day=last_day, hour=23, minute=59
                    )
                continue
            if not self._day_matches(c):
                c = c.replace(hour=0, minute=0) - _MINUTE
                continue
            if c.hour not in self._hours:
                i = bisect_left(self._hours, c.hour)
                if i > 0:
                    c = c.replace(hour=self._hours[i - 1], minute=59)
                else:
                    c = c.replace(hour=0, minute=0) - _MINUTE
                continue
            if c.minute not in self._minutes:
                i = bisect_left(self._minutes, c.minute)
                if i > 0:
                    c = c.replace(minute=self._minutes[i - 1])
                else:
                    c = c.replace(minute=0) - _MINUTE
                continue
            return c
        raise RuntimeError(f"{self}: no tick within {_SEARCH_YEARS} years")  # pragma: no cover

    # --- wall clock to instants -------------------------------------------------------

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant of a naive wall-clock time in this zone: its first occurrence
        if it is repeated, the end of the gap if it was skipped."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if first.astimezone(self.tz).replace(tzinfo=None) == wall:
            return first  # exists (the earlier one, if it exists twice)
        # Skipped: fold=0 reads it with the offset from before the gap, which lands after
        # the gap; fold=1 with the offset from after, which lands before it. The gap ends
        # at the transition, found by bisection between the two.
        low = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        high = first
        offset_before = low.astimezone(self.tz).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.tz).utcoffset() == offset_before:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)

    def _skew(self, moment: datetime) -> timedelta:
        """How far the wall clock near *moment* strays from its offset at *moment*: the
        candidates to look at start this far before (or after) its wall-clock time."""
        if self._fixed:
            return timedelta(0)
        offset = _aware(moment).astimezone(self.tz).utcoffset()
        assert offset is not None
        others = [
            (moment + d).astimezone(self.tz).utcoffset() for d in (-_OFFSET_SPAN, _OFFSET_SPAN)
        ]
        return max(abs(other - offset) for other in others if other is not None)

    def _wall(self, moment: datetime) -> datetime:
        return _aware(moment).astimezone(self.tz).replace(tzinfo=None)

    def next_after(self, moment: datetime) -> datetime:
        # Wall-clock candidates map to instants in order (never backwards), so the first
        # candidate whose instant is after the moment is the next tick.
        wall = self._wall(moment) - self._skew(moment)
        while True:
            wall = self._naive_next(wall)
            instant = self._instant(wall)
            if instant > moment:
                return instant

    def last_at_or_before(self, moment: datetime) -> datetime:
        wall = self._wall(moment) + self._skew(moment)
        while True:
            wall = self._naive_prev(wall)
            instant = self._instant(wall)
            if instant <= moment:
                return instant
            wall -= _MINUTE


_UTC_NAMES = frozenset(
    [
        "UTC",
        "Etc/UTC",
        "UCT",
        "Etc/UCT",
        "Universal",
        "Etc/Universal",
        "Zulu",
        "Etc/Zulu",
        "GMT",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/Greenwich",
    ]
)


def _is_utc(tz: tzinfo) -> bool:
    """A zone whose offset never changes from 0 (no wall-clock/instant skew to search)."""
    return tz is UTC or getattr(tz, "key", None) in _UTC_NAMES


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigurationError(f"tz must be an IANA time zone name, not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {tz!r}") from exc


def parse_schedule(schedule: str | timedelta | float, tz: str | tzinfo = "UTC") -> Cron | Every:
    """A cron expression (``str``) or an interval (``timedelta`` or seconds)."""
    if isinstance(schedule, str):
        return Cron(schedule, tz)
    if tz != "UTC":
        raise ConfigurationError(
            "tz applies to cron expressions; an interval counts real time from the epoch"
        )
    return Every(schedule)  # type: ignore[arg-type]
