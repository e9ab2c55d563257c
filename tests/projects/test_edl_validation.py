"""Every EDL validation rule, each with the exact field path its error names; nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.edl import store
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.errors import EdlInvalid, EdlLimitExceeded, EdlTooLarge
from tests.projects.test_edl_support import (
    clip,
    segment,
    timeline_with,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


@pytest.fixture
def media(project, make_media):
    return make_media(project)


@pytest.fixture
def base(project, media):
    """A valid v1 timeline: two back-to-back clips on the video track and a two-segment transcript."""
    return timeline_with(edl_get(project=project), media, clips=2)


def everything_stored(project) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    key = {"project_id": str(project.pk)}
    return store.edl_collection().find_one(key), list(store.history_collection().find(key).sort("version", 1))


def errors_of(project, doc) -> list[dict[str, str]]:
    before = everything_stored(project)
    with pytest.raises(EdlInvalid) as exc:
        edl_replace(project=project, expected_version=edl_get(project=project)["version"], data=doc)
    assert exc.value.status_code == 422
    assert exc.value.code == "edl_invalid"
    assert everything_stored(project) == before  # nothing written: document, version and history
    return exc.value.details["errors"]


def paths_of(project, doc) -> list[str]:
    return [e["path"] for e in errors_of(project, doc)]


def c0(doc):
    return doc["tracks"][0]["clips"][0]


def c1(doc):
    return doc["tracks"][0]["clips"][1]


def s0(doc):
    return doc["transcript"]["segments"][0]


def w(doc, i=0):
    return s0(doc)["words"][i]


CASES = [
    # (name, edit, expected path, fragment of the message)
    ("unknown top-level field", lambda d: d.update(colour="red"), "colour", "Unknown field"),
    ("unknown clip field", lambda d: c0(d).update(speed=2), "tracks[0].clips[0].speed", "Unknown field"),
    ("unknown word field", lambda d: w(d).update(bold=True), "transcript.segments[0].words[0].bold", "Unknown"),
    ("missing settings", lambda d: d.pop("settings"), "settings", "required"),
    ("missing media id", lambda d: c0(d).pop("media_file_id"), "tracks[0].clips[0].media_file_id", "required"),
    ("string for int", lambda d: c0(d).update(start_ms="5"), "tracks[0].clips[0].start_ms", "integer"),
    ("float for int", lambda d: c0(d).update(start_ms=0.5), "tracks[0].clips[0].start_ms", "integer"),
    ("bool for int", lambda d: c0(d).update(in_point_ms=False), "tracks[0].clips[0].in_point_ms", "integer"),
    ("null for int", lambda d: c0(d).update(start_ms=None), "tracks[0].clips[0].start_ms", "null"),
    ("negative start", lambda d: c0(d).update(start_ms=-1), "tracks[0].clips[0].start_ms", "at least 0"),
    ("negative in point", lambda d: c0(d).update(in_point_ms=-5, duration_ms=1005),
     "tracks[0].clips[0].in_point_ms", "at least 0"),
    ("out not after in", lambda d: c0(d).update(in_point_ms=500, out_point_ms=500, duration_ms=0),
     "tracks[0].clips[0].out_point_ms", "greater than in_point_ms (500)"),
    ("inconsistent duration", lambda d: c0(d).update(duration_ms=999), "tracks[0].clips[0].duration_ms",
     "out_point_ms - in_point_ms (1000)"),
    ("overlap", lambda d: c1(d).update(start_ms=500), "tracks[0].clips[1].start_ms", "Overlaps clip 'c0'"),
    ("track id mismatch", lambda d: c0(d).update(track_id="elsewhere"), "tracks[0].clips[0].track_id", "its track"),
    ("bad track type", lambda d: d["tracks"][0].update(type="subtitle"), "tracks[0].type", "one of: video, audio"),
    ("clips not a list", lambda d: d["tracks"][1].update(clips={}), "tracks[1].clips", "list"),
    ("duplicate clip id", lambda d: c1(d).update(id="c0"), "tracks[0].clips[1].id", "Duplicate id 'c0'"),
    ("duplicate track id", lambda d: d["tracks"][1].update(id=d["tracks"][0]["id"]), "tracks[1].id", "Duplicate"),
    ("duplicate segment id", lambda d: d["transcript"]["segments"][1].update(id="s0"),
     "transcript.segments[1].id", "Duplicate"),
    ("empty id", lambda d: c0(d).update(id=""), "tracks[0].clips[0].id", "empty"),
    ("media id not a uuid", lambda d: c0(d).update(media_file_id="abc"), "tracks[0].clips[0].media_file_id", "UUID"),
    ("unknown media", lambda d: c0(d).update(media_file_id="00000000-0000-4000-8000-000000000000"),
     "tracks[0].clips[0].media_file_id", "No media file"),
    ("past media end", lambda d: c1(d).update(in_point_ms=9500, out_point_ms=10_500), "tracks[0].clips[1].out_point_ms",
     "Past the end of the media file (10000 ms)"),
    ("effects not objects", lambda d: c0(d).update(effects=["blur"]), "tracks[0].clips[0].effects[0]", "object"),
    ("effect with operator key", lambda d: c0(d).update(effects=[{"$where": "1"}]), "tracks[0].clips[0].effects[0]",
     "'$'"),
    ("effect too big", lambda d: c0(d).update(effects=[{"lut": "x" * 5000}]), "tracks[0].clips[0].effects[0]", "bytes"),
    ("too many effects", lambda d: c0(d).update(effects=[{}] * 33), "tracks[0].clips[0].effects", "at most 32"),
    ("deleted not bool", lambda d: c0(d).update(deleted="no"), "tracks[0].clips[0].deleted", "true or false"),
    ("resolution too small", lambda d: d["settings"]["resolution"].update(width=8), "settings.resolution.width",
     "at least 16"),
    ("frame rate string", lambda d: d["settings"].update(frame_rate="30"), "settings.frame_rate", "number"),
    ("segment ends before start", lambda d: s0(d).update(start_ms=900, end_ms=100), "transcript.segments[0].end_ms",
     "at least start_ms (900)"),
    ("word ends before start", lambda d: w(d).update(start_ms=400, end_ms=300),
     "transcript.segments[0].words[0].end_ms", "at least start_ms"),
    ("word after segment", lambda d: w(d, 1).update(end_ms=1500), "transcript.segments[0].words[1].end_ms",
     "within the segment (0-1000 ms)"),
    ("word before segment", lambda d: d["transcript"]["segments"][1]["words"][0].update(start_ms=10),
     "transcript.segments[1].words[0].start_ms", "within the segment"),
    ("confidence above 1", lambda d: w(d).update(confidence=1.5), "transcript.segments[0].words[0].confidence",
     "at most 1"),
    ("confidence negative", lambda d: w(d).update(confidence=-0.1), "transcript.segments[0].words[0].confidence",
     "at least 0"),
    ("naive generated_at", lambda d: d["transcript"].update(generated_at="2026-01-31T12:00:00"),
     "transcript.generated_at", "time zone"),
    ("garbage generated_at", lambda d: d["transcript"].update(generated_at="yesterday"), "transcript.generated_at",
     "ISO 8601"),
    ("pause ends before start", lambda d: d["transcript"].update(pauses=[{"start_ms": 500, "end_ms": 500}]),
     "transcript.pauses[0].end_ms", "greater than start_ms (500)"),
    ("word deleted not bool", lambda d: w(d).update(deleted=1), "transcript.segments[0].words[0].deleted",
     "true or false"),
    ("segment media id not a uuid", lambda d: s0(d).update(media_file_id="x"),
     "transcript.segments[0].media_file_id", "UUID"),
    ("speaker not a string", lambda d: s0(d).update(speaker=3), "transcript.segments[0].speaker", "string"),
    ("tracks not a list", lambda d: d.update(tracks={"0": {}}), "tracks", "list"),
    ("settings not an object", lambda d: d.update(settings=[]), "settings", "object"),
]


@pytest.mark.parametrize(("name", "edit", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_its_field_path(project, base, name, edit, path, message):
    edit(base)
    errors = errors_of(project, base)
    assert [e["path"] for e in errors] == [path], errors
    assert message in errors[0]["message"], errors


def test_every_problem_is_listed_at_once(project, base):
    c0(base).update(start_ms=-1, speed=3)
    c1(base).update(duration_ms=1)
    w(base).update(confidence=7)
    assert sorted(paths_of(project, base)) == sorted([
        "tracks[0].clips[0].start_ms",
        "tracks[0].clips[0].speed",
        "tracks[0].clips[1].duration_ms",
        "transcript.segments[0].words[0].confidence",
    ])


def test_deleted_clips_may_overlap_and_touching_clips_do_not_overlap(project, base):
    c1(base).update(start_ms=1000)  # touches c0's end: fine
    base["tracks"][0]["clips"].append(clip(c0(base)["media_file_id"], base["tracks"][0], start=200, id="ghost",
                                           deleted=True))
    saved = edl_replace(project=project, expected_version=1, data=base)
    assert saved["version"] == 2


def test_overlap_is_per_track(project, base, make_media):
    audio_media = make_media(project, type="audio", mime_type="audio/wav")
    audio = base["tracks"][1]
    audio["clips"] = [clip(audio_media, audio, start=0, id="a0")]  # same time as c0, other track
    assert edl_replace(project=project, expected_version=1, data=base)["version"] == 2


def test_overlap_is_found_behind_a_long_clip(project, base):
    c0(base).update(out_point_ms=5000, duration_ms=5000)  # 0-5000 covers c1 at 1000-2000 ...
    base["tracks"][0]["clips"].append(clip(c0(base)["media_file_id"], base["tracks"][0], start=3000, id="c2"))
    assert sorted(paths_of(project, base)) == ["tracks[0].clips[1].start_ms", "tracks[0].clips[2].start_ms"]


@pytest.mark.parametrize(
    ("track", "media_type", "ok"),
    [
        ("video", "video", True), ("video", "image", True), ("video", "audio", False),
        ("audio", "audio", True), ("audio", "video", True), ("audio", "image", False),
    ],
)
def test_track_types_take_compatible_media(project, base, make_media, track, media_type, ok):
    media = make_media(project, type=media_type, mime_type=f"{media_type}/x",
                       duration_ms=None if media_type == "image" else 10_000)
    index = 0 if track == "video" else 1
    target = base["tracks"][index]
    target["clips"] = [clip(media, target, start=0, id="x")]
    if ok:
        assert edl_replace(project=project, expected_version=1, data=base)["version"] == 2
    else:
        errors = errors_of(project, base)
        assert [e["path"] for e in errors] == [f"tracks[{index}].clips[0].media_file_id"]
        assert f"not {media_type}" in errors[0]["message"]


def test_an_image_has_no_end(project, base, make_media):
    image = make_media(project, type="image", mime_type="image/png", duration_ms=None)
    c0(base).update(media_file_id=str(image.pk), out_point_ms=60_000, duration_ms=60_000)
    c1(base).update(start_ms=60_000)
    assert edl_replace(project=project, expected_version=1, data=base)["settings"]["duration_ms"] == 61_000


@pytest.mark.parametrize("status", ["uploading", "processing", "rejected"])
def test_media_that_is_not_ready_is_refused(project, base, make_media, status):
    pending = make_media(project, status=status)
    c0(base)["media_file_id"] = str(pending.pk)
    errors = errors_of(project, base)
    assert errors == [{"path": "tracks[0].clips[0].media_file_id",
                       "message": f"The media file is not ready (status: {status})."}]


def test_media_of_another_project_is_refused_like_a_missing_one(project, base, make_media, make_project, make_user):
    other_project = make_project(make_user())
    foreign = make_media(other_project)
    c0(base)["media_file_id"] = str(foreign.pk)
    errors = errors_of(project, base)
    assert errors == [{"path": "tracks[0].clips[0].media_file_id",
                       "message": "No media file with this id in this project."}]


def test_media_ids_are_stored_in_canonical_form(project, base, media):
    c0(base)["media_file_id"] = str(media.pk).upper()
    saved = edl_replace(project=project, expected_version=1, data=base)
    assert c0(saved)["media_file_id"] == str(media.pk)


def test_media_is_looked_up_in_one_query(project, base, make_media):
    medias = [make_media(project) for _ in range(5)]
    video = base["tracks"][0]
    video["clips"] = [clip(m, video, start=i * 1000, id=f"m{i}") for i, m in enumerate(medias)]
    with CaptureQueriesContext(connection) as queries:
        edl_replace(project=project, expected_version=1, data=base)
    # Besides the save's transaction (a savepoint inside the test's own): one query, locking the rows.
    sent = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(sent) == 1 and "media_files" in sent[0] and sent[0].endswith("FOR SHARE")


@pytest.mark.parametrize(
    ("setting", "edit", "limit", "at_limit"),
    [
        ("AUTEUR_EDL_MAX_TRACKS", lambda d: d["tracks"].append({"id": "t3", "type": "audio", "name": "", "clips": []}),
         "tracks", 2),
        ("AUTEUR_EDL_MAX_CLIPS", lambda d: d["tracks"][0]["clips"].append(
            clip(c0(d)["media_file_id"], d["tracks"][0], start=5000, id="c9")), "clips", 2),
        ("AUTEUR_EDL_MAX_SEGMENTS", lambda d: d["transcript"]["segments"].append(segment(3000, 4000, id="s9")),
         "segments", 2),
        ("AUTEUR_EDL_MAX_WORDS", lambda d: d["transcript"]["segments"][0]["words"].append(
            {"word": "more", "start_ms": 0, "end_ms": 10, "confidence": 1.0}), "words", 4),  # 2 segments x 2
        ("AUTEUR_EDL_MAX_PAUSES", lambda d: d["transcript"].setdefault("pauses", []).append(
            {"start_ms": 0, "end_ms": 10}), "pauses", 0),
    ],
)
def test_limits_are_422_naming_the_limit_its_max_and_the_count(project, base, settings, setting, edit, limit, at_limit):
    setattr(settings, setting, at_limit)
    saved = edl_replace(project=project, expected_version=1, data=base)  # exactly at the limit: fine
    edit(base)
    with pytest.raises(EdlLimitExceeded) as exc:
        edl_replace(project=project, expected_version=saved["version"], data=base)
    assert exc.value.status_code == 422 and exc.value.code == "edl_limit_exceeded"
    assert exc.value.details["limit"] == limit
    assert exc.value.details["max"] == at_limit and exc.value.details["count"] == at_limit + 1
    assert f"at most {at_limit}" in exc.value.message
    assert edl_get(project=project)["version"] == saved["version"]  # nothing written


def test_limits_are_counted_before_the_fields_are_checked(project, base, settings):
    settings.AUTEUR_EDL_MAX_PAUSES = 1
    base["transcript"]["pauses"] = [{"start_ms": "bad"}] * 2  # invalid too: the count comes first
    with pytest.raises(EdlLimitExceeded) as exc:
        edl_replace(project=project, expected_version=1, data=base)
    assert exc.value.details == {"limit": "pauses", "max": 1, "count": 2, "path": "transcript.pauses"}


def test_a_document_over_the_size_limit_is_refused_before_validation(project, base):
    base["transcript"]["segments"][0]["text"] = "x" * (3 * 1024 * 1024)
    with pytest.raises(EdlTooLarge) as exc:
        edl_replace(project=project, expected_version=1, data=base)
    assert exc.value.status_code == 413
    assert exc.value.details["max_bytes"] == 2 * 1024 * 1024
    assert edl_get(project=project)["version"] == 1


def test_error_list_is_capped(project, base):
    video = base["tracks"][0]
    video["clips"] = [{"id": f"bad{i}", "nonsense": i} for i in range(300)]
    with pytest.raises(EdlInvalid) as exc:
        edl_replace(project=project, expected_version=1, data=base)
    assert len(exc.value.details["errors"]) == 200
    assert exc.value.details["truncated"] is True


def test_server_fields_sent_back_are_ignored(project, base):
    base.update(project_id="someone-else", user_id="x", created_at="never", history={"undo": 99})
    saved = edl_replace(project=project, expected_version=1, data=base)
    assert saved["project_id"] == str(project.pk)
    assert saved["user_id"] == str(project.user_id)
    assert saved["history"] == {"undo": 1, "redo": 0}


def test_a_lone_surrogate_from_a_server_side_caller_is_422_not_a_crash(project, base):
    # A client's JSON cannot carry one (the API's reader refuses it); an import's reader might.
    base["tracks"][0]["name"] = "\ud800 half"
    assert errors_of(project, base) == [{"path": "$", "message": "Holds a lone UTF-16 surrogate."}]


def test_a_media_id_followed_by_a_newline_is_refused_not_a_crash(project, base):
    c0(base)["media_file_id"] += "\n"
    assert errors_of(project, base) == [{"path": "tracks[0].clips[0].media_file_id", "message": "Must be a UUID."}]
