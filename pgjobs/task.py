"""The unit of work: what to run (kind + payload) and how (queue, retries, timeout, when).

A :class:`Task` is validated when it is built, so an invalid one never reaches the
database. Its payload is checked when it is encoded for enqueueing, because that is
where it is turned into JSON and measured (see :func:`encode_payload`).
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidTaskError, PayloadError, PayloadTooLargeError

__all__ = [
    "BLANK_RANGES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RETRY",
    "DEFAULT_PRIORITY",
    "DEFAULT_QUEUE",
    "DEFAULT_TIMEOUT",
    "MAX_MAX_RETRY",
    "MAX_NAME_LENGTH",
    "MAX_SECONDS",
    "MAX_UNIQUE_KEY_LENGTH",
    "RUN_AT_MAX",
    "RUN_AT_MIN",
    "Task",
    "encode_payload",
]

DEFAULT_QUEUE = "default"
#: asynq's default: 25 retries, so 26 attempts in all, spread over about three weeks of backoff.
DEFAULT_MAX_RETRY = 25
#: asynq's default timeout: 30 minutes.
DEFAULT_TIMEOUT = 30 * 60.0
#: The middle of the range: lower runs first, so jobs can be put ahead or behind.
DEFAULT_PRIORITY = 0
#: Longest kind or queue name, in characters; the database enforces the same bound.
MAX_NAME_LENGTH = 255
#: Payloads are rows in a hot table; large blobs belong elsewhere with a reference here.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: Longest timeout or delay: 100 years, far past any real schedule and well inside what a
#: Postgres interval (and ``now() + interval``) can hold, so the database never overflows.
MAX_SECONDS = 100 * 365.25 * 24 * 3600
#: ``attempt`` (an integer column) counts up to ``max_retry + 1``, so it must fit too.
MAX_MAX_RETRY = 2**31 - 2
#: Longest unique key, in characters; the database enforces the same bound (a key of
#: 4-byte characters still fits a btree index entry).
MAX_UNIQUE_KEY_LENGTH = 512
_PRIORITY_RANGE = (-32768, 32767)  # smallint
#: What a name may not be made of alone: whitespace (``str.isspace``) and the invisible
#: format characters (Unicode category Cf), as of Unicode 14, as ranges of a regular
#: expression class that Python and PostgreSQL read alike. The jobs table's rule on
#: kind and queue is written with these same ranges (migration 0007; a test compares).
BLANK_RANGES = (
    r"\t-\r\u001c- \u0085\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    r"\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff"
    r"\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_VISIBLE = re.compile(f"[^{BLANK_RANGES}]")
#: The earliest and the first too late ``run_at``: a day inside a Python datetime's
#: range, so that the time reads back in every time zone. The table holds the same.
RUN_AT_MIN = datetime(1, 1, 2, tzinfo=UTC)
RUN_AT_MAX = datetime(9999, 12, 31, tzinfo=UTC)
# An escaped NUL in JSON text: \u0000 preceded by an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
#: One encoder for every payload: ``json.dumps`` with any option set builds a new
#: ``JSONEncoder`` per call, which costs more than encoding a small payload.
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _payload_encoding() -> Callable[[Any], str]:
    """``_PAYLOAD_ENCODER.encode``, with its C iterator built once instead of per call.

    ``JSONEncoder.encode`` builds its iterator (``json.encoder.c_make_encoder``, with the
    encoder's options) afresh for every payload, which is more than half the cost of
    encoding a small one. It is built without the memo that detects a payload that
    contains itself (one memo shared by threads could report a reference cycle that is
    not there), so such a payload ends in RecursionError, as a too deeply nested one
    always did; :func:`encode_payload` refuses both. Where CPython's C encoder is
    missing, or does not encode a probe exactly as ``_PAYLOAD_ENCODER`` does, this is
    ``_PAYLOAD_ENCODER.encode`` itself.
    """
    make_iterator = getattr(json.encoder, "c_make_encoder", None)
    if make_iterator is None:
        return _PAYLOAD_ENCODER.encode
    try:
        iterate = make_iterator(
            None,  # no reference-cycle memo, see above
            _PAYLOAD_ENCODER.default,
            json.encoder.encode_basestring,  # ensure_ascii=False
            None,  # indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )
        probe = {"text": 'ä\n"', "numbers": [1, -2.5, 1e300], "flags": [None, True, False]}
        if "".join(iterate(probe, 0)) != _PAYLOAD_ENCODER.encode(probe):
            return _PAYLOAD_ENCODER.encode
    except Exception:  # another interpreter's signature: the standard path is correct
        return _PAYLOAD_ENCODER.encode

    def encode(payload: Any) -> str:
        return "".join(iterate(payload, 0))

    return encode


_encode_json = _payload_encoding()


def _seconds(value: float | timedelta, name: str) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTaskError(f"{name} must be a number of seconds or a timedelta, not {value!r}")
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf if value > 0 else -math.inf
    if math.isinf(seconds):
        raise InvalidTaskError(f"{name} must be a finite number of seconds, not {value!r}")
    if math.isnan(seconds):
        return seconds  # for the caller's "more than 0" check to refuse
    # PostgreSQL keeps whole microseconds, rounding seconds * 1e6 half to even as round()
    # does (make_interval), so the limits apply to what it will store, and the value
    # becomes exactly that.
    if seconds > MAX_SECONDS + 1 or round(seconds * 1_000_000) > MAX_SECONDS * 1_000_000:
        raise InvalidTaskError(f"{name} must be at most {MAX_SECONDS:.0f} seconds (100 years)")
    return round(seconds * 1_000_000) / 1_000_000


def _check_name(value: object, what: str, limit: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str):
        raise InvalidTaskError(f"{what} must be a string, not {type(value).__name__}")
    if _VISIBLE.search(value) is None:
        raise InvalidTaskError(
            f"{what} must not be empty or made only of whitespace and invisible characters"
        )
    if len(value) > limit:
        raise InvalidTaskError(f"{what} is {len(value)} characters long, over the limit of {limit}")
    if "\x00" in value:
        raise InvalidTaskError(f"{what} must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: not text Postgres can store
        raise InvalidTaskError(f"{what} is not valid Unicode text: {exc.reason}") from exc
    return value


def _check_run_at(run_at: datetime) -> None:
    try:
        in_range = RUN_AT_MIN <= run_at < RUN_AT_MAX
    except OverflowError:  # its UTC time is outside every datetime
        in_range = False
    if not in_range:
        raise InvalidTaskError(
            f"run_at must be from {RUN_AT_MIN.isoformat()} to before {RUN_AT_MAX.isoformat()}, "
            f"so that it reads back in every time zone, not {run_at.isoformat()}"
        )


class _EmptyPayload:
    """The default *payload*: every Task given none gets a dict of its own."""

    def __repr__(self) -> str:
        return "{}"


_EMPTY_PAYLOAD: Any = _EmptyPayload()


@dataclass(frozen=True, slots=True, init=False)
class Task:
    """A job to run: a *kind* naming its handler and a JSON *payload* for it.

    :param kind: the handler's name, 1 to 255 characters, stored literally; not made
        only of whitespace and invisible format characters (:data:`BLANK_RANGES`).
    :param payload: anything :func:`json.dumps` accepts (no NaN, no NUL characters).
    :param queue: the queue it waits in; workers choose queues by weight.
    :param max_retry: retries after the first attempt; ``0`` means a single attempt.
    :param timeout: seconds (or a timedelta) one attempt may run before it is cancelled;
        from 1 microsecond to :data:`MAX_SECONDS` (100 years), once rounded to whole
        microseconds as PostgreSQL stores it.
    :param priority: lower runs first within a queue (``-32768`` to ``32767``).
    :param run_at: an aware datetime before which the job does not run, from
        :data:`RUN_AT_MIN` to before :data:`RUN_AT_MAX` (a day inside what a datetime
        holds, so that it reads back in every time zone).
    :param delay: seconds (or a timedelta) from now before the job runs; not with *run_at*;
        0 to :data:`MAX_SECONDS`.
    :param unique_key: makes the job unique: while the key is held (see *unique_for*),
        enqueueing another job with the same key adds nothing and returns the id of the
        job holding it. 1 to :data:`MAX_UNIQUE_KEY_LENGTH` characters; one namespace per
        schema, across kinds and queues (include the kind in the key if it matters).
    :param unique_for: seconds (or a timedelta) from the enqueue during which the key is
        held, whatever becomes of the job; more than 0 and at most :data:`MAX_SECONDS`.
        ``None`` (the default) holds the key until the job completes, fails or is
        cancelled. Only with *unique_key*.

    Times are normalised: ``timeout``, ``delay`` and ``unique_for`` become float seconds,
    in whole microseconds. Every value this accepts, the jobs table and the SQL
    ``enqueue()`` accept, and every value it refuses they refuse.
    """

    kind: str
    payload: Any = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    max_retry: int = DEFAULT_MAX_RETRY
    timeout: float = DEFAULT_TIMEOUT
    priority: int = DEFAULT_PRIORITY
    run_at: datetime | None = None
    delay: float | None = None
    unique_key: str | None = None
    unique_for: float | None = None

    def __init__(
        self,
        kind: str,
        payload: Any = _EMPTY_PAYLOAD,
        queue: str = DEFAULT_QUEUE,
        max_retry: int = DEFAULT_MAX_RETRY,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        priority: int = DEFAULT_PRIORITY,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> None:
        # Written out rather than generated: a frozen dataclass's own __init__ sets each
        # field through object.__setattr__, which doubles the cost of building a Task,
        # and a Task is built for every job enqueued. The defaults are the fields' (a
        # test holds them equal).
        if payload is _EMPTY_PAYLOAD:
            payload = {}
        if type(self) is Task:  # a subclass may have other slots, or a __dict__
            object.__setattr__(self, "__class__", _Draft)  # see _Draft
            draft: Any = self
            draft.kind = kind
            draft.payload = payload
            draft.queue = queue
            draft.max_retry = max_retry
            draft.timeout = timeout
            draft.priority = priority
            draft.run_at = run_at
            draft.delay = delay
            draft.unique_key = unique_key
            draft.unique_for = unique_for
            draft.__class__ = Task
        else:
            values = (kind, payload, queue, max_retry, timeout, priority, run_at, delay,
                      unique_key, unique_for)  # fmt: skip
            for name, value in zip(Task.__slots__, values, strict=True):  # the fields, in order
                object.__setattr__(self, name, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        # Named so that a dataclass subclassing Task, whose generated __init__ calls it,
        # validates what it inherits.
        _check_name(self.kind, "kind")
        # A field left at its default needs no check: the defaults are valid. A Task is
        # built for every enqueue, and most of its fields are left at their defaults.
        if self.queue is not DEFAULT_QUEUE:
            _check_name(self.queue, "queue")
        if self.max_retry is not DEFAULT_MAX_RETRY:
            if isinstance(self.max_retry, bool) or not isinstance(self.max_retry, int):
                raise InvalidTaskError(f"max_retry must be an integer, not {self.max_retry!r}")
            if not 0 <= self.max_retry <= MAX_MAX_RETRY:
                raise InvalidTaskError(
                    f"max_retry must be between 0 and {MAX_MAX_RETRY}, not {self.max_retry}"
                )
        if self.timeout is not DEFAULT_TIMEOUT:
            timeout = _seconds(self.timeout, "timeout")
            if not timeout > 0:  # also rejects NaN, and what rounds to 0 microseconds
                raise InvalidTaskError(
                    f"timeout must be more than 0 seconds (1 microsecond at least), not "
                    f"{self.timeout!r}"
                )
            object.__setattr__(self, "timeout", timeout)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidTaskError(f"priority must be an integer, not {self.priority!r}")
        low, high = _PRIORITY_RANGE
        if not low <= self.priority <= high:
            raise InvalidTaskError(f"priority must be between {low} and {high}")
        if self.run_at is not None and self.delay is not None:
            raise InvalidTaskError("give run_at or delay, not both")
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime):
                raise InvalidTaskError(f"run_at must be a datetime, not {self.run_at!r}")
            if self.run_at.tzinfo is None or self.run_at.utcoffset() is None:
                raise InvalidTaskError(
                    "run_at must be timezone-aware (a naive datetime is ambiguous); "
                    "use datetime.now(timezone.utc) or attach a tzinfo"
                )
            _check_run_at(self.run_at)
        if self.delay is not None:
            delay = _seconds(self.delay, "delay")
            if not delay >= 0:
                raise InvalidTaskError(f"delay must be 0 seconds or more, not {self.delay!r}")
            object.__setattr__(self, "delay", delay)
        if self.unique_key is not None:
            _check_name(self.unique_key, "unique_key", MAX_UNIQUE_KEY_LENGTH)
        if self.unique_for is not None:
            if self.unique_key is None:
                raise InvalidTaskError("unique_for needs a unique_key")
            unique_for = _seconds(self.unique_for, "unique_for")
            if not unique_for > 0:
                raise InvalidTaskError(
                    f"unique_for must be more than 0 seconds, not {self.unique_for!r}"
                )
            object.__setattr__(self, "unique_for", unique_for)


class _Draft:
    """A Task's slots without its frozen ``__setattr__``: ``Task.__init__`` and
    :func:`_from_row` fill one, then turn it into the Task it is (``__class__`` may be
    assigned between classes of the same slots). Filling a Task itself takes
    ``object.__setattr__`` per field: ten wrapper calls per claimed job, four times the
    cost of the rest of building it. tests/test_task.py holds a Task built either way
    equal, frozen and of type Task, so a Python that stops allowing the swap fails there."""

    __slots__ = Task.__slots__


def _from_row(
    kind: str, payload: Any, queue: str, max_retry: int, timeout: float, priority: int
) -> Task:
    """A Task for a claimed row, skipping validation: the database already enforced it."""
    task: Any = object.__new__(_Draft)
    task.kind = kind
    task.payload = payload
    task.queue = queue
    task.max_retry = max_retry
    task.timeout = timeout
    task.priority = priority
    task.run_at = None
    task.delay = None
    task.unique_key = None
    task.unique_for = None
    task.__class__ = Task
    return task  # type: ignore[no-any-return]


def encode_payload(payload: Any, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> str:
    """Return *payload* as compact JSON text, refusing what Postgres' jsonb would reject.

    Encoding here rather than in the driver gives a typed error before any round trip,
    and lets the size limit be measured on exactly what is sent.
    """
    try:
        text = _encode_json(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError(
            "payload is not JSON-serialisable: it contains itself, or is nested too deeply"
        ) from exc
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise PayloadError("payload contains a NUL character, which jsonb cannot store")
    if text.isascii():  # one byte per character, and no lone surrogates: nothing to encode
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:  # ensure_ascii=False leaves lone surrogates in
            raise PayloadError(f"payload is not valid Unicode text: {exc.reason}") from exc
    if size > max_bytes:
        raise PayloadTooLargeError(size, max_bytes)
    return text
