"""Caption downloads over HTTP: a media file's and the edited timeline's, their formats, and who may read them."""

from __future__ import annotations

import json

import pysubs2
import pytest

from media.services.captions import media_attach_caption
from tests.projects.test_captions import seg
from tests.projects.test_edl_support import clip, editable

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

TRANSCRIPT = {
    "language": "en", "duration_ms": 3000, "text": "Hello there. General Kenobi.",
    "segments": [seg(["Hello", "there."], speaker="Speaker 1"),
                 seg(["General", "Kenobi."], start=1500, speaker="Speaker 2")],
}


def media_url(project, media, query: str = "") -> str:
    return f"/api/v1/projects/{project.pk}/media/{media.pk}/captions{query}"


def timeline_url(project, query: str = "") -> str:
    return f"/api/v1/projects/{project.pk}/captions{query}"


@pytest.fixture
def transcribed(project, make_media):
    media = make_media(project, name="interview.mp4")
    media_attach_caption(media_id=media.pk, transcript=TRANSCRIPT)
    return media


@pytest.mark.parametrize(("fmt", "content_type"), [("srt", "application/x-subrip"), ("vtt", "text/vtt")])
def test_a_transcribed_file_downloads_as_srt_and_vtt(auth_client, project, transcribed, fmt, content_type):
    response = auth_client.get(media_url(project, transcribed, f"?format={fmt}"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"] == f'attachment; filename="interview.{fmt}"'
    subs = pysubs2.SSAFile.from_string(response.content.decode(), format_=fmt)
    assert [(e.start, e.end, e.plaintext) for e in subs] == [
        (0, 550, "Hello there."), (1500, 2050, "General Kenobi."),
    ]


def test_srt_is_the_default_and_speakers_are_labelled_on_request(auth_client, project, transcribed):
    response = auth_client.get(media_url(project, transcribed, "?speakers=true"))
    assert response["Content-Type"].startswith("application/x-subrip")
    texts = [e.plaintext for e in pysubs2.SSAFile.from_string(response.content.decode(), format_="srt")]
    assert texts == ["Speaker 1: Hello there.", "Speaker 2: General Kenobi."]


def test_json_has_duration_language_and_words(auth_client, project, transcribed):
    response = auth_client.get(media_url(project, transcribed, "?format=json"))
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body["duration"] == 3.0 and body["language"] == "en"
    assert body["words"][0] == {"text": "Hello", "start": 0.0, "end": 0.25}
    assert [w["text"] for w in body["words"]] == ["Hello", "there.", "General", "Kenobi."]


def test_a_file_never_transcribed_is_404_captions_not_found(auth_client, project, make_media):
    response = auth_client.get(media_url(project, make_media(project), "?format=srt"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "captions_not_found"


@pytest.mark.parametrize("query", ["?format=txt", "?format=SRT", "?speakers=maybe"])
def test_a_bad_query_is_400_validation_error(auth_client, project, transcribed, query):
    response = auth_client.get(media_url(project, transcribed, query))
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "validation_error"


def test_another_users_project_or_media_is_404(client_for, make_user, make_project, project, transcribed):
    stranger = make_user()
    client = client_for(stranger)
    response = client.get(media_url(project, transcribed, "?format=srt"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "project_not_found"
    # Their own project, naming this file: still not theirs.
    response = client.get(media_url(make_project(stranger), transcribed, "?format=srt"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "media_not_found"
    response = client.get(timeline_url(project, "?format=srt"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "project_not_found"


def test_media_of_another_project_of_the_same_user_is_404(auth_client, user, make_project, project, transcribed):
    other = make_project(user, name="other")
    response = auth_client.get(media_url(other, transcribed, "?format=srt"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "media_not_found"


def _save_timeline(client, project, media, transcript) -> None:
    doc = editable(client.get(f"/api/v1/projects/{project.pk}/edl").json())
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=0, inp=0, out=5000, id="c0")]
    doc["transcript"] = {"segments": transcript, "pauses": []}
    response = client.put(f"/api/v1/projects/{project.pk}/edl", doc, format="json")
    assert response.status_code == 200, response.json()


def test_timeline_captions_honour_deletions_and_edited_text(auth_client, project, make_media):
    media = make_media(project)
    _save_timeline(auth_client, project, media, [
        seg(["So", "um", "we", "start."], cut=(1,), id="a"),
        seg(["Dropped", "entirely."], start=2000, id="b", deleted=True),
        seg(["Their", "there."], start=3000, id="c", edited_text="They're there."),
    ])
    response = auth_client.get(timeline_url(project, "?format=vtt"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/vtt")
    assert response["Content-Disposition"] == 'attachment; filename="timeline-test.vtt"'
    subs = pysubs2.SSAFile.from_string(response.content.decode(), format_="vtt")
    assert [e.plaintext for e in subs] == ["So we start.", "They're there."]
    # Everything after "um" moved up by its cut, and the deleted segment's time is gone too.
    um_cut = (600 - 40) - (250 + 40)
    assert subs[0].end == 1150 - um_cut
    segment_cut = (3000 - 40) - (1150 + 40)
    assert subs[1].start == 3000 - um_cut - segment_cut


def test_timeline_json_words_are_the_edited_ones(auth_client, project, make_media):
    _save_timeline(auth_client, project, make_media(project),
                   [seg(["Their", "there."], id="c", edited_text="They're there.")])
    body = auth_client.get(timeline_url(project, "?format=json")).json()
    assert [w["text"] for w in body["words"]] == ["They're", "there."]
    assert body["duration"] == 5.0


def test_a_timeline_without_transcript_is_404_captions_not_found(auth_client, project):
    response = auth_client.get(timeline_url(project, "?format=srt"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "captions_not_found"


def test_timeline_captions_follow_the_cut_padding_asked_for(auth_client, project, make_media):
    _save_timeline(auth_client, project, make_media(project), [seg(["So", "um", "we", "start."], cut=(1,), id="a")])
    body = auth_client.get(timeline_url(project, "?format=json&cut_padding_ms=0")).json()
    assert [w["start"] for w in body["words"]] == [0.0, 0.25, 0.55]  # "um" cut from 250 to 600
    assert auth_client.get(timeline_url(project, "?cut_padding_ms=-1")).status_code == 400


def test_timeline_captions_skip_segments_of_deleted_clips(auth_client, project, make_media):
    media = make_media(project)
    doc = editable(auth_client.get(f"/api/v1/projects/{project.pk}/edl").json())
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=0, out=2000, id="kept"),
                      clip(media, video, start=2000, out=2000, id="gone", deleted=True)]
    doc["transcript"] = {"segments": [{**seg(["Shown."], id="a"), "clip_id": "kept"},
                                      {**seg(["Hidden."], start=2000, id="b"), "clip_id": "gone"}], "pauses": []}
    assert auth_client.put(f"/api/v1/projects/{project.pk}/edl", doc, format="json").status_code == 200
    body = auth_client.get(timeline_url(project, "?format=json")).json()
    assert [w["text"] for w in body["words"]] == ["Shown."] and body["duration"] == 2.0
