"""A long file's transcription run as pieces through a real worker and the local backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from jobs import gpu_client
from jobs.models import Job, JobPiece, JobStatus
from tests.factories import ProjectFactory
from tests.gpu_tasks.test_pieces import SENTENCES
from tests.jobs.conftest import Worker, subprocess_env, upload_local, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def pieces_worker(django_db_setup: None) -> Iterator[Worker]:
    """The local engine's pieced jobs (the last two tests here) share one worker, cutting a file of
    more than 5 s into pieces of about 4 s. It starts after the tests with workers of their own
    (fault injection) have stopped theirs, so no job of theirs meets it."""
    worker = Worker(subprocess_env(AUTEUR_PIECES_MIN_MS="5000", AUTEUR_PIECES_TARGET_MS="4000"))
    yield worker
    worker.stop()


def long_speech(path, *sentences: str):
    """The sentences (all six by default: 24 s) spoken, each followed by a second of silence."""
    from gpu_tasks.engines.media import decode_audio
    from gpu_tasks.engines.tts import synthesize, write_wav

    rate, chunks = 16000, []
    for sentence in sentences or SENTENCES:
        pcm, sr = synthesize(sentence)
        one = path.with_name("one.wav")
        write_wav(one, pcm, sr)
        chunks += [decode_audio(one, rate), np.zeros(rate)]
    write_wav(path, (np.concatenate(chunks) * 32767).astype("<i2").tobytes(), rate)
    return path


def _pattern(seed: int, n: int) -> list[bool]:
    """Which of a fresh fault-injecting backend's first `n` transcription calls fail (seeded)."""
    from gpu_tasks.backends.faults import FaultInjectingBackend
    from gpu_tasks.backends.noop import NoopBackend

    backend = FaultInjectingBackend(NoopBackend(), "transcription:transient=0.3", seed=seed)
    return [backend.spawn("transcription", {}).startswith("fault-") for _ in range(n)]


def test_a_piece_that_fails_once_is_retried_alone(start_worker, auth_client, user, tmp_path):
    """The second piece's first call fails transiently (seeded): it alone is spawned again, and the
    job completes, charged once. The calls that do not fail go to the noop backend, held half a
    second and then announced (as the local engine's calls are, to the consumer beside the worker):
    the retry is the pieces' own whatever runs a call, and the local engine's pieces are the test
    above's."""
    seed = next(s for s in range(2000) if _pattern(s, 4) == [False, True, False, False])
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    start_worker(AUTEUR_PIECES_MIN_MS="10000", AUTEUR_PIECES_TARGET_MS="8000",
                 AUTEUR_FAULT_INJECTION="transcription:transient=0.3", AUTEUR_FAULT_SEED=str(seed),
                 DJANGO_SETTINGS_MODULE="bench.settings", AUTEUR_GPU_BACKEND="noop", AUTEUR_NOOP_HOLD_SECONDS="0.5")
    audio = upload_local(auth_client, project, long_speech(tmp_path / "long.wav"), "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription", {"media_id": str(audio.pk)}, format="json")
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert [p.attempts for p in JobPiece.objects.filter(job=job).order_by("index")] == [1, 2, 1]
    retries = job.events.filter(type="inference_retry")
    assert [e.data["piece"] for e in retries] == [1]
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]


def _pieced_job(start_worker, auth_client, user, tmp_path, **worker_env: str) -> str:
    """A pieced transcription on a worker that starts no announcements' consumer: its job ends (or
    is canceled) on a look at its calls, never on an announcement (the injected failure is seen by
    the look right after the spawn; a hung call never announces)."""
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    start_worker(AUTEUR_PIECES_MIN_MS="10000", AUTEUR_PIECES_TARGET_MS="8000", DJANGO_SETTINGS_MODULE="bench.settings",
                 consumer=False, **worker_env)
    audio = upload_local(auth_client, project, long_speech(tmp_path / "long.wav"), "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription", {"media_id": str(audio.pk)}, format="json")
    assert response.status_code == 202, response.json()
    return str(response.json()["job_id"])


def test_a_piece_that_fails_for_good_fails_the_job_refunded_once(start_worker, auth_client, user, tmp_path):
    from gpu_tasks.backends.faults import FaultInjectingBackend
    from gpu_tasks.backends.noop import NoopBackend

    def fails(seed: int) -> list[bool]:
        backend = FaultInjectingBackend(NoopBackend(), "transcription:permanent=0.3", seed=seed)
        return [backend.spawn("transcription", {}).startswith("fault-") for _ in range(3)]

    seed = next(s for s in range(2000) if fails(s) == [False, True, False])
    job = wait_terminal(_pieced_job(start_worker, auth_client, user, tmp_path,
                                    AUTEUR_FAULT_INJECTION="transcription:permanent=0.3", AUTEUR_FAULT_SEED=str(seed)))
    assert (job.status, job.error_code) == (JobStatus.FAILED, "gpu_oom")
    assert sorted(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == [
        "refund", "usage"]
    assert job.credits_refund == job.credits_cost


def test_pieces_run_at_most_the_types_capacity_at_once_and_a_cancel_stops_them(start_worker, auth_client, user,
                                                                               tmp_path):
    from tests.jobs.conftest import wait_for

    job_id = _pieced_job(start_worker, auth_client, user, tmp_path, AUTEUR_FAULT_INJECTION="transcription:hang=1.0",
                         AUTEUR_TYPE_CAPACITY="transcription=2")
    wait_for(lambda: JobPiece.objects.filter(job_id=job_id, state="running").count() == 2, timeout=60)
    assert JobPiece.objects.filter(job_id=job_id, state="pending").count() == 1, "the third waits for a unit"
    canceled = auth_client.post(f"/api/v1/jobs/{job_id}/cancel", {}, format="json")
    assert canceled.status_code == 200, canceled.json()
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.CANCELED and job.credits_refunded


@pytest.mark.django_db
def test_which_jobs_run_in_pieces(settings, user):
    from jobs.life.pieces import pieces_wanted

    settings.AUTEUR_PIECES_MIN_MS = 1000
    job = Job(user=user, type="transcription", credits_cost=1, gpu_backend="local",
              input_params={"media_id": "x", "_quantities": {"duration_ms": 60_000}})
    assert pieces_wanted(job)
    job.gpu_backend = "modal"  # its pieces' speakers come from one more call (test_pieces_speakers.py)
    assert pieces_wanted(job)
    job.type = "compression"
    assert pieces_wanted(job)
    job.type, job.input_params = "transcription", {**job.input_params, "script": "Known words."}
    assert not pieces_wanted(job), "aligned to a script: whole"
    job.input_params = {"media_id": "x", "_quantities": {"duration_ms": 500}}
    assert not pieces_wanted(job), "short: whole"
    job.type, job.input_params = "render", {"_quantities": {"duration_ms": 60_000}}
    assert not pieces_wanted(job)
    settings.AUTEUR_PIECES_MIN_MS = 0
    job.type = "transcription"
    assert not pieces_wanted(job), "pieces switched off"


def test_a_long_file_is_transcribed_in_pieces_at_once_and_stitched(pieces_worker, auth_client, user, tmp_path):
    """Three sentences with a second of silence after each, cut in those silences into three pieces
    of about 4 s, each transcribed by the local engine (Whisper tiny.en) in its own runner."""
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    audio = upload_local(auth_client, project, long_speech(tmp_path / "long.wav", SENTENCES[0], *SENTENCES[2:4]),
                         "audio/wav")
    response = auth_client.post("/api/v1/jobs/transcription", {"media_id": str(audio.pk)}, format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    pieces = list(JobPiece.objects.filter(job=job).order_by("index"))
    assert len(pieces) == 3 and all(p.state == "succeeded" and p.attempts == 1 for p in pieces)
    assert job.output_data["pieces"] == 3
    words = [w["word"].strip(" .,").lower() for s in job.output_data["segments"] for w in s["words"]]
    for expected in ("river", "village", "school", "market"):  # each piece's words
        assert expected in words, (expected, words)
    timed = [(w["word"], w["start_ms"], w["end_ms"]) for s in job.output_data["segments"] for w in s["words"]]
    assert [start for _, start, _ in timed] == sorted(start for _, start, _ in timed), "in time order"
    # No word kept from both pieces at a seam: no two neighbours say the same word over the same
    # time (two different words may share a start: Whisper can give a word no length).
    assert not any(a[0] == b[0] and b[1] < a[2] for a, b in itertools.pairwise(timed)), "no word twice"
    # Charged once for the whole file, nothing refunded.
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
    assert Job.objects.get(pk=job.pk).progress == 100


def test_a_long_video_is_compressed_in_pieces_and_joined_frame_for_frame(pieces_worker, auth_client, user, tmp_path):
    """A 12 s video with a keyframe every 2 s, each frame its own grey level, compressed in three
    pieces through a worker and the local backend: every frame once and in order, the audio whole,
    charged once, a version of its source; the pieces' calls are let go of."""
    from gpu_tasks.engines.media import probe
    from media.models import MediaFile
    from media.storage import get_storage
    from tests.gpu_tasks.helpers import ffmpeg
    from tests.gpu_tasks.test_compression_pieces import FPS, SECONDS, STEP, grey_levels

    source = tmp_path / "numbered.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=160x96:r={FPS}:d={SECONDS},geq=lum='mod(N*{STEP},256)':cb=128:cr=128",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}", "-c:v", "libx264",
           "-g", str(2 * FPS), "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(source))
    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user)
    video = upload_local(auth_client, project, source, "video/mp4")
    response = auth_client.post("/api/v1/jobs/compression", {"media_id": str(video.pk), "preset": "480p"},
                                format="json")
    assert response.status_code == 202, response.json()
    job = wait_terminal(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    pieces = list(JobPiece.objects.filter(job=job).order_by("index"))
    assert [(p.start_ms, p.end_ms, p.state) for p in pieces] == [
        (0, 4000, "succeeded"), (4000, 8000, "succeeded"), (8000, 11961, "succeeded")]
    assert job.output_data["pieces"] == 3 and job.output_data["duration_ms"] == 12_000

    [output] = MediaFile.objects.filter(pk__in=job.output_data["output_media_ids"])
    assert output.derived_from_id == video.pk and job.output_data["output_size_bytes"] == output.file_size_bytes
    with get_storage().local_path(output.storage_key) as path:
        result, info = grey_levels(path), probe(path)
    expected = grey_levels(source)
    assert len(result) == len(expected) == SECONDS * FPS
    assert np.abs(result - expected).max() < STEP / 2, "a frame lost, doubled or out of order"
    assert info.has_audio and abs(info.duration_s - SECONDS) < 0.1
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
    local = gpu_client.backend()
    folders = [local._call_dir(p.call_id.partition(":")[2] or p.call_id) for p in pieces]  # type: ignore[attr-defined]
    assert folders and all(f is not None and not f.exists() for f in folders), "each piece's call was let go of"
