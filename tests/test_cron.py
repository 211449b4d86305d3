"""Cron expressions and intervals (pgjobs.cron): parsing, matching, time zones and DST.

The schedule arithmetic is checked against a brute-force reference that walks real
time minute by minute and applies the documented rules directly.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pgjobs.cron import Cron, Every, parse_schedule
from pgjobs.errors import ConfigurationError


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ticks(schedule: Cron | Every, start: datetime, count: int) -> list[datetime]:
    found = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expression", "values"),
    [
        ("_minutes", "*/15 * * * *", [0, 15, 30, 45]),
        ("_minutes", "0-30/10 * * * *", [0, 10, 20, 30]),
        ("_minutes", "10/20 * * * *", [10, 30, 50]),
        ("_minutes", "5,1,3-4 * * * *", [1, 3, 4, 5]),
        ("_minutes", "59 * * * *", [59]),
        ("_hours", "0 9-17 * * *", list(range(9, 18))),
        ("_hours", "0 */6 * * *", [0, 6, 12, 18]),
        ("_days", "0 0 1,15,31 * *", [1, 15, 31]),
        ("_months", "0 0 1 jan,MAR,Dec *", [1, 3, 12]),
        ("_months", "0 0 1 feb-apr *", [2, 3, 4]),
        ("_months", "0 0 1 */3 *", [1, 4, 7, 10]),
        # Python weekdays: Monday 0 ... Sunday 6; cron 0 and 7 are both Sunday.
        ("_dow", "0 0 * * mon-fri", [0, 1, 2, 3, 4]),
        ("_dow", "0 0 * * 0", [6]),
        ("_dow", "0 0 * * 7", [6]),
        ("_dow", "0 0 * * SAT,sun", [5, 6]),
        ("_dow", "0 0 * * 5-7", [4, 5, 6]),
    ],
)
def test_fields_parse(field: str, expression: str, values: list[int]) -> None:
    assert getattr(Cron(expression), field) == values


@pytest.mark.parametrize(
    ("shortcut", "expression"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_shortcuts(shortcut: str, expression: str) -> None:
    start = utc(2026, 3, 7, 13, 21)
    assert ticks(Cron(shortcut), start, 5) == ticks(Cron(expression), start, 5)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "must have 5 fields"),
        ("* * * * * *", "must have 5 fields"),
        ("", "must have 5 fields"),
        ("60 * * * *", "60 is outside 0-59"),
        ("* 24 * * *", "24 is outside 0-23"),
        ("* * 0 * *", "0 is outside 1-31"),
        ("* * 32 * *", "32 is outside 1-31"),
        ("* * * 13 *", "13 is outside 1-12"),
        ("* * * * 8", "8 is outside 0-7"),
        ("*/0 * * * *", "step '0'"),
        ("*/x * * * *", "step 'x'"),
        ("5-1 * * * *", "runs backwards"),
        ("fri * * * *", "'fri' is not a number"),
        ("* * * * fri-mon", "runs backwards"),
        ("1,,2 * * * *", "an empty list item"),
        ("-1 * * * *", "is not a number"),
        ("@every_minute", "must have 5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_bad_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cron(expression)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        Cron("* * * * *", tz="Mars/Olympus_Mons")
    with pytest.raises(ConfigurationError, match="must be a string"):
        Cron(5)  # type: ignore[arg-type]
    for bad in (0, 0.5, -1, float("inf"), float("nan"), True, "60", timedelta(0)):
        with pytest.raises(ConfigurationError, match="at least 1 second"):
            Every(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tz applies to cron"):
        parse_schedule(timedelta(minutes=5), tz="Europe/Paris")
    with pytest.raises(ValueError, match="timezone-aware"):
        Cron("* * * * *").next_after(datetime(2026, 1, 1))


def test_feb_29_is_allowed_and_fires_in_leap_years() -> None:
    schedule = Cron("0 12 29 2 *")
    assert ticks(schedule, utc(2026, 1, 1), 3) == [
        utc(2028, 2, 29, 12),
        utc(2032, 2, 29, 12),
        utc(2036, 2, 29, 12),
    ]
    # Across a century that is not a leap year: 2096, then 2104.
    assert schedule.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29, 12)


def test_parse_schedule() -> None:
    assert isinstance(parse_schedule("*/5 * * * *"), Cron)
    assert parse_schedule(timedelta(seconds=30)) == Every(30.0)
    assert parse_schedule(90) == Every(90.0)
    assert Every(timedelta(minutes=2)).seconds == 120.0  # type: ignore[arg-type]


# --- matching in UTC -------------------------------------------------------------------


def test_every_five_minutes() -> None:
    schedule = Cron("*/5 * * * *")
    assert ticks(schedule, utc(2026, 5, 1, 10, 3, 30), 3) == [
        utc(2026, 5, 1, 10, 5),
        utc(2026, 5, 1, 10, 10),
        utc(2026, 5, 1, 10, 15),
    ]
    # Strictly after: a tick at the moment itself is not "next".
    assert schedule.next_after(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)
    # At or before: a tick at the moment itself is "last".
    assert schedule.last_at_or_before(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 5)
    assert schedule.last_at_or_before(utc(2026, 5, 1, 10, 4, 59)) == utc(2026, 5, 1, 10, 0)


def test_rollovers_across_hour_day_month_and_year() -> None:
    assert Cron("30 23 31 12 *").next_after(utc(2026, 6, 1)) == utc(2026, 12, 31, 23, 30)
    assert Cron("0 0 1 1 *").next_after(utc(2026, 12, 31, 23, 59)) == utc(2027, 1, 1)
    assert Cron("0 0 1 1 *").last_at_or_before(utc(2027, 1, 1) - timedelta(seconds=1)) == utc(
        2026, 1, 1
    )
    assert Cron("0 0 31 * *").next_after(utc(2026, 4, 1)) == utc(2026, 5, 31)
    assert Cron("0 0 31 * *").last_at_or_before(utc(2026, 5, 30)) == utc(2026, 3, 31)


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either matches (the 1st of the month, and every Monday).
    either = Cron("0 9 1 * mon")
    assert ticks(either, utc(2026, 6, 1, 12), 4) == [
        utc(2026, 6, 8, 9),  # Monday
        utc(2026, 6, 15, 9),
        utc(2026, 6, 22, 9),
        utc(2026, 6, 29, 9),
    ]
    assert either.next_after(utc(2026, 6, 29, 12)) == utc(2026, 7, 1, 9)  # Wednesday the 1st
    # A day-of-month field starting with '*' is unrestricted: both must match.
    both = Cron("0 9 */2 * mon")
    assert [t.day for t in ticks(both, utc(2026, 6, 1), 3)] == [1, 15, 29]
    # Weekdays only.
    assert [t.weekday() for t in ticks(Cron("0 8 * * 1-5"), utc(2026, 6, 5, 9), 3)] == [0, 1, 2]


def test_every_ticks_at_epoch_multiples() -> None:
    every = Every(300)
    assert every.next_after(utc(2026, 5, 1, 10, 3, 30)) == utc(2026, 5, 1, 10, 5)
    assert every.next_after(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)
    assert every.last_at_or_before(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 5)
    assert every.last_at_or_before(utc(2026, 5, 1, 10, 9, 59)) == utc(2026, 5, 1, 10, 5)
    odd = Every(7)
    moment = utc(2026, 5, 1, 10, 3, 30, 250000)
    later = odd.next_after(moment)
    assert later > moment
    assert (later - utc(1970, 1, 1)).total_seconds() % 7 == 0
    assert odd.last_at_or_before(moment) == later - timedelta(seconds=7)
    # Same ticks whatever zone the moment is given in.
    paris = moment.astimezone(ZoneInfo("Europe/Paris"))
    assert odd.next_after(paris) == later


# --- time zones and DST -------------------------------------------------------------------

PARIS = "Europe/Paris"  # 2026: forward on 29 March 02:00 -> 03:00, back on 25 Oct 03:00 -> 02:00


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)  # type: ignore[misc]


def test_daily_in_a_zone_follows_the_wall_clock() -> None:
    schedule = Cron("0 9 * * *", tz=PARIS)
    found = ticks(schedule, utc(2026, 3, 27), 4)
    assert [t.astimezone(ZoneInfo(PARIS)).hour for t in found] == [9, 9, 9, 9]
    # UTC+1 before the change, UTC+2 after it.
    assert [t.hour for t in found] == [8, 8, 7, 7]


def test_a_skipped_time_ticks_once_at_the_end_of_the_gap() -> None:
    daily = Cron("30 2 * * *", tz=PARIS)
    found = ticks(daily, utc(2026, 3, 28), 3)
    assert found[1] == local(PARIS, 2026, 3, 29, 3, 0)  # 02:30 does not exist that night
    assert found[1] == utc(2026, 3, 29, 1, 0)
    assert found[2] == local(PARIS, 2026, 3, 30, 2, 30)
    # Every 15 minutes: the four ticks of the skipped hour are one tick at 03:00, which
    # is also the 03:00 tick itself.
    quarter = Cron("*/15 * * * *", tz=PARIS)
    walls = [
        t.astimezone(ZoneInfo(PARIS)).strftime("%H:%M")
        for t in ticks(quarter, local(PARIS, 2026, 3, 29, 1, 30), 4)
    ]
    assert walls == ["01:45", "03:00", "03:15", "03:30"]
    assert daily.last_at_or_before(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 29, 1, 0)


def test_a_repeated_hour_ticks_once() -> None:
    schedule = Cron("30 2 * * *", tz=PARIS)
    found = ticks(schedule, utc(2026, 10, 24, 12), 2)
    # 02:30 happens twice on 25 October; it ticks at the first (still UTC+2).
    assert found[0] == utc(2026, 10, 25, 0, 30)
    assert found[0].astimezone(ZoneInfo(PARIS)).fold == 0
    assert found[1] == utc(2026, 10, 26, 1, 30)
    hourly = Cron("0 * * * *", tz=PARIS)
    walls = [
        (t.astimezone(ZoneInfo(PARIS)).strftime("%H:%M"), t.strftime("%H:%M"))
        for t in ticks(hourly, utc(2026, 10, 24, 22, 30), 4)
    ]
    # Wall-clock hours: 02:00 once (first pass), so three hours of real time pass
    # between 01:00 and 03:00 local instead of two.
    assert walls == [("01:00", "23:00"), ("02:00", "00:00"), ("03:00", "02:00"), ("04:00", "03:00")]


def _reference_ticks(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The documented rules applied by brute force, minute by minute of real time."""
    cron = Cron(expression, tz)
    zone = ZoneInfo(tz)

    def matches(wall: datetime) -> bool:
        return (
            wall.minute in cron._minutes
            and wall.hour in cron._hours
            and wall.month in cron._months
            and cron._day_matches(wall)
        )

    found = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    previous_wall = (moment - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
    while moment <= end:
        aware = moment.astimezone(zone)
        wall = aware.replace(tzinfo=None)
        skipped = []
        gap = previous_wall + timedelta(minutes=1)
        while gap < wall:  # the clock jumped forward: these wall times never happened
            skipped.append(gap)
            gap += timedelta(minutes=1)
        if any(matches(w) for w in skipped) or (matches(wall) and aware.fold == 0):
            found.append(moment)
        previous_wall = wall if aware.fold == 0 or wall > previous_wall else previous_wall
        moment += timedelta(minutes=1)
    return found


@pytest.mark.parametrize("tz", ["UTC", PARIS, "America/New_York", "Australia/Lord_Howe"])
@pytest.mark.parametrize(
    "expression",
    ["*/7 * * * *", "30 1-3 * * *", "0,45 2 * * *", "15 */2 * 3,4,10,11 *", "59 23 * * sun"],
)
def test_next_and_last_agree_with_the_reference(expression: str, tz: str) -> None:
    """Around both DST changes of 2026 (Lord Howe moves by 30 minutes)."""
    schedule = Cron(expression, tz)
    for start, end in (
        (utc(2026, 3, 7, 0), utc(2026, 3, 9, 12)),  # New York forward
        (utc(2026, 3, 28, 12), utc(2026, 3, 30, 0)),  # Paris forward
        (utc(2026, 4, 4, 6), utc(2026, 4, 5, 20)),  # Lord Howe back
        (utc(2026, 10, 3, 6), utc(2026, 10, 4, 20)),  # Lord Howe forward
        (utc(2026, 10, 24, 12), utc(2026, 10, 26, 0)),  # Paris back
        (utc(2026, 10, 31, 12), utc(2026, 11, 2, 12)),  # New York back
    ):
        expected = _reference_ticks(expression, tz, start, end)
        found = []
        moment = schedule.next_after(start)
        while moment <= end:
            found.append(moment)
            moment = schedule.next_after(moment)
        assert found == expected, (expression, tz, start)
        for tick in expected:
            assert schedule.last_at_or_before(tick) == tick
            assert schedule.last_at_or_before(tick + timedelta(seconds=59)) == tick


def test_random_moments_are_between_last_and_next() -> None:
    rng = random.Random(6)
    expressions = ["*/5 * * * *", "0 9 * * mon-fri", "30 2 1 * *", "0 0 29 2 *", "@hourly"]
    for _ in range(300):
        schedule = Cron(rng.choice(expressions), rng.choice(["UTC", PARIS, "Asia/Kolkata"]))
        moment = utc(2026, 1, 1) + timedelta(seconds=rng.uniform(0, 3 * 365 * 86400))
        last, upcoming = schedule.last_at_or_before(moment), schedule.next_after(moment)
        assert last <= moment < upcoming
        assert schedule.next_after(last) == upcoming
