"""A file's transcription into the EDL transcript: the mapping onto clips, carried edits, the write."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from projects.edl import services
from projects.edl.history import edl_undo
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.edl.transcripts import (
    carry_edits,
    edl_transcript_write,
    map_transcript,
    merge_transcript,
    segment_id,
)
from projects.errors import EdlConflict
from tests.projects.test_edl_support import clip, editable, segment

pytestmark = pytest.mark.usefixtures("clean_edl_store")

FILE = str(uuid.uuid4())
OTHER = str(uuid.uuid4())
WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def transcript(language: str = "en") -> dict[str, Any]:
    """Two segments of a file, at its SOURCE times."""
    def words(*spec: tuple[str, int, int]) -> list[dict[str, Any]]:
        return [{"word": w, "start_ms": s, "end_ms": e, "confidence": 0.9} for w, s, e in spec]

    return {
        "language": language,
        "duration_ms": 3000,
        "segments": [
            {"id": "seg-0001", "speaker": "Speaker 1", "start_ms": 0, "end_ms": 900, "text": "Hello there.",
             "words": words(("Hello", 0, 400), ("there.", 500, 900))},
            {"id": "seg-0002", "speaker": "Speaker 2", "start_ms": 2000, "end_ms": 2900, "text": "Good morning.",
             "words": words(("Good", 2000, 2400), ("morning.", 2500, 2900))},
        ],
    }


def track(kind: str, *clips: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"t-{kind}", "type": kind, "name": kind, "clips": list(clips)}


def placed(start: int, inp: int, out: int, *, media: str = FILE, **extra: Any) -> dict[str, Any]:
    return clip(media, {"id": "t"}, start=start, inp=inp, out=out, **extra)


def words_of(segments: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(w["word"], w["start_ms"], w["end_ms"]) for s in segments for w in s["words"]]


# ----------------------------------------------------------------------------- mapping


def test_each_clip_of_the_file_gets_its_words_at_timeline_times():
    whole = placed(10_000, 0, 3000, id="whole")
    trimmed = placed(20_000, 2200, 3000, id="trimmed")  # "Good" starts before its in point
    other = placed(0, 0, 3000, media=OTHER, id="other")
    gone = placed(30_000, 0, 3000, id="gone", deleted=True)
    segments = map_transcript(transcript(), media_file_id=FILE, tracks=[track("audio", other, whole, trimmed, gone)])
    assert [(s["clip_id"], s["media_file_id"]) for s in segments] == [("whole", FILE), ("whole", FILE),
                                                                     ("trimmed", FILE)]
    assert words_of(segments) == [
        ("Hello", 10_000, 10_400), ("there.", 10_500, 10_900), ("Good", 12_000, 12_400),
        ("morning.", 12_500, 12_900), ("morning.", 20_300, 20_700),
    ]
    last = segments[-1]
    assert (last["start_ms"], last["end_ms"], last["text"], last["speaker"]) == (20_300, 20_700, "morning.",
                                                                                "Speaker 2")
    assert all(s["language"] == "en" and not s["deleted"] and s["edited_text"] is None for s in segments)


def test_a_word_running_past_the_out_point_ends_there():
    segments = map_transcript(transcript(), media_file_id=FILE, tracks=[track("audio", placed(100, 0, 700, id="c"))])
    assert words_of(segments) == [("Hello", 100, 500), ("there.", 600, 800)]


def test_a_sped_up_clip_places_words_by_its_rate():
    fast = placed(1000, 0, 3000, id="fast", effects=[{"type": "speed", "rate": 2}])
    segments = map_transcript(transcript(), media_file_id=FILE, tracks=[track("audio", fast)])
    assert words_of(segments) == [("Hello", 1000, 1200), ("there.", 1250, 1450), ("Good", 2000, 2200),
                                  ("morning.", 2250, 2450)]


def test_a_file_on_no_clip_maps_to_nothing():
    tracks = [track("video", placed(0, 0, 3000, media=OTHER))]
    assert map_transcript(transcript(), media_file_id=FILE, tracks=tracks) == []


def test_a_video_clip_and_its_linked_audio_clip_write_each_word_once_under_the_audio_clip():
    video = track("video", placed(0, 0, 3000, id="v"))
    audio = track("audio", placed(0, 0, 3000, id="a"))
    segments = map_transcript(transcript(), media_file_id=FILE, tracks=[video, audio])
    assert {s["clip_id"] for s in segments} == {"a"}
    assert len(words_of(segments)) == 4


def test_segment_ids_are_deterministic_and_distinct_per_clip():
    tracks = [track("audio", placed(0, 0, 3000, id="a"), placed(5000, 0, 3000, id="b"))]
    first = map_transcript(transcript(), media_file_id=FILE, tracks=tracks)
    assert first == map_transcript(transcript(), media_file_id=FILE, tracks=tracks)
    assert len({s["id"] for s in first}) == 4
    assert first[0]["id"] == segment_id(FILE, "a", 0) and len(first[0]["id"]) <= 64


def test_a_word_without_confidence_gets_zero():
    source = transcript()
    source["segments"][0]["words"][0]["confidence"] = None
    segments = map_transcript(source, media_file_id=FILE, tracks=[track("audio", placed(0, 0, 3000, id="a"))])
    assert segments[0]["words"][0]["confidence"] == 0.0


# ----------------------------------------------------------------------------- carried edits


def _mapped() -> list[dict[str, Any]]:
    return map_transcript(transcript(), media_file_id=FILE, tracks=[track("audio", placed(0, 0, 3000, id="a"))])


def test_the_users_deletions_and_edited_text_survive_a_new_transcription():
    old = _mapped()
    old[0]["words"][1]["deleted"] = True  # "there."
    old[1]["deleted"] = True
    old[0]["edited_text"] = "Hi there."
    renewed = transcript()
    renewed["segments"][0]["words"][1]["word"] = "their"  # recognised differently this time
    new = carry_edits(map_transcript(renewed, media_file_id=FILE, tracks=[track("audio", placed(0, 0, 3000,
                                                                                                 id="a"))]), old)
    assert [w["deleted"] for w in new[0]["words"]] == [False, True]
    assert new[0]["words"][1]["word"] == "their"
    assert new[0]["edited_text"] == "Hi there."
    assert new[1]["deleted"] and not any(w["deleted"] for w in new[1]["words"])


def test_edits_are_carried_only_within_the_same_clip():
    old = _mapped()
    for s in old:
        s["clip_id"] = "another-clip"
        s["deleted"] = True
    assert not any(s["deleted"] for s in carry_edits(_mapped(), old))


def test_merge_replaces_only_the_files_segments_and_is_a_no_op_when_written_again():
    tracks = [track("audio", placed(0, 0, 3000, id="a"), placed(4000, 0, 3000, media=OTHER, id="o"))]
    users = segment(3000, 3500, id="mine")
    others = {**segment(4000, 4500, id="o-seg"), "media_file_id": OTHER, "clip_id": "o"}
    stale = {**segment(0, 100, id="stale"), "media_file_id": FILE, "clip_id": "a"}
    current = {"generated_at": None, "segments": [stale, users, others], "pauses": []}
    merged = merge_transcript(current, transcript(), media_file_id=FILE, tracks=tracks, generated_at=WHEN)
    assert merged is not None and merged["generated_at"] == WHEN
    assert [s["id"] for s in merged["segments"]] == [segment_id(FILE, "a", 0), segment_id(FILE, "a", 1), "mine",
                                                      "o-seg"]
    assert merge_transcript(merged, transcript(), media_file_id=FILE, tracks=tracks, generated_at=WHEN) is None


# ----------------------------------------------------------------------------- the write


@pytest.fixture
def timeline(project, make_media):
    """The project's timeline with two clips of one audio file (the second trimmed), saved."""
    audio = make_media(project, type="audio", name="talk.wav", duration_ms=10_000)
    doc = editable(edl_get(project=project))
    audio_track = doc["tracks"][1]
    audio_track["clips"] = [clip(audio, audio_track, start=0, inp=0, out=3000, id="a1"),
                            clip(audio, audio_track, start=5000, inp=2000, out=3000, id="a2")]
    doc["transcript"]["segments"] = [segment(8000, 9000, id="mine")]
    return audio, edl_replace(project=project, expected_version=doc["version"], data=doc)


@pytest.mark.django_db
def test_a_transcription_is_written_as_one_undo_step(project, timeline):
    audio, before = timeline
    saved = edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(),
                                 generated_at=WHEN)
    assert saved is not None and saved["version"] == before["version"] + 1
    assert saved["history"]["undo"] == before["history"]["undo"] + 1
    segments = edl_get(project=project)["transcript"]["segments"]
    assert [(s["clip_id"], s["text"]) for s in segments] == [
        ("a1", "Hello there."), ("a1", "Good morning."), ("a2", "Good morning."), (None, "hello world")]
    assert words_of([segments[2]]) == [("Good", 5000, 5400), ("morning.", 5500, 5900)]
    # Writing it again (a redelivered task) writes nothing.
    assert edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(),
                                generated_at=WHEN) is None
    undone = edl_undo(project=project)
    assert undone["transcript"] == before["transcript"]


@pytest.mark.django_db
def test_with_the_setting_off_the_timeline_is_untouched(project, timeline):
    audio, before = timeline
    project.transcript_to_edl = False
    project.save(update_fields=["transcript_to_edl"])
    assert edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(),
                                generated_at=WHEN) is None
    assert edl_get(project=project) == before


@pytest.mark.django_db
def test_a_user_save_between_read_and_write_is_kept_and_the_write_retried(project, timeline, monkeypatch):
    audio, before = timeline
    real_get, reads = services.edl_get, []

    def the_user_saves_right_after_our_read(*, project):
        doc = real_get(project=project)
        reads.append(doc["version"])
        if len(reads) == 1:
            mine = editable(doc)
            mine["tracks"][1]["name"] = "Dialogue"
            mine["transcript"]["segments"][0]["edited_text"] = "typed by the user"
            edl_replace(project=project, expected_version=doc["version"], data=mine)
        return copy.deepcopy(doc)

    monkeypatch.setattr(services, "edl_get", the_user_saves_right_after_our_read)
    saved = edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(),
                                 generated_at=WHEN)
    assert reads == [before["version"], before["version"] + 1]
    assert saved is not None and saved["version"] == before["version"] + 2
    assert saved["tracks"][1]["name"] == "Dialogue"
    mine = [s for s in saved["transcript"]["segments"] if s["id"] == "mine"]
    assert mine[0]["edited_text"] == "typed by the user"
    assert len(saved["transcript"]["segments"]) == 4


@pytest.mark.django_db
def test_a_user_saving_at_every_attempt_wins_and_the_write_gives_up(project, timeline, monkeypatch):
    audio, _ = timeline
    real_get = services.edl_get

    def the_user_saves_every_time(*, project):
        doc = real_get(project=project)
        mine = editable(doc)
        mine["tracks"][1]["name"] = f"Take {doc['version']}"
        edl_replace(project=project, expected_version=doc["version"], data=mine)
        return doc

    monkeypatch.setattr(services, "edl_get", the_user_saves_every_time)
    with pytest.raises(EdlConflict):
        edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(), generated_at=WHEN)
    final = real_get(project=project)
    assert final["tracks"][1]["name"] == f"Take {final['version'] - 1}"
    assert [s["id"] for s in final["transcript"]["segments"]] == ["mine"]


@pytest.mark.django_db
def test_a_re_transcription_keeps_the_words_the_user_deleted(project, timeline):
    audio, _ = timeline
    written = edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=transcript(),
                                   generated_at=WHEN)
    assert written is not None
    doc = editable(written)
    doc["transcript"]["segments"][0]["words"][0]["deleted"] = True  # "Hello" at 0-400
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    renewed = transcript()
    renewed["segments"][0]["words"][0].update(start_ms=20, end_ms=380, word="Hallo")
    again = edl_transcript_write(project=project, media_file_id=str(audio.pk), transcript=renewed,
                                 generated_at=WHEN)
    assert again is not None
    first = again["transcript"]["segments"][0]["words"][0]
    assert (first["word"], first["start_ms"], first["deleted"]) == ("Hallo", 20, True)
