"""Retention of the files jobs produced: off by default; past the window, deleted through the
media deletion service (row now, storage objects after commit), never an upload nor a file in use."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from auteur.core.retention import run_sweep
from media.hooks import register_in_use_check, unregister_in_use_check
from media.models import MediaFile
from media.services.keys import media_key
from media.storage import get_storage
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory
from tests.media.conftest import stored

pytestmark = pytest.mark.django_db

DAYS = 90
WINDOW = timedelta(days=DAYS)
MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def opted_in(settings) -> None:
    settings.AUTEUR_RETENTION_JOB_OUTPUTS_DAYS = DAYS


def output(project: Project, age: timedelta, *, job: bool = True) -> MediaFile:
    """A stored file of `project`, `age` old: a job's output, or (job=False) an upload."""
    media_id = uuid.uuid4()
    key = media_key(project_id=project.pk, media_id=media_id, filename="out.mp4")
    get_storage().save(key, io.BytesIO(b"bytes"), "video/mp4")
    media = MediaFileFactory.create(
        id=media_id, project=project, storage_key=key, source_job_id=uuid.uuid4() if job else None
    )
    MediaFile.objects.filter(pk=media.pk).update(created_at=timezone.now() - age)
    return media


def exists(media: MediaFile) -> bool:
    return MediaFile.objects.filter(pk=media.pk).exists()


def test_job_outputs_are_kept_for_ever_by_default(settings, project):
    settings.AUTEUR_RETENTION_JOB_OUTPUTS_DAYS = 0
    old = output(project, 10 * WINDOW)

    result = run_sweep("job_outputs")

    assert result.count == 0 and exists(old)


def test_outputs_past_the_window_go_with_their_objects_and_nothing_else(
    project, make_user, local_storage, eager_celery, django_capture_on_commit_callbacks
):
    theirs = ProjectFactory.create(user=make_user())
    past = output(project, WINDOW + MINUTE)
    inside = output(project, WINDOW - MINUTE)
    upload = output(project, 10 * WINDOW, job=False)
    others = output(theirs, WINDOW - MINUTE)

    with django_capture_on_commit_callbacks(execute=True):
        result = run_sweep("job_outputs")

    assert result.count == 1
    assert not exists(past) and not stored(past.storage_key)
    for kept in (inside, upload, others):
        assert exists(kept) and stored(kept.storage_key)


def test_a_file_in_use_is_skipped_and_the_sweep_goes_on(project, local_storage):
    busy, free = output(project, WINDOW + MINUTE), output(project, WINDOW + MINUTE)

    def check(media: MediaFile) -> str | None:
        return "a job uses it" if media.pk == busy.pk else None

    register_in_use_check(check)
    try:
        result = run_sweep("job_outputs", batch_size=1)
    finally:
        unregister_in_use_check(check)

    assert (result.count, result.details["in_use"]) == (1, 1)
    assert exists(busy) and not exists(free)


def test_outputs_are_deleted_in_batches_and_a_dry_run_deletes_none(project, local_storage):
    outputs = [output(project, WINDOW + MINUTE) for _ in range(5)]

    dry = run_sweep("job_outputs", dry_run=True, batch_size=2)
    assert (dry.count, dry.batches) == (5, 3) and all(exists(m) for m in outputs)

    result = run_sweep("job_outputs", batch_size=2)
    assert (result.count, result.batches) == (5, 3) and not any(exists(m) for m in outputs)
