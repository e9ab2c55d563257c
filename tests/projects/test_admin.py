"""Deleting projects in the admin, one or a selection, does what deleting through the API does:
unfinished jobs canceled and refunded once, storage objects and the EDL document deleted."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.intake import submission
from jobs.models import Job, JobStatus
from jobs.selectors.requests import JobRequest
from jobs.specs import job_spec
from media.models import MediaFile
from projects.edl import store
from projects.models import Project
from projects.services import project_create
from tests.media.conftest import eager_celery, local_storage, samples, stored, upload_local  # noqa: F401

pytestmark = pytest.mark.django_db

GRANT = 100


@pytest.fixture
def funded(user):
    credit_grant(user=user, amount=GRANT, type="bonus", description="test")
    return user


def project_with_a_running_job(user, auth_client, samples) -> tuple[Project, Job, list[str]]:  # noqa: F811
    """A project with an uploaded file, its EDL, and a transcription job being processed."""
    project = project_create(user=user, name="doomed", auto_transcribe=False)
    media = upload_local(auth_client, project, samples.wav, "audio/wav")
    params: dict[str, Any] = {"project_id": str(project.pk), "media_id": str(media.pk),
                              "_quantities": {"duration_ms": 30_000}}
    with TestCase.captureOnCommitCallbacks(execute=False):  # no broker publish: the state is set here
        request = JobRequest(project=project, input_params=params, quantities=params["_quantities"],
                             media_ids=[media.pk])
        job, _ = submission.job_submit(user=user, spec=job_spec("transcription"), request=request)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING)
    return project, job, [media.storage_key]


def assert_deleted_as_by_the_service(project: Project, job: Job, keys: list[str]) -> None:
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not MediaFile.objects.filter(project_id=project.pk).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELED
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert not any(stored(key) for key in keys)
    assert store.edl_collection().count_documents({"project_id": str(project.pk)}) == 0


def test_deleting_a_project_in_the_admin_cancels_refunds_and_deletes_everything(
    superuser_client, funded, auth_client, samples, local_storage, eager_celery,  # noqa: F811
    django_capture_on_commit_callbacks, clean_edl_store,
):
    project, job, keys = project_with_a_running_job(funded, auth_client, samples)
    assert credit_balance_get(user=funded) == GRANT - job.credits_cost
    assert all(stored(key) for key in keys)
    assert store.edl_collection().count_documents({"project_id": str(project.pk)}) == 1

    url = f"/admin/projects/project/{project.pk}/delete/"
    assert superuser_client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert superuser_client.post(url, {"post": "yes"}).status_code == 302

    assert_deleted_as_by_the_service(project, job, keys)
    assert credit_balance_get(user=funded) == GRANT


def test_the_bulk_delete_action_goes_through_the_service_for_each_project(
    superuser_client, funded, auth_client, samples, local_storage, eager_celery,  # noqa: F811
    django_capture_on_commit_callbacks, clean_edl_store,
):
    doomed = [project_with_a_running_job(funded, auth_client, samples) for _ in range(2)]
    kept = project_create(user=funded, name="kept")
    selected = [str(project.pk) for project, _job, _keys in doomed]
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post("/admin/projects/project/",
                                     {"action": "delete_selected", "_selected_action": selected, "post": "yes"})
    assert response.status_code == 302
    for project, job, keys in doomed:
        assert_deleted_as_by_the_service(project, job, keys)
    assert credit_balance_get(user=funded) == GRANT
    assert Project.objects.filter(pk=kept.pk).exists()
    assert store.edl_collection().count_documents({"project_id": str(kept.pk)}) == 1


def test_the_admin_shows_and_edits_transcript_to_edl(superuser_client, user):
    project = project_create(user=user, name="settings")
    listing = superuser_client.get("/admin/projects/project/?transcript_to_edl__exact=1")
    assert listing.status_code == 200 and b"settings" in listing.content
    form = superuser_client.get(f"/admin/projects/project/{project.pk}/change/")
    assert b'name="transcript_to_edl"' in form.content
    saved = superuser_client.post(f"/admin/projects/project/{project.pk}/change/", {
        "name": project.name, "description": "", "resolution": project.resolution,
        "frame_rate": str(project.frame_rate), "thumbnail_url": "", "auto_transcribe": "",
        "transcript_to_edl": "",
    })
    assert saved.status_code == 302, saved.content[:2000]
    project.refresh_from_db()
    assert project.transcript_to_edl is False
