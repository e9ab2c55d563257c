"""A GPU call's result is input: every attack a taken-over container could make, through the real
store path (the job's finish step as a worker runs it: poll, check, store, or fail and refund).

Local calls run real runners whose engines are the attacks (tests/gpu_tasks/probe_engines.py);
a forged status.json stands for a runner that was itself taken over (or a degraded sandbox, where
the engine shares the worker's uid). Modal calls go through the fake client at its one module.
Each test asserts that nothing was copied or written, and that the job failed and was refunded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.backends.noop import _silence_wav, fixed_result
from gpu_tasks.contract import status_record
from gpu_tasks.results import ResultLimits
from gpu_tasks.types import JobType
from jobs import gpu_client
from jobs.life.publish import Step
from jobs.models import Job, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import MediaFile
from tests.factories import ProjectFactory
from tests.gpu_tasks.probe_engines import TTS_FIELDS
from tests.gpu_tasks.test_local_backend import wait_for
from tests.gpu_tasks.test_modal_backend import FakeModal

pytestmark = pytest.mark.django_db

PROBES = "tests.gpu_tasks.probe_engines"
SECRET = "worker-secret-for-the-results-test-0123456789"


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


@pytest.fixture
def storage(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local object storage in a fresh folder, and a secret in the worker's environment."""
    monkeypatch.setenv("AUTEUR_RESULTS_TEST_SECRET", SECRET)
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    settings.AWS_STORAGE_BUCKET_NAME = ""
    return tmp_path / "storage"


def use(monkeypatch: pytest.MonkeyPatch, backend: Any) -> Any:
    monkeypatch.setattr(gpu_client, "backend", lambda: backend)
    return backend


def processing(auth_client: Any, project: Any, call_id: str, job_type: str = "tts") -> Job:
    body = {"project_id": str(project.pk), "text": "Hello world"} if job_type == "tts" else {}
    response = auth_client.post(f"/api/v1/jobs/{job_type}", body, format="json")
    assert response.status_code == 202, response.json()
    now = timezone.now()
    job_id = response.json()["job_id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=call_id)
    return Job.objects.get(pk=job_id)


def finish(job: Job) -> Job:
    """The job's finish step, as a worker runs it (a failure goes through on_failure)."""
    STEP_TASKS[job_spec(job.type).family, Step.FINISH].apply(args=(str(job.pk),))
    job.refresh_from_db()
    return job


def assert_failed_and_refunded(job: Job, user: Any, balance: int) -> None:
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "invalid_result", False)
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert credit_balance_get(user=user) == balance + job.credits_cost
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert SECRET not in job.error_message + job.error_detail


def files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def local_call(tmp_path: Path, engine: str, payload: dict[str, Any] | None = None, **options: Any) -> tuple[
        LocalBackend, str]:
    backend = LocalBackend(tmp_path / "calls", engines={"tts": f"{PROBES}:{engine}"}, **options)
    call_id = backend.spawn("tts", {"text": "x", **(payload or {})})
    wait_for(backend, call_id, lambda s: s.done)
    return backend, call_id


# ----------------------------------------------------------------------------- the local backend


def test_an_engine_naming_the_processs_environ_as_its_output_fails_and_nothing_is_copied(
    auth_client, user, project, storage, tmp_path, monkeypatch
):
    backend, call_id = local_call(tmp_path, "environ_ref")
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    job = finish(job)
    assert_failed_and_refunded(job, user, balance)
    assert not (backend.base_dir / call_id / "out").exists() or not any((backend.base_dir / call_id / "out").iterdir())
    assert files_holding(tmp_path, SECRET) == []


def test_a_symlink_in_the_output_folder_pointing_out_is_refused(auth_client, user, project, storage, tmp_path,
                                                              monkeypatch):
    outside = Path(tmp_path.parent / f"{tmp_path.name}-outside.wav")  # readable by the engine's uid or not
    outside.write_text(SECRET)
    backend, call_id = local_call(tmp_path, "symlink_out", {"target": str(outside)})
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    job = finish(job)
    assert_failed_and_refunded(job, user, balance)
    assert files_holding(tmp_path, SECRET) == []


def test_an_absolute_filename_is_reduced_to_a_base_name_and_nothing_is_written_there(
    auth_client, user, project, storage, tmp_path, monkeypatch
):
    target = tmp_path / "elsewhere" / "pwned.wav"
    target.parent.mkdir()
    backend, call_id = local_call(tmp_path, "absolute_filename", {"target": str(target)})
    use(monkeypatch, backend)
    job = finish(processing(auth_client, project, call_id))
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert not target.exists() and list(target.parent.iterdir()) == []
    (media,) = MediaFile.objects.filter(source_job_id=job.pk)
    assert media.name.endswith("-pwned.wav") and "/" not in media.name


def test_an_output_labelled_as_a_web_page_is_refused(auth_client, user, project, storage, tmp_path, monkeypatch):
    backend, call_id = local_call(tmp_path, "html_audio")
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)


def test_an_output_file_over_the_size_limit_is_refused(auth_client, user, project, storage, tmp_path, monkeypatch):
    backend, call_id = local_call(tmp_path, "big_output", {"bytes": 4096},
                                  result_limits=ResultLimits(max_file_bytes=1000))
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)
    assert not (backend.base_dir / call_id / "out").exists() or not any((backend.base_dir / call_id / "out").iterdir())


def forge(backend: LocalBackend, call_id: str, result: dict[str, Any]) -> None:
    """Replace the call's status with a success of `result`: what a runner that a crafted input
    took over (or an engine sharing the worker's uid, with no uid sandbox) could write."""
    status = backend.base_dir / call_id / "status.json"
    forged = status.with_suffix(".forged")
    forged.write_text(json.dumps(status_record("succeeded", result=result, gpu_seconds=1.0)))
    os.replace(forged, status)


def audio_ref(path: str, **extra: Any) -> dict[str, Any]:
    return {"outputs": {"audio": {"path": path, "content_type": "audio/wav", "size_bytes": 100,
                                  "filename": "voice.wav", **extra}}}


@pytest.mark.parametrize("where", ["/proc/self/environ", "../../../proc/self/environ", "outside"])
def test_a_forged_status_naming_a_file_outside_the_calls_folder_is_refused(
    auth_client, user, project, storage, tmp_path, monkeypatch, where
):
    backend, call_id = local_call(tmp_path, "dump_env")
    outside = tmp_path / "outside.wav"
    outside.write_text(SECRET)
    path = {"outside": str(outside), "../../../proc/self/environ":
            str(backend.base_dir / call_id / "out" / "../../../proc/self/environ")}.get(where, where)
    forge(backend, call_id, audio_ref(path))
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)
    assert files_holding(Path(storage), SECRET) == [] if Path(storage).exists() else True


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_inside_the_calls_folder_pointing_out_is_refused_when_opened(
    auth_client, user, project, storage, tmp_path, monkeypatch, link
):
    backend, call_id = local_call(tmp_path, "dump_env")
    outside = tmp_path / "outside.wav"
    outside.write_bytes(_silence_wav() + SECRET.encode())
    out = backend.base_dir / call_id / "out"
    out.mkdir(exist_ok=True)
    inside = out / "voice.wav"
    inside.symlink_to(outside) if link == "symlink" else os.link(outside, inside)
    forge(backend, call_id, audio_ref(str(inside)))
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)
    assert not Path(storage).exists() or files_holding(Path(storage), SECRET) == []


def test_a_forged_transcript_of_nan_and_too_many_words_is_refused(auth_client, user, project, storage, tmp_path,
                                                                  monkeypatch, settings):
    backend, call_id = local_call(tmp_path, "dump_env")
    use(monkeypatch, backend)
    job = processing(auth_client, project, call_id)
    transcript = fixed_result(JobType.TRANSCRIPTION)
    transcript["segments"][0]["words"][0]["confidence"] = float("nan")
    Job.objects.filter(pk=job.pk).update(type="transcription")
    forge(backend, call_id, transcript)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(Job.objects.get(pk=job.pk)), user, balance)

    backend2, call2 = local_call(tmp_path / "2", "dump_env")
    use(monkeypatch, backend2)
    job2 = processing(auth_client, project, call2)
    Job.objects.filter(pk=job2.pk).update(type="transcription")
    word = {"word": "la", "start_ms": 0, "end_ms": 1, "confidence": 0.5}
    forge(backend2, call2, {**fixed_result(JobType.TRANSCRIPTION),
                            "segments": [{"id": "s", "speaker": None, "start_ms": 0, "end_ms": 1, "text": "la",
                                          "words": [word] * 2000}] * 300})
    balance = credit_balance_get(user=user)
    job2 = finish(Job.objects.get(pk=job2.pk))
    assert_failed_and_refunded(job2, user, balance)
    assert job2.output_data in (None, {})


# ----------------------------------------------------------------------------- Modal


@pytest.fixture
def modal(monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    fake = FakeModal()
    use(monkeypatch, ModalBackend("auteur-test", modal_module=fake))
    return fake


def modal_call(fake: FakeModal, result: dict[str, Any]) -> str:
    fake.script = [status_record("succeeded", result=result, gpu_seconds=1.0)]  # what the function answers
    return gpu_client.spawn("tts", {"text": "x"})


@pytest.mark.parametrize("path", ["/proc/self/environ", "/etc/hostname"])
def test_a_modal_result_naming_a_path_on_the_worker_is_refused(auth_client, user, project, storage, modal, path):
    call_id = modal_call(modal, audio_ref(path))
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)
    assert not Path(storage).exists() or files_holding(Path(storage), SECRET) == []


def test_inline_bytes_over_the_limit_are_refused(auth_client, user, project, storage, modal, settings):
    settings.AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES = 1000
    data = _silence_wav()
    assert len(data) > 1000
    call_id = modal_call(modal, {"outputs": {"audio": {"data": data, "content_type": "audio/wav",
                                                       "size_bytes": len(data), "filename": "a.wav"}}})
    job = processing(auth_client, project, call_id)
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)


def test_a_modal_filename_with_separators_and_nul_is_reduced(auth_client, user, project, storage, modal, tmp_path):
    target = tmp_path / "pwned.wav"
    data = _silence_wav()
    call_id = modal_call(modal, {"outputs": {"audio": {"data": data, "content_type": "audio/wav",
                                                       "size_bytes": len(data),
                                                       "filename": f"../../{target}\x00.txt"}}, **TTS_FIELDS})
    job = finish(processing(auth_client, project, call_id))
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert not target.exists()
    (media,) = MediaFile.objects.filter(source_job_id=job.pk)
    assert media.name.endswith("-pwned.wav.txt") and "/" not in media.name and "\x00" not in media.name


def test_a_result_that_is_no_object_or_has_nan_seconds_fails_the_job(auth_client, user, project, storage, modal):
    modal.script = [{"state": "succeeded", "result": "a string", "gpu_seconds": 1.0}]
    job = processing(auth_client, project, gpu_client.spawn("tts", {"text": "x"}))
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)

    modal.script = [{"state": "succeeded", "result": {}, "gpu_seconds": float("nan")}]
    job = processing(auth_client, project, gpu_client.spawn("tts", {"text": "x"}))
    balance = credit_balance_get(user=user)
    assert_failed_and_refunded(finish(job), user, balance)


def test_the_refusal_is_logged_without_the_results_content(auth_client, user, project, storage, modal, caplog):
    call_id = modal_call(modal, audio_ref("/proc/self/environ", metadata={"prompt": SECRET}))
    job = finish(processing(auth_client, project, call_id))
    assert job.error_code == "invalid_result"
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all(SECRET not in m and "/proc/self/environ" not in m for m in refusals)
    time.sleep(0)  # nothing asynchronous to wait for: the step ran in this process
