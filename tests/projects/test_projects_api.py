from __future__ import annotations

import uuid

import pytest

from projects.models import Project

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/v1/projects", {"name": "My Project", **body}, format="json")


def test_create_returns_the_project_with_defaults_and_an_edl(auth_client, user):
    response = create(auth_client, resolution="1280x720")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "My Project"
    assert body["resolution"] == "1280x720"
    assert body["frame_rate"] == "30.00"
    assert body["edl_id"]
    project = Project.objects.get(pk=body["id"])
    assert project.user == user

    detail = auth_client.get(f"/api/v1/projects/{body['id']}").json()
    assert detail["edl"]["version"] >= 1
    assert detail["edl"]["settings"]["resolution"] == {"width": 1280, "height": 720}
    assert [t["type"] for t in detail["edl"]["tracks"]] == ["video", "audio"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"resolution": "big"}, "resolution"),
        ({"resolution": "1921x1080"}, "resolution"),
        ({"resolution": "99999x1080"}, "resolution"),
        ({"frame_rate": 0}, "frame_rate"),
        ({"frame_rate": "fast"}, "frame_rate"),
        ({"credits": 100}, "credits"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_creates_nothing(auth_client, body, field):
    response = auth_client.post("/api/v1/projects", {"name": "ok", **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]["fields"]
    assert Project.objects.count() == 0


def test_list_is_paginated_scoped_and_ordered_by_last_update(auth_client, client_for, make_user):
    ids = [create(auth_client, name=f"p{i}").json()["id"] for i in range(3)]
    create(client_for(make_user()), name="someone else's")
    auth_client.patch(f"/api/v1/projects/{ids[0]}", {"name": "touched"}, format="json")

    body = auth_client.get("/api/v1/projects?page_size=2").json()
    assert body["count"] == 3
    assert [p["name"] for p in body["projects"]] == ["touched", "p2"]
    assert body["next"]
    second = auth_client.get("/api/v1/projects?page_size=2&page=2").json()
    assert [p["name"] for p in second["projects"]] == ["p1"]


def test_put_and_patch_update_editable_fields(auth_client):
    project_id = create(auth_client).json()["id"]
    patched = auth_client.patch(f"/api/v1/projects/{project_id}", {"description": "d"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["description"] == "d"
    assert patched.json()["name"] == "My Project"

    put = auth_client.put(f"/api/v1/projects/{project_id}", {"description": "only"}, format="json")
    assert put.status_code == 400, "PUT is a full update: name is required"
    put = auth_client.put(f"/api/v1/projects/{project_id}", {"name": "New", "frame_rate": "24"}, format="json")
    assert put.json()["frame_rate"] == "24.00"


def test_another_users_project_is_404_for_every_method_and_untouched(auth_client, client_for, make_user):
    project_id = create(auth_client).json()["id"]
    stranger = client_for(make_user())
    url = f"/api/v1/projects/{project_id}"
    assert stranger.get(url).status_code == 404
    assert stranger.patch(url, {"name": "pwned"}, format="json").status_code == 404
    assert stranger.put(url, {"name": "pwned"}, format="json").status_code == 404
    assert stranger.delete(url).status_code == 404
    assert stranger.get(url).json()["error"]["code"] == "project_not_found"
    assert Project.objects.get(pk=project_id).name == "My Project"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", pytest.param(str(uuid.uuid4()), id="unknown-uuid")])
def test_malformed_or_unknown_ids_are_404_not_500(auth_client, bad_id):
    response = auth_client.get(f"/api/v1/projects/{bad_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "project_not_found"


def test_delete_removes_the_project_and_its_edl(auth_client, django_capture_on_commit_callbacks):
    from projects.edl.documents import EDL  # the mongoengine document

    project_id = create(auth_client).json()["id"]
    assert EDL.objects(project_id=project_id).count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/projects/{project_id}").status_code == 204
    assert not Project.objects.filter(pk=project_id).exists()
    assert EDL.objects(project_id=project_id).count() == 0
    assert auth_client.get(f"/api/v1/projects/{project_id}").status_code == 404


def test_requests_without_a_token_are_401(api_client):
    assert api_client.get("/api/v1/projects").status_code == 401
    assert api_client.post("/api/v1/projects", {"name": "x"}, format="json").status_code == 401
    assert Project.objects.count() == 0


def test_transcript_to_edl_is_on_by_default_and_can_be_switched_off(auth_client):
    created = create(auth_client)
    assert created.json()["transcript_to_edl"] is True
    project_id = created.json()["id"]
    patched = auth_client.patch(f"/api/v1/projects/{project_id}", {"transcript_to_edl": False}, format="json")
    assert patched.status_code == 200 and patched.json()["transcript_to_edl"] is False
    assert Project.objects.get(pk=project_id).transcript_to_edl is False
    assert auth_client.get(f"/api/v1/projects/{project_id}").json()["transcript_to_edl"] is False
    off = create(auth_client, transcript_to_edl=False).json()
    assert off["transcript_to_edl"] is False
    refused = auth_client.patch(f"/api/v1/projects/{project_id}", {"transcript_to_edl": "maybe"}, format="json")
    assert refused.status_code == 400 and "transcript_to_edl" in refused.json()["error"]["details"]["fields"]


def test_create_keeps_the_thumbnail_url_it_was_given(auth_client):
    response = create(auth_client, name="With a cover", thumbnail_url="https://cdn.example.com/cover.jpg")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["thumbnail_url"] == "https://cdn.example.com/cover.jpg"
    assert Project.objects.get(pk=body["id"]).thumbnail_url == "https://cdn.example.com/cover.jpg"


def test_automatic_transcription_is_on_for_a_new_project_and_off_for_the_library(auth_client, user):
    """A file uploaded to a new project is transcribed on its own (charged as any job) unless the
    project switches it off; the Library, where jobs without a project put their outputs, never is."""
    from projects.services import project_library_get_or_create

    created = create(auth_client).json()
    assert created["auto_transcribe"] is True
    off = create(auth_client, auto_transcribe=False).json()
    assert off["auto_transcribe"] is False
    patched = auth_client.patch(f"/api/v1/projects/{created['id']}", {"auto_transcribe": False}, format="json")
    assert patched.status_code == 200 and patched.json()["auto_transcribe"] is False
    assert project_library_get_or_create(user=user).auto_transcribe is False
