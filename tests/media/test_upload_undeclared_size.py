"""An upload whose size is not declared: allowed up to the maximum size, checked at confirm."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from media.models import MediaFile
from media.selectors import media_bytes_used
from media.storage import get_storage
from tests.media.conftest import local_put, media_path, run_probe, upload_url_path

pytestmark = pytest.mark.django_db


def ask(client, project, name="tone.wav", content_type="audio/wav"):
    response = client.post(upload_url_path(project.pk), {"filename": name, "content_type": content_type},
                           format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def confirm(client, project, media_id):
    return client.post(media_path(project.pk, media_id, "/confirm"), {}, format="json")


def test_without_size_bytes_the_file_is_taken_and_sized_at_confirm(auth_client, user, project, samples,
                                                                    local_storage):
    ticket = ask(auth_client, project)
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.status == "uploading" and media.file_size_bytes == 0  # nothing reserved yet
    assert local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav").status_code == 200
    assert confirm(auth_client, project, ticket["media_id"]).status_code == 202
    assert run_probe(ticket["media_id"]) == "ready"
    media.refresh_from_db()
    assert media.file_size_bytes == samples.wav.stat().st_size
    assert media_bytes_used(user_id=user.pk) == samples.wav.stat().st_size


def test_an_undeclared_size_over_the_maximum_at_confirm_is_413_and_deleted(
    auth_client, user, project, samples, local_storage, settings, django_capture_on_commit_callbacks, eager_celery
):
    ticket = ask(auth_client, project)
    key = MediaFile.objects.get(pk=ticket["media_id"]).storage_key
    assert local_put(ticket["upload_url"], samples.wav.read_bytes(), "audio/wav").status_code == 200
    settings.AUTEUR_MAX_UPLOAD_BYTES = 1000  # lowered after the URL was issued
    with django_capture_on_commit_callbacks(execute=True):  # the objects go after commit, by a task
        response = confirm(auth_client, project, ticket["media_id"])
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    assert not MediaFile.objects.filter(pk=ticket["media_id"]).exists()
    assert get_storage().head(key) is None
    assert media_bytes_used(user_id=user.pk) == 0


def test_the_local_url_of_an_undeclared_size_refuses_more_than_the_maximum(auth_client, project, local_storage,
                                                                           settings):
    settings.AUTEUR_MAX_UPLOAD_BYTES = 1000
    ticket = ask(auth_client, project)
    assert local_put(ticket["upload_url"], b"\0" * 1001, "audio/wav").status_code == 413


def test_a_declared_size_is_still_bound_and_reserved(auth_client, user, project, samples, local_storage):
    size = samples.wav.stat().st_size
    response = auth_client.post(upload_url_path(project.pk), {"filename": "tone.wav", "content_type": "audio/wav",
                                                              "size_bytes": size}, format="json")
    assert response.status_code == 201
    assert media_bytes_used(user_id=user.pk) == size
    assert local_put(response.json()["upload_url"], samples.wav.read_bytes()[:-10], "audio/wav").status_code == 200
    assert confirm(auth_client, project, response.json()["media_id"]).json()["error"]["code"] == "size_mismatch"


def test_on_s3_an_undeclared_size_signs_no_length_and_is_checked_at_confirm(auth_client, project, samples,
                                                                            s3_storage):
    ticket = ask(auth_client, project)
    signed = parse_qs(urlsplit(ticket["upload_url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert "content-type" in signed and "content-length" not in signed
    put = requests.put(ticket["upload_url"], data=samples.wav.read_bytes(), headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text
    assert confirm(auth_client, project, ticket["media_id"]).status_code == 202
    assert MediaFile.objects.get(pk=ticket["media_id"]).file_size_bytes == samples.wav.stat().st_size
