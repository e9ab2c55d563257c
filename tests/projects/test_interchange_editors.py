"""Timelines as working editors send them, imported through the API: lists that name clips by reel
or clip name, Final Cut Pro's own exports (FCPXML 1.10, media in `media-rep`), compound clips and
nested sequences in every format that has them, titles and generators, and NTSC rates.

Each file here is written from what real exports hold (the OpenTimelineIO projects' test files and
their editors' exports): times, names and structure as the editors write them, media named by the
project's own files. What a file holds that the timeline cannot is listed in `dropped`; nothing
vanishes without a line there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from credits.models import CreditAccount
from projects.edl.selectors import edl_get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

SAMPLES = Path(__file__).parent / "interchange_samples"


def post(client: Any, project: Any, name: str, content: str | bytes, **fields: Any) -> Any:
    data = content.encode() if isinstance(content, str) else content
    return client.post(f"/api/v1/projects/{project.pk}/timeline/import",
                       {"file": SimpleUploadedFile(name, data), **fields}, format="multipart")


def placed(project: Any) -> list[tuple[str, str, int, int, int]]:
    """(track type, media name, start, end, in) of every clip of the timeline, in time order."""
    doc = edl_get(project=project)
    from media.models import MediaFile
    names = {str(m.pk): m.name for m in MediaFile.objects.filter(project=project)}
    return sorted(((t["type"], names[c["media_file_id"]], c["start_ms"], c["start_ms"] + c["duration_ms"],
                    c["in_point_ms"]) for t in doc["tracks"] for c in t["clips"]), key=lambda c: (c[0], c[2], c[1]))


def dropped(response: Any) -> dict[str, int]:
    return {d["feature"]: d["count"] for d in response.json()["dropped"]}


# ----------------------------------------------------------------------------- names

ONLINE_EDL = """TITLE: Online Session
FCM: DROP FRAME

001  A001C003 V     C        00:00:10;00 00:00:12;00 01:00:00;00 01:00:02;00
* FROM CLIP NAME: A001C003_220101_R1AB.mov
002  SHOT1    V     C        00:00:05;00 00:00:07;15 01:00:02;00 01:00:04;15
* FROM CLIP NAME:  shot1
003  BL       V     C        00:00:00;00 00:00:01;00 01:00:04;15 01:00:05;15
004  CLIP_B   V     C        00:00:01;00 00:00:03;00 01:00:05;15 01:00:07;15
"""


def test_an_online_list_naming_clips_by_reel_and_clip_name_imports_at_29_97_drop_frame(auth_client, project,
                                                                                      make_media):
    """Clips named by reel (`A001C003`, `CLIP_B`) and by clip name without extension (`shot1`),
    black between them, times in drop-frame timecode from 01:00:00;00: the files are matched by
    name without extension, the black is a gap (reported), the list starts at its hour."""
    for name in ("A001C003.mov", "shot1.mp4", "clip_B.mov"):
        make_media(project, name=name, duration_ms=60_000)
    response = post(auth_client, project, "online.edl", ONLINE_EDL, frame_rate="29.97")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["frame_rate"] == 29.97 and body["clips"] == 3
    assert dropped(response) == {"generator": 1}
    assert edl_get(project=project)["settings"]["frame_rate"] == 29.97
    frame = 1001 / 30
    assert [(n, round(a / frame), round(b / frame), round(i / frame)) for _, n, a, b, i in placed(project)] == [
        ("A001C003.mov", 0, 60, 300), ("shot1.mp4", 60, 135, 150), ("clip_B.mov", 165, 225, 30)]


LEADER_EDL = """TITLE: Program with a leader
FCM: NON-DROP FRAME

001  LEADER   V     C        00:00:00:00 00:00:06:15 00:59:53:10 01:00:00:00
* FROM CLIP NAME: leader.mov
002  SHOT1    V     C        00:00:05:00 00:00:07:00 01:00:00:00 01:00:02:00
* FROM CLIP NAME: shot1.mp4
"""


def test_a_list_whose_first_event_is_a_leader_just_before_the_hour_starts_at_that_event(auth_client, project,
                                                                                      make_media):
    """A program at 01:00:00:00 after a leader from 00:59:53:10 (within a minute before the hour):
    the timeline starts with the leader, not after an hour of nothing from 00:00:00:00."""
    make_media(project, name="leader.mov", duration_ms=120_000)
    make_media(project, name="shot1.mp4", duration_ms=60_000)
    response = post(auth_client, project, "leader.edl", LEADER_EDL, frame_rate="25")
    assert response.status_code == 200, response.content
    assert placed(project) == [("video", "leader.mov", 0, 6600, 0), ("video", "shot1.mp4", 6600, 8600, 5000)]
    # A first event more than a minute before the hour is no leader: the list starts at its hour.
    early = LEADER_EDL.replace("00:59:53:10", "00:58:59:24").replace("00:00:06:15", "00:01:00:01")
    response = post(auth_client, project, "early.edl", early, frame_rate="25")
    assert response.status_code == 200, response.content
    assert placed(project) == [("video", "leader.mov", 3_539_960, 3_600_000, 0),
                               ("video", "shot1.mp4", 3_600_000, 3_602_000, 5000)]


@pytest.mark.parametrize(("first", "rate", "start"), [
    ("00:59:53:10", 25, "00:59:53:10"),  # a leader: its first event
    ("00:59:00:00", 25, "00:59:00:00"),  # a minute before the hour, no more
    ("00:58:59:24", 25, "00:00:00:00"),  # a frame more than a minute: its hour
    ("01:00:00:00", 25, "01:00:00:00"),
    ("01:00:10:00", 24, "01:00:00:00"),
    ("00:00:05:00", 24, "00:00:00:00"),
    ("00:59:53;10", 29.97, "00:59:53;10"),  # drop-frame
    ("09:59:30:00", 30, "09:59:30:00"),  # any hour's
])
def test_where_a_cmx_list_starts(first, rate, start):
    from projects.edl.frame_rates import cmx_record_start, frames_of

    event = f"001  AX       V     C        00:00:00:00 00:00:01:00 {first} {first}\n"
    found = cmx_record_start(f"TITLE: t\n{event}", rate)
    assert found is not None and found.value == frames_of(start, rate)


def test_a_list_that_declares_drop_frame_and_writes_colons_is_read_drop_frame(auth_client, project, make_media):
    for name in ("A001C003.mov", "shot1.mp4", "clip_B.mov"):
        make_media(project, name=name, duration_ms=900_000)
    assert post(auth_client, project, "online.edl", ONLINE_EDL, frame_rate="29.97").status_code == 200
    semicolons = placed(project)
    colons = ONLINE_EDL.replace(";", ":")
    assert post(auth_client, project, "online.edl", colons, frame_rate="29.97").status_code == 200
    assert placed(project) == semicolons
    # Without the declaration, the same colons are non-drop times: 10 minutes in, 18 frames apart.
    late = "001  SHOT1    V     C        00:10:00:00 00:10:02:00 00:10:00:00 00:10:02:00\n"
    declared = "TITLE: x\nFCM: DROP FRAME\n" + late
    assert post(auth_client, project, "late.edl", declared, frame_rate="29.97").status_code == 200
    dropped_in = placed(project)[0][4]
    assert post(auth_client, project, "late.edl", "TITLE: x\n" + late, frame_rate="29.97").status_code == 200
    assert placed(project)[0][4] - dropped_in == round(18 * 1001 / 30)


def test_a_name_two_files_answer_is_the_one_its_track_plays_or_listed_with_both(auth_client, project, make_media):
    video = make_media(project, name="take.mov", duration_ms=60_000)
    make_media(project, name="take.wav", type="audio", mime_type="audio/wav", duration_ms=60_000)
    edl = "TITLE: t\n001  TAKE     V     C        00:00:01:00 00:00:02:00 00:00:00:00 00:00:01:00\n"
    response = post(auth_client, project, "t.edl", edl)
    assert response.status_code == 200, response.content
    assert response.json()["matched"] == [{"media_file_id": str(video.pk), "name": "take.mov", "clips": 1}]

    other = make_media(project, name="take.mp4", duration_ms=60_000)
    version = edl_get(project=project)["version"]
    refused = post(auth_client, project, "t.edl", edl)
    assert refused.status_code == 422, refused.content
    error = refused.json()["error"]
    assert error["code"] == "media_unmatched"
    assert error["details"]["unmatched"][0]["name"] == "TAKE"
    assert {c["name"] for c in error["details"]["unmatched"][0]["candidates"]} == {"take.mov", "take.mp4",
                                                                                  "take.wav"}
    assert edl_get(project=project)["version"] == version
    # The request names the file: imported.
    chosen = post(auth_client, project, "t.edl", edl, media=json.dumps({"take": str(other.pk)}))
    assert chosen.status_code == 200, chosen.content
    assert chosen.json()["matched"][0]["media_file_id"] == str(other.pk)


def test_an_unmatched_name_is_listed_with_the_files_most_like_it(auth_client, project, make_media):
    make_media(project, name="interview_take2.mov", duration_ms=60_000)
    make_media(project, name="music.wav", type="audio", mime_type="audio/wav", duration_ms=60_000)
    edl = ("TITLE: t\n001  AX       V     C        00:00:01:00 00:00:02:00 00:00:00:00 00:00:01:00\n"
           "* FROM CLIP NAME: interview_take1.mov\n")
    response = post(auth_client, project, "t.edl", edl)
    assert response.status_code == 422
    unmatched = response.json()["error"]["details"]["unmatched"]
    assert unmatched == [{"name": "interview_take1.mov", "clips": 1, "candidates": [
        {"media_file_id": unmatched[0]["candidates"][0]["media_file_id"], "name": "interview_take2.mov"}]}]
    assert "`media`" in response.json()["error"]["message"]


def test_a_media_list_naming_a_file_that_is_not_the_projects_is_refused_and_nothing_saved(
    auth_client, project, make_media, make_user, user
):
    from projects.models import Project
    make_media(project, name="take.mov", duration_ms=60_000)
    stranger = make_user()
    theirs = make_media(Project.objects.create(user=stranger, name="theirs"), name="take.mov", duration_ms=60_000)
    version = edl_get(project=project)["version"]
    balance = list(CreditAccount.objects.filter(user=user).values_list("balance", flat=True))
    edl = "TITLE: t\n001  TAKE     V     C        00:00:01:00 00:00:02:00 00:00:00:00 00:00:01:00\n"
    for media in ({"take": str(theirs.pk)}, {"take": "not an id"}, ["take"]):
        response = post(auth_client, project, "t.edl", edl, media=json.dumps(media))
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "validation_error"
        assert "media" in response.json()["error"]["details"]["fields"]
    assert edl_get(project=project)["version"] == version
    assert list(CreditAccount.objects.filter(user=user).values_list("balance", flat=True)) == balance


# ----------------------------------------------------------------------------- Final Cut Pro

FCPXML_1_10 = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE fcpxml>
<fcpxml version="1.10">
  <resources>
    <format id="r1" name="FFVideoFormat1080p2997" frameDuration="1001/30000s" width="1920" height="1080"
        colorSpace="1-1-1 (Rec. 709)"/>
    <asset id="r2" name="Interview Take" uid="2B1F7A0C3D6E4F51A2B3C4D5E6F70819" start="0s" duration="30030/1000s"
        hasVideo="1" format="r1" hasAudio="1" videoSources="1" audioSources="1" audioChannels="2" audioRate="48000">
      <media-rep kind="original-media" sig="2B1F7A0C3D6E4F51A2B3C4D5E6F70819"
          src="file:///Users/editor/Movies/Shoot/2997%20fps.mp4"/>
    </asset>
    <asset id="r3" name="B-Roll" uid="9C8B7A6F5E4D3C2B1A09F8E7D6C5B4A3" start="0s" duration="30030/1000s"
        hasVideo="1" format="r1" videoSources="1">
      <media-rep kind="original-media" src="file:///Users/editor/Movies/Shoot/broll.mov"/>
    </asset>
    <effect id="r4" name="Basic Title"
        uid=".../Titles.localized/Bumper:Opener.localized/Basic Title.localized/Basic Title.moti"/>
    <effect id="r5" name="Solids" uid=".../Generators.localized/Solids.localized/Solids.localized/Solids.motn"/>
    <media id="r6" name="Compound Clip" uid="0F1E2D3C4B5A69788796A5B4C3D2E1F0">
      <sequence format="r1" duration="5005/1000s" tcStart="0s" tcFormat="NDF" audioLayout="stereo" audioRate="48k">
        <spine>
          <asset-clip ref="r3" offset="0s" name="B-Roll" start="0s" duration="3003/1000s" format="r1"
              tcFormat="NDF"/>
          <asset-clip ref="r2" offset="3003/1000s" name="Interview Take" start="10010/1000s" duration="2002/1000s"
              format="r1" tcFormat="NDF"/>
        </spine>
      </sequence>
    </media>
  </resources>
  <library location="file:///Users/editor/Movies/Untitled.fcpbundle/">
    <event name="11-26-26" uid="5E7C1D2A-3B4C-4D5E-8F9A-0B1C2D3E4F50">
      <project name="Rough Cut" uid="6A7B8C9D-0E1F-4A2B-9C3D-4E5F6A7B8C9D" modDate="2026-11-26 10:00:00 +0000">
        <sequence format="r1" duration="10010/1000s" tcStart="0s" tcFormat="DF" audioLayout="stereo"
            audioRate="48k">
          <spine>
            <asset-clip ref="r2" offset="0s" name="Interview Take" start="1001/1000s" duration="2002/1000s"
                format="r1" tcFormat="NDF"/>
            <title ref="r4" offset="2002/1000s" name="Basic Title" start="3600s" duration="1001/1000s">
              <text><text-style ref="ts1">Title</text-style></text>
              <text-style-def id="ts1"><text-style font="Helvetica" fontSize="63" fontColor="1 1 1 1"/></text-style-def>
            </title>
            <video ref="r5" offset="3003/1000s" name="Solids" start="3600s" duration="1001/1000s"/>
            <ref-clip ref="r6" offset="4004/1000s" name="Compound Clip" start="1001/1000s" duration="3003/1000s"/>
            <gap name="Gap" offset="7007/1000s" start="3600s" duration="1001/1000s"/>
            <asset-clip ref="r3" offset="8008/1000s" name="B-Roll" start="5005/1000s" duration="2002/1000s"
                format="r1" tcFormat="NDF"/>
          </spine>
        </sequence>
      </project>
    </event>
  </library>
</fcpxml>
"""


def test_a_final_cut_pro_export_matches_its_media_rep_files_flattens_its_compound_and_reports_the_rest(
    auth_client, project, make_media
):
    """FCPXML 1.10 as Final Cut Pro 10.6 writes it: each asset's file in `media-rep` (its display
    name another), 29.97 fps, a title and a generator (no media: gaps, reported), a compound clip
    trimmed at both ends (its clips placed where it shows them), a gap."""
    make_media(project, name="2997 fps.mp4", duration_ms=30_030)
    make_media(project, name="broll.mov", duration_ms=30_030)
    response = post(auth_client, project, "Rough Cut.fcpxml", FCPXML_1_10)
    assert response.status_code == 200, response.content
    assert response.json()["frame_rate"] == 29.97
    assert dropped(response) == {"title": 1, "generator": 1, "compound_clips": 1}
    assert placed(project) == [
        ("video", "2997 fps.mp4", 0, 2002, 1001),
        ("video", "broll.mov", 4004, 6006, 1001),  # the compound shows its first clip from 1.001 s on
        ("video", "2997 fps.mp4", 6006, 7007, 10010),  # ... and its second up to the compound's end
        ("video", "broll.mov", 8008, 10010, 5005),
    ]


# ----------------------------------------------------------------------------- nested sequences

FCP7_NESTED = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE xmeml>
<xmeml version="5">
  <sequence id="main">
    <name>Main</name>
    <duration>125</duration>
    <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
    <media>
      <video>
        <track>
          <clipitem id="c1">
            <name>shot1</name>
            <duration>250</duration>
            <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
            <start>0</start><end>50</end><in>25</in><out>75</out>
            <file id="f1">
              <name>shot1.mov</name>
              <pathurl>file://localhost/Volumes/Media/shot1.mov</pathurl>
              <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
              <duration>250</duration>
              <media><video/></media>
            </file>
          </clipitem>
          <clipitem id="nest">
            <name>Nested</name>
            <duration>100</duration>
            <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
            <start>50</start><end>125</end><in>25</in><out>100</out>
            <sequence id="inner">
              <name>Inner</name>
              <duration>100</duration>
              <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
              <media>
                <video>
                  <track>
                    <clipitem id="i1">
                      <name>shot2</name>
                      <duration>250</duration>
                      <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
                      <start>0</start><end>50</end><in>0</in><out>50</out>
                      <file id="f2">
                        <name>shot2.mov</name>
                        <pathurl>file://localhost/Volumes/Media/shot2.mov</pathurl>
                        <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
                        <duration>250</duration>
                        <media><video/></media>
                      </file>
                    </clipitem>
                    <clipitem id="i2">
                      <name>shot1</name>
                      <duration>250</duration>
                      <rate><timebase>25</timebase><ntsc>FALSE</ntsc></rate>
                      <start>50</start><end>100</end><in>100</in><out>150</out>
                      <file id="f1"/>
                    </clipitem>
                  </track>
                </video>
              </media>
            </sequence>
          </clipitem>
        </track>
      </video>
    </media>
  </sequence>
</xmeml>
"""


def test_a_premiere_nested_sequence_is_flattened_where_it_plays(auth_client, project, make_media):
    """A nested sequence used as a clip, trimmed at its head: its clips play at the nest's place,
    cut to what it shows; none is dropped without a line in `dropped`."""
    make_media(project, name="shot1.mov", duration_ms=10_000)
    make_media(project, name="shot2.mov", duration_ms=10_000)
    response = post(auth_client, project, "main.xml", FCP7_NESTED)
    assert response.status_code == 200, response.content
    assert response.json()["frame_rate"] == 25.0
    assert dropped(response) == {"compound_clips": 1}
    assert placed(project) == [("video", "shot1.mov", 0, 2000, 1000), ("video", "shot2.mov", 2000, 3000, 1000),
                               ("video", "shot1.mov", 3000, 5000, 4000)]


def nested_otio() -> str:
    rt, tr = otio.opentime.RationalTime, otio.opentime.TimeRange

    def clip(name: str, start: float, length: float) -> otio.schema.Clip:
        return otio.schema.Clip(name=name, media_reference=otio.schema.ExternalReference(target_url=f"media/{name}"),
                                source_range=tr(rt(start * 24, 24), rt(length * 24, 24)))

    inner_video = otio.schema.Track(name="inner V1", children=[clip("b.mov", 0, 2), clip("c.mov", 5, 2)])
    inner_over = otio.schema.Track(name="inner V2", children=[clip("d.mov", 0, 3)])
    inner_sound = otio.schema.Track(name="inner A1", kind=otio.schema.TrackKind.Audio,
                                    children=[clip("e.wav", 0, 4)])
    compound = otio.schema.Stack(name="Compound", children=[inner_video, inner_over, inner_sound],
                                 source_range=tr(rt(24, 24), rt(3 * 24, 24)))
    video = otio.schema.Track(name="V1", children=[clip("a.mov", 0, 2), compound, clip("a.mov", 9, 1)])
    return str(otio.adapters.write_to_string(otio.schema.Timeline(name="t", tracks=[video]),
                                             adapter_name="otio_json"))


def test_an_otio_compound_of_several_tracks_lands_on_its_track_and_tracks_added_for_the_rest(
    auth_client, project, make_media
):
    for name in ("a.mov", "b.mov", "c.mov", "d.mov"):
        make_media(project, name=name, duration_ms=20_000)
    make_media(project, name="e.wav", type="audio", mime_type="audio/wav", duration_ms=20_000)
    response = post(auth_client, project, "t.otio", nested_otio())
    assert response.status_code == 200, response.content
    assert response.json()["tracks"] == 3  # V1, the compound's second video lane, its audio
    assert placed(project) == [
        ("audio", "e.wav", 2000, 5000, 1000),  # the compound's sound, from 1 s into it
        ("video", "a.mov", 0, 2000, 0),
        ("video", "b.mov", 2000, 3000, 1000),  # the compound shows its inner time 1-4 s at 2-5 s
        ("video", "d.mov", 2000, 4000, 1000),  # its second lane, on a track of its own
        ("video", "c.mov", 3000, 5000, 5000),
        ("video", "a.mov", 5000, 6000, 9000),
    ]
    names = [t["name"] for t in edl_get(project=project)["tracks"]]
    assert names[0] == "V1" and all("Compound" in n for n in names[1:])


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize(("sample", "fmt", "generators"), [
    ("otio-fcp-adapter/premiere_generators.xml", "fcp7xml", 8),
    ("OpenTimelineIO/generator_reference_test.otio", "otio", 1),
])
def test_an_editors_file_of_titles_and_generators_imports_with_them_as_gaps(auth_client, project, sample, fmt,
                                                                           generators):
    """Premiere's counting leader, bars and tone, black and colour mattes and a graphic; OTIO's
    generator reference: none has a media file, and the file imports, each reported."""
    path = SAMPLES / sample
    response = post(auth_client, project, path.name, path.read_bytes())
    assert response.status_code == 200, response.content
    assert dropped(response).get("generator") == generators


def test_a_list_whose_source_times_are_a_cameras_timecode_is_refused_naming_the_clip(auth_client, project,
                                                                                    make_media):
    """Source times count from each file's start; a camera's own (01:00:00:00 on) put the in point an
    hour past the end of a minute's file: refused, naming the clip, never moved to fit."""
    make_media(project, name="shot1.mov", duration_ms=60_000)
    version = edl_get(project=project)["version"]
    edl = "TITLE: t\n001  SHOT1    V     C        01:00:10:00 01:00:12:00 01:00:00:00 01:00:02:00\n"
    response = post(auth_client, project, "t.edl", edl)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "edl_invalid"
    assert error["details"]["errors"][0]["message"] == "Past the end of the media file (60000 ms)."
    assert edl_get(project=project)["version"] == version


@pytest.mark.parametrize("rate", ["0", "241", "-29.97", "abc", "nan"])
def test_a_frame_rate_no_timeline_has_is_a_400_and_nothing_is_saved(auth_client, project, make_media, rate):
    make_media(project, name="shot1.mov", duration_ms=60_000)
    version = edl_get(project=project)["version"]
    edl = "TITLE: t\n001  SHOT1    V     C        00:00:01:00 00:00:02:00 00:00:00:00 00:00:01:00\n"
    response = post(auth_client, project, "t.edl", edl, frame_rate=rate)
    assert response.status_code == 400, response.content
    assert "frame_rate" in response.json()["error"]["details"]["fields"]
    assert edl_get(project=project)["version"] == version
