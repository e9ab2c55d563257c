"""A call out of GPU memory runs again on the next class of its type's GPU ladder, for the price
the job was charged, and a failure at the top is refunded once (jobs.life.inference._climb).

Through the fake Modal client (each class is a function of its own in the app: which one is
spawned is what is looked at) and through the noop backend's `oom` fault, which fails a call on
its type's own class and lets it through on a larger one.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from gpu_tasks.backends.faults import FaultInjectingBackend
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.backends.noop import NoopBackend, fixed_result
from gpu_tasks.contract import status_record
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.types import JobType
from jobs import gpu_client
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobEventType, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from tests.gpu_tasks.test_modal_backend import FakeModal
from tests.jobs.support import submit, valid_body

pytestmark = pytest.mark.django_db


def run_until_ended(job_id: str, *, steps: int = 6) -> Job:
    """The job's prepare step, then its infer step as the broker would deliver it, until it ends."""
    job = Job.objects.get(pk=job_id)
    family = job_spec(job.type).family
    STEP_TASKS[family, Step.PREPARE].apply(args=(job_id,))
    for _ in range(steps):
        job.refresh_from_db()
        if job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
            return job
        STEP_TASKS[family, Step.INFER].apply(args=(job_id,))
    job.refresh_from_db()
    return job


def oom_until(function: str, job_type: JobType) -> Any:
    """A Modal function body that runs out of GPU memory unless it is `function`."""

    def body(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        if name != function:
            return status_record("failed", error=PermanentGpuError("gpu_oom", "CUDA out of memory"), gpu_seconds=3.0)
        return status_record("succeeded", result=fixed_result(job_type), gpu_seconds=5.0)

    return body


@pytest.fixture
def modal(monkeypatch: pytest.MonkeyPatch, settings: Any) -> FakeModal:
    settings.AUTEUR_GPU_BACKEND = "modal"  # inputs as signed URLs, as Modal's containers need them
    fake = FakeModal()
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake))
    return fake


def retries(job: Job) -> list[dict[str, Any]]:
    return [e.data for e in JobEvent.objects.filter(job=job, type=JobEventType.INFERENCE_RETRY).order_by("id")]


def test_out_of_memory_climbs_the_ladder_and_completes_for_the_price_charged(
    auth_client, funded, project, media, modal
):
    modal.body = oom_until("video_query_on_a100_80gb", JobType.VIDEO_QUERY)
    before = credit_balance_get(user=funded)
    response = submit(auth_client, "video-query", valid_body("video-query", project, media))
    assert response.status_code == 202, response.json()
    job = run_until_ended(response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
    assert [name for _, name, _ in modal.lookups] == ["video_query", "video_query_on_l40s", "video_query_on_a100_80gb"]
    assert [(r["code"], r["gpu"]) for r in retries(job)] == [("gpu_oom", "L40S"), ("gpu_oom", "A100-80GB")]
    assert credit_balance_get(user=funded) == before - job.credits_cost, "charged once, nothing more"
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
    detail = auth_client.get(f"/api/v1/jobs/{job.pk}").json()
    assert (detail["gpu"], detail["attempts"], detail["status"]) == ("A100-80GB", 3, "completed")


def test_out_of_memory_at_the_top_of_the_ladder_fails_refunded_once(auth_client, funded, project, media, modal):
    modal.body = oom_until("nowhere", JobType.VIDEO_QUERY)
    before = credit_balance_get(user=funded)
    response = submit(auth_client, "video-query", valid_body("video-query", project, media))
    job = run_until_ended(response.json()["job_id"])
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "gpu_oom", False)
    assert len(modal.lookups) == 3 and len(retries(job)) == 2
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert credit_balance_get(user=funded) == before


def test_out_of_memory_at_the_top_keeps_the_share_its_engine_reported_done(auth_client, funded, project, media,
                                                                         modal):
    """An input too large for every class climbs the whole ladder (three calls paid for by the
    platform), then is refunded as a timed-out call is, not in full: the share of its cost its engine
    reported done is kept, once."""
    out_of_memory = PermanentGpuError("gpu_oom", "CUDA out of memory")
    # Each call runs (its progress read from Modal's dict by its id), then runs out of memory.
    modal.script = [TimeoutError(), status_record("failed", error=out_of_memory, gpu_seconds=9.0)]
    modal.progress = {"fc-0001": 10.0, "fc-0002": 25.0, "fc-0003": 40.0}
    before = credit_balance_get(user=funded)
    response = submit(auth_client, "video-query", valid_body("video-query", project, media))
    assert response.status_code == 202, response.json()
    job = run_until_ended(response.json()["job_id"], steps=12)
    assert (job.status, job.error_code, job.gpu_class) == (JobStatus.FAILED, "gpu_oom", "A100-80GB")
    assert [name for _, name, _ in modal.lookups] == ["video_query", "video_query_on_l40s", "video_query_on_a100_80gb"]
    assert job.progress == 40
    kept = math.ceil(job.credits_cost * 40 / 100)
    assert 0 < kept < job.credits_cost
    assert job.credits_refund == job.credits_cost - kept and job.credits_refunded
    refunds = CreditTransaction.objects.filter(job_id=job.pk, type="refund")
    assert list(refunds.values_list("amount", flat=True)) == [job.credits_cost - kept]
    assert credit_balance_get(user=funded) == before - kept, "not refunded in full"
    failed = JobEvent.objects.get(job=job, type=JobEventType.FAILED)
    assert (failed.data["code"], failed.data["refunded"]) == ("gpu_oom", job.credits_cost - kept)


def test_a_host_memory_error_fails_internal_and_climbs_nothing(auth_client, funded, project, media, modal,
                                                               monkeypatch):
    """Python's MemoryError in a container is the host's memory, which a larger GPU does not give
    more of: `internal` (refunded in full), never `gpu_oom`, and no larger class is tried."""
    from gpu_tasks import modal_runtime

    def engine(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
        raise MemoryError("out of memory error while decoding frames")

    monkeypatch.setattr(modal_runtime, "load_engine", lambda job_type, where: engine)
    modal.body = lambda name, payload: modal_runtime.run_call("video-query", payload)
    before = credit_balance_get(user=funded)
    response = submit(auth_client, "video-query", valid_body("video-query", project, media))
    job = run_until_ended(response.json()["job_id"])
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "internal", False)
    assert [name for _, name, _ in modal.lookups] == ["video_query"] and retries(job) == []
    assert job.gpu_class == "" and credit_balance_get(user=funded) == before
    assert "host memory" in job.error_detail and "memory" not in job.error_message.lower()


def test_a_type_without_a_ladder_fails_at_once_refunded(auth_client, funded, project, media, modal):
    modal.body = oom_until("nowhere", JobType.TTS)
    before = credit_balance_get(user=funded)
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    job = run_until_ended(response.json()["job_id"])
    assert (job.status, job.error_code) == (JobStatus.FAILED, "gpu_oom")
    assert [name for _, name, _ in modal.lookups] == ["tts"] and retries(job) == []
    assert credit_balance_get(user=funded) == before
    assert auth_client.get(f"/api/v1/jobs/{job.pk}").json()["gpu"] == "L4"


@pytest.mark.parametrize(("job_type", "ends", "gpu"), [
    ("video-query", JobStatus.COMPLETED, "L40S"),
    ("audio-generation", JobStatus.COMPLETED, "L40S"),
    ("tts", JobStatus.FAILED, "L4"),
])
def test_the_noop_backends_oom_fault_is_climbed_where_there_is_a_ladder(
    auth_client, funded, project, media, monkeypatch, settings, tmp_path, job_type, ends, gpu
):
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    injected = FaultInjectingBackend(NoopBackend(), f"{job_type}:oom=1.0", seed=1)
    monkeypatch.setattr(gpu_client, "backend", lambda: injected)
    before = credit_balance_get(user=funded)
    response = submit(auth_client, job_type, valid_body(job_type, project, media))
    job = run_until_ended(response.json()["job_id"])
    assert job.status == ends, (job.error_code, job.error_message)
    assert auth_client.get(f"/api/v1/jobs/{job.pk}").json()["gpu"] == gpu
    spent = job.credits_cost if ends == JobStatus.COMPLETED else 0
    assert credit_balance_get(user=funded) == before - spent
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == (ends == JobStatus.FAILED)


def test_the_types_list_says_which_types_have_a_ladder_on_this_servers_backend(auth_client, gpu_backend):
    gpu_backend("noop")  # stands in for Modal
    types = {t["type"]: t for t in auth_client.get("/api/v1/jobs/types").json()["types"]}
    assert types["video-query"]["gpu_ladder"] == ["L40S", "A100-80GB"]
    assert types["lip-sync"]["gpu_ladder"] == ["L40S", "A100-80GB"]
    assert types["tts"]["gpu_ladder"] == [] and types["render"]["gpu_ladder"] == []
    gpu_backend("local")  # one kind of machine: a call out of memory would be out of memory again
    types = {t["type"]: t for t in auth_client.get("/api/v1/jobs/types").json()["types"]}
    assert all(t["gpu_ladder"] == [] for t in types.values())


def test_a_container_cannot_call_its_own_failure_retryable_to_buy_calls(auth_client, funded, project, media, modal):
    """gpu_oom written with "retryable": true is as permanent as any: the ladder's climbs and nothing more."""

    def body(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        record = status_record("failed", error=PermanentGpuError("gpu_oom", "out of memory"), gpu_seconds=3.0)
        record["error"]["retryable"] = True
        return record

    modal.body = body
    response = submit(auth_client, "video-query", valid_body("video-query", project, media))
    job = run_until_ended(response.json()["job_id"], steps=10)
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "gpu_oom", False)
    assert len(modal.lookups) == 3, "its own class and the two of its ladder, once each"


def test_each_class_of_a_ladder_is_a_function_of_the_app_on_that_gpu():
    from gpu_tasks import modal_app
    from gpu_tasks.types import JOB_TYPES

    spec = JOB_TYPES[JobType.LIP_SYNC]
    names = [spec.modal_function_on(g.value) for g in spec.gpu_classes]
    assert names == ["lip_sync", "lip_sync_on_l40s", "lip_sync_on_a100_80gb"]
    assert set(names) <= set(modal_app.FUNCTIONS)
    assert [modal_app.function_options(spec, g)["gpu"] for g in spec.gpu_classes] == ["A10G", "L40S", "A100-80GB"]
    # The five types that climb to an A100-80GB share its 10 containers: 2 each.
    assert modal_app.function_options(spec, spec.gpu_ladder[-1])["max_containers"] == 2
    with pytest.raises(PermanentGpuError):
        spec.modal_function_on("H100")
