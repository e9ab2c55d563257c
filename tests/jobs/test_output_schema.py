"""The published output schema (a completed job's `output_data`, per job type): served beside the
OpenAPI document and linked from it, a valid JSON Schema naming every job type, closed per type.
That what the server stores validates is checked where it is written (AUTEUR_CHECK_EVENT_SCHEMA, on
in the tests): every job the suite completes, on the noop backend here and on the local engines in
the pipeline tests (tests/jobs/test_pipeline.py, test_model_pipeline.py, test_pieces_pipeline.py)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.test import TestCase
from django.utils import timezone

from credits.models import Plan
from credits.services.subscriptions import subscription_create
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JobType
from jobs.life import outputs
from jobs.models import Job, JobStatus
from jobs.output_schema import OUTPUT_DATA, output_errors, output_schema
from tests.jobs.support import jobs_url, put_timeline, submit, valid_body

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def noop(gpu_backend: Any) -> None:
    gpu_backend("noop")


def test_the_schema_is_served_valid_linked_and_names_every_job_type(api_client):
    response = api_client.get("/api/schema/outputs/")
    assert response.status_code == 200 and response.json() == output_schema()
    jsonschema.Draft202012Validator.check_schema(response.json())
    assert set(OUTPUT_DATA) == set(JobType) and set(JobType) <= set(response.json()["$defs"])
    document = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/schema/outputs/" in document["info"]["description"]
    assert api_client.get("/api/v1/").json()["outputs_schema"] == "/api/schema/outputs/"


def store(job_id: Any, result: dict[str, Any]) -> Job | None:
    """What a worker does with a GPU call's result: stored, the job completed."""
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    with TestCase.captureOnCommitCallbacks(execute=True):
        return outputs.job_result_store(job_id=job_id, result=result)


@pytest.mark.parametrize("job_type", sorted(JobType))
def test_each_types_output_as_served_has_its_published_shape(auth_client, funded, project, media, job_type):
    subscription_create(user=funded, plan=Plan.PRO)  # every type is open to it
    if job_type == JobType.RENDER:
        put_timeline(project, media["video"])
    response = submit(auth_client, job_type, valid_body(job_type, project, media))
    assert response.status_code == 202, response.json()
    done = store(response.json()["job_id"], fixed_result(JobType(job_type)))
    assert done is not None and done.status == JobStatus.COMPLETED
    shown = auth_client.get(jobs_url(f"/{done.pk}")).json()["output_data"]
    assert output_errors(shown, job_type) == []
    if OUTPUT_DATA[job_type]["properties"].get("output_media_ids"):
        assert len(shown["output_media_ids"]) >= 1


def test_a_key_the_schema_does_not_name_is_refused_where_it_is_stored(auth_client, project, media):
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    with pytest.raises(ValueError, match="breaks the published output schema"):
        store(response.json()["job_id"], {**fixed_result(JobType.TTS), "debug_path": "/tmp/x"})
    assert Job.objects.get(pk=response.json()["job_id"]).status == JobStatus.PROCESSING


def test_each_shape_is_closed_and_typed():
    tts = {**{k: v for k, v in fixed_result(JobType.TTS).items() if k != "outputs"},
           "output_media_ids": ["00000000-0000-4000-8000-000000000001"]}
    assert output_errors(tts, "tts") == []
    assert output_errors({**tts, "extra": 1}, "tts") == [
        ": Additional properties are not allowed ('extra' was unexpected)"]
    assert output_errors({**tts, "duration_ms": "1s"}, "tts") == ["duration_ms: '1s' is not of type 'integer'"]
    no_engine = {k: v for k, v in tts.items() if k != "engine"}
    assert output_errors(no_engine, "tts") == [": 'engine' is a required property"]
    answer = {k: v for k, v in fixed_result(JobType.VIDEO_QUERY).items() if k != "outputs"}
    assert output_errors({**answer, "range_ms": [0]}, "video-query") == ["range_ms: [0] is too short"]
