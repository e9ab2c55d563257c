"""Timeline interchange: every format's file holds the cut list the render plays, read back with
OpenTimelineIO; an OTIO file imports as a timeline that renders the same; and what a format cannot
carry is reported, never lost silently.

The render's cut list is read through the render's own request path (`job_request_get` for a
render job: the snapshot the engine gets, cut by the transcript), not recomputed here.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import opentimelineio as otio
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from jobs.selectors.requests import job_request_get
from jobs.specs import job_spec
from projects.edl import store
from projects.edl.interchange.read import Bounds, read_timeline
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.projects.test_edl_support import clip, editable, segment

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

FORMATS = ("otio", "fcpxml", "fcp7xml", "edl", "aaf")
ADAPTERS = {"otio": "otio_json", "fcpxml": "fcpx_xml", "fcp7xml": "fcp_xml", "edl": "cmx_3600", "aaf": "AAF"}


def export_url(project, query: str) -> str:
    return f"/api/v1/projects/{project.pk}/timeline/export?{query}"


def import_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/timeline/import"


@pytest.fixture
def edited(project, make_media):
    """A timeline with trims, a speed change, fades, a volume change, a text overlay and transcript
    deletions that cut two spans out of every track."""
    interview = make_media(project, name="interview.mp4", duration_ms=20_000)
    broll = make_media(project, name="b roll.mp4", duration_ms=20_000)
    music = make_media(project, name="music.wav", type="audio", mime_type="audio/wav", duration_ms=30_000)
    doc = editable(edl_get(project=project))
    video, audio = doc["tracks"]
    video["clips"] = [
        clip(interview, video, start=0, inp=1000, out=7000, id="a",
             effects=[{"type": "fade_in", "duration_ms": 500},
                      {"type": "text", "text": "Hello", "start_ms": 0, "duration_ms": 1000}]),
        clip(broll, video, start=6000, inp=2000, out=6000, id="b", duration_ms=2000,
             effects=[{"type": "speed", "rate": 2.0}, {"type": "fade_out", "duration_ms": 400}]),
    ]
    audio["clips"] = [clip(music, audio, start=0, inp=500, out=8500, id="m",
                           effects=[{"type": "volume", "gain_db": -6}])]
    words = [("one", 0, 900), ("two", 1000, 1900), ("um", 2000, 2400), ("three", 2500, 3400),
             ("four", 3500, 3900), ("uh", 4000, 4500), ("five", 4600, 5500)]
    seg = segment(0, 5500, words=words, id="s0")
    for word in seg["words"]:
        word["deleted"] = word["word"] in ("um", "uh")
    doc["transcript"] = {"generated_at": None, "segments": [seg], "pauses": []}
    saved = edl_replace(project=project, expected_version=doc["version"], data=doc)
    return {"doc": saved, "media": {"interview": interview, "broll": broll, "music": music}}


def render_pieces(user, project) -> tuple[list[dict[str, Any]], int, float]:
    """The render's snapshot: (tracks of pieces, duration after the cuts, frame rate)."""
    spec = job_spec("render")
    body = spec.input(data={"project_id": str(project.pk)})
    body.is_valid(raise_exception=True)
    request = job_request_get(user=user, spec=spec, data=body.validated_data)
    edl = request.input_params["edl"]
    return edl["tracks"], edl["settings"]["duration_ms"], float(edl["settings"]["frame_rate"])


def ms(t: otio.opentime.RationalTime) -> float:
    return t.to_seconds() * 1000


def file_cut_list(timeline: otio.schema.Timeline) -> dict[str, list[list[dict[str, Any]]]]:
    """Per track kind, in order, each clip as (record start, record length, source in, speed)."""
    out: dict[str, list[list[dict[str, Any]]]] = {"video": [], "audio": []}
    for track in timeline.tracks:
        kind = "video" if track.kind == otio.schema.TrackKind.Video else "audio"
        clips = []
        for item in track:
            if not isinstance(item, otio.schema.Clip):
                continue
            placed = item.range_in_parent()
            origin = item.media_reference.available_range if item.media_reference else None
            source = item.source_range.start_time - (origin.start_time if origin else otio.opentime.RationalTime())
            warp = [e.time_scalar for e in item.effects if isinstance(e, otio.schema.LinearTimeWarp)]
            clips.append({"start": ms(placed.start_time), "length": ms(placed.duration), "in": ms(source),
                          "speed": warp[0] if warp else 1.0, "name": item.name})
        out[kind].append(clips)
    return out


def read_back(fmt: str, answer: dict[str, Any], rate: float) -> otio.schema.Timeline:
    """The file read by OpenTimelineIO's adapter for its format, with the speed and volume the
    adapters leave to `interchange.documents` read too (as an import reads it)."""
    data = base64.b64decode(answer["content"]) if answer["encoding"] == "base64" else answer["content"].encode()
    return read_timeline(data, fmt, rate, Bounds(max_clips=5000, max_tracks=50))


def assert_same_cuts(render_track: list[dict[str, Any]], file_track: list[dict[str, Any]], frame_ms: float) -> None:
    """Each piece at its record place and length, with its source in AND out points, within a frame."""
    assert len(file_track) == len(render_track)
    for piece, got in zip(sorted(render_track, key=lambda p: p["start_ms"]), file_track, strict=True):
        assert abs(got["start"] - piece["start_ms"]) <= frame_ms, (piece["id"], got)
        assert abs(got["length"] - piece["duration_ms"]) <= frame_ms, (piece["id"], got)
        assert abs(got["in"] - piece["in_point_ms"]) <= frame_ms, (piece["id"], got)
        speed = next((e["rate"] for e in piece["effects"] if e["type"] == "speed"), 1.0)
        assert got["speed"] == pytest.approx(speed), (piece["id"], got)
        out = got["in"] + got["length"] * got["speed"]
        assert abs(out - piece["out_point_ms"]) <= frame_ms, (piece["id"], got)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_holds_the_renders_cut_list(auth_client, user, project, edited, fmt):
    """...and reports what it cannot carry (`assert_what_a_format_cannot_carry_is_reported`), of the
    same export: an AAF file costs a second of pyaaf2 to write."""
    tracks, duration, rate = render_pieces(user, project)
    assert sum(len(t["clips"]) for t in tracks) == 7  # 3 pieces of "a", 1 of "b", 3 of "m": cut, not re-timed
    response = auth_client.get(export_url(project, f"format={fmt}&markers=true"))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["pieces"] == 7 and answer["duration_ms"] == duration
    timeline = read_back(fmt, answer, rate)
    cut_list = file_cut_list(timeline)
    frame_ms = 1000 / rate
    render_by_kind = {"video": [t["clips"] for t in tracks if t["type"] == "video"],
                      "audio": [t["clips"] for t in tracks if t["type"] == "audio"]}
    assert any(c["speed"] == 2.0 for c in cut_list["video"][0])  # "b" plays at twice the speed
    assert_same_cuts(render_by_kind["video"][0], cut_list["video"][0], frame_ms)
    if fmt == "edl":  # one track per list: the audio track is reported, not lost silently
        assert cut_list["audio"] == [] and "audio_tracks" in {d["feature"] for d in answer["dropped"]}
    else:
        assert_same_cuts(render_by_kind["audio"][0], cut_list["audio"][0], frame_ms)
    names = {c["name"] for track in cut_list["video"] for c in track}
    assert names <= {"interview.mp4", "b roll.mp4"}
    assert_what_a_format_cannot_carry_is_reported(fmt, answer)


FADES_CARRIED = {"otio", "fcp7xml", "aaf"}
VOLUME_CARRIED = {"otio", "fcp7xml", "fcpxml"}


def assert_what_a_format_cannot_carry_is_reported(fmt: str, answer: dict[str, Any]) -> None:
    """What `fmt`'s export of the `edited` timeline (markers asked for) reports it dropped."""
    dropped = {d["feature"]: d for d in answer["dropped"]}
    assert "speed" not in dropped  # every format carries a constant speed
    assert ("fades" in dropped) == (fmt not in FADES_CARRIED)
    if fmt == "otio":
        assert dropped == {}
    else:
        assert dropped["text"]["count"] == 1 and dropped["text"]["clip_ids"] == ["a"]
        if fmt == "edl":  # the audio track is dropped whole, with its volume change
            assert "volume" not in dropped and dropped["audio_tracks"]["count"] == 1
        elif fmt in VOLUME_CARRIED:
            assert "volume" not in dropped
        else:
            assert dropped["volume"]["clip_ids"] == ["m"]
        assert "text overlays dropped" in dropped["text"]["message"]


def test_cmx_3600_reports_the_tracks_and_fades_it_drops(auth_client, project, edited):
    answer = auth_client.get(export_url(project, "format=edl")).json()
    dropped = {d["feature"]: d for d in answer["dropped"]}
    assert {"fades", "text", "audio_tracks"} <= dropped.keys()
    assert dropped["fades"]["count"] == 2 and set(dropped["fades"]["clip_ids"]) == {"a", "b"}
    assert "M2" in answer["content"]  # the speed change travels as a motion effect
    assert "* FROM CLIP NAME:  b roll.mp4" in answer["content"]


def test_fcp7_xml_carries_speed_and_volume_as_its_own_filters(auth_client, project, edited):
    answer = auth_client.get(export_url(project, "format=fcp7xml")).json()
    root = ET.fromstring(answer["content"])
    remaps = [f for f in root.iter("filter") if f.findtext("effect/effectid") == "timeremap"]
    levels = [f for f in root.iter("filter") if f.findtext("effect/effectid") == "audiolevels"]
    assert len(remaps) == 1 and len(levels) == 3
    params = {p.findtext("parameterid"): p.findtext("value") for p in remaps[0].iter("parameter")}
    assert params == {"speed": "200", "reverse": "FALSE", "frameblending": "FALSE", "variablespeed": "0"}
    assert abs(float(levels[0].findtext("effect/parameter/value") or 0) - 10 ** (-6 / 20)) < 1e-5
    for item in root.iter("clipitem"):  # a clipitem's filters follow its file, as the format orders them
        tags = [child.tag for child in item]
        assert "auteurclip" not in item.attrib
        if "filter" in tags:
            assert tags.index("filter") > tags.index("file")
    # The in point of the clip at twice the speed is in its retimed frames (2000 ms of source: 30).
    clip = next(c for c in root.iter("clipitem") if c.findtext("name") == "b roll.mp4")
    assert clip.findtext("in") == "30"


def test_fades_travel_as_dissolves_from_and_to_black(auth_client, user, project, edited):
    answer = auth_client.get(export_url(project, "format=fcp7xml")).json()
    timeline = otio.adapters.read_from_string(answer["content"], adapter_name="fcp_xml")
    video = next(t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video)
    items = list(video)
    transitions = [(i, item) for i, item in enumerate(items) if isinstance(item, otio.schema.Transition)]
    assert len(transitions) == 2
    (i_in, fade_in), (i_out, fade_out) = transitions
    assert isinstance(items[i_in + 1], otio.schema.Clip) and not isinstance(items[i_in - 1], otio.schema.Clip)
    assert isinstance(items[i_out - 1], otio.schema.Clip)
    assert abs(ms(fade_in.out_offset) - 500) <= 1000 / 30 and abs(ms(fade_out.in_offset) - 400) <= 1000 / 30


def test_cut_markers_are_opt_in_and_mark_each_cut(auth_client, project, edited):
    plain = json.loads(auth_client.get(export_url(project, "format=otio")).json()["content"])
    assert '"Marker' not in json.dumps(plain)
    answer = auth_client.get(export_url(project, "format=otio&markers=true")).json()
    timeline = otio.adapters.read_from_string(answer["content"], adapter_name="otio_json")
    marks = [m for c in timeline.find_clips() for m in c.markers]
    # Two cuts, each marked once, on the piece that plays after it (the first track that has one).
    assert sorted(m.metadata["auteur"]["edited_ms"] for m in marks) == sorted(
        {m.metadata["auteur"]["edited_ms"] for m in marks})
    assert len(marks) == 2


def test_media_is_referenced_by_relink_path_and_signed_urls_are_opt_in(auth_client, project, edited):
    answer = auth_client.get(export_url(project, "format=otio")).json()
    by_name = {m["name"]: m for m in answer["media"]}
    assert by_name["b roll.mp4"]["path"] == "media/b%20roll.mp4" and by_name["b roll.mp4"]["url"] is None
    assert "media/b%20roll.mp4" in answer["content"]
    signed = auth_client.get(export_url(project, "format=otio&media_urls=signed")).json()
    url = {m["name"]: m for m in signed["media"]}["b roll.mp4"]["url"]
    assert url and url in signed["content"] and signed["media"][0]["expires_at"]


def test_download_answers_the_file_with_its_name_and_the_report_in_a_header(auth_client, project, edited):
    response = auth_client.get(export_url(project, "format=edl&download=true"))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Timeline-test.edl"'
    assert response["Content-Type"] == "application/octet-stream"  # as the schema declares it
    assert response.content.startswith(b"TITLE: Timeline test")
    report = json.loads(response["Auteur-Interchange-Dropped"])
    assert {"feature": "audio_tracks", "count": 1} in report


# What FCPXML 1.8's DTD requires of the elements the adapter writes: (required attributes, allowed
# parents). No installed package ships Apple's DTD (and lxml, which would read one, is not installed),
# so the file is checked against this transcription of the DTD's rules for those elements.
# A story element sits in a spine, or is anchored to another story element (%anchor_item;).
STORY: set[str | None] = {"spine", "clip", "gap", "video", "audio", "asset-clip"}
FCPXML_18: dict[str, tuple[set[str], set[str | None]]] = {
    "fcpxml": ({"version"}, {None}),
    "resources": (set(), {"fcpxml"}),
    "format": ({"id"}, {"resources"}),
    "asset": ({"id", "src"}, {"resources"}),
    "project": (set(), {"fcpxml", "event"}),
    "sequence": ({"format"}, {"project"}),
    "spine": (set(), STORY - {"spine"} | {"sequence"}),
    "asset-clip": ({"ref"}, STORY | {"fcpxml", "event"}),
    "clip": ({"duration"}, STORY | {"fcpxml", "event"}),
    "gap": ({"duration"}, STORY),
    "video": ({"ref"}, STORY),
    "audio": ({"ref"}, STORY),
    "marker": ({"start", "value"}, STORY - {"spine"}),
    "timeMap": (set(), {"clip", "asset-clip"}),
    "timept": ({"time", "value"}, {"timeMap"}),
    "adjust-volume": ({"amount"}, {"clip", "asset-clip"}),
}
# Where the DTD puts them in a clip: timing parameters, then intrinsic ones, before the clip's items.
CLIP_ORDER = ("timeMap", "adjust-volume")
TIME_RE = re.compile(r"^(0|\d+(/\d+)?)s$")
IDREFS = {"format", "ref"}


def test_fcpxml_is_well_formed_and_meets_its_versions_dtd_rules(auth_client, project, edited):
    answer = auth_client.get(export_url(project, "format=fcpxml&markers=true")).json()
    header, doctype, body = answer["content"].split("\n", 2)
    assert header == '<?xml version="1.0" encoding="UTF-8"?>' and doctype == "<!DOCTYPE fcpxml>"
    root = ET.fromstring(body)
    assert root.tag == "fcpxml" and root.get("version") == "1.8"
    parents = {child: parent for parent in root.iter() for child in parent}
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    for element in root.iter():
        assert element.tag in FCPXML_18, element.tag
        required, allowed_parents = FCPXML_18[element.tag]
        assert required <= set(element.keys()), (element.tag, element.attrib)
        parent = parents.get(element)
        assert (parent.tag if parent is not None else None) in allowed_parents, element.tag
        if element.tag in ("clip", "asset-clip"):
            tags = [child.tag for child in element]
            leading = [t for t in tags if t in CLIP_ORDER]
            assert tags[:len(leading)] == leading == sorted(leading, key=CLIP_ORDER.index), tags
        for attr in ("offset", "duration", "start", "frameDuration", "time"):
            value = element.get(attr)
            if value is not None:
                assert TIME_RE.match(value), (element.tag, attr, value)
        for attr in IDREFS & set(element.keys()):
            assert element.get(attr) in ids, (element.tag, attr)
    assets = {a.get("name") for a in root.iter("asset")}
    assert assets == {"interview.mp4", "b roll.mp4", "music.wav"}
    assert root.find("./project/sequence/spine") is not None
    assert any(m.get("value", "").startswith("Cut:") for m in root.iter("marker"))
    assert len(list(root.iter("timeMap"))) == 1 and len(list(root.iter("adjust-volume"))) == 3


# ----------------------------------------------------------------------------- import


def upload(name: str, data: bytes | str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data.encode() if isinstance(data, str) else data)


def assert_renders_the_same(before: list[dict[str, Any]], after: list[dict[str, Any]], rate: float) -> None:
    """The same pieces of the same media, placed, trimmed and timed alike (within a frame; 2 for
    an out point, which is in + length x speed), with the same effects as far as they travel."""
    frame_ms = 1000 / rate
    assert len(after) == len(before)
    # By kind: an FCPXML reader lists its audio lanes before the video ones.
    before, after = (sorted(tracks, key=lambda t: t["type"] != "video") for tracks in (before, after))
    for old, new in zip(before, after, strict=True):
        assert old["type"] == new["type"] and len(old["clips"]) == len(new["clips"])
        for a, b in zip(old["clips"], new["clips"], strict=True):
            assert a["media_file_id"] == b["media_file_id"]
            for key in ("start_ms", "duration_ms", "in_point_ms", "out_point_ms"):
                assert abs(a[key] - b[key]) <= frame_ms * 2, (key, a, b)
            speeds = [[e["rate"] for e in c["effects"] if e["type"] == "speed"] for c in (a, b)]
            assert speeds[0] == speeds[1], (a, b)


def before_cuts(doc: dict[str, Any]) -> list[tuple[int, int]]:
    from projects.edl.cuts import transcript_cuts

    return list(transcript_cuts(doc["transcript"]).spans)


def test_an_otio_round_trip_renders_the_same_length_and_cut_points(auth_client, user, project, edited):
    before, duration, rate = render_pieces(user, project)
    answer = auth_client.get(export_url(project, "format=otio")).json()
    version = edl_get(project=project)["version"]
    response = auth_client.post(import_url(project), {"file": upload("cut.otio", answer["content"])},
                                format="multipart")
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["version"] == version + 1 and result["clips"] == 7
    # The deleted words are the file's cuts now (dropped); the others stay, on the imported clips
    # at their new times, in order, none deleted: nothing is cut twice.
    assert (result["transcript_words"], result["transcript_words_dropped"]) == (5, 2)
    segments = edl_get(project=project)["transcript"]["segments"]
    words = [w for seg in segments for w in seg["words"]]
    assert [w["word"] for w in words] == ["one", "two", "three", "four", "five"]
    assert not any(w["deleted"] for w in words)
    assert {seg["media_file_id"] for seg in segments} == {str(edited["media"]["music"].pk)}
    starts = [w["start_ms"] for w in words]
    assert starts == sorted(starts) and starts[0] == 0
    # "three" followed the cut of "um" (2000-2400 and its silences): it moved earlier by that cut,
    # within the frame its pieces snap to.
    cut = before_cuts(edited["doc"])[0]
    assert abs(starts[2] - (2500 - (cut[1] - cut[0]))) <= 1000 / rate, (starts, cut)
    assert {m["name"]: m["clips"] for m in result["matched"]} == {"interview.mp4": 3, "b roll.mp4": 1,
                                                                  "music.wav": 3}
    after, duration_after, _ = render_pieces(user, project)
    assert abs(duration_after - duration) <= 1000 / rate
    assert_renders_the_same(before, after, rate)
    # One undo step brings the transcript-edited timeline back.
    undone = auth_client.post(f"/api/v1/projects/{project.pk}/edl/undo")
    assert undone.status_code == 200 and undone.json()["transcript"]["segments"]


@pytest.mark.parametrize("fmt", ["fcp7xml", "edl", "fcpxml", "aaf"])
def test_editor_files_import_by_media_name(auth_client, user, project, edited, fmt):
    before, _, rate = render_pieces(user, project)
    answer = auth_client.get(export_url(project, f"format={fmt}")).json()
    data = base64.b64decode(answer["content"]) if answer["encoding"] == "base64" else answer["content"]
    response = auth_client.post(import_url(project), {"file": upload(answer["filename"], data)},
                                format="multipart")
    assert response.status_code == 200, response.content
    tracks, _, _ = render_pieces(user, project)
    assert sum(len(t["clips"]) for t in tracks) == response.json()["clips"] > 0
    kept = [t for t in before if fmt != "edl" or t["type"] == "video"]  # a CMX list holds the video track
    assert_renders_the_same(kept, tracks, rate)
    volumes = [e for t in tracks for c in t["clips"] for e in c["effects"] if e["type"] == "volume"]
    assert volumes == ([{"type": "volume", "gain_db": -6.0}] * 3 if fmt in VOLUME_CARRIED else [])


def test_unmatched_media_is_422_listing_the_names_and_nothing_is_saved(auth_client, project, edited):
    answer = auth_client.get(export_url(project, "format=fcp7xml")).json()
    content = answer["content"].replace("b roll.mp4", "lost take.mp4").replace("b%20roll.mp4", "lost%20take.mp4")
    version = edl_get(project=project)["version"]
    response = auth_client.post(import_url(project), {"file": upload("cut.xml", content)}, format="multipart")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "media_unmatched"
    assert [u["name"] for u in error["details"]["unmatched"]] == ["lost take.mp4"]
    assert edl_get(project=project)["version"] == version


@pytest.mark.parametrize(("name", "content"), [
    ("cut.otio", "{not json"),
    ("cut.xml", "<xmeml><sequence>"),
    ("cut.edl", "TITLE: x\n001  AX V C 00:00:00:00\n"),
    ("cut.xml", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xmeml>&a;</xmeml>'),
    ("cut.aaf", b"\xd0\xcf\x11\xe0 not a compound file"),
])
def test_a_malformed_file_is_422_and_nothing_is_saved(auth_client, project, edited, name, content):
    version = edl_get(project=project)["version"]
    response = auth_client.post(import_url(project), {"file": upload(name, content)}, format="multipart")
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "interchange_invalid"
    assert edl_get(project=project)["version"] == version


def test_an_unknown_extension_is_refused(auth_client, project, edited):
    response = auth_client.post(import_url(project), {"file": upload("cut.mov", b"\x00")}, format="multipart")
    assert response.status_code == 422 and response.json()["error"]["code"] == "interchange_invalid"


def test_a_file_over_the_limit_is_refused(auth_client, project, edited):
    version = edl_get(project=project)["version"]
    with override_settings(AUTEUR_INTERCHANGE_MAX_BYTES=1000):
        response = auth_client.post(import_url(project), {"file": upload("cut.otio", "x" * 200_000)},
                                    format="multipart")
        assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
        small = auth_client.post(import_url(project), {"file": upload("cut.otio", " " * 1500)}, format="multipart")
        assert small.status_code == 413
    assert edl_get(project=project)["version"] == version


def test_an_unknown_format_is_400(auth_client, project, edited):
    response = auth_client.get(export_url(project, "format=mov"))
    assert response.status_code == 400
    assert "format" in response.json()["error"]["details"]["fields"]


def test_another_users_project_is_404(client_for, make_user, project, edited):
    other = client_for(make_user())
    assert other.get(export_url(project, "format=otio")).status_code == 404
    response = other.post(import_url(project), {"file": upload("cut.otio", "{}")}, format="multipart")
    assert response.status_code == 404
    assert store.edl_collection().count_documents({"project_id": str(project.pk)}) == 1


def test_a_transcribed_segment_follows_its_clip_through_speed_and_a_new_place():
    from projects.edl.interchange.importing import transcript_onto

    old_tracks = [{"id": "a1", "type": "audio", "clips": [
        {"id": "a", "media_file_id": "m", "start_ms": 0, "duration_ms": 2000, "in_point_ms": 1000,
         "out_point_ms": 5000, "effects": [{"type": "speed", "rate": 2.0}], "deleted": False}]}]
    # Timeline times on the 2x clip: source = 1000 + 2 * t.
    words = [("alpha", 100, 300, False), ("beta", 500, 700, True), ("gamma", 1500, 1700, False)]
    transcript = {"segments": [{"id": "s", "clip_id": "a", "media_file_id": "m", "speaker": "A", "deleted": False,
                                "words": [{"word": w, "start_ms": a, "end_ms": b, "confidence": 0.9, "deleted": d}
                                          for w, a, b, d in words]}]}
    # The file placed the source 1000-3000 at 10 s, at normal speed; 3000-5000 is not played.
    new_tracks = [{"id": "a1", "type": "audio", "clips": [
        {"id": "p1", "media_file_id": "m", "start_ms": 10_000, "duration_ms": 2000, "in_point_ms": 1000,
         "out_point_ms": 3000, "effects": [], "deleted": False}]}]
    segments, kept, before = transcript_onto(transcript, old_tracks, new_tracks)

    assert (kept, before) == (1, 3)  # beta was deleted; gamma (source 4000) is not played any more
    [segment] = segments
    assert segment["clip_id"] == "p1" and segment["speaker"] == "A"
    [alpha] = segment["words"]
    assert (alpha["word"], alpha["start_ms"], alpha["end_ms"]) == ("alpha", 10_200, 10_600)


def test_an_export_at_29_97_is_drop_frame_unless_asked_not_to_and_both_come_back(auth_client, project, edited):
    doc = editable(edl_get(project=project))
    doc["settings"]["frame_rate"] = 29.97
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    answers = {}
    for query in ("", "&timecode=drop_frame", "&timecode=non_drop_frame"):
        response = auth_client.get(export_url(project, f"format=edl{query}"))
        assert response.status_code == 200, response.content
        answers[query] = response.json()
    default, non_drop = answers[""], answers["&timecode=non_drop_frame"]
    assert default == answers["&timecode=drop_frame"]
    assert (default["frame_rate"], default["drop_frame"], non_drop["drop_frame"]) == (29.97, True, False)
    events = [line for line in default["content"].splitlines() if re.match(r"^\d{3}\s", line)]
    assert "FCM: DROP FRAME" in default["content"] and all(";" in line for line in events)
    events = [line for line in non_drop["content"].splitlines() if re.match(r"^\d{3}\s", line)]
    assert "FCM: NON-DROP FRAME" in non_drop["content"] and not any(";" in line for line in events)
    # Read back, each lands where the other does.
    placed = []
    for answer in (default, non_drop):
        response = auth_client.post(import_url(project), {"file": upload("cut.edl", answer["content"])},
                                    format="multipart")
        assert response.status_code == 200 and response.json()["frame_rate"] == 29.97, response.content
        placed.append([(c["start_ms"], c["duration_ms"], c["in_point_ms"])
                       for t in edl_get(project=project)["tracks"] for c in t["clips"]])
    assert placed[0] == placed[1] and placed[0]


def test_a_rate_without_drop_frame_exports_non_drop_whatever_is_asked(auth_client, project, edited):
    response = auth_client.get(export_url(project, "format=edl&timecode=drop_frame"))
    assert response.status_code == 200
    assert response.json()["drop_frame"] is False and "FCM: NON-DROP FRAME" in response.json()["content"]
    bad = auth_client.get(export_url(project, "format=edl&timecode=sometimes"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"


def test_a_file_of_exactly_the_limit_is_read(auth_client, project, edited):
    """The limit is the file's: one of exactly that many bytes is read (its multipart body is larger)."""
    text = json.dumps({"OTIO_SCHEMA": "Timeline.1", "name": "t", "global_start_time": None, "metadata": {},
                       "tracks": {"OTIO_SCHEMA": "Stack.1", "name": "tracks", "children": [], "effects": [],
                                  "markers": [], "metadata": {}, "source_range": None, "enabled": True}})
    with override_settings(AUTEUR_INTERCHANGE_MAX_BYTES=1000):
        exact = auth_client.post(import_url(project), {"file": upload("cut.otio", text + " " * (1000 - len(text)))},
                                 format="multipart")
        over = auth_client.post(import_url(project), {"file": upload("cut.otio", text + " " * (1001 - len(text)))},
                                format="multipart")
    assert exact.status_code == 200, exact.content
    assert over.status_code == 413 and over.json()["error"]["code"] == "file_too_large"
