"""A long file's transcription run as pieces through a real worker and the local backend."""

from __future__ import annotations

import numpy as np
import pytest

from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from jobs.models import Job, JobPiece, JobStatus
from tests.factories import ProjectFactory
from tests.jobs.conftest import upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SENTENCES = [
    "The river runs past the old mill at the edge of the village.",
    "Every morning the baker opens his shop before the sun comes up.",
    "Children walk to school along the narrow path beside the water.",
    "In the afternoon the market fills with farmers selling apples.",
    "At night the lights of the harbour shine across the quiet bay.",
    "The fishermen return with their boats full of silver fish.",
]


def long_speech(path):
    from gpu_tasks.engines.media import decode_audio
    from gpu_tasks.engines.tts import synthesize, write_wav

    rate, chunks = 16000, []
    for sentence in SENTENCES:
        pcm, sr = synthesize(sentence)
        one = path.with_name("one.wav")
        write_wav(one, pcm, sr)
        chunks += [decode_audio(one, rate), np.zeros(rate)]
    write_wav(path, (np.concatenate(chunks) * 32767).astype("<i2").tobytes(), rate)
    return path


def test_a_long_file_is_transcribed_in_pieces_at_once_and_stitched(start_worker, auth_client, user, tmp_path):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    start_worker(AUTEUR_PIECES_MIN_MS="10000", AUTEUR_PIECES_TARGET_MS="8000")
    audio = upload_local(auth_client, project, long_speech(tmp_path / "long.wav"), "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription", {"media_id": str(audio.pk)}, format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    pieces = list(JobPiece.objects.filter(job=job).order_by("index"))
    assert len(pieces) == 3 and all(p.state == "succeeded" and p.attempts == 1 for p in pieces)
    assert job.output_data["pieces"] == 3
    words = [w["word"].strip(" .,").lower() for s in job.output_data["segments"] for w in s["words"]]
    for expected in ("river", "village", "school", "market", "harbor", "silver", "fish"):
        assert expected in words, (expected, words)
    starts = [w["start_ms"] for s in job.output_data["segments"] for w in s["words"]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    # Charged once for the whole file, nothing refunded.
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
    assert Job.objects.get(pk=job.pk).progress == 100


def _pattern(seed: int, n: int) -> list[bool]:
    """Which of a fresh fault-injecting backend's first `n` transcription calls fail (seeded)."""
    from gpu_tasks.backends.faults import FaultInjectingBackend
    from gpu_tasks.backends.noop import NoopBackend

    backend = FaultInjectingBackend(NoopBackend(), "transcription:transient=0.3", seed=seed)
    return [backend.spawn("transcription", {}).startswith("fault-") for _ in range(n)]


def test_a_piece_that_fails_once_is_retried_alone(start_worker, auth_client, user, tmp_path):
    """The second piece's first call fails transiently (seeded): it alone is spawned again, and the
    job completes, charged once."""
    seed = next(s for s in range(2000) if _pattern(s, 4) == [False, True, False, False])
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    start_worker(AUTEUR_PIECES_MIN_MS="10000", AUTEUR_PIECES_TARGET_MS="8000",
                 AUTEUR_FAULT_INJECTION="transcription:transient=0.3", AUTEUR_FAULT_SEED=str(seed),
                 DJANGO_SETTINGS_MODULE="bench.settings")
    audio = upload_local(auth_client, project, long_speech(tmp_path / "long.wav"), "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription", {"media_id": str(audio.pk)}, format="json")
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert [p.attempts for p in JobPiece.objects.filter(job=job).order_by("index")] == [1, 2, 1]
    retries = job.events.filter(type="inference_retry")
    assert [e.data["piece"] for e in retries] == [1]
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
