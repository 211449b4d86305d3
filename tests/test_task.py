"""Task validation and payload encoding: what is refused before any round trip.

These need no database; tests/test_enqueue.py checks that the same refusals write nothing
and leave the caller's transaction usable.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import json.encoder
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import pgjobs
from pgjobs.errors import InvalidTaskError, PayloadError, PayloadTooLargeError
from pgjobs.task import (
    _PAYLOAD_ENCODER,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_RETRY,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
    MAX_MAX_RETRY,
    MAX_NAME_LENGTH,
    MAX_SECONDS,
    _encode_json,
    _from_row,
    encode_payload,
)


def test_defaults_follow_asynq() -> None:
    task = pgjobs.Task("send_email")
    assert task.payload == {}
    assert task.queue == DEFAULT_QUEUE == "default"
    assert task.max_retry == DEFAULT_MAX_RETRY == 25
    assert task.timeout == DEFAULT_TIMEOUT == 1800.0
    assert task.priority == 0
    assert task.run_at is None
    assert task.delay is None
    assert MAX_NAME_LENGTH == 255
    assert DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024


def test_timedeltas_become_float_seconds() -> None:
    task = pgjobs.Task("k", timeout=timedelta(minutes=2), delay=timedelta(milliseconds=1500))
    assert task.timeout == 120.0
    assert task.delay == 1.5
    assert isinstance(task.timeout, float)
    assert pgjobs.Task("k", timeout=5).timeout == 5.0


def test_tasks_are_frozen_values() -> None:
    task = pgjobs.Task("k", {"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.kind = "other"  # type: ignore[misc]
    assert task == pgjobs.Task("k", {"a": 1})


def test_the_constructors_defaults_are_the_fields_defaults() -> None:
    # Task.__init__ is written out (it is faster than the dataclass's own), so its
    # defaults are written twice: here they are held equal.
    parameters = inspect.signature(pgjobs.Task).parameters
    for f in dataclasses.fields(pgjobs.Task):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(pgjobs.Task("k"), f.name) == f.default_factory()
        elif f.default is dataclasses.MISSING:
            assert parameters[f.name].default is inspect.Parameter.empty, f.name
        else:
            assert parameters[f.name].default == f.default, f.name
    assert list(parameters) == [f.name for f in dataclasses.fields(pgjobs.Task)]
    first, second = pgjobs.Task("k"), pgjobs.Task("k")
    assert first.payload == {}
    assert first.payload is not second.payload


def test_subclasses_of_task_are_built_and_validated_the_same() -> None:
    class Plain(pgjobs.Task):  # has a __dict__, so not Task's slots alone
        pass

    @dataclasses.dataclass(frozen=True)
    class WithField(pgjobs.Task):  # its own generated __init__, which calls __post_init__
        extra: int = 0

    plain = Plain("k", [1], queue="q", timeout=timedelta(seconds=2))
    assert type(plain) is Plain
    assert (plain.kind, plain.payload, plain.queue, plain.timeout) == ("k", [1], "q", 2.0)
    assert WithField("k", queue="q", extra=3).extra == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.kind = "other"  # type: ignore[misc]
    for subclass in (Plain, WithField):
        with pytest.raises(InvalidTaskError, match="queue must not be empty"):
            subclass("k", queue=" ")


def test_a_claimed_rows_task_is_the_same_frozen_task() -> None:
    # The worker builds its Tasks without validation, by another route (_from_row): every
    # field set, and the same frozen value as one built by the constructor.
    built = _from_row("k", [1], "q", 3, 60.0, -2)
    expected = pgjobs.Task("k", [1], queue="q", max_retry=3, timeout=60.0, priority=-2)
    assert type(built) is pgjobs.Task
    assert {f.name: getattr(built, f.name) for f in dataclasses.fields(pgjobs.Task)} == {
        f.name: getattr(expected, f.name) for f in dataclasses.fields(pgjobs.Task)
    }
    assert built == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.kind = "other"  # type: ignore[misc]
    assert dataclasses.replace(built, kind="j") == dataclasses.replace(expected, kind="j")


def test_longest_names_and_extreme_values_are_accepted() -> None:
    name = "k" * MAX_NAME_LENGTH
    task = pgjobs.Task(
        name,
        queue=name,
        max_retry=MAX_MAX_RETRY,
        timeout=MAX_SECONDS,
        priority=-32768,
        delay=MAX_SECONDS,
    )
    assert task.kind == task.queue == name
    assert pgjobs.Task("k", priority=32767, max_retry=0, delay=0).delay == 0.0


NOW = datetime(2030, 1, 1, tzinfo=UTC)

# Each builds a Task that must be refused with InvalidTaskError, with words of the message.
BAD_TASKS: dict[str, tuple[dict[str, Any], str]] = {
    "empty kind": ({"kind": ""}, "kind must not be empty"),
    "whitespace kind": ({"kind": " \t\n"}, "kind must not be empty"),
    "long kind": ({"kind": "k" * 256}, "256 characters"),
    "kind not str": ({"kind": 42}, "kind must be a string"),
    "NUL in kind": ({"kind": "a\x00b"}, "NUL"),
    "surrogate kind": ({"kind": "a\ud800"}, "not valid Unicode"),
    "empty queue": ({"queue": ""}, "queue must not be empty"),
    "whitespace queue": ({"queue": "   "}, "queue must not be empty"),
    "long queue": ({"queue": "q" * 256}, "256 characters"),
    "NUL in queue": ({"queue": "\x00"}, "NUL"),
    "negative max_retry": ({"max_retry": -1}, "max_retry"),
    "huge max_retry": ({"max_retry": MAX_MAX_RETRY + 1}, "max_retry"),
    "float max_retry": ({"max_retry": 1.5}, "max_retry must be an integer"),
    "bool max_retry": ({"max_retry": True}, "max_retry must be an integer"),
    "zero timeout": ({"timeout": 0}, "timeout must be more than 0"),
    "negative timeout": ({"timeout": -1}, "timeout must be more than 0"),
    "zero timedelta timeout": ({"timeout": timedelta(0)}, "timeout must be more than 0"),
    "NaN timeout": ({"timeout": math.nan}, "timeout must be more than 0"),
    "infinite timeout": ({"timeout": math.inf}, "finite"),
    "huge timeout": ({"timeout": MAX_SECONDS + 1}, "at most"),
    "huge int timeout": ({"timeout": 10**400}, "finite"),
    "string timeout": ({"timeout": "30"}, "number of seconds"),
    "priority too low": ({"priority": -32769}, "priority"),
    "priority too high": ({"priority": 32768}, "priority"),
    "float priority": ({"priority": 0.5}, "priority must be an integer"),
    "run_at and delay": ({"run_at": NOW, "delay": 1}, "not both"),
    "naive run_at": ({"run_at": datetime(2030, 1, 1)}, "timezone-aware"),
    "run_at not datetime": ({"run_at": "2030-01-01T00:00:00Z"}, "must be a datetime"),
    "negative delay": ({"delay": -0.001}, "delay must be 0 seconds or more"),
    "NaN delay": ({"delay": math.nan}, "delay must be 0 seconds or more"),
    "infinite delay": ({"delay": math.inf}, "finite"),
    "huge delay": ({"delay": timedelta(days=365 * 200)}, "at most"),
}


@pytest.mark.parametrize("case", BAD_TASKS.keys())
def test_bad_tasks_are_refused(case: str) -> None:
    fields, words = BAD_TASKS[case]
    arguments = {"kind": "k", **fields}
    with pytest.raises(InvalidTaskError, match=words):
        pgjobs.Task(**arguments)


def test_invalid_task_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        pgjobs.Task("")


def test_payload_is_compact_json() -> None:
    text = encode_payload({"to": "ä@example.com", "n": [1, 2.5, None, True]})
    assert text == '{"to":"ä@example.com","n":[1,2.5,null,true]}'
    assert json.loads(text) == {"to": "ä@example.com", "n": [1, 2.5, None, True]}


BAD_PAYLOADS: dict[str, tuple[Any, str]] = {
    "object": (object(), "not JSON-serialisable"),
    "set": ({"s": {1, 2}}, "not JSON-serialisable"),
    "datetime": ({"at": NOW}, "not JSON-serialisable"),
    "tuple key": ({(1, 2): "x"}, "not JSON-serialisable"),
    "NaN": ({"x": math.nan}, "not JSON-serialisable"),
    "infinity": ([math.inf], "not JSON-serialisable"),
    "NUL in value": ({"x": "a\x00b"}, "NUL"),
    "NUL in key": ({"\x00": 1}, "NUL"),
    "lone surrogate": ({"x": "\udc80"}, "not valid Unicode"),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS.keys())
def test_bad_payloads_are_refused(case: str) -> None:
    payload, words = BAD_PAYLOADS[case]
    with pytest.raises(PayloadError, match=words):
        encode_payload(payload)


def _contains_itself() -> dict[str, Any]:
    payload: dict[str, Any] = {"n": 1}
    payload["again"] = [payload]
    return payload


def _nested(depth: int) -> list[Any]:
    payload: list[Any] = []
    for _ in range(depth):
        payload = [payload]
    return payload


@pytest.mark.parametrize("payload", [_contains_itself(), _nested(100_000)])
def test_payloads_without_an_end_are_refused(payload: Any) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload(payload)


ENCODED_ALIKE: list[Any] = [
    {"seq": 1},
    "top-level text",
    [1, -2.5, 1e300, 2**70, 0.1 + 0.2, -0.0, True, False, None],
    {"ä": 'ü\n\t"\\', "": [], "o": {}, "emoji": "🎉", "controls": "\u0001\u001f"},
    {7: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    _nested(50),
]


@pytest.mark.parametrize("payload", ENCODED_ALIKE)
def test_payloads_are_encoded_as_the_standard_encoder_does(payload: Any) -> None:
    """encode_payload builds json's C iterator once (pgjobs.task._payload_encoding); the
    text must be what json.JSONEncoder, with the same options, writes."""
    standard = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert encode_payload(payload, 10**9) == standard.encode(payload)


@pytest.mark.skipif(json.encoder.c_make_encoder is None, reason="no C encoder here")
def test_the_iterator_is_built_once_where_the_c_encoder_is() -> None:
    assert _encode_json != _PAYLOAD_ENCODER.encode  # not the standard path


@pytest.mark.parametrize(
    "payload",
    [
        "a literal backslash-u0000: \\u0000",  # text, not a NUL
        {"path": "C:\\\\u0000"},
        "\u0001 control characters other than NUL are fine",
        "emoji 🎉 and CJK 漢字",
    ],
)
def test_payloads_that_only_look_like_nul_are_accepted(payload: Any) -> None:
    assert json.loads(encode_payload(payload)) == payload


def test_payload_size_is_measured_in_utf8_bytes() -> None:
    payload = "é" * 10  # 10 characters, 20 bytes, 22 with the quotes
    assert encode_payload(payload, max_bytes=22)
    with pytest.raises(PayloadTooLargeError) as raised:
        encode_payload(payload, max_bytes=21)
    assert (raised.value.size, raised.value.limit) == (22, 21)
    assert isinstance(raised.value, InvalidTaskError)


def test_default_payload_limit_is_one_mebibyte() -> None:
    encode_payload("x" * (DEFAULT_MAX_PAYLOAD_BYTES - 2))
    with pytest.raises(PayloadTooLargeError):
        encode_payload("x" * (DEFAULT_MAX_PAYLOAD_BYTES - 1))


def test_run_at_keeps_its_timezone() -> None:
    tz = timezone(timedelta(hours=-5))
    task = pgjobs.Task("k", run_at=datetime(2030, 1, 1, 7, tzinfo=tz))
    assert task.run_at == datetime(2030, 1, 1, 12, tzinfo=UTC)
