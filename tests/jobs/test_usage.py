"""Usage analytics: one event per ended job, its charge as the ledger has it, kept 90 days, read and
exported by staff."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import TestCase
from django.utils import timezone

from credits.services.ledger import credit_grant
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.events.usage import EXPORT_FIELDS
from jobs.intake import submission
from jobs.life import outputs
from jobs.life import status as lifecycle
from jobs.models import Job, JobStatus, UsageEvent
from jobs.selectors.requests import JobRequest
from jobs.specs import job_spec
from tests.factories import MediaFileFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=100, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


def submit(user, project) -> Job:
    media = MediaFileFactory.create(project=project, name="a.wav", type="audio", duration_ms=30_000)
    params: dict[str, Any] = {"project_id": str(project.pk), "media_id": str(media.pk),
                              "_quantities": {"duration_ms": 30_000}}
    with TestCase.captureOnCommitCallbacks(execute=False):
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"],
                             media_ids=[media.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request, member_id=user.pk)
    return job


def test_each_way_a_job_ends_records_one_event_with_its_charge(user, project):
    done = submit(user, project)
    Job.objects.filter(pk=done.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    outputs.job_result_store(job_id=done.pk, result=fixed_result(JobType.TRANSCRIPTION), gpu_seconds=2.5)
    failed = submit(user, project)
    Job.objects.filter(pk=failed.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    assert lifecycle.job_fail(job_id=failed.pk, code="gpu_oom", detail="too big", retryable=False)
    canceled = lifecycle.job_cancel(job=submit(user, project))

    events = {e.job_id: e for e in UsageEvent.objects.all()}
    assert set(events) == {done.pk, failed.pk, canceled.pk}
    ok, bad, off = events[done.pk], events[failed.pk], events[canceled.pk]
    assert (ok.outcome, ok.type, ok.credits_charged, ok.credits_refunded, ok.credits_net) == (
        "completed", "transcription", 5, 0, 5)
    assert ok.gpu_seconds == 2.5 and ok.processing_ms is not None and ok.quantities == {"duration_ms": 30_000}
    assert (ok.user_id, ok.project_id, ok.error_code, ok.cached) == (user.pk, project.pk, "", False)
    assert (bad.outcome, bad.error_code, bad.credits_net) == ("failed", "gpu_oom", 5 - bad.credits_refunded)
    assert (off.outcome, off.credits_refunded, off.credits_net, off.processing_ms) == ("canceled", 5, 0, None)
    # A job ends once: a late second end (a redelivered failure) writes nothing.
    assert not lifecycle.job_fail(job_id=canceled.pk, code="timeout", detail="late", retryable=True)
    assert UsageEvent.objects.count() == 3


def test_usage_older_than_the_retention_is_deleted(user, project, settings):
    from auteur.core.retention import run_sweep

    job = lifecycle.job_cancel(job=submit(user, project))
    kept = lifecycle.job_cancel(job=submit(user, project))
    UsageEvent.objects.filter(job_id=job.pk).update(created_at=timezone.now() - timedelta(days=91))
    UsageEvent.objects.filter(job_id=kept.pk).update(created_at=timezone.now() - timedelta(days=89))
    assert run_sweep("usage_events").count == 1
    assert list(UsageEvent.objects.values_list("job_id", flat=True)) == [kept.pk]


def test_staff_export_usage_as_csv_by_date_type_and_user(user, project, make_user):
    first = lifecycle.job_cancel(job=submit(user, project))
    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    second = lifecycle.job_cancel(job=submit(other, ProjectFactory.create(user=other, name="q")))
    UsageEvent.objects.filter(job_id=first.pk).update(created_at=timezone.now() - timedelta(days=3))

    def export(*args: str) -> list[dict[str, str]]:
        out = io.StringIO()
        call_command("usage_export", *args, stdout=out, stderr=io.StringIO())
        rows = list(csv.reader(io.StringIO(out.getvalue())))
        assert tuple(rows[0]) == EXPORT_FIELDS
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]

    assert [r["job_id"] for r in export()] == [str(first.pk), str(second.pk)], "oldest first"
    today = timezone.now().date().isoformat()
    assert [r["job_id"] for r in export("--since", today)] == [str(second.pk)]
    assert [r["job_id"] for r in export("--until", today)] == [str(first.pk)]
    assert [r["user_id"] for r in export("--user", str(other.pk))] == [str(other.pk)]
    # Who submitted each job: the personal workspace's owner here (a team's member in a team).
    by_other = [(r["job_id"], r["member_id"]) for r in export("--member", str(other.pk))]
    assert by_other == [(str(second.pk), str(other.pk))]
    assert export("--type", "tts") == []
    row = export("--user", str(user.pk))[0]
    assert (row["type"], row["outcome"], row["credits_net"], row["quantities"]) == (
        "transcription", "canceled", "0", '{"duration_ms": 30000}')
    for bad in (["--since", "yesterday"], ["--type", "teleportation"], ["--user", "nobody"], ["--member", "x"]):
        with pytest.raises(CommandError):
            call_command("usage_export", *bad, stdout=io.StringIO())


def test_the_admin_lists_usage_and_exports_the_selection(user, project, superuser_client):
    job = lifecycle.job_cancel(job=submit(user, project))
    listing = superuser_client.get("/admin/jobs/usageevent/?type=transcription")
    assert listing.status_code == 200 and b"transcription" in listing.content
    event = UsageEvent.objects.get(job_id=job.pk)
    response = superuser_client.post("/admin/jobs/usageevent/", {"action": "export_csv",
                                                                 "_selected_action": [str(event.pk)]})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == EXPORT_FIELDS and rows[1][2] == str(job.pk)
    # Nothing of it can be edited or deleted there.
    assert superuser_client.get(f"/admin/jobs/usageevent/{event.pk}/delete/").status_code in (302, 403)
