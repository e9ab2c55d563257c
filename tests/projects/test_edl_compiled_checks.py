"""The compiled field checks (msgspec) against the Python ones they speed up: on every document,
valid or not, both agree on whether it is valid, and on a valid one both answer the same
normalised document, key order included. No database: both are pure functions of the value."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils.safestring import mark_safe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projects.edl.documents import CLIENT_FIELDS, EDL, SERVER_FIELDS
from projects.edl.field_checks import ROOT, Errors, check_document, compiled_check

MEDIA = "0f0e0d0c-0b0a-4908-8706-050403020100"


def base() -> dict[str, Any]:
    """A valid timeline touching every kind of field: effects, words, pauses, nulls, server fields."""
    clips = [
        {"id": "c0", "media_file_id": MEDIA, "track_id": "v", "start_ms": 0, "duration_ms": 1000,
         "in_point_ms": 0, "out_point_ms": 1000, "effects": [{"type": "fade_in", "duration_ms": 100}],
         "deleted": False},
        {"id": "c1", "media_file_id": MEDIA.upper(), "start_ms": 1000, "duration_ms": 667,
         "in_point_ms": 0, "out_point_ms": 1000, "effects": [{"type": "speed", "rate": 1.5}]},
    ]
    return {
        "id": "650000000000000000000001", "version": 3, "history": {"undo": 1, "redo": 0},
        "settings": {"resolution": {"width": 1920, "height": 1080}, "frame_rate": 30, "duration_ms": 5},
        "tracks": [{"id": "v", "type": "video", "name": "Vidéo ☃", "clips": clips},
                   {"id": "a", "type": "audio", "clips": []}],
        "transcript": {
            "generated_at": "2026-01-31T12:00:00.123456+02:00",
            "segments": [{"id": "s0", "speaker": None, "start_ms": 0, "end_ms": 900, "text": "hi there",
                          "media_file_id": None, "clip_id": "c0", "language": "en",
                          "words": [{"word": "hi", "start_ms": 0, "end_ms": 400, "confidence": 1},
                                    {"word": "there", "start_ms": 400, "end_ms": 900, "confidence": 0.25,
                                     "deleted": True}]}],
            "pauses": [{"start_ms": 400, "end_ms": 410}],
        },
    }


# What a hostile or careless client puts in a field: every JSON type, each bound and one past it,
# the forms of a UUID and a date-time that are nearly right, effects that are not plain JSON.
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 15, 16, 240, 241, 7680, 7681, 2**31 - 1, 2**31, 2**63, 2**64, -(2**63) - 1,
    0.0, 0.5, 1.0, 1.5, -0.0, 1e-7, 1e308, math.nan, math.inf, -math.inf,
    "", "x", "x" * 64, "x" * 65, "x" * 255, "x" * 256, "video", "audio", "Video", "en", "x" * 17,
    MEDIA, MEDIA + "\n", " " + MEDIA, MEDIA.replace("-", ""), "{" + MEDIA + "}",
    "2026-01-31T12:00:00Z", "2026-01-31T12:00:00", "2026-01-31 12:00:00+01:00", "2026-01-31", "yesterday",
    datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 1, 31),
    {}, [], [None], [{}], [1, 2], {"a": 1}, {"type": "fade_in", "duration_ms": 10}, {"$set": 1}, {"a.b": 1},
    {"": 1}, {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, {"a": "x" * 5000},
    {"a": math.nan}, {"a": (1, 2)}, {1: 2}, ("a", "b"), {"type": "speed", "rate": 2},
]


def containers(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) of the document: where a mutation can go."""
    if isinstance(value, dict):
        for key in list(value):
            out.append((value, key))
            containers(value[key], out)
    elif isinstance(value, list):
        for index in range(len(value)):
            out.append((value, index))
            containers(value[index], out)
    return out


@st.composite
def documents(draw: st.DrawFn) -> Any:
    doc = base()
    for _ in range(draw(st.integers(0, 3))):
        places = containers(doc, [])
        holder, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        if action == "set":
            holder[key] = copy.deepcopy(draw(st.sampled_from(HOSTILE)))
        elif action == "delete" and isinstance(holder, dict):
            del holder[key]
        elif action == "unknown" and isinstance(holder, dict):
            holder[draw(st.sampled_from(["zz", "ID", "_id", "$where"]))] = 1
    if draw(st.booleans()):
        doc = draw(st.sampled_from(HOSTILE))  # not a document at all
    return doc


def both(doc: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Errors]:
    errors = Errors()
    slow = check_document(EDL, copy.deepcopy(doc), ROOT, errors, names=CLIENT_FIELDS, ignored=SERVER_FIELDS)
    fast = compiled_check(EDL, copy.deepcopy(doc), names=CLIENT_FIELDS, ignored=SERVER_FIELDS)
    return fast, slow, errors


def ordered(value: Any) -> str:
    """The value with its key order, as text (dict equality ignores the order)."""
    return json.dumps(value, default=repr, allow_nan=True)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_compiled_checks_accept_exactly_what_the_python_checks_accept(doc):
    fast, slow, errors = both(doc)
    assert (fast is not None) == (not errors.items), (errors.items, fast)
    if fast is not None:
        assert fast == slow and ordered(fast) == ordered(slow)


def test_a_valid_document_is_answered_normalised_by_the_compiled_checks():
    fast, slow, errors = both(base())
    assert not errors.items and fast is not None and ordered(fast) == ordered(slow)
    assert list(fast) == list(CLIENT_FIELDS)  # server fields dropped
    clip = fast["tracks"][0]["clips"][1]
    assert clip["track_id"] is None and clip["deleted"] is False  # defaults filled, in field order
    assert list(clip) == ["id", "media_file_id", "track_id", "start_ms", "duration_ms", "in_point_ms",
                          "out_point_ms", "effects", "deleted"]
    assert fast["settings"]["frame_rate"] == 30.0 and type(fast["settings"]["frame_rate"]) is float
    word = fast["transcript"]["segments"][0]["words"][0]
    assert word["confidence"] == 1.0 and type(word["confidence"]) is float
    # A date-time to the millisecond, in UTC, as the store keeps it.
    assert fast["transcript"]["generated_at"] == datetime(2026, 1, 31, 10, 0, 0, 123000, tzinfo=UTC)
    assert fast["tracks"][1]["name"] == "" and fast["transcript"]["segments"][0]["deleted"] is False


@pytest.mark.parametrize("empty", [[], {}, ""])
def test_an_empty_value_in_a_field_that_is_no_list_is_refused_by_both(empty):
    # An empty list needs no more checking in a list field only: a date-time given one is refused.
    doc = base()
    doc["transcript"]["generated_at"] = empty
    fast, _, errors = both(doc)
    assert fast is None and [e["path"] for e in errors.items] == ["transcript.generated_at"]


@pytest.mark.parametrize("effect", [{"a": (1, 2)}, {"a": {1, 2}}, {"a": b"x"}, {"a": datetime(2026, 1, 1)},
                                    {"a": math.nan}, {"$set": 1}, {"a": "x" * 5000}])
def test_effects_that_are_no_plain_json_are_refused_by_both(effect):
    # A server-side caller's document may hold Python values no JSON does: the compiled checks see
    # them as sent, not as msgspec would write them (a tuple as a list, a date as a string).
    doc = base()
    doc["tracks"][0]["clips"][0]["effects"] = [effect]
    fast, _, errors = both(doc)
    assert fast is None and [e["path"] for e in errors.items] == ["tracks[0].clips[0].effects[0]"]


def test_a_uuid_followed_by_a_newline_is_refused_by_both():
    # "$" in a pattern matches before a final newline; the UUID pattern ends at the string's end.
    doc = base()
    doc["tracks"][0]["clips"][0]["media_file_id"] = MEDIA + "\n"
    fast, _, errors = both(doc)
    assert fast is None and errors.items == [{"path": "tracks[0].clips[0].media_file_id", "message": "Must be a UUID."}]


class _Float(float):
    """A float subclass, as a numeric library's scalar is."""


@pytest.mark.parametrize("edit", [
    lambda doc: doc["tracks"][0].update(name=mark_safe("x")),  # a str subclass msgspec does not write
    lambda doc: doc["tracks"][0]["clips"][0]["effects"][0].update(duration_ms=_Float(100)),
    lambda doc: doc["transcript"].update(generated_at=type("Moment", (datetime,), {})(2026, 1, 31, tzinfo=UTC)),
])
def test_a_value_msgspec_cannot_take_is_left_to_the_python_checks(edit):
    doc = base()
    edit(doc)
    fast, slow, errors = both(doc)
    assert fast is None and slow is not None and not errors.items  # no crash: the Python checks judge it


def test_an_integer_too_long_for_a_float_is_out_of_bounds_not_a_crash():
    doc = base()
    doc["settings"]["frame_rate"] = 10**400
    fast, _, errors = both(doc)
    assert fast is None and errors.items == [{"path": "settings.frame_rate", "message": "Must be at most 240."}]
