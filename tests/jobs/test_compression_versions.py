"""A finished compression is a version of its source (`derived_from_id`), and takes its place in the
timeline when asked; `POST /projects/{id}/edl/replace-media` does the same for any two files."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.life import outputs
from jobs.life.timeline_swap import job_timeline_swap
from jobs.models import Job, JobStatus
from media.models import MediaFile
from media.selectors import media_get, media_latest_version_id
from projects.edl.selectors import edl_get
from tests.factories import ProjectFactory
from tests.jobs.support import jobs_url, put_timeline, submit
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


@pytest.fixture(autouse=True)
def noop(gpu_backend: Any) -> None:
    gpu_backend("noop")


def compress(client: Any, project: Any, video: MediaFile, **extra: Any) -> Job:
    """A compression of `video` submitted and run as a worker would, on the noop backend's output."""
    response = submit(client, "compression", {"project_id": str(project.pk), "media_id": str(video.pk),
                                               "preset": "480p", **extra})
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    if job.status == JobStatus.COMPLETED:
        return job
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    with TestCase.captureOnCommitCallbacks(execute=False):  # the swap task is run by the test
        done = outputs.job_result_store(job_id=job.pk, result=fixed_result(JobType.COMPRESSION))
    assert done is not None and done.status == JobStatus.COMPLETED
    return done


def output_of(job: Job) -> MediaFile:
    [output] = MediaFile.objects.filter(source_job_id=job.pk)
    return output


def clip_media(project: Any) -> list[str]:
    return [c["media_file_id"] for t in edl_get(project=project)["tracks"] for c in t["clips"]]


def test_a_compression_is_a_version_of_its_source_and_the_source_points_at_it(auth_client, project, media,
                                                                             make_media, make_user):
    source_url = f"/api/v1/projects/{project.pk}/media/{media['video'].pk}"
    assert auth_client.get(source_url).json()["media"]["latest_version_id"] is None
    job = compress(auth_client, project, media["video"], replace_in_timeline=False)
    output = output_of(job)
    assert output.derived_from_id == media["video"].pk
    assert "timeline" not in job.output_data, "asked not to"
    listed = auth_client.get(f"/api/v1/projects/{project.pk}/media", {"derived_from": str(media["video"].pk)}).json()
    assert [m["id"] for m in listed["media"]] == [str(output.pk)]
    assert listed["media"][0]["derived_from_id"] == str(media["video"].pk)
    # The source shows its newest version, in its page and in the project's list.
    assert auth_client.get(source_url).json()["media"]["latest_version_id"] == str(output.pk)
    everything = auth_client.get(f"/api/v1/projects/{project.pk}/media").json()["media"]
    assert {m["id"]: m["latest_version_id"] for m in everything}[str(media["video"].pk)] == str(output.pk)
    newer = compress(auth_client, project, media["video"], replace_in_timeline=False, preset="720p")
    assert auth_client.get(source_url).json()["media"]["latest_version_id"] == str(output_of(newer).pk)
    # Another user's file linked to it (no path makes one; a row could say so) is never shown: row-level
    # security hides it from the API's requests, and the selectors do not count it wherever they run.
    theirs = make_media(ProjectFactory.create(user=make_user()), "video")
    MediaFile.objects.filter(pk=theirs.pk).update(derived_from_id=media["video"].pk)
    assert auth_client.get(source_url).json()["media"]["latest_version_id"] == str(output_of(newer).pk)
    source = media_get(user=project.user, project_id=project.pk, media_id=media["video"].pk)
    assert media_latest_version_id(media=source) == output_of(newer).pk  # from the annotation
    source.__dict__.pop("latest_version_id")
    assert media_latest_version_id(media=source) == output_of(newer).pk
    # Deleting the source leaves the version, unlinked.
    MediaFile.objects.filter(pk=media["video"].pk).delete()
    output.refresh_from_db()
    assert output.derived_from_id is None


def test_by_default_the_compressed_file_takes_the_sources_place_in_the_timeline(auth_client, project, media):
    # What the source's compression flow did: the compressed file becomes the one the project plays.
    put_timeline(project, media["video"])
    job = compress(auth_client, project, media["video"])
    assert job.input_params["replace_in_timeline"] is True
    assert job.output_data["timeline"] == {"status": "pending"}


def test_asked_for_it_takes_the_sources_place_in_the_timeline_in_one_undo_step(auth_client, project, media):
    put_timeline(project, media["video"], clips=2)
    before = edl_get(project=project)["version"]
    job = compress(auth_client, project, media["video"], replace_in_timeline=True)
    assert job.output_data["timeline"] == {"status": "pending"}
    output = output_of(job)
    MediaFile.objects.filter(pk=output.pk).update(duration_ms=media["video"].duration_ms)  # the canned file is short
    outcome = job_timeline_swap(job_id=job.pk)
    assert outcome is not None and outcome["status"] == "replaced" and outcome["clips"] == 2
    assert clip_media(project) == [str(output.pk)] * 2
    job.refresh_from_db()
    assert job.output_data["timeline"] == outcome and outcome["version"] == before + 1
    assert job_timeline_swap(job_id=job.pk) is None, "done once: a redelivery changes nothing"
    assert auth_client.post(f"/api/v1/projects/{project.pk}/edl/undo", {}, format="json").status_code == 200
    assert clip_media(project) == [str(media["video"].pk)] * 2


def test_a_version_that_ends_too_early_is_refused_and_recorded(auth_client, project, media):
    put_timeline(project, media["video"], clip_ms=4000)
    job = compress(auth_client, project, media["video"], replace_in_timeline=True)
    MediaFile.objects.filter(pk=output_of(job).pk).update(duration_ms=1000)
    assert job_timeline_swap(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.output_data["timeline"]["status"] == "failed"
    assert job.output_data["timeline"]["code"] == "media_too_short"
    assert clip_media(project) == [str(media["video"].pk)]


def test_replace_media_plays_another_file_and_renames_the_transcripts_segments(auth_client, project, media,
                                                                                make_media):
    put_timeline(project, media["video"], clip_ms=4000)
    doc = edl_get(project=project)
    clip_id = doc["tracks"][0]["clips"][0]["id"]
    doc["transcript"]["segments"] = [{"id": "s1", "media_file_id": str(media["video"].pk), "clip_id": clip_id,
                                      "start_ms": 0, "end_ms": 900, "text": "hello", "words": []}]
    assert auth_client.put(f"/api/v1/projects/{project.pk}/edl", doc, format="json").status_code == 200
    other = make_media(project, "video", duration_ms=3900)  # 100 ms short: a re-encode's padding
    url = f"/api/v1/projects/{project.pk}/edl/replace-media"
    response = auth_client.post(url, {"media_id": str(media["video"].pk), "with_media_id": str(other.pk)},
                                format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["clips"] == 1
    saved = edl_get(project=project)
    [clip] = saved["tracks"][0]["clips"]
    assert (clip["media_file_id"], clip["out_point_ms"], clip["duration_ms"]) == (str(other.pk), 3900, 3900)
    [segment] = saved["transcript"]["segments"]
    assert (segment["id"], segment["media_file_id"], segment["text"]) == ("s1", str(other.pk), "hello")
    again = auth_client.post(url, {"media_id": str(media["video"].pk), "with_media_id": str(other.pk)},
                             format="json")
    assert again.json() == {"version": saved["version"], "clips": 0}, "nothing plays it now: nothing written"


def test_replace_media_refuses_what_cannot_stand_in(auth_client, project, media, make_media, make_user, client_for):
    put_timeline(project, media["video"], clip_ms=4000)
    url = f"/api/v1/projects/{project.pk}/edl/replace-media"
    source = str(media["video"].pk)
    theirs = make_media(ProjectFactory.create(user=make_user()), "video")
    for other, status, code in (
        (media["audio"], 422, "wrong_media_type"),
        (make_media(project, "video", status="processing", duration_ms=None), 422, "media_not_ready"),
        (make_media(project, "video", duration_ms=1000), 422, "media_too_short"),
        (theirs, 404, "media_not_found"),
    ):
        response = auth_client.post(url, {"media_id": source, "with_media_id": str(other.pk)}, format="json")
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.json()
    assert clip_media(project) == [source]


def test_a_cached_compression_is_a_version_of_the_new_jobs_source(auth_client, project, funded, make_media):
    first = make_media(project, "video", content_sha256="c" * 64)
    source = compress(auth_client, project, first)
    second = make_media(ProjectFactory.create(user=funded), "video", content_sha256="c" * 64)
    put_timeline(second.project, second)
    with TestCase.captureOnCommitCallbacks(execute=False):
        job = compress(auth_client, second.project, second, replace_in_timeline=True)
    assert job.cache_source_id == source.pk and job.output_data["timeline"] == {"status": "pending"}
    output = output_of(job)
    assert output.derived_from_id == second.pk and output.project_id == second.project_id
    detail = auth_client.get(jobs_url(f"/{job.pk}")).json()
    assert detail["output_data"]["timeline"] == {"status": "pending"}


def test_a_cache_hit_does_not_inherit_the_source_jobs_timeline_record(auth_client, project, funded, make_media):
    # The source swapped its own project's timeline; a later identical compression that did not ask
    # for it has no `timeline` of its own (the source's record named another project's version).
    first = make_media(project, "video", content_sha256="d" * 64)
    put_timeline(project, first)
    with TestCase.captureOnCommitCallbacks(execute=True):
        source = compress(auth_client, project, first, replace_in_timeline=True)
    Job.objects.filter(pk=source.pk).update(output_data={**source.output_data,
                                                         "timeline": {"status": "replaced", "version": 7, "clips": 1}})
    second = make_media(ProjectFactory.create(user=funded), "video", content_sha256="d" * 64)
    job = compress(auth_client, second.project, second, replace_in_timeline=False)
    assert job.cache_source_id == source.pk
    assert "timeline" not in job.output_data
    assert "timeline" not in auth_client.get(jobs_url(f"/{job.pk}")).json()["output_data"]
