"""A voice consent end to end, on real speech: a challenge from the API, the speaker's reading and
the voice's sample uploaded, the verification run by a real worker on the local backend (Whisper
tiny.en and the speaker encoder), then the voice made with the consent, and used. Another speaker
reading the same kind of challenge is refused a voice.

The speech is eSpeak NG's (the local TTS engine's voices), as the engine's own tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from gpu_tasks.engines import speaker, transcription
from gpu_tasks.engines.tts import synthesize, write_wav
from jobs.models import JobStatus
from media.consent_phrases import phrase_text
from media.models import Consent, ConsentChallenge, VoiceClone
from tests.factories import ProjectFactory
from tests.jobs.conftest import upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SPEAKER, IMPOSTOR = "en-us+m3", "en-us+f3"
SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog near the river bank, and then it rests in the shade."


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="voices")


def say(path: Path, text: str, voice: str) -> Path:
    pcm, rate = synthesize(text, speed=0.9, voice=voice)
    write_wav(path, pcm, rate)
    return path


# The words the challenges of this test are given: the API draws eight at random from the list, and
# Whisper tiny.en mishears a few of its words now and then on synthetic voices; these eight it hears
# (tests/gpu_tasks/test_voice_consent.py), so the outcome does not depend on the draw.
WORDS = ["orange", "window", "garden", "river", "silver", "morning", "candle", "yellow"]


def verify(client: Any, project: Any, tmp_path: Path, reader: str, sample_id: str) -> Any:
    """A fresh challenge, read by `reader`, verified against the sample: the finished job."""
    challenge = client.post("/api/v1/voices/consent-challenges")
    assert challenge.status_code == 201, challenge.json()
    ConsentChallenge.objects.filter(pk=challenge.json()["challenge_id"]).update(words=WORDS)
    phrase = phrase_text(WORDS, challenge.json()["statement"])
    reading = upload_local(client, project, say(tmp_path / f"{reader}.wav", phrase, reader), "audio/wav")
    accepted = client.post("/api/v1/jobs/voice-consent", {
        "challenge_id": challenge.json()["challenge_id"], "recording_media_id": str(reading.pk),
        "sample_media_id": sample_id}, format="json")
    assert accepted.status_code == 202, accepted.json()
    return wait_terminal(accepted.json()["job_id"], timeout=240)


def test_the_speaker_reading_the_phrase_makes_a_voice_and_another_speaker_does_not(
    celery_worker, auth_client, project, tmp_path
):
    sample = upload_local(auth_client, project, say(tmp_path / "sample.wav", SAMPLE_TEXT, SPEAKER), "audio/wav")

    job = verify(auth_client, project, tmp_path, SPEAKER, str(sample.pk))
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    consent = Consent.objects.get(job_id=job.pk)
    assert job.output_data == {"passed": True, "checks": {"phrase": "passed", "speaker": "passed"},
                               "consent_id": str(consent.pk)}
    # The figures stay with the consent, for staff: the owner is told only which checks passed.
    assert consent.status == "verified" and consent.sample_sha256 == sample.content_sha256
    challenge_wer, phrase_wer, similarity = consent.challenge_wer, consent.phrase_wer, consent.similarity
    assert challenge_wer is not None and phrase_wer is not None and similarity is not None
    assert consent.max_wer == 0.25 and challenge_wer <= 0.25 and phrase_wer <= 0.25
    assert similarity >= speaker.DEFAULT_THRESHOLD and consent.threshold == speaker.DEFAULT_THRESHOLD
    assert consent.models_used == {"transcription": transcription.MODEL_NAME, "speaker": speaker.MODEL_NAME}
    assert sorted(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]

    made = auth_client.post("/api/v1/voices", {"media_id": str(sample.pk), "name": "Narrator",
                                               "consent_id": str(consent.pk)}, format="json")
    assert made.status_code == 201, made.json()
    assert made.json()["voice"]["consent_status"] == "verified"
    spoken = auth_client.post("/api/v1/jobs/tts", {"text": "Hello there.", "voice_id": made.json()["voice"]["id"]},
                              format="json")
    assert spoken.status_code == 202, spoken.json()

    impostor = verify(auth_client, project, tmp_path, IMPOSTOR, str(sample.pk))
    assert impostor.status == JobStatus.COMPLETED, (impostor.error_code, impostor.error_detail)
    assert impostor.output_data["passed"] is False
    assert impostor.output_data["checks"]["speaker"] == "failed"
    refused = auth_client.post("/api/v1/voices", {"media_id": str(sample.pk), "name": "Stolen",
                                                  "consent_id": impostor.output_data["consent_id"]}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["reason"] == "failed"
    assert VoiceClone.objects.count() == 1
