"""POST /projects/{id}/edl/transcript/remove-fillers: fillers and long pauses marked deleted."""

from __future__ import annotations

from typing import Any

import pytest

from projects.edl.fillers import FILLERS, is_filler, mark_fillers
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.projects.test_edl_support import editable, segment

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def url(project: Any) -> str:
    return f"/api/v1/projects/{project.pk}/edl/transcript/remove-fillers"


def spoken(project, *segments: dict[str, Any]) -> dict[str, Any]:
    doc = editable(edl_get(project=project))
    doc["transcript"]["segments"] = list(segments)
    return edl_replace(project=project, expected_version=doc["version"], data=doc)


@pytest.fixture
def timeline(project):
    """ "So, um, we start. Uh," ... 2 s of silence ... "then it works." """
    return spoken(
        project,
        segment(0, 1900, id="s1", words=[("So,", 0, 300), ("um,", 400, 700), ("we", 800, 1000),
                                         ("start.", 1100, 1500), ("Uh,", 1600, 1900)]),
        segment(3500, 4500, id="s2", words=[("then", 3500, 3800), ("it", 3900, 4000), ("works.", 4100, 4500)]),
    )


def test_the_filler_lists_cover_several_languages():
    assert {"en", "fr", "de", "es"} <= set(FILLERS)
    assert is_filler("Um,", "en") and is_filler("«euh»", "fr") and is_filler("Ähm...", "de")
    assert not is_filler("umbrella", "en") and not is_filler("um", "ja")


def test_fillers_and_a_long_pause_are_marked_in_one_undo_step(auth_client, project, timeline):
    response = auth_client.post(url(project), {}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == timeline["version"] + 1 and response["ETag"] == f'"{body["version"]}"'
    assert [(w["segment_id"], w["index"], w["word"]) for w in body["words"]] == [("s1", 1, "um,"), ("s1", 4, "Uh,")]
    assert body["pauses"] == [{"start_ms": 1500, "end_ms": 3500}]  # from "start." to "then", past the "Uh,"
    doc = edl_get(project=project)
    assert [w["deleted"] for w in doc["transcript"]["segments"][0]["words"]] == [False, True, False, False, True]
    assert doc["transcript"]["pauses"] == [{"start_ms": 1500, "end_ms": 3500, "deleted": True}]
    assert doc["history"]["undo"] == timeline["history"]["undo"] + 1
    undone = auth_client.post(f"/api/v1/projects/{project.pk}/edl/undo").json()
    assert undone["transcript"] == timeline["transcript"]


def test_running_it_again_marks_nothing_new_and_writes_nothing(auth_client, project, timeline):
    first = auth_client.post(url(project), {}, format="json").json()
    again = auth_client.post(url(project), {}, format="json")
    assert again.status_code == 200
    assert again.json() == {"version": first["version"], "words": [], "pauses": [], "skipped_languages": []}
    assert edl_get(project=project)["version"] == first["version"]


def test_a_pause_the_user_restored_is_not_deleted_again(auth_client, project, timeline):
    doc = editable(edl_get(project=project))
    doc["transcript"]["pauses"] = [{"start_ms": 1500, "end_ms": 3500, "deleted": False}]
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    body = auth_client.post(url(project), {}, format="json").json()
    assert body["pauses"] == [] and len(body["words"]) == 2
    assert edl_get(project=project)["transcript"]["pauses"] == [{"start_ms": 1500, "end_ms": 3500, "deleted": False}]


def test_min_pause_zero_marks_fillers_only_and_a_longer_one_skips_short_pauses(auth_client, project, timeline):
    assert auth_client.post(url(project), {"min_pause_ms": 0}, format="json").json()["pauses"] == []
    transcript, marked = mark_fillers(timeline["transcript"], language=None, min_pause_ms=2500)
    assert marked.pauses == [] and len(marked.words) == 2 and "pauses" in transcript


def test_a_segments_own_language_picks_its_list_and_one_without_a_list_is_left_alone(auth_client, project):
    before = spoken(
        project,
        {**segment(0, 1000, id="fr", words=[("euh", 0, 300), ("bonjour", 400, 1000)]), "language": "fr"},
        {**segment(1000, 2000, id="ja", words=[("um", 1000, 1300), ("konnichiwa", 1400, 2000)]), "language": "ja"},
    )
    body = auth_client.post(url(project), {"min_pause_ms": 0}, format="json").json()
    assert [w["word"] for w in body["words"]] == ["euh"]
    assert body["skipped_languages"] == ["ja"] and body["version"] == before["version"] + 1
    forced = auth_client.post(url(project), {"language": "en-US", "min_pause_ms": 0}, format="json").json()
    assert [w["word"] for w in forced["words"]] == ["um"]


def test_nothing_to_mark_answers_the_current_version(auth_client, project):
    before = spoken(project, segment(0, 1000, id="s", words=[("clean", 0, 400), ("speech", 500, 1000)]))
    body = auth_client.post(url(project), {}, format="json").json()
    assert body == {"version": before["version"], "words": [], "pauses": [], "skipped_languages": []}


def test_a_stale_expected_version_is_a_conflict_and_nothing_is_marked(auth_client, project, timeline):
    response = auth_client.post(url(project), {"expected_version": timeline["version"] - 1}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "edl_conflict"
    assert response.json()["error"]["details"]["current_version"] == timeline["version"]
    assert edl_get(project=project) == timeline
    stale_header = auth_client.post(url(project), {}, format="json", HTTP_IF_MATCH=f'"{timeline["version"] - 1}"')
    assert stale_header.status_code == 409
    ok = auth_client.post(url(project), {"expected_version": timeline["version"]}, format="json")
    assert ok.status_code == 200 and ok.json()["version"] == timeline["version"] + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"language": "tlh"}, "language"), ({"min_pause_ms": -1}, "min_pause_ms"),
     ({"min_pause_ms": "long"}, "min_pause_ms"), ({"expected_version": 0}, "expected_version"),
     ({"fillers": ["like"]}, "fillers")],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(auth_client, project, timeline, body, field):
    response = auth_client.post(url(project), body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]["fields"]
    assert edl_get(project=project) == timeline


def test_if_match_and_expected_version_must_agree(auth_client, project, timeline):
    response = auth_client.post(url(project), {"expected_version": timeline["version"]}, format="json",
                                HTTP_IF_MATCH='"99"')
    assert response.status_code == 400 and response.json()["error"]["code"] == "version_mismatch"


def test_another_users_project_is_not_found(client_for, make_user, project, timeline):
    stranger = client_for(make_user())
    response = stranger.post(url(project), {}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "project_not_found"
    assert edl_get(project=project) == timeline
