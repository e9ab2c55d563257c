"""One job for one piece of work: a transcription request for a file whose automatic transcription
(the same options) is pending, running or done answers that job (200, `deduplicated: true`) and
charges nothing more; the documented flow (upload to a project that transcribes its uploads, then
POST /jobs/transcription) is charged exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from jobs.life import status as job_status
from jobs.models import AUTO_TRANSCRIBE_KEY_PREFIX, IdempotencyRecord, Job, JobStatus
from media.models import MediaFile
from projects.models import Project
from tests.jobs.support import PRICE, START_BALANCE, submit
from tests.webhooks.conftest import fake_dns  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(name="published")
def published_fixture(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pipelines published (none is run here)."""
    started: list[str] = []
    monkeypatch.setattr("jobs.life.publish.start", lambda job_id, job_type, trace="": started.append(str(job_id)))
    return started


def usage_entries(user: Any) -> list[CreditTransaction]:
    return list(CreditTransaction.objects.filter(user=user, type="usage"))


def transcribing(make_media: Any, project: Project, **fields: Any) -> MediaFile:
    """A ready audio file of `project`, which transcribes its uploads (its automatic job not made yet)."""
    Project.objects.filter(pk=project.pk).update(auto_transcribe=True)
    project.refresh_from_db()
    return make_media(project, "audio", **fields)


def test_an_upload_to_a_transcribing_project_then_a_transcription_request_is_charged_once(
        auth_client, funded, samples, published):
    from tests.jobs.conftest import upload_local

    created = auth_client.post("/api/v1/projects", {"name": "Documents' flow"}, format="json")
    assert created.status_code == 201 and created.json()["auto_transcribe"] is True
    project = Project.objects.get(pk=created.json()["id"])
    media = upload_local(auth_client, project, samples.wav, "audio/wav")  # its probe's signal makes the job
    [automatic] = Job.objects.filter(user=funded)
    assert IdempotencyRecord.objects.get(key=f"{AUTO_TRANSCRIBE_KEY_PREFIX}{media.pk}").job_id == automatic.pk
    body = {"project_id": str(project.pk), "media_id": str(media.pk)}
    for extra in ({}, {"priority": "high"}, {"language": "en"}):  # options are not the work; en is the default
        response = submit(auth_client, "transcription", {**body, **extra})
        assert response.status_code == 200, response.json()
        assert response.json() == {"job_id": str(automatic.pk), "status": "pending",
                                   "credits_cost": automatic.credits_cost,
                                   "cache": {"hit": False, "source_job_id": None}, "deduplicated": True}
    assert Job.objects.filter(user=funded).count() == 1 and len(published) == 1
    assert [e.job_id for e in usage_entries(funded)] == [automatic.pk]
    assert credit_balance_get(user=funded) == START_BALANCE - automatic.credits_cost


def test_a_request_the_signal_has_not_answered_yet_makes_the_automatic_job_and_gets_it(
        auth_client, funded, project, make_media, published):
    """The file is ready before its signal makes the automatic job: the request makes it as the
    signal would (one job, keyed as the automatic one), and the signal then finds it."""
    from jobs.intake.transcribe import job_auto_transcribe

    media = transcribing(make_media, project)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(media.pk)})
    assert response.status_code == 200 and response.json()["deduplicated"] is True
    job = Job.objects.get(pk=response.json()["job_id"])
    assert IdempotencyRecord.objects.get(key=f"{AUTO_TRANSCRIBE_KEY_PREFIX}{media.pk}").job_id == job.pk
    late = job_auto_transcribe(media_id=media.pk)
    assert late is not None and late.pk == job.pk
    assert Job.objects.count() == 1 and len(usage_entries(funded)) == 1


@pytest.mark.parametrize("state", [JobStatus.PROCESSING, JobStatus.COMPLETED])
def test_a_running_or_done_automatic_transcription_answers_the_request(auth_client, funded, project, make_media,
                                                                       published, state):
    from jobs.intake.transcribe import job_auto_transcribe

    media = transcribing(make_media, project)
    automatic = job_auto_transcribe(media_id=media.pk)
    assert automatic is not None
    Job.objects.filter(pk=automatic.pk).update(status=state)
    balance = credit_balance_get(user=funded)
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(media.pk)})
    assert response.status_code == 200
    assert (response.json()["job_id"], response.json()["status"]) == (str(automatic.pk), state)
    assert credit_balance_get(user=funded) == balance and Job.objects.count() == 1


def test_other_options_a_failed_automatic_job_or_cache_false_are_another_job_charged_as_any(
        auth_client, funded, project, make_media, published):
    from jobs.intake.transcribe import job_auto_transcribe

    media = transcribing(make_media, project)
    automatic = job_auto_transcribe(media_id=media.pk)
    assert automatic is not None
    body = {"project_id": str(project.pk), "media_id": str(media.pk)}
    # Another language is other work.
    french = submit(auth_client, "transcription", {**body, "language": "fr"})
    assert french.status_code == 202 and french.json()["deduplicated"] is False
    # `cache: false` asks for the work to run again.
    fresh = submit(auth_client, "transcription", {**body, "cache": False})
    assert fresh.status_code == 202 and fresh.json()["job_id"] != str(automatic.pk)
    # A failed automatic transcription does no work: the request runs.
    job_status.job_fail(job_id=automatic.pk, code="capacity", detail="busy", retryable=True)
    again = submit(auth_client, "transcription", body)
    assert again.status_code == 202 and again.json()["job_id"] not in (str(automatic.pk), fresh.json()["job_id"])
    assert len(usage_entries(funded)) == 4 and Job.objects.count() == 4


def test_a_project_that_does_not_transcribe_its_uploads_has_nothing_to_answer_with(auth_client, funded, project,
                                                                                   media, published):
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(media["audio"].pk)})
    assert response.status_code == 202 and response.json()["deduplicated"] is False
    assert response.json()["credits_cost"] == PRICE["transcription"]
    assert not IdempotencyRecord.objects.filter(key__startswith=AUTO_TRANSCRIBE_KEY_PREFIX).exists()


def test_a_file_whose_automatic_transcription_was_skipped_is_not_charged_to_its_uploader_by_a_request(
        auth_client, funded, project, make_media, published):
    """Skipped once (its uploader's budget, say): someone's request later is a job of its own, charged
    to whoever asks, not the automatic one made after all."""
    media = transcribing(make_media, project, metadata={"auto_transcribe": {"skipped": "spend_cap_reached"}})
    response = submit(auth_client, "transcription", {"project_id": str(project.pk), "media_id": str(media.pk)})
    assert response.status_code == 202 and response.json()["deduplicated"] is False
    assert not IdempotencyRecord.objects.filter(key=f"{AUTO_TRANSCRIBE_KEY_PREFIX}{media.pk}").exists()
    assert len(usage_entries(funded)) == 1


def test_a_webhook_in_the_request_is_set_on_the_running_automatic_job(auth_client, funded, project, make_media,
                                                                      published, fake_dns):  # noqa: F811
    from jobs.intake.transcribe import job_auto_transcribe
    from webhooks.models import JobWebhook

    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    media = transcribing(make_media, project)
    automatic = job_auto_transcribe(media_id=media.pk)
    assert automatic is not None
    body = {"project_id": str(project.pk), "media_id": str(media.pk)}
    first = submit(auth_client, "transcription", {**body, "webhook": "https://hooks.example.test/a"})
    assert first.status_code == 200 and first.json()["job_id"] == str(automatic.pk), first.json()
    assert JobWebhook.objects.get(job_id=automatic.pk).url == "https://hooks.example.test/a"
    # The same webhook again: the same answer. Another: the job has one already, so the request runs.
    again = submit(auth_client, "transcription", {**body, "webhook": "https://hooks.example.test/a"})
    assert again.status_code == 200 and again.json()["job_id"] == str(automatic.pk)
    other = submit(auth_client, "transcription", {**body, "webhook": "https://hooks.example.test/b"})
    assert other.status_code == 202 and other.json()["job_id"] != str(automatic.pk)
    assert len(usage_entries(funded)) == 2


def test_a_webhook_is_set_on_the_automatic_job_only_by_its_own_submitter(auth_client, funded, project, make_media,
                                                                         published, fake_dns):  # noqa: F811
    """A job's deliveries show what its submitter may see (a balance among them): another member's
    webhook is not put on it; that member's request runs as a job of their own."""
    import uuid

    from jobs.intake.transcribe import job_auto_transcribe
    from webhooks.models import JobWebhook

    fake_dns({"hooks.example.test": ["93.184.216.34"]})
    media = transcribing(make_media, project)
    automatic = job_auto_transcribe(media_id=media.pk)
    assert automatic is not None
    Job.objects.filter(pk=automatic.pk).update(member_id=uuid.uuid4())  # uploaded by another member
    body = {"project_id": str(project.pk), "media_id": str(media.pk)}
    plain = submit(auth_client, "transcription", body)
    assert plain.status_code == 200 and plain.json()["job_id"] == str(automatic.pk)  # no webhook: answered
    hooked = submit(auth_client, "transcription", {**body, "webhook": "https://hooks.example.test/a"})
    assert hooked.status_code == 202 and hooked.json()["job_id"] != str(automatic.pk), hooked.json()
    assert not JobWebhook.objects.filter(job_id=automatic.pk).exists()
    assert JobWebhook.objects.get(job_id=hooked.json()["job_id"]).url == "https://hooks.example.test/a"
