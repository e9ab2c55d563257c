"""A transcription in another language, end to end on the local worker: the detected language
is recorded in the result."""

from __future__ import annotations

import pytest

from credits.services.ledger import credit_grant
from gpu_tasks.engines.tts import synthesize, write_wav
from jobs.models import JobStatus
from tests.factories import ProjectFactory
from tests.jobs.conftest import upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SPANISH = "Buenos días, hoy vamos a hablar de la historia de la ciudad."


def test_spanish_speech_with_auto_is_transcribed_and_its_language_recorded(celery_worker, auth_client, user,
                                                                           tmp_path):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user, name="p")
    pcm, rate = synthesize(SPANISH, speed=0.9, voice="es")
    write_wav(tmp_path / "es.wav", pcm, rate)
    audio = upload_local(auth_client, project, tmp_path / "es.wav", "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription",
                                {"project_id": str(project.pk), "media_id": str(audio.pk), "language": "auto"},
                                format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert job.input_params["language"] == "auto"
    assert job.output_data["language"] == "es"
    text = job.output_data["text"].lower()
    assert sum(word in text for word in ("buenos", "hoy", "vamos", "hablar", "historia")) >= 3, text
