"""On Modal, a long file's pieces only recognise words, and one more call diarizes the whole file:
the speakers are the same across the pieces."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.contract import status_record
from gpu_tasks.engines.transcript import Turn, speaker_turns
from gpu_tasks.errors import PermanentGpuError
from jobs import gpu_client
from jobs.models import Job, JobPiece, JobStatus
from tests.gpu_tasks.test_modal_backend import FakeModal
from tests.gpu_tasks.test_pieces import tone_and_silence
from tests.jobs.support import submit
from tests.media.conftest import local_storage, upload_local  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_storage")]

# The whole file's diarization: one speaker for the first 12 s, another after.
TURNS = [Turn(0.0, 12.0, "SPEAKER_07"), Turn(12.0, 24.0, "SPEAKER_03")]


class Transcription:
    """What the deployed Modal function answers (its engine, with the real weights, is tested in
    tests/gpu_tasks/test_transcription_hf.py): the words starting in a piece's span (one 100 ms
    after every second of the file), each labelled as a call that does not diarize labels them; or
    the whole file's turns."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.poisoned: int | None = None  # the span call of this index (from 0) answers no transcript
        self.spans = 0

    def local(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.payloads.append(payload)
        if payload.get("speakers_only"):
            return status_record("succeeded", result=speaker_turns(TURNS, duration_s=24.0))
        start, end = payload["span"]["start_ms"], payload["span"]["end_ms"]
        self.spans += 1
        if self.spans - 1 == self.poisoned:  # a container's word that is not what the engine returns
            return status_record("succeeded", result={"text": "owned", "segments": "<script>", "outputs": {
                "video": {"path": "/etc/passwd", "content_type": "video/mp4", "size_bytes": 1, "filename": "x.mp4"}}})
        heard = [s for s in range(24) if start <= s * 1000 + 100 < end]  # a word starting in the span
        words = [{"word": f"w{s}", "start_ms": s * 1000 + 100 - start, "end_ms": min(end, s * 1000 + 400) - start,
                  "confidence": None} for s in heard]
        segments = [{"id": "seg-0001", "speaker": "Speaker 1", "start_ms": words[0]["start_ms"],
                     "end_ms": words[-1]["end_ms"], "text": " ".join(w["word"] for w in words), "words": words}]
        result = {"language": "en", "duration_ms": end - start, "text": segments[0]["text"], "segments": segments,
                  "model": "whisper-large-v3", "diarization": {"performed": False, "speakers": 0},
                  "alignment": {"mode": "none"}}
        return status_record("succeeded", result=result)


@pytest.fixture
def on_modal(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Transcription:
    from gpu_tasks import modal_app
    from gpu_tasks.types import get_spec

    fake = FakeModal()
    answer = Transcription()
    monkeypatch.setattr(modal_app, get_spec("transcription").modal_function, answer, raising=False)
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake))
    settings.AUTEUR_GPU_BACKEND = "modal"
    settings.AUTEUR_PIECES_MIN_MS, settings.AUTEUR_PIECES_TARGET_MS = 10_000, 8_000
    return answer


def run_to_the_end(job_id: str) -> Job:
    from jobs.life.inference import job_poll, job_spawn
    from jobs.life.outputs import job_result_store

    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING)
    job_spawn(job_id=job_id)
    for _ in range(10):
        status = job_poll(job_id=job_id)
        assert status is not None
        if status.state == "succeeded":
            job_result_store(job_id=job_id, result=status.result or {})
            break
    return Job.objects.get(pk=job_id)


def test_the_speakers_come_from_one_diarization_of_the_whole_file(auth_client, funded, project, on_modal, tmp_path):
    wav = tone_and_silence(tmp_path / "long.wav", [(7.5, True), (0.8, False), (7.5, True), (0.8, False),
                                                   (7.4, True)])
    audio = upload_local(auth_client, project, wav, "audio/wav")
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)})
    assert response.status_code == 202, response.json()
    job = run_to_the_end(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)

    kinds = list(JobPiece.objects.filter(job=job).order_by("index").values_list("kind", flat=True))
    assert kinds == ["span", "span", "span", "speakers"]
    first, *spans = on_modal.payloads
    assert first.get("speakers_only") is True and "span" not in first, "the whole file's call starts first"
    assert all(p["diarization"] is False and "speakers_only" not in p for p in spans)

    segments = job.output_data["segments"]
    labelled = {w["word"]: s["speaker"] for s in segments for w in s["words"]}
    assert sorted(labelled, key=lambda w: int(w[1:])) == [f"w{s}" for s in range(24)], "every second once"
    assert {w for w, who in labelled.items() if who == "Speaker 1"} == {f"w{s}" for s in range(12)}
    assert {w for w, who in labelled.items() if who == "Speaker 2"} == {f"w{s}" for s in range(12, 24)}
    assert job.output_data["diarization"] == {"performed": True, "speakers": 2}
    assert job.output_data["pieces"] == 3


def test_without_diarization_no_speakers_call_is_made(auth_client, funded, project, on_modal, tmp_path):
    wav = tone_and_silence(tmp_path / "long.wav", [(7.5, True), (0.8, False), (7.5, True), (0.8, False),
                                                   (7.4, True)])
    audio = upload_local(auth_client, project, wav, "audio/wav")
    body = {"project_id": str(project.pk), "media_id": str(audio.pk), "speaker_diarization": False}
    job = run_to_the_end(submit(auth_client, "transcription", body).json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert list(JobPiece.objects.filter(job=job).values_list("kind", flat=True)) == ["span"] * 3
    assert not any(p.get("speakers_only") for p in on_modal.payloads)
    assert {s["speaker"] for s in job.output_data["segments"]} == {"Speaker 1"}


def test_a_piece_answering_what_the_engine_never_returns_fails_the_job_refunded(auth_client, funded, project,
                                                                                 on_modal, tmp_path):
    """One piece's container answers a result that is no transcript, naming a file outside its call:
    it is refused as it arrives (`invalid_result`), nothing of it is kept, and the job fails as any
    failure does, refunded, its other calls let go of."""
    from credits.models import CreditTransaction
    from jobs.life import status as lifecycle

    wav = tone_and_silence(tmp_path / "long.wav", [(7.5, True), (0.8, False), (7.5, True), (0.8, False),
                                                   (7.4, True)])
    audio = upload_local(auth_client, project, wav, "audio/wav")
    job_id = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(audio.pk)}).json()[
        "job_id"]
    on_modal.poisoned = 1  # the second piece's call
    with pytest.raises(PermanentGpuError) as info:
        run_to_the_end(job_id)
    assert info.value.code == "invalid_result"
    assert not JobPiece.objects.filter(job_id=job_id, state="succeeded", index=1).exists()
    assert JobPiece.objects.filter(job_id=job_id, index=1).values_list("result", flat=True).get() is None
    # The step's failure handler, as a worker runs it.
    assert lifecycle.job_fail(job_id=job_id, code=info.value.code, detail=info.value.message, retryable=False)
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.FAILED and job.credits_refund == job.credits_cost and not job.output_data
    assert sorted(CreditTransaction.objects.filter(job_id=job_id).values_list("type", flat=True)) == [
        "refund", "usage"]
