"""Every media and voice endpoint x another user's ids -> 404 (never 403), and nothing changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from media.models import MediaFile, VoiceClone
from media.services.voices import voice_create
from tests.factories import MediaFileFactory, consent_of
from tests.media.conftest import stored, upload_local

pytestmark = pytest.mark.django_db


@dataclass
class World:
    owner: Any
    intruder: Any
    project: Any  # the owner's
    media: Any  # the owner's, ready
    pending: Any  # the owner's, still uploading
    voice: Any  # the owner's
    own_project: Any  # the intruder's


@pytest.fixture
def world(make_user, client_for, make_project, samples, local_storage) -> World:
    owner, intruder = make_user(), make_user()
    project = make_project(owner)
    media = upload_local(client_for(owner), project, samples.wav, "audio/wav")
    pending = MediaFileFactory.create(
        project=project, name="p.wav", type="audio", status="uploading", duration_ms=None, file_size_bytes=10,
        storage_key=f"projects/{project.pk}/media/{uuid.uuid4()}/p.wav",
    )
    voice = voice_create(user=owner, media=media, name="Owner's voice", consent_id=consent_of(media))
    return World(owner, intruder, project, media, pending, voice, make_project(intruder))


# (method, path template, body). {p}: a project id, {m}: a media id, {v}: a voice id.
ENDPOINTS = [
    ("post", "/api/v1/projects/{p}/media/upload-url", {"filename": "a.wav", "content_type": "audio/wav",
                                                        "size_bytes": 10}),
    ("get", "/api/v1/projects/{p}/media", None),
    ("get", "/api/v1/projects/{p}/media/{m}", None),
    ("post", "/api/v1/projects/{p}/media/{m}/confirm", {}),
    ("delete", "/api/v1/projects/{p}/media/{m}", None),
]
VOICE_ENDPOINTS = [
    ("get", "/api/v1/voices/{v}", None),
    ("delete", "/api/v1/voices/{v}", None),
]


def call(client, method: str, path: str, body: Any):
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, body, format="json")


def assert_untouched(world: World) -> None:
    world.media.refresh_from_db()
    world.pending.refresh_from_db()
    assert world.media.status == "ready" and world.pending.status == "uploading"
    assert MediaFile.objects.filter(project=world.project).count() == 2
    assert VoiceClone.objects.filter(pk=world.voice.pk).exists()
    assert stored(world.media.storage_key) and stored(world.voice.sample_key)
    assert not MediaFile.objects.filter(project=world.own_project).exists()


@pytest.mark.parametrize(("method", "template", "body"), ENDPOINTS)
@pytest.mark.parametrize("media_attr", ["media", "pending"])
def test_another_users_project_is_404(world, client_for, method, template, body, media_attr,
                                      django_capture_on_commit_callbacks):
    path = template.format(p=world.project.pk, m=getattr(world, media_attr).pk)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = call(client_for(world.intruder), method, path, body)
    assert response.status_code == 404, response.json()
    assert response.json()["error"]["code"] == "project_not_found"
    assert callbacks == []
    assert_untouched(world)


@pytest.mark.parametrize(("method", "template", "body"), [e for e in ENDPOINTS if "{m}" in e[1]])
@pytest.mark.parametrize("media_attr", ["media", "pending"])
def test_another_users_media_through_ones_own_project_is_404(world, client_for, method, template, body, media_attr):
    path = template.format(p=world.own_project.pk, m=getattr(world, media_attr).pk)
    response = call(client_for(world.intruder), method, path, body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "media_not_found"
    assert_untouched(world)


@pytest.mark.parametrize(("method", "template", "body"), VOICE_ENDPOINTS)
def test_another_users_voice_is_404(world, client_for, method, template, body, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = call(client_for(world.intruder), method, template.format(v=world.voice.pk), body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "voice_not_found"
    assert callbacks == []
    assert_untouched(world)


def test_voice_creation_from_another_users_media_is_404(world, client_for):
    response = client_for(world.intruder).post("/api/v1/voices", {"media_id": str(world.media.pk), "name": "x",
                                                                  "consent_id": consent_of(world.media)},
                                               format="json")
    assert response.status_code == 404
    assert VoiceClone.objects.count() == 1
    assert_untouched(world)


def test_lists_show_only_ones_own(world, client_for):
    intruder = client_for(world.intruder)
    assert intruder.get("/api/v1/voices").json()["count"] == 0
    assert intruder.get(f"/api/v1/projects/{world.own_project.pk}/media").json()["count"] == 0
    owner = client_for(world.owner)
    assert owner.get("/api/v1/voices").json()["count"] == 1
    assert owner.get(f"/api/v1/projects/{world.project.pk}/media").json()["count"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/not-a-uuid/media",
        "/api/v1/projects/not-a-uuid/media/upload-url",
        "/api/v1/projects/{p}/media/12345",
        "/api/v1/projects/{p}/media/12345/confirm",
        "/api/v1/voices/../../etc",
        "/api/v1/voices/zzz",
    ],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_malformed_ids_are_404_with_the_envelope(world, client_for, path, method):
    response = getattr(client_for(world.owner), method)(path.format(p=world.project.pk))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert_untouched(world)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/projects/{p}/media"),
        ("post", "/api/v1/projects/{p}/media/upload-url"),
        ("get", "/api/v1/projects/{p}/media/{m}"),
        ("delete", "/api/v1/projects/{p}/media/{m}"),
        ("post", "/api/v1/projects/{p}/media/{m}/confirm"),
        ("get", "/api/v1/voices"),
        ("post", "/api/v1/voices"),
        ("delete", "/api/v1/voices/{v}"),
    ],
)
def test_anonymous_is_401(world, api_client, method, path):
    response = getattr(api_client, method)(path.format(p=world.project.pk, m=world.media.pk, v=world.voice.pk))
    assert response.status_code == 401
    assert_untouched(world)
