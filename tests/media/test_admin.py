"""Staff views of media files and voices."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.test import Client

from media.hooks import register_in_use_check, unregister_in_use_check
from media.models import MediaFile, VoiceClone
from media.services.voices import voice_create
from tests.factories import consent_of
from tests.media.conftest import body_of, local_get, stored, upload_local

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/media/mediafile/"


@pytest.fixture
def staff_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def files(auth_client, project, samples, local_storage):
    video = upload_local(auth_client, project, samples.video, "video/mp4")
    junk = upload_local(auth_client, project, samples.text, "video/mp4", "junk.mp4")
    wav = upload_local(auth_client, project, samples.wav, "audio/wav")
    return video, junk, wav


def test_changelist_filters_and_search(staff_client, files, user):
    wav = files[2]
    page = staff_client.get(CHANGELIST).content.decode()
    assert all(m.name in page for m in files)
    rejected = staff_client.get(CHANGELIST, {"status__exact": "rejected"}).content.decode()
    assert "junk.mp4" in rejected and "tone.wav" not in rejected
    audio = staff_client.get(CHANGELIST, {"type__exact": "audio"}).content.decode()
    assert "tone.wav" in audio and "clip.mp4" not in audio
    by_email = staff_client.get(CHANGELIST, {"q": user.email}).content.decode()
    assert "tone.wav" in by_email
    by_id = staff_client.get(CHANGELIST, {"q": str(wav.pk)}).content.decode()
    assert "tone.wav" in by_id and "junk.mp4" not in by_id
    by_name = staff_client.get(CHANGELIST, {"q": "junk"}).content.decode()
    assert "junk.mp4" in by_name and "tone.wav" not in by_name


def test_change_page_links_to_a_signed_download(staff_client, files, samples):
    video = files[0]
    page = staff_client.get(f"{CHANGELIST}{video.pk}/change/").content.decode()
    assert "h264" in page and "Ready" in page
    link = re.search(r'href="(http://testserver/storage/download/[^"]+)"', page)
    assert link, page
    download = local_get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and body_of(download) == samples.video.read_bytes()
    assert "/storage/download/" in page and "thumbnail" in page


def test_admin_delete_goes_through_the_service(
    staff_client, files, eager_celery, django_capture_on_commit_callbacks
):
    video = files[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"{CHANGELIST}{video.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not MediaFile.objects.filter(pk=video.pk).exists()
    assert not stored(video.storage_key) and not stored(video.thumbnail_key)


def test_admin_delete_of_media_in_use_is_refused(staff_client, files, django_capture_on_commit_callbacks):
    wav = files[2]

    def busy(media):
        return "a job uses it"

    register_in_use_check(busy)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = staff_client.post(f"{CHANGELIST}{wav.pk}/delete/", {"post": "yes"}, follow=True)
    finally:
        unregister_in_use_check(busy)
    page = response.content.decode()
    assert "in use" in page and "a job uses it" in page and "deleted successfully" not in page
    assert MediaFile.objects.filter(pk=wav.pk).exists() and stored(wav.storage_key)
    assert not LogEntry.objects.filter(object_id=str(wav.pk), action_flag=DELETION).exists()


def test_bulk_delete_action_uses_the_service(staff_client, files, eager_celery, django_capture_on_commit_callbacks):
    ids = [str(m.pk) for m in files]
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(CHANGELIST, {"action": "delete_selected_media", "_selected_action": ids})
    assert response.status_code == 302
    assert MediaFile.objects.count() == 0
    assert not any(stored(m.storage_key) for m in files)


def test_media_records_cannot_be_added_or_edited(staff_client, files):
    assert staff_client.get(f"{CHANGELIST}add/").status_code == 403
    video = files[0]
    staff_client.post(f"{CHANGELIST}{video.pk}/change/", {"status": "ready", "name": "renamed"})
    video.refresh_from_db()
    assert video.name == "clip.mp4"


def test_voice_admin(staff_client, files, user, eager_celery, django_capture_on_commit_callbacks):
    voice = voice_create(user=user, media=files[2], name="Narrator", consent_id=consent_of(files[2]))
    listing = staff_client.get("/admin/media/voiceclone/", {"q": user.email}).content.decode()
    assert "Narrator" in listing
    page = staff_client.get(f"/admin/media/voiceclone/{voice.pk}/change/").content.decode()
    assert "/storage/download/voices/" in page
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/admin/media/voiceclone/{voice.pk}/delete/", {"post": "yes"})
    assert not VoiceClone.objects.exists() and not stored(voice.sample_key)
