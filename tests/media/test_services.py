"""Services the API does not reach directly: job outputs, the sweep, probe edge cases, storage backends."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from auteur.core.errors import ApplicationError
from media.models import MediaFile
from media.probing.service import media_probe
from media.services.outputs import media_create_output
from media.services.sweep import media_sweep
from media.signals import media_ready
from media.storage import get_storage
from media.storage.local import LocalStorage
from media.storage.s3 import S3ObjectStorage
from tests.factories import consent_of
from tests.media.conftest import local_put, request_upload, run_probe, stored, upload_local

pytestmark = pytest.mark.django_db


def taken(sample: Path, tmp_path: Path) -> Path:
    """A copy of `sample` for media_create_output, which takes the file it stores."""
    copy = tmp_path / f"{uuid.uuid4().hex}-{sample.name}"
    copy.write_bytes(sample.read_bytes())
    return copy


def confirmed(client, project, path, content_type, filename=None) -> MediaFile:
    """Uploaded and confirmed (processing), probe not run yet."""
    ticket = request_upload(client, project, path, content_type, filename)
    local_put(ticket["upload_url"], path.read_bytes(), content_type)
    assert client.post(f"/api/v1/projects/{project.pk}/media/{ticket['media_id']}/confirm").status_code == 202
    return MediaFile.objects.get(pk=ticket["media_id"])


# ----------------------------------------------------------------------------- probe


def test_probe_ignores_files_not_processing(auth_client, project, samples, local_storage):
    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    untouched = media_probe(media_id=ticket["media_id"])
    assert untouched is not None and untouched.status == "uploading"  # not claimed: nothing done
    assert media_probe(media_id=uuid.uuid4()) is None  # deleted meanwhile


def test_probe_of_a_vanished_object_rejects(auth_client, project, samples, local_storage):
    media = confirmed(auth_client, project, samples.wav, "audio/wav")
    get_storage().delete(media.storage_key)
    assert run_probe(media.pk) == "rejected"
    media.refresh_from_db()
    assert media.rejection_reason == "the uploaded object is missing from storage"


def test_a_failing_ready_receiver_does_not_undo_the_probe(auth_client, project, samples, local_storage):
    def broken(**kwargs):
        raise RuntimeError("transcription is down")

    media_ready.connect(broken, dispatch_uid="broken")
    try:
        media = confirmed(auth_client, project, samples.wav, "audio/wav")
        assert run_probe(media.pk) == "ready"
    finally:
        media_ready.disconnect(dispatch_uid="broken")


def test_two_deliveries_of_one_probe_finish_it_once(auth_client, project, samples, local_storage):
    sent = []
    media_ready.connect(lambda **kw: sent.append(kw["media_id"]), dispatch_uid="count", weak=False)
    try:
        media = confirmed(auth_client, project, samples.video, "video/mp4")
        with TestCase.captureOnCommitCallbacks(execute=True):
            first = media_probe(media_id=media.pk)
            second = media_probe(media_id=media.pk)
    finally:
        media_ready.disconnect(dispatch_uid="count")
    assert first is not None and second is not None
    assert first.status == second.status == "ready"
    assert first.updated_at == second.updated_at
    assert sent == [media.pk]


# ----------------------------------------------------------------------------- job outputs


def test_job_outputs_are_stored_once(user, project, samples, local_storage, monkeypatch, tmp_path):
    saves = []
    original = LocalStorage.save

    def counting_save(self, key, fileobj, content_type):
        saves.append(key)
        return original(self, key, fileobj, content_type)

    monkeypatch.setattr(LocalStorage, "save", counting_save)
    original_file = LocalStorage.save_file

    def counting_save_file(self, key, path, content_type):
        saves.append(key)
        return original_file(self, key, path, content_type)

    monkeypatch.setattr(LocalStorage, "save_file", counting_save_file)
    job_id = uuid.uuid4()
    output = taken(samples.video, tmp_path)
    kwargs = dict(project_id=project.pk, user_id=user.pk, job_id=job_id, name="lipsync.mp4", type="video",
                  mime_type="video/mp4", local_path=output)
    first = media_create_output(**kwargs)
    assert first.status == "ready" and first.source_job_id == job_id
    assert first.metadata["width"] == 320 and first.duration_ms is not None and 1900 <= first.duration_ms <= 2100
    assert stored(first.storage_key) and stored(first.thumbnail_key)
    assert len(saves) == 2  # the file and its thumbnail
    # Moved into the storage, not copied: the same bytes, and nothing left where it was.
    assert not output.exists() and get_storage().head(first.storage_key) == samples.video.stat().st_size
    assert get_storage().content_type(first.storage_key) == "video/mp4"

    again = media_create_output(**{**kwargs, "local_path": taken(samples.video, tmp_path)})  # a redelivered store step
    assert again.pk == first.pk
    assert len(saves) == 2  # nothing uploaded twice
    assert MediaFile.objects.filter(source_job_id=job_id).count() == 1

    other = media_create_output(**{**kwargs, "name": "speech.wav", "type": "audio", "mime_type": "audio/wav",
                                   "local_path": taken(samples.wav, tmp_path)})
    assert other.pk != first.pk and other.type == "audio"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_first_store_that_races_another_delivery_gets_its_row(user, project, samples, local_storage,
                                                                in_transaction, tmp_path):
    """`first_store` skips the lookup: a delivery that stored the output meanwhile still wins the
    insert, and the loser answers its row, in a transaction of its own or inside its caller's."""
    job_id = uuid.uuid4()
    kwargs = dict(project_id=project.pk, user_id=user.pk, job_id=job_id, name="speech.wav", type="audio",
                  mime_type="audio/wav")
    first = media_create_output(**kwargs, local_path=taken(samples.wav, tmp_path))
    if in_transaction:
        with transaction.atomic():
            again = media_create_output(**kwargs, local_path=taken(samples.wav, tmp_path), first_store=True)
            assert MediaFile.objects.filter(source_job_id=job_id).count() == 1  # the transaction still works
    else:
        again = media_create_output(**kwargs, local_path=taken(samples.wav, tmp_path), first_store=True)
    assert again.pk == first.pk and MediaFile.objects.filter(source_job_id=job_id).count() == 1


def test_a_job_output_that_is_not_media_is_refused(user, project, samples, local_storage):
    with pytest.raises(ApplicationError) as info:
        media_create_output(project_id=project.pk, user_id=user.pk, job_id=uuid.uuid4(), name="x.mp4",
                            type="video", mime_type="video/mp4", local_path=samples.text)
    assert info.value.code == "output_not_decodable"
    assert MediaFile.objects.count() == 0
    assert not local_storage.exists() or not any(local_storage.rglob("*.mp4"))


def test_a_pcm_wav_output_is_read_without_the_sandbox_and_everything_else_in_it(
    user, project, samples, local_storage, monkeypatch, tmp_path
):
    from media.services import outputs

    sandboxed: list[str] = []
    real = outputs.probe_isolated

    def spy(path, declared_type, **kwargs):
        sandboxed.append(Path(path).name)
        return real(path, declared_type, **kwargs)

    monkeypatch.setattr(outputs, "probe_isolated", spy)
    common = dict(project_id=project.pk, user_id=user.pk)
    speech = media_create_output(**common, job_id=uuid.uuid4(), name="speech.wav", type="audio",
                                 mime_type="audio/wav", local_path=taken(samples.wav, tmp_path))
    assert speech.status == "ready" and speech.duration_ms and speech.metadata["audio_codec"] == "pcm_s16le"
    assert sandboxed == []
    clip = taken(samples.video, tmp_path)
    media_create_output(**common, job_id=uuid.uuid4(), name="clip.mp4", type="video", mime_type="video/mp4",
                        local_path=clip)
    assert sandboxed == [clip.name]
    # Named .wav and declared audio, but not a RIFF WAVE: FFmpeg reads it, in the sandbox.
    fake = tmp_path / "fake.wav"
    fake.write_bytes(samples.text.read_bytes())
    with pytest.raises(ApplicationError) as info:
        media_create_output(**common, job_id=uuid.uuid4(), name="fake.wav", type="audio", mime_type="audio/wav",
                            local_path=fake)
    assert info.value.code == "output_not_decodable"
    assert sandboxed == [clip.name, "fake.wav"]


# ----------------------------------------------------------------------------- sweep


def test_sweep_expires_abandoned_uploads_and_unsticks_probes(
    auth_client, project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    now = timezone.now()
    abandoned = request_upload(auth_client, project, samples.wav, "audio/wav")
    local_put(abandoned["upload_url"], samples.wav.read_bytes(), "audio/wav")
    abandoned_key = MediaFile.objects.get(pk=abandoned["media_id"]).storage_key
    MediaFile.objects.filter(pk=abandoned["media_id"]).update(created_at=now - timedelta(days=2))
    fresh = request_upload(auth_client, project, samples.wav, "audio/wav")

    lost = confirmed(auth_client, project, samples.wav, "audio/wav")  # its probe message was lost
    MediaFile.objects.filter(pk=lost.pk).update(updated_at=now - timedelta(minutes=45))
    hopeless = confirmed(auth_client, project, samples.wav, "audio/wav")
    MediaFile.objects.filter(pk=hopeless.pk).update(updated_at=now - timedelta(hours=3))

    with django_capture_on_commit_callbacks(execute=True):
        counts = media_sweep(now=now)
    assert counts == {"expired_uploads": 1, "requeued": 1, "timed_out": 1, "upload_keys_deleted": 0,
                      "publications_resent": 0, "publications_given_up": 0}
    assert not MediaFile.objects.filter(pk=abandoned["media_id"]).exists()
    assert not stored(abandoned_key)
    assert MediaFile.objects.get(pk=fresh["media_id"]).status == "uploading"
    assert MediaFile.objects.get(pk=lost.pk).status == "ready"  # re-probed (eagerly here)
    hopeless.refresh_from_db()
    assert hopeless.status == "rejected" and "did not finish" in hopeless.rejection_reason


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("backend", ["local_storage", "s3_storage"])
def test_storage_backend_contract(request, backend, samples, tmp_path):
    request.getfixturevalue(backend)
    storage = get_storage()
    assert isinstance(storage, LocalStorage if backend == "local_storage" else S3ObjectStorage)
    storage.check()
    key = "projects/p1/media/m1/tone.wav"
    assert storage.head(key) is None
    with samples.wav.open("rb") as fh:
        storage.save(key, fh, "audio/wav")
    assert storage.head(key) == samples.wav.stat().st_size
    assert storage.content_type(key) == "audio/wav"
    with storage.open(key) as fh:
        assert fh.read() == samples.wav.read_bytes()
    with storage.local_path(key) as path:
        assert path.read_bytes() == samples.wav.read_bytes()
    storage.copy(key, "voices/v1/sample.wav")
    assert storage.head("voices/v1/sample.wav") == samples.wav.stat().st_size
    given = taken(samples.wav, tmp_path)
    storage.save_file("projects/p1/media/m2/x.wav", given, "audio/x-wav")  # the storage takes the file
    assert not given.exists() and storage.content_type("projects/p1/media/m2/x.wav") == "audio/x-wav"
    with storage.open("projects/p1/media/m2/x.wav") as fh:
        assert fh.read() == samples.wav.read_bytes()
    assert storage.delete_prefix("projects/p1") == 2
    assert storage.head(key) is None and storage.head("voices/v1/sample.wav") is not None
    storage.delete("voices/v1/sample.wav")
    storage.delete("voices/v1/sample.wav")  # absent: not an error
    assert storage.head("voices/v1/sample.wav") is None
    with pytest.raises(FileNotFoundError):
        storage.open(key)
    with pytest.raises(FileNotFoundError), storage.local_path(key):
        pass
    for bad in ("../etc/passwd", "/abs/path", "a//b", "a/.hidden", "", "a/../b"):
        with pytest.raises(ValueError):
            storage.head(bad)


def test_job_output_against_s3(user, project, samples, s3_storage, tmp_path):
    output = taken(samples.png, tmp_path)
    media = media_create_output(project_id=project.pk, user_id=user.pk, job_id=uuid.uuid4(), name="out.png",
                                type="image", mime_type="image/png", local_path=output)
    assert not output.exists()  # uploaded, then removed
    assert get_storage().head(media.storage_key) == samples.png.stat().st_size
    assert get_storage().content_type(media.storage_key) == "image/png"
    thumbnail_size = get_storage().head(media.thumbnail_key)
    assert thumbnail_size is not None and thumbnail_size > 0


def test_upload_then_voice_against_s3(auth_client, project, samples, s3_storage):
    import requests

    ticket = request_upload(auth_client, project, samples.wav, "audio/wav")
    assert requests.put(ticket["upload_url"], data=samples.wav.read_bytes(), headers=ticket["headers"],
                        timeout=30).status_code == 200
    assert auth_client.post(f"/api/v1/projects/{project.pk}/media/{ticket['media_id']}/confirm").status_code == 202
    assert run_probe(ticket["media_id"]) == "ready"
    consent = consent_of(MediaFile.objects.get(pk=ticket["media_id"]))
    response = auth_client.post("/api/v1/voices", {"media_id": ticket["media_id"], "name": "S3 voice",
                                                   "consent_id": consent}, format="json")
    assert response.status_code == 201
    sample = requests.get(response.json()["voice"]["sample_url"], timeout=30)
    assert sample.status_code == 200 and sample.content[:4] == b"RIFF" and sample.content[8:12] == b"WAVE"
    assert sample.headers["Content-Type"] == "audio/wav"


def test_upload_local_helper_is_the_api_flow(auth_client, project, samples, local_storage):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    assert media.status == "ready"


def test_save_file_moves_the_file_in_and_copies_it_from_another_filesystem(local_storage, tmp_path, monkeypatch):
    import errno
    import os

    storage = get_storage()
    here = tmp_path / "out.wav"
    here.write_bytes(b"RIFF one")
    inode = here.stat().st_ino
    storage.save_file("projects/p/media/m/out.wav", here, "audio/wav")
    stored_path = local_storage / "projects/p/media/m/out.wav"
    assert not here.exists() and stored_path.stat().st_ino == inode  # renamed, its bytes not written again
    assert storage.content_type("projects/p/media/m/out.wav") == "audio/wav"

    # From another filesystem a rename cannot work: the bytes are copied beside the target and
    # renamed over it (a reader sees the old object or the new one), and the file is removed.
    real_rename = os.rename

    def cross_device(src, dst, *args, **kwargs):
        if Path(src) == there:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    there = tmp_path / "elsewhere.wav"
    there.write_bytes(b"RIFF two")
    monkeypatch.setattr(os, "rename", cross_device)
    storage.save_file("projects/p/media/m/out.wav", there, "audio/x-wav")
    assert not there.exists() and stored_path.read_bytes() == b"RIFF two"
    assert storage.content_type("projects/p/media/m/out.wav") == "audio/x-wav"
    assert sorted(p.name for p in stored_path.parent.iterdir()) == [".out.wav.meta.json", "out.wav"]


def test_save_file_that_fails_leaves_no_part_behind(local_storage, tmp_path, monkeypatch):
    storage = get_storage()
    source = tmp_path / "out.wav"
    source.write_bytes(b"RIFF")

    def full_disk(self, name, finished):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalStorage, "_move_in", full_disk)
    with pytest.raises(OSError):
        storage.save_file("projects/p/media/m/out.wav", source, "audio/wav")
    assert list((local_storage / "projects/p/media/m").iterdir()) == []
    escape = tmp_path / "x"
    escape.write_bytes(b"RIFF")
    with pytest.raises(ValueError):
        storage.save_file("../escape.wav", escape, "audio/wav")


def test_save_file_moves_only_a_regular_file_with_no_other_name(local_storage, tmp_path):
    """A file linked elsewhere too (or a link) would be reachable by that other name once stored."""
    import os

    from media.errors import StorageError

    storage = get_storage()
    linked = tmp_path / "out.wav"
    linked.write_bytes(b"RIFF")
    os.link(linked, tmp_path / "someone-elses-name")
    link = tmp_path / "link.wav"
    link.symlink_to(tmp_path / "someone-elses-name")
    for path in (linked, link):
        with pytest.raises(StorageError):
            storage.save_file("projects/p/media/m/out.wav", path, "audio/wav")
    assert not (local_storage / "projects/p/media/m/out.wav").exists()


def test_an_output_that_cannot_be_stored_leaves_no_thumbnail(user, project, samples, local_storage, monkeypatch,
                                                             tmp_path):
    def full_disk(self, key, path, content_type):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalStorage, "save_file", full_disk)
    with pytest.raises(OSError):
        media_create_output(project_id=project.pk, user_id=user.pk, job_id=uuid.uuid4(), name="clip.mp4",
                            type="video", mime_type="video/mp4", local_path=taken(samples.video, tmp_path))
    assert not MediaFile.objects.exists()
    assert not [p for p in local_storage.rglob("*") if p.is_file()]  # its thumbnail was removed too
