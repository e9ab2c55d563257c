"""A cancel stops the GPU call, and nothing of a canceled job is ever kept (jobs.life.status.job_cancel,
jobs.life.publish.call_stop), through the fake Modal client: Modal's `FunctionCall.cancel` is sent
before the API answers; when Modal does not take it, the `jobs.stop_call` task asks again; a call
that finishes anyway after the cancel has its result dropped."""

from __future__ import annotations

import builtins
import time
from typing import Any

import modal.exception as mx
import pytest

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.contract import status_record
from gpu_tasks.types import JobType
from jobs import gpu_client, task_names
from jobs.life import publish
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS, stop_call
from media.models import MediaFile
from tests.gpu_tasks.test_modal_backend import FakeCall, FakeModal
from tests.jobs.support import submit, valid_body

pytestmark = pytest.mark.django_db


class TimedCall(FakeCall):
    """A fake Modal call that records when its cancel arrived."""

    cancelled_at: float | None = None

    def cancel(self) -> None:
        super().cancel()
        self.cancelled_at = time.monotonic()


@pytest.fixture
def modal(monkeypatch: pytest.MonkeyPatch, settings: Any) -> FakeModal:
    settings.AUTEUR_GPU_BACKEND = "modal"
    fake = FakeModal()
    fake.script = [builtins.TimeoutError()]  # running until a test changes its outcome
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake))
    return fake


def running_job(auth_client: Any, project: Any, media: Any, modal: FakeModal) -> tuple[Job, TimedCall]:
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    STEP_TASKS[job_spec(job.type).family, Step.PREPARE].apply(args=(str(job.pk),))
    job.refresh_from_db()
    assert job.status == JobStatus.PROCESSING and job.gpu_call_id
    call = modal.calls[job.gpu_call_id]
    call.__class__ = TimedCall
    return job, call  # type: ignore[return-value]


def cancel(auth_client: Any, job: Job, on_commit: Any) -> float:
    """POST /jobs/{id}/cancel, its after-commit work run as a server runs it (before it answers)."""
    with on_commit(execute=True):
        response = auth_client.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200, response.json()
    return time.monotonic()


def test_modals_cancel_is_sent_before_the_cancel_answers(auth_client, funded, project, media, modal,
                                                          django_capture_on_commit_callbacks):
    job, call = running_job(auth_client, project, media, modal)
    answered = cancel(auth_client, job, django_capture_on_commit_callbacks)
    assert call.cancelled and call.cancelled_at is not None and call.cancelled_at <= answered


def test_when_modal_does_not_take_the_cancel_a_task_asks_again(auth_client, funded, project, media, modal,
                                                                monkeypatch, django_capture_on_commit_callbacks):
    job, call = running_job(auth_client, project, media, modal)
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def publish_task(name: str, args: tuple[Any, ...], **kwargs: Any) -> bool:
        sent.append((name, args))
        return True

    monkeypatch.setattr(publish, "publish_task", publish_task)
    call.cancel_error = mx.ConnectionError("Modal is out of reach")
    cancel(auth_client, job, django_capture_on_commit_callbacks)  # answered all the same: canceled, refunded
    assert not call.cancelled and sent == [(task_names.STOP_CALL, (job.gpu_call_id,))]
    with pytest.raises(gpu_client.TransientGpuError):  # still out of reach: the task retries (autoretry_for)
        stop_call.run(job.gpu_call_id)
    call.cancel_error = None
    stop_call.run(job.gpu_call_id)
    assert call.cancelled
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELED


def test_a_call_that_ends_after_the_cancel_leaves_nothing_stored_or_announced(
    auth_client, funded, project, media, modal, django_capture_on_commit_callbacks
):
    before = credit_balance_get(user=funded)
    job, call = running_job(auth_client, project, media, modal)
    cancel(auth_client, job, django_capture_on_commit_callbacks)
    # Modal's cancel came late: the container finished and announced; its job's step runs.
    call.outcomes = [status_record("succeeded", result=fixed_result(JobType.TTS), gpu_seconds=2.0)]
    STEP_TASKS[job_spec(job.type).family, Step.INFER].apply(args=(str(job.pk),))
    STEP_TASKS[job_spec(job.type).family, Step.FINISH].apply(args=(str(job.pk),))
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobEvent.objects.filter(job=job, type="completed").exists()
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert credit_balance_get(user=funded) == before - job.credits_cost + job.credits_refund
