"""Terminal states and hooks, through the services: refunds exactly once, cancels in every state."""

from __future__ import annotations

from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from django.db import transaction
from django.test import TestCase

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.errors import IdempotencyKeyReused, JobNotCancelable
from jobs.intake import submission, transcribe
from jobs.life import outputs, slots, steps
from jobs.life import publish as pipeline
from jobs.life import status as lifecycle
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobStatus
from jobs.selectors.requests import JobRequest
from jobs.specs import Family, job_spec
from jobs.tasks import STEP_TASKS
from media.models import MediaFile
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


@pytest.fixture
def media(project):
    return MediaFileFactory.create(project=project, name="a.wav", type="audio", duration_ms=30_000)


def submit(user, project, media, **kw):
    params: dict[str, Any] = {
        "project_id": str(project.pk), "media_id": str(media.pk), "_quantities": {"duration_ms": 30_000},
    }
    with TestCase.captureOnCommitCallbacks(execute=False):  # no broker publish: states are set by hand
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"],
                             media_ids=[media.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request, **kw)
    return job


def einfo(exc: BaseException) -> ExceptionInfo:
    """What Celery hands `on_failure`: the exception with its traceback."""
    try:
        raise exc
    except BaseException:
        return ExceptionInfo()


def refunds(job):
    return CreditTransaction.objects.filter(job_id=job.pk, type="refund").count()


def test_on_failure_invoked_twice_refunds_once(user, project, media):
    job = submit(user, project, media)
    balance = credit_balance_get(user=user)
    task = STEP_TASKS[Family.AUDIO, Step.INFER]
    from gpu_tasks.errors import PermanentGpuError

    for _ in range(2):
        error = PermanentGpuError("gpu_oom", "out of memory")
        task.on_failure(error, "tid", (str(job.pk),), {}, einfo(error))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "gpu_oom" and not job.retryable
    assert refunds(job) == 1
    assert credit_balance_get(user=user) == balance + job.credits_cost
    assert JobEvent.objects.filter(job=job, type="failed").count() == 1


def test_an_unexpected_crash_fails_as_internal_and_retryable(user, project, media):
    job = submit(user, project, media)
    crash = RuntimeError("boom")
    STEP_TASKS[Family.AUDIO, Step.FINISH].on_failure(crash, "tid", (str(job.pk),), {}, einfo(crash))
    job.refresh_from_db()
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "internal", True)
    assert refunds(job) == 1


def test_a_step_that_loses_the_database_is_retried_not_failed(user, project, media, monkeypatch):
    """A Postgres restart mid-step: the step backs off and runs again; the job is not failed."""
    from celery.exceptions import Retry
    from django.db import OperationalError

    job = submit(user, project, media)
    monkeypatch.setattr(steps, "job_claim_now", lambda **kw: (_ for _ in ()).throw(OperationalError("connection lost")))
    task = STEP_TASKS[Family.AUDIO, Step.PREPARE]
    task.push_request(args=(str(job.pk),), kwargs={}, retries=0, called_directly=False, is_eager=False)
    try:
        with pytest.raises(Retry):
            task(str(job.pk))
    finally:
        task.pop_request()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and refunds(job) == 0


@pytest.mark.parametrize("state", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING])
def test_cancel_in_each_active_state_refunds_in_full_once(user, project, media, state):
    job = submit(user, project, media)
    Job.objects.filter(pk=job.pk).update(status=state)
    balance = credit_balance_get(user=user)
    job = lifecycle.job_cancel(job=job)
    assert job.status == JobStatus.CANCELED and job.credits_refunded
    assert credit_balance_get(user=user) == balance + job.credits_cost
    with pytest.raises(JobNotCancelable):
        lifecycle.job_cancel(job=job)
    assert refunds(job) == 1


@pytest.mark.parametrize("state", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_terminal_job_cannot_be_canceled(user, project, media, state):
    job = submit(user, project, media)
    Job.objects.filter(pk=job.pk).update(status=state)
    balance = credit_balance_get(user=user)
    with pytest.raises(JobNotCancelable) as exc:
        lifecycle.job_cancel(job=job)
    assert exc.value.status_code == 409
    assert credit_balance_get(user=user) == balance
    assert refunds(job) == 0


def test_failing_after_cancel_does_not_refund_again(user, project, media):
    job = submit(user, project, media)
    lifecycle.job_cancel(job=job)
    assert lifecycle.job_fail(job_id=job.pk, code="timeout", detail="late", retryable=True) is False
    assert refunds(job) == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELED


def test_deleting_the_project_cancels_and_refunds_its_jobs(user, project, media):
    from projects.services import project_delete

    job = submit(user, project, media)
    balance = credit_balance_get(user=user)
    with TestCase.captureOnCommitCallbacks(execute=True):
        project_delete(project=project)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED and job.project_id is None
    assert credit_balance_get(user=user) == balance + job.credits_cost


def test_media_used_by_an_unfinished_job_cannot_be_deleted(user, project, media):
    from media.services.deletion import media_delete

    job = submit(user, project, media)
    with pytest.raises(Exception) as exc:
        media_delete(media=media)
    assert getattr(exc.value, "code", "") == "media_in_use"
    assert MediaFile.objects.filter(pk=media.pk).exists()
    lifecycle.job_cancel(job=job)
    with TestCase.captureOnCommitCallbacks(execute=False):
        media_delete(media=media)
    assert not MediaFile.objects.filter(pk=media.pk).exists()


def test_auto_transcription_starts_one_job_per_ready_file(user, project, media):
    Project.objects.filter(pk=project.pk).update(auto_transcribe=True)
    with TestCase.captureOnCommitCallbacks(execute=False):
        first = transcribe.job_auto_transcribe(media_id=media.pk)
        second = transcribe.job_auto_transcribe(media_id=media.pk)
    assert first is not None and second is not None and first.pk == second.pk
    assert first.type == "transcription" and first.input_params["media_id"] == str(media.pk)
    assert CreditTransaction.objects.filter(job_id=first.pk, type="usage").count() == 1


def test_auto_transcription_is_skipped_with_a_reason_when_credits_are_short(make_user):
    poor = make_user()
    project = ProjectFactory.create(user=poor, name="p", auto_transcribe=True)
    media = MediaFileFactory.create(project=project, name="v.mp4", type="video", duration_ms=60_000)
    assert transcribe.job_auto_transcribe(media_id=media.pk) is None
    media.refresh_from_db()
    assert media.metadata["auto_transcribe"]["skipped"] == "insufficient_credits"
    assert not Job.objects.filter(user=poor).exists()


def test_an_upload_by_a_key_that_may_not_run_jobs_starts_no_paid_transcription(user, project):
    from auteur.users.key_services import api_key_create
    from auteur.users.models import Membership

    credit_grant(user=user, amount=100, type="bonus", description="test")
    Project.objects.filter(pk=project.pk).update(auto_transcribe=True)
    seat = Membership.objects.get(workspace_id=user.pk, user=user)
    uploader, _ = api_key_create(membership=seat, name="uploads", scopes=["media:write"])
    runner, _ = api_key_create(membership=seat, name="pipeline", scopes=["media:write", "jobs:write"])
    video = {"project": project, "type": "video", "duration_ms": 60_000}
    mute = MediaFileFactory.create(name="a.mp4", member_id=uploader.pk, **video)
    heard = MediaFileFactory.create(name="b.mp4", member_id=runner.pk, **video)
    assert transcribe.job_auto_transcribe(media_id=mute.pk) is None
    mute.refresh_from_db()
    assert mute.metadata["auto_transcribe"]["skipped"] == "permission_denied"
    with TestCase.captureOnCommitCallbacks(execute=False):
        job = transcribe.job_auto_transcribe(media_id=heard.pk)
    assert job is not None and job.member_id == runner.pk


def test_auto_transcription_of_a_file_of_unknown_length_charges_nothing(user, project):
    """Never priced as the minimum: skipped, with the reason on the file."""
    credit_grant(user=user, amount=100, type="bonus", description="test")
    Project.objects.filter(pk=project.pk).update(auto_transcribe=True)
    media = MediaFileFactory.create(project=project, name="live.webm", type="video", duration_ms=None)
    balance = credit_balance_get(user=user)
    assert transcribe.job_auto_transcribe(media_id=media.pk) is None
    media.refresh_from_db()
    assert media.metadata["auto_transcribe"]["skipped"] == "media_duration_unknown"
    assert not Job.objects.filter(user=user).exists() and credit_balance_get(user=user) == balance


def test_auto_transcription_ignores_projects_that_did_not_ask(user, project, media):
    assert transcribe.job_auto_transcribe(media_id=media.pk) is None
    assert not Job.objects.exists()


def test_idempotency_race_charges_once(user, project, media):
    a = submit(user, project, media, idempotency_key="k1", body_hash="h")
    b = submit(user, project, media, idempotency_key="k1", body_hash="h")
    assert a.pk == b.pk
    with pytest.raises(IdempotencyKeyReused):
        submit(user, project, media, idempotency_key="k1", body_hash="other")
    assert CreditTransaction.objects.filter(type="usage").count() == 1


def test_retrying_twice_creates_and_charges_one_new_job(user, project, media):
    job = submit(user, project, media)
    lifecycle.job_fail(job_id=job.pk, code="capacity", detail="busy", retryable=True)
    job.refresh_from_db()
    with TestCase.captureOnCommitCallbacks(execute=False):
        first = submission.job_retry(job=job)
        second = submission.job_retry(job=job)
    assert first.pk == second.pk != job.pk
    assert first.retry_of_id == job.pk
    assert CreditTransaction.objects.filter(job_id=first.pk, type="usage").count() == 1


def test_a_file_becoming_ready_in_an_auto_transcribe_project_starts_its_transcription(user, project, media):
    from media.signals import media_ready

    Project.objects.filter(pk=project.pk).update(auto_transcribe=True)
    with TestCase.captureOnCommitCallbacks(execute=False):
        media_ready.send_robust(sender=MediaFile, media_id=media.pk)
    [job] = Job.objects.filter(user=user)
    assert (job.type, job.input_params["media_id"], job.status) == ("transcription", str(media.pk), "pending")


def test_a_job_storing_its_outputs_can_no_longer_be_canceled(user, project, media):
    from django.utils import timezone

    job = submit(user, project, media)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, inference_ended_at=timezone.now())
    balance = credit_balance_get(user=user)
    with pytest.raises(JobNotCancelable):
        lifecycle.job_cancel(job=job)
    assert credit_balance_get(user=user) == balance and refunds(job) == 0


def test_a_job_failing_while_storing_loses_its_outputs(user, project, media):
    job = submit(user, project, media)
    output = MediaFileFactory.create(project=project, name="out.wav", type="audio", duration_ms=None,
                                     source_job_id=job.pk)
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert lifecycle.job_fail(job_id=job.pk, code="internal", detail="storage down", retryable=True)
    assert not MediaFile.objects.filter(pk=output.pk).exists()
    assert refunds(job) == 1


OUTPUT_KINDS = {"audio": "audio", "image": "image", "video": "video"}


@pytest.fixture
def canned_results(gpu_backend):
    """The noop backend, whose canned results (inline bytes) the tests below store: a result is
    kept only in the forms the configured backend produces (gpu_tasks.results)."""
    gpu_backend("noop")


@pytest.mark.parametrize("job_type", sorted(t.value for t in JobType if fixed_result(t).get("outputs")))
@pytest.mark.usefixtures("canned_results")
def test_each_types_outputs_are_stored_as_ready_media_of_their_kind(user, project, media, job_type, landing):
    """The noop backend's outputs have the real engines' shapes: a wav, a png, an mp4 each stored and probed."""
    from django.utils import timezone

    job = submit(user, project, media)
    Job.objects.filter(pk=job.pk).update(type=job_type, status=JobStatus.PROCESSING, started_at=timezone.now())
    result = fixed_result(JobType(job_type))
    (ref,) = result["outputs"].values()
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = outputs.job_result_store(job_id=job.pk, result=result)
    assert done is not None and done.status == JobStatus.COMPLETED
    (output,) = MediaFile.objects.filter(source_job_id=job.pk)
    assert output.status == "ready" and output.type == OUTPUT_KINDS[ref["content_type"].split("/")[0]]
    assert done.output_data["output_media_ids"] == [str(output.pk)]
    assert list(landing.iterdir()) == []  # the output moved into the storage from where it landed


@pytest.fixture
def landing(tmp_path, monkeypatch):
    """The folder where a job's outputs land before they are stored, in a temporary folder of the test's."""
    import os
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(outputs, "_landing_folder", None)
    folder = outputs.landing_folder()
    assert folder == tmp_path / f"auteur-landing-{os.getuid()}"
    return folder


def test_the_landing_folder_is_this_users_alone_and_keeps_no_old_leftovers(tmp_path, monkeypatch):
    import os
    import stat
    import tempfile
    import time

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(outputs, "_landing_folder", None)
    shared = tmp_path / f"auteur-landing-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # made by someone else, open to every user: not used
    folder = outputs.landing_folder()
    assert folder != shared and folder.parent == tmp_path and stat.S_IMODE(folder.stat().st_mode) == 0o700

    monkeypatch.setattr(outputs, "_landing_folder", None)
    shared.chmod(0o700)
    old, fresh = shared / "old.wav", shared / "fresh.wav"
    old.write_bytes(b"left by a killed process")
    fresh.write_bytes(b"being stored now")
    os.utime(old, (time.time() - 2 * outputs.LANDING_LEFTOVER_SECONDS,) * 2)
    assert outputs.landing_folder() == shared
    assert not old.exists() and fresh.exists()


@pytest.mark.usefixtures("canned_results")
def test_an_output_refused_after_it_landed_leaves_nothing_there(user, project, media, landing):
    from auteur.core.errors import ApplicationError

    job, result = _storing_tts_job(user, project, media)
    result["outputs"]["audio"]["data"] = b"RIFF, but no WAVE: not audio"
    with pytest.raises(ApplicationError, match="unusable file"):  # the step fails the job with it
        outputs.job_result_store(job_id=job.pk, result=result, job=job)
    assert list(landing.iterdir()) == []
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def _storing_tts_job(user, project, media):
    from django.utils import timezone

    job = submit(user, project, media)
    Job.objects.filter(pk=job.pk).update(type="tts", status=JobStatus.PROCESSING, started_at=timezone.now())
    return Job.objects.get(pk=job.pk), fixed_result(JobType.TTS)


@pytest.mark.usefixtures("canned_results")
def test_a_duplicate_delivery_storing_beside_the_first_keeps_the_outputs(user, project, media, monkeypatch):
    """Two deliveries store at once; the one that loses the final UPDATE must not delete the winner's outputs."""
    job, result = _storing_tts_job(user, project, media)
    real = outputs.media_create_output

    def the_other_delivery_completes_first(**kwargs):
        monkeypatch.setattr(outputs, "media_create_output", real)
        assert outputs.job_result_store(job_id=job.pk, result=fixed_result(JobType.TTS)) is not None
        return real(**kwargs)

    monkeypatch.setattr(outputs, "media_create_output", the_other_delivery_completes_first)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert outputs.job_result_store(job_id=job.pk, result=result, job=job) is None
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and refunds(job) == 0
    assert [str(m.pk) for m in MediaFile.objects.filter(source_job_id=job.pk)] == job.output_data["output_media_ids"]


def _failed_by_the_reaper_while_storing(user, project, media, monkeypatch) -> tuple[Job, dict[str, Any]]:
    """A TTS job to store whose output's creation finds it failed by the reaper meanwhile."""
    job, result = _storing_tts_job(user, project, media)
    real = outputs.media_create_output

    def reaper_fails_it_meanwhile(**kwargs):
        lifecycle.job_fail(job_id=job.pk, code="timeout", detail="no result in time", retryable=True)
        return real(**kwargs)

    monkeypatch.setattr(outputs, "media_create_output", reaper_fails_it_meanwhile)
    return job, result


def _failed_refunded_once_keeping_nothing(job: Job) -> None:
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and refunds(job) == 1
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


@pytest.mark.usefixtures("canned_results")
def test_a_job_failed_by_the_reaper_while_storing_keeps_nothing(user, project, media, monkeypatch):
    job, result = _failed_by_the_reaper_while_storing(user, project, media, monkeypatch)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert outputs.job_result_store(job_id=job.pk, result=result, job=job) is None
    _failed_refunded_once_keeping_nothing(job)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("canned_results")
def test_a_worker_with_no_transaction_open_that_finds_its_job_failed_while_storing_keeps_nothing(
        user, project, media, monkeypatch):
    """As a Celery worker runs it: autocommit, no test transaction around it. The completion is one
    statement committed by itself, and the deletion of what was stored takes its own transaction."""
    job, result = _failed_by_the_reaper_while_storing(user, project, media, monkeypatch)
    assert not transaction.get_connection().in_atomic_block
    assert outputs.job_result_store(job_id=job.pk, result=result, job=job) is None
    _failed_refunded_once_keeping_nothing(job)


@pytest.mark.usefixtures("canned_results")
def test_a_cancel_that_wins_the_row_stops_the_store(user, project, media):
    job, result = _storing_tts_job(user, project, media)
    lifecycle.job_cancel(job=job)
    assert outputs.job_result_store(job_id=job.pk, result=result, job=job) is None
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED and job.inference_ended_at is None and refunds(job) == 1


def test_media_of_unknown_duration_cannot_be_priced(auth_client, user, project):
    unknown = MediaFileFactory.create(project=project, name="live.mkv", type="video", mime_type="video/x-matroska",
                                      duration_ms=None)
    response = auth_client.post("/api/v1/jobs/compression", {"project_id": str(project.pk),
                                                             "media_id": str(unknown.pk)}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "media_duration_unknown"
    assert not Job.objects.exists()


def test_a_younger_job_claimed_first_waits_for_the_older_pending_one(user, project, media, monkeypatch):
    """Two prepares delivered at once: the younger job's claim must not take the only slot."""
    older, younger = submit(user, project, media), submit(user, project, media)
    assert lifecycle.job_claim(job_id=younger.pk) is None
    younger.refresh_from_db()
    assert younger.status == JobStatus.QUEUED
    assert lifecycle.job_claim(job_id=older.pk) is not None
    started = []
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": started.append(job_id))
    with TestCase.captureOnCommitCallbacks(execute=True):
        slots.job_slot_release(user_id=user.pk)
    assert started == [younger.pk]
    assert lifecycle.job_claim(job_id=younger.pk) is None, "one slot (no plan): still waiting for the older job"


def test_a_claim_starts_younger_queued_jobs_that_fit_beside_it(user, project, media, monkeypatch):
    from credits.services.subscriptions import subscription_create

    subscription_create(user=user, plan="starter")  # two slots
    older, younger = submit(user, project, media), submit(user, project, media)
    assert lifecycle.job_claim(job_id=younger.pk) is None  # the older one is still pending
    started = []
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": started.append(job_id))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert lifecycle.job_claim(job_id=older.pk) is not None
    assert started == [younger.pk], "the younger job is started at once, not at the reaper's next run"
    assert lifecycle.job_claim(job_id=younger.pk) is not None


@pytest.mark.usefixtures("canned_results")
def test_what_shaped_an_output_is_kept_in_its_media_metadata(user, project, media):
    job, result = _storing_tts_job(user, project, media)
    result["outputs"]["audio"]["metadata"] = {"model": "noop", "seed": 7, "steps": 3}
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert outputs.job_result_store(job_id=job.pk, result=result, job=job) is not None
    (output,) = MediaFile.objects.filter(source_job_id=job.pk)
    assert output.metadata["generation"] == {"model": "noop", "seed": 7, "steps": 3}
    assert set(output.metadata) > {"generation"}, "beside what the probe read"


def _processing(job, **fields):
    from django.utils import timezone

    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now(), **fields)


def _refund_rows(job):
    return list(CreditTransaction.objects.filter(job_id=job.pk, type="refund").values_list("amount", flat=True))


@pytest.mark.parametrize(("progress", "refund"), [(0, 5), (40, 3), (100, 0)])
def test_a_call_that_runs_past_its_limit_keeps_the_share_its_engine_reported_done(user, project, media,
                                                                                    progress, refund):
    from django.utils import timezone

    job = submit(user, project, media)  # 5 credits: 30 s of audio
    assert job.credits_cost == 5
    before = credit_balance_get(user=user)
    _processing(job, inference_started_at=timezone.now(), gpu_call_id="noop-x", progress=progress)
    assert lifecycle.job_fail(job_id=job.pk, code="timeout", detail="ran past its limit", retryable=True)
    job.refresh_from_db()
    # refund = cost - ceil(cost * progress / 100): 5 - ceil(2.0) = 3 at 40 %.
    assert job.status == JobStatus.FAILED and job.credits_refund == refund
    assert job.credits_refunded is bool(refund)
    assert _refund_rows(job) == ([refund] if refund else [])  # nothing written when nothing comes back
    assert credit_balance_get(user=user) == before + refund
    event = JobEvent.objects.get(job=job, type="failed")
    assert event.data["refunded"] == refund and event.data["code"] == "timeout"
    # A second failure of the same job moves nothing.
    assert not lifecycle.job_fail(job_id=job.pk, code="timeout", detail="again", retryable=True)
    assert _refund_rows(job) == ([refund] if refund else [])


@pytest.mark.parametrize(("backend", "gpu_class", "refund"), [
    ("local", "", 3),  # one kind of machine: its own class is the top
    ("noop", "L40S", 3),  # the top of transcription's ladder (A10G, then L40S)
    ("noop", "", 5),  # a larger class was left (a job in pieces, which do not climb): all of it back
])
def test_out_of_memory_at_the_top_of_its_ladder_keeps_the_share_its_engine_reported_done(
    user, project, media, gpu_backend, backend, gpu_class, refund
):
    from django.utils import timezone

    gpu_backend(backend)
    job = submit(user, project, media)  # 5 credits
    _processing(job, inference_started_at=timezone.now(), gpu_call_id="noop-x", progress=40, gpu_class=gpu_class)
    before = credit_balance_get(user=user)
    assert lifecycle.job_fail(job_id=job.pk, code="gpu_oom", detail="CUDA out of memory", retryable=False)
    job.refresh_from_db()
    # As a time-out: refund = cost - ceil(cost * progress / 100) = 5 - ceil(2.0) = 3 at 40 %.
    assert (job.status, job.credits_refund, _refund_rows(job)) == (JobStatus.FAILED, refund, [refund])
    assert credit_balance_get(user=user) == before + refund
    assert JobEvent.objects.get(job=job, type="failed").data["refunded"] == refund


@pytest.mark.parametrize("case", ["other_code", "before_inference", "while_storing"])
def test_every_other_failure_refunds_in_full(user, project, media, case):
    from django.utils import timezone

    job = submit(user, project, media)
    now = timezone.now()
    fields: dict[str, Any] = {"progress": 60}
    code = "timeout"
    if case == "other_code":
        fields.update(inference_started_at=now, gpu_call_id="noop-x")
        code = "invalid_media"
    elif case == "while_storing":  # the call ended; a step ran out of time storing its outputs
        fields.update(inference_started_at=now, inference_ended_at=now, gpu_call_id="noop-x")
    _processing(job, **fields)
    assert lifecycle.job_fail(job_id=job.pk, code=code, detail="x", retryable=True)
    job.refresh_from_db()
    assert job.credits_refund == job.credits_cost and _refund_rows(job) == [job.credits_cost]


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_while_the_running_one_ends_is_started_at_once(user, project, media, monkeypatch):
    """The claim that queues B counts A running; A ends before that claim commits, so A's release
    finds nothing queued. B must still start now, not at the reaper's next run."""
    import threading

    from django.db import connection, transaction

    running, waiting = submit(user, project, media), submit(user, project, media)
    Job.objects.filter(pk=running.pk).update(status=JobStatus.PROCESSING)
    started: list[Any] = []
    monkeypatch.setattr(pipeline, "start", lambda job_id, job_type, trace="": started.append(job_id))
    queued, ended = threading.Event(), threading.Event()

    def claim() -> None:
        try:
            with transaction.atomic():
                assert lifecycle.job_claim(job_id=waiting.pk) is None  # one slot (no plan), taken
                queued.set()
                ended.wait(30)
        finally:
            connection.close()

    claimer = threading.Thread(target=claim)
    claimer.start()
    assert queued.wait(30)
    with transaction.atomic():  # the running job ends while the claim is still open
        Job.objects.filter(pk=running.pk).update(status=JobStatus.COMPLETED)
        slots.job_slot_release(user_id=user.pk)
    assert started == []  # nothing was queued yet, as far as this transaction could see
    ended.set()
    claimer.join(30)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.QUEUED
    assert started == [waiting.pk]
