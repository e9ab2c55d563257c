"""Voice clones from uploaded samples."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import pytest

from media.models import MediaFile, VoiceClone
from media.storage import get_storage
from tests.factories import voice_body
from tests.media.conftest import body_of, ffmpeg, local_get, request_upload, stored, upload_local

pytestmark = pytest.mark.django_db

VOICES = "/api/v1/voices"


def test_a_valid_sample_makes_a_voice_with_its_own_copy(
    auth_client, project, samples, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    response = auth_client.post(VOICES, voice_body(media, "Narrator"), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()["voice"]
    assert body["name"] == "Narrator"
    assert body["source_media_id"] == str(media.pk)
    assert 3990 <= body["sample_duration_ms"] <= 4010
    voice = VoiceClone.objects.get(pk=body["id"])
    assert voice.sample_key == f"voices/{voice.pk}/sample.wav"
    with get_storage().open(voice.sample_key) as fh:
        stored_sample = fh.read()
    assert wav_facts(stored_sample) == (1, 24_000, 4000)
    sample = local_get(body["sample_url"])
    assert sample.status_code == 200 and body_of(sample) == stored_sample

    listing = auth_client.get(VOICES).json()
    assert listing["count"] == 1 and listing["voices"][0]["id"] == str(voice.pk)
    assert auth_client.get(f"{VOICES}/{voice.pk}").json()["voice"]["name"] == "Narrator"

    # The voice outlives its source file.
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/projects/{project.pk}/media/{media.pk}").status_code == 204
    voice.refresh_from_db()
    assert voice.source_media is None and stored(voice.sample_key)

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"{VOICES}/{voice.pk}").status_code == 204
    assert not VoiceClone.objects.filter(pk=voice.pk).exists()
    assert not stored(voice.sample_key)
    assert auth_client.get(VOICES).json()["count"] == 0


def test_a_one_second_sample_is_too_short(auth_client, project, samples, local_storage):
    media = upload_local(auth_client, project, samples.short_wav, "audio/wav")
    assert media.status == "ready" and media.duration_ms is not None and 990 <= media.duration_ms <= 1010
    response = auth_client.post(VOICES, voice_body(media, "Tiny"), format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_voice_sample"
    assert error["details"]["min_ms"] == 3000 and error["details"]["duration_ms"] == media.duration_ms
    assert VoiceClone.objects.count() == 0
    assert not (local_storage / "voices").exists()


def wav_facts(data: bytes) -> tuple[int, int, int]:
    """(channels, sample rate, duration in ms) of a WAV file's bytes; wave.Error if it is none."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getnchannels(), wav.getframerate(), wav.getnframes() * 1000 // wav.getframerate()


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of stereo 48 kHz FLAC: another container, rate and channel count than the sample's."""
    path = tmp_path_factory.mktemp("voices") / "speech.flac"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", "12", "-ac", "2", str(path))
    return path


@pytest.mark.parametrize("source", ["wav", "flac"])
def test_the_stored_sample_is_a_small_wav_capped_whatever_was_uploaded(
    auth_client, project, samples, long_flac, local_storage, settings, source
):
    settings.AUTEUR_VOICE_SAMPLE_MAX_SECONDS = 3
    path, content_type = (samples.wav, "audio/wav") if source == "wav" else (long_flac, "audio/flac")
    media = upload_local(auth_client, project, path, content_type)
    assert media.status == "ready" and media.duration_ms is not None and media.duration_ms > 3000
    response = auth_client.post(VOICES, voice_body(media, "Long"), format="json")
    assert response.status_code == 201, response.json()
    voice = VoiceClone.objects.get(pk=response.json()["voice"]["id"])
    with get_storage().open(voice.sample_key) as fh:
        data = fh.read()
    assert wav_facts(data) == (1, 24_000, 3000)
    assert voice.sample_duration_ms == 3000 and response.json()["voice"]["sample_duration_ms"] == 3000
    assert len(data) < 3 * 24_000 * 2 + 1024 < path.stat().st_size  # 16-bit mono: ~144 KB, not the upload
    assert get_storage().content_type(voice.sample_key) == "audio/wav"


def test_a_sample_whose_header_claims_more_than_it_holds_is_measured_by_its_audio(
    auth_client, project, samples, local_storage
):
    media = upload_local(auth_client, project, samples.short_wav, "audio/wav")
    MediaFile.objects.filter(pk=media.pk).update(duration_ms=60_000)  # what a lying header would give
    response = auth_client.post(VOICES, voice_body(media, "Liar"), format="json")
    assert response.status_code == 422, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid_voice_sample" and 990 <= error["details"]["duration_ms"] <= 1010
    assert VoiceClone.objects.count() == 0
    assert not (local_storage / "voices").exists() or not any((local_storage / "voices").rglob("*.wav"))


@pytest.mark.parametrize("kind", ["video", "not-ready", "rejected"])
def test_only_ready_audio_makes_a_voice(auth_client, project, samples, local_storage, kind):
    if kind == "video":
        media = upload_local(auth_client, project, samples.video, "video/mp4")
    elif kind == "rejected":
        media = upload_local(auth_client, project, samples.text, "audio/wav", "fake.wav")
    else:
        media_id = request_upload(auth_client, project, samples.wav, "audio/wav")["media_id"]
        media = MediaFile.objects.get(pk=media_id)
    response = auth_client.post(VOICES, voice_body(media, "x"), format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_voice_sample"
    assert VoiceClone.objects.count() == 0


def test_another_users_media_is_404(make_user, client_for, make_project, samples, local_storage):
    owner, intruder = make_user(), make_user()
    media = upload_local(client_for(owner), make_project(owner), samples.wav, "audio/wav")
    response = client_for(intruder).post(VOICES, voice_body(media, "Stolen"), format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "media_not_found"
    assert VoiceClone.objects.count() == 0
    assert not (local_storage / "voices").exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"media_id": "not-a-uuid", "name": "x"}, "validation_error"),
        ({"name": "x"}, "validation_error"),
        ({"media_id": "6c3a3f1e-1111-4c59-9c1b-0d7b8d0d0f00", "name": ""}, "validation_error"),
        ({"media_id": "6c3a3f1e-1111-4c59-9c1b-0d7b8d0d0f00", "name": "x", "engine": "best"}, "validation_error"),
    ],
)
def test_bad_voice_requests_are_400(auth_client, local_storage, body, code):
    response = auth_client.post(VOICES, body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_unknown_media_is_404(auth_client, local_storage):
    response = auth_client.post(VOICES, {"media_id": "6c3a3f1e-1111-4c59-9c1b-0d7b8d0d0f00", "name": "x",
                                       "consent_id": "6c3a3f1e-2222-4c59-9c1b-0d7b8d0d0f00"},
                                format="json")
    assert response.status_code == 404


VOICE_FFMPEG = """#!{python}
import json, os, socket, sys
report = {{"env": sorted(os.environ), "uid": os.getuid()}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    report["connect"] = "connected"
except OSError as exc:
    report["connect"] = type(exc).__name__
sys.stderr.write(json.dumps(report))
os.execv({ffmpeg!r}, [{ffmpeg!r}, *sys.argv[1:]])
"""


def test_the_sample_is_decoded_in_the_sandbox_without_the_apis_secrets(
    auth_client, project, samples, local_storage, request, monkeypatch, caplog
):
    """ffmpeg decodes a user's upload: it runs in a confined child, with no secret in its environment,
    no network and (as root) a uid of its own. A wrapper in its place says what it can see, then
    refuses the file so that what it said reaches the log."""
    import os
    import shutil
    import sys
    import tempfile
    from urllib.parse import urlsplit

    from gpu_tasks import sandbox as isolation
    from media.services import voices

    monkeypatch.setenv("AUTEUR_API_SECRET", "s3cret")
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    folder = Path(tempfile.mkdtemp(prefix="auteur-voice-test-"))
    folder.chmod(0o755)  # the sandbox's uid runs the wrapper from here
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    wrapper = folder / "ffmpeg"
    wrapper.write_text(VOICE_FFMPEG.format(python=sys.executable, port=port, ffmpeg="/nonexistent/ffmpeg"))
    wrapper.chmod(0o755)
    monkeypatch.setattr(voices, "ffmpeg_exe", lambda: str(wrapper))
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    response = auth_client.post(VOICES, voice_body(media, "Narrator"), format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_voice_sample"
    assert not VoiceClone.objects.exists()
    [said] = [r.getMessage() for r in caplog.records if "voice sample transcode failed" in r.getMessage()]
    report = json.loads(said[said.index("{"):said.rindex("}") + 1])
    assert set(report["env"]) <= {"PATH", "LANG"}
    here = isolation.detect()
    if here.network_isolated:
        assert report["connect"] in ("OSError", "ConnectionRefusedError")
    if here.separate_uid:
        assert report["uid"] == here.probe_uid != os.getuid()
