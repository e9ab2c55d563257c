"""Per-user quotas of media: bytes stored (at upload-url and again at confirm) and voices.

Each test goes over the limit and checks the 403 ``quota_exceeded`` with the quota, its limit
and the use in ``details``, and that nothing was left behind.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from media.models import MediaFile, VoiceClone
from media.storage import get_storage
from tests.factories import MediaFileFactory, VoiceCloneFactory, voice_body
from tests.media.conftest import local_put, media_path, request_upload, upload_local, upload_url_path

pytestmark = pytest.mark.django_db

VOICES = "/api/v1/voices"


def quota_error(response: Any, quota: str) -> dict[str, Any]:
    assert response.status_code == 403, response.json()
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and error["message"]
    assert error["details"]["quota"] == quota
    return dict(error["details"])


def files_under(root: Any) -> list[Any]:
    """The objects under a local storage root (not their metadata sidecars)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")] if root.exists() else []


def test_an_upload_url_past_the_storage_quota_is_refused(auth_client, project, samples, local_storage, settings):
    size = samples.wav.stat().st_size
    settings.AUTEUR_QUOTA_STORAGE_BYTES = size + size // 2
    request_upload(auth_client, project, samples.wav, "audio/wav")  # reserves its declared size

    refused = auth_client.post(
        upload_url_path(project.pk),
        {"filename": "second.wav", "content_type": "audio/wav", "size_bytes": size},
        format="json",
    )
    assert quota_error(refused, "storage_bytes") == {
        "quota": "storage_bytes", "limit": size + size // 2, "used": size, "requested": size,
    }
    assert MediaFile.objects.count() == 1
    assert files_under(local_storage) == []


def test_a_confirm_past_the_storage_quota_deletes_the_upload(
    auth_client, user, project, samples, local_storage, settings, eager_celery, django_capture_on_commit_callbacks
):
    size = samples.wav.stat().st_size
    settings.AUTEUR_QUOTA_STORAGE_BYTES = size + 100
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    assert local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav").status_code == 200
    # Meanwhile a job stored an output: the upload no longer fits.
    output = MediaFileFactory.create(project=project, file_size_bytes=200, storage_key="outputs/a.wav")
    # And something else lies under the file's prefix (what a racing writer could leave).
    stray = f"projects/{project.pk}/media/{ticket['media_id']}/captions.json"
    get_storage().save(stray, io.BytesIO(b"{}"), "application/json")

    with django_capture_on_commit_callbacks(execute=True):
        refused = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert quota_error(refused, "storage_bytes") == {
        "quota": "storage_bytes", "limit": size + 100, "used": 200, "requested": size,
    }
    # Nothing half-done: no row, no object, and the URL writes nothing any more.
    assert list(MediaFile.objects.values_list("pk", flat=True)) == [output.pk]
    assert files_under(local_storage) == []
    assert local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav").status_code == 409
    assert files_under(local_storage) == []


def test_a_voice_past_the_voice_quota_is_refused(auth_client, project, samples, local_storage, settings):
    settings.AUTEUR_QUOTA_VOICES = 1
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    first = auth_client.post(VOICES, voice_body(media, "One"), format="json")
    assert first.status_code == 201, first.json()

    refused = auth_client.post(VOICES, voice_body(media, "Two"), format="json")
    assert quota_error(refused, "voices") == {"quota": "voices", "limit": 1, "used": 1, "requested": 1}
    assert VoiceClone.objects.count() == 1
    assert len(files_under(local_storage / "voices")) == 1  # the first voice's sample only


def test_a_voice_made_concurrently_past_the_quota_leaves_no_sample(
    auth_client, user, project, samples, local_storage, settings, monkeypatch
):
    """The check is made again under the user's lock: a voice another request created while
    this one transcoded wins, and this one's stored sample is deleted."""
    from media.services import voices

    settings.AUTEUR_QUOTA_VOICES = 1
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    transcode = voices.transcode_voice_sample

    def racing_transcode(*args: Any, **kwargs: Any) -> int:
        VoiceCloneFactory.create(user=user, name="racer", consent=None)
        return transcode(*args, **kwargs)

    monkeypatch.setattr(voices, "transcode_voice_sample", racing_transcode)
    refused = auth_client.post(VOICES, voice_body(media, "Late"), format="json")
    assert quota_error(refused, "voices")["used"] == 1
    assert list(VoiceClone.objects.values_list("name", flat=True)) == ["racer"]
    assert files_under(local_storage / "voices") == []
