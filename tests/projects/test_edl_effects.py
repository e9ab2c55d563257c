"""Clip effects in the EDL over HTTP: the vocabulary saves and reads back; every bad effect is a 422
naming its field path, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from projects.edl import cuts
from projects.edl.effects import clip_speed, expected_duration_ms
from tests.projects.test_edl_api import put, stored, stored_version, url
from tests.projects.test_edl_support import timeline_with

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

EVERY_EFFECT = [
    {"type": "fade_in", "duration_ms": 300},
    {"type": "fade_out", "duration_ms": 200, "target": "audio"},
    {"type": "volume", "gain_db": -6},
    {"type": "speed", "rate": 2},
    {"type": "crop", "x": 0.25, "y": 0, "width": 0.5, "height": 1},
    {"type": "fit", "mode": "cover"},
    {"type": "text", "text": "Hello: it's [50%], ok", "position": "top", "font_size": 32, "color": "#ff8800",
     "start_ms": 100, "duration_ms": 500},
]  # fmt: skip


@pytest.fixture
def doc(auth_client, project, make_media) -> dict[str, Any]:
    """Two back-to-back 1 s clips (c0, c1) on the video track of a 10 s media file."""
    return timeline_with(auth_client.get(url(project)).json(), make_media(project))


def c0(d: dict[str, Any]) -> dict[str, Any]:
    return d["tracks"][0]["clips"][0]


def test_every_effect_saves_and_reads_back(auth_client, project, doc):
    # At speed 2 the clip plays 2 s of its source in 1 s of the timeline.
    c0(doc).update(out_point_ms=2000, duration_ms=1000, effects=EVERY_EFFECT)
    response = put(auth_client, project, doc)
    assert response.status_code == 200, response.json()
    assert c0(auth_client.get(url(project)).json())["effects"] == EVERY_EFFECT
    saved = stored(project)
    assert saved is not None and saved["tracks"][0]["clips"][0]["effects"] == EVERY_EFFECT


def test_a_slowed_clip_is_longer_than_its_source_span(auth_client, project, doc):
    doc["tracks"][0]["clips"] = [c0(doc)]
    c0(doc).update(in_point_ms=100, out_point_ms=1100, duration_ms=3000, effects=[{"type": "speed", "rate": 1 / 3}])
    response = put(auth_client, project, doc)
    assert response.status_code == 200, response.json()
    assert response.json()["settings"]["duration_ms"] == 3000


def test_speed_and_duration_helpers_agree():
    effects: list[dict[str, Any]] = [{"type": "volume", "gain_db": 1}]
    clip = {"in_point_ms": 0, "out_point_ms": 1000, "effects": effects}
    assert clip_speed(clip) == 1.0 and expected_duration_ms(clip) == 1000
    effects.append({"type": "speed", "rate": 3})
    assert clip_speed is cuts.clip_speed, "one definition, read by the cuts and the validation alike"
    assert clip_speed(clip) == 3.0 and expected_duration_ms(clip) == 333
    piece = cuts.cut_clip({**clip, "id": "c", "start_ms": 0, "duration_ms": 333}, [])[0]
    assert piece["out_point_ms"] == 1000 and piece["duration_ms"] == expected_duration_ms(piece)
    # Text overlay times count in the clip's own time: each piece says where it starts in it.
    pieces = cuts.cut_clip({**clip, "id": "c", "start_ms": 500, "duration_ms": 333}, [(600, 700)])
    assert [(p["start_ms"], p["clip_offset_ms"]) for p in pieces] == [(500, 0), (600, 200)]


BAD = [
    # (name, effects of c0, expected path under tracks[0].clips[0], fragment of the message)
    ("unknown type", [{"type": "blur", "radius": 3}], "effects[0].type",
     "Unknown effect type 'blur'; known types: crop, fade_in, fade_out, fit, speed, text, volume"),
    ("type missing", [{"duration_ms": 300}], "effects[0].type", "required"),
    ("type not a string", [{"type": 3}], "effects[0].type", "Unknown effect type 3"),
    ("extra key", [{"type": "fade_in", "duration_ms": 200, "curve": "log"}], "effects[0].curve", "Unknown field"),
    ("missing parameter", [{"type": "volume"}], "effects[0].gain_db", "required"),
    ("gain too loud", [{"type": "volume", "gain_db": 30}], "effects[0].gain_db", "at most 24"),
    ("gain too quiet", [{"type": "volume", "gain_db": -61}], "effects[0].gain_db", "at least -60"),
    ("gain a string", [{"type": "volume", "gain_db": "-6"}], "effects[0].gain_db", "number"),
    ("gain a bool", [{"type": "volume", "gain_db": True}], "effects[0].gain_db", "number"),
    ("gain null", [{"type": "volume", "gain_db": None}], "effects[0].gain_db", "null"),
    ("speed too slow", [{"type": "speed", "rate": 0.2}], "effects[0].rate", "at least 0.25"),
    ("speed too fast", [{"type": "speed", "rate": 5}], "effects[0].rate", "at most 4"),
    ("fade not an integer", [{"type": "fade_in", "duration_ms": 1.5}], "effects[0].duration_ms", "integer"),
    ("fade zero", [{"type": "fade_out", "duration_ms": 0}], "effects[0].duration_ms", "at least 1"),
    ("fade target", [{"type": "fade_in", "duration_ms": 10, "target": "all"}], "effects[0].target",
     "one of: both, video, audio"),
    ("fade longer than the clip", [{"type": "fade_out", "duration_ms": 1001}], "effects[0].duration_ms",
     "at most the clip's duration (1000 ms)"),
    ("crop outside the frame", [{"type": "crop", "x": 0.5, "y": 0, "width": 0.6, "height": 1}],
     "effects[0].width", "x + width must be at most 1"),
    ("crop negative", [{"type": "crop", "x": -0.1, "y": 0, "width": 0.5, "height": 1}], "effects[0].x",
     "at least 0"),
    ("crop too small", [{"type": "crop", "x": 0, "y": 0, "width": 0.01, "height": 1}], "effects[0].width",
     "at least 0.05"),
    ("fit mode", [{"type": "fit", "mode": "fill"}], "effects[0].mode", "one of: contain, cover, stretch"),
    ("text empty", [{"type": "text", "text": "  "}], "effects[0].text", "empty"),
    ("text too long", [{"type": "text", "text": "x" * 501}], "effects[0].text", "at most 500"),
    ("text control character", [{"type": "text", "text": "a\x07b"}], "effects[0].text", "control characters"),
    ("text colour", [{"type": "text", "text": "hi", "color": "red"}], "effects[0].color", "#rrggbb"),
    ("text position", [{"type": "text", "text": "hi", "position": "left"}], "effects[0].position", "one of"),
    ("text font size", [{"type": "text", "text": "hi", "font_size": 2}], "effects[0].font_size", "at least 6"),
    ("text after the clip", [{"type": "text", "text": "hi", "start_ms": 1000}], "effects[0].start_ms",
     "before the clip's end (1000 ms)"),
    ("two speeds", [{"type": "speed", "rate": 1}, {"type": "speed", "rate": 1}], "effects[1].type",
     "At most one speed effect per clip (also at effects[0])"),
    ("two crops", [{"type": "fit", "mode": "cover"}, {"type": "crop", "x": 0, "y": 0, "width": 1, "height": 1},
                   {"type": "crop", "x": 0, "y": 0, "width": 1, "height": 1}], "effects[2].type", "one crop"),
    ("speed without its duration", [{"type": "speed", "rate": 2}], "duration_ms",
     "Must equal round((out_point_ms - in_point_ms) / 2), at its speed (500)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "effects", "path", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_effect_is_422_with_its_path_and_nothing_is_written(
    auth_client, project, doc, name, effects, path, message
):
    before = stored(project)
    c0(doc)["effects"] = effects
    response = put(auth_client, project, doc)
    assert response.status_code == 422, response.json()
    error = response.json()["error"]
    assert error["code"] == "edl_invalid"
    assert [(e["path"], message in e["message"]) for e in error["details"]["errors"]] == [
        (f"tracks[0].clips[0].{path}", True)
    ], error["details"]["errors"]
    assert stored(project) == before and stored_version(project) == 1


def test_every_bad_effect_of_a_timeline_is_reported_at_once(auth_client, project, doc):
    c0(doc)["effects"] = [{"type": "volume", "gain_db": 99}, {"type": "zoom"}]
    doc["tracks"][0]["clips"][1]["effects"] = [{"type": "fit", "mode": "contain", "x": 1}]
    response = put(auth_client, project, doc)
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["error"]["details"]["errors"]] == [
        "tracks[0].clips[0].effects[0].gain_db",
        "tracks[0].clips[0].effects[1].type",
        "tracks[0].clips[1].effects[0].x",
    ]


def test_another_users_project_is_404_before_its_effects_are_read(auth_client, make_user, make_project):
    other = make_project(make_user())
    response = put(auth_client, other, {"version": 1, "tracks": [{"clips": [{"effects": [{"type": "blur"}]}]}]})
    assert response.status_code == 404
