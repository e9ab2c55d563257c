"""The OpenAPI document describes both request shapes: with and without `project_id` and
`size_bytes`, the languages, and a transcription's `output_data.transcript`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.support import resolve, served_schema

SCHEMA = served_schema()


def body(path: str) -> dict[str, Any]:
    node = SCHEMA["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return resolve(SCHEMA, node)


@pytest.mark.parametrize("job_type", ["tts", "video-generation", "lip-sync", "transcription", "image-generation"])
def test_project_id_is_optional_but_documented(job_type):
    shape = body(f"/api/v1/jobs/{job_type}")
    assert "project_id" in shape["properties"] and "project_id" not in shape.get("required", [])
    assert "Library" in shape["properties"]["project_id"]["description"]


def test_a_render_still_requires_its_project():
    assert "project_id" in body("/api/v1/jobs/render")["required"]


def test_size_bytes_is_optional_at_upload_url():
    shape = body("/api/v1/projects/{project_id}/media/upload-url")
    assert "size_bytes" in shape["properties"] and sorted(shape["required"]) == ["content_type", "filename"]


def test_transcription_language_lists_every_whisper_code_and_auto():
    language = body("/api/v1/jobs/transcription")["properties"]["language"]
    language = resolve(SCHEMA, language["allOf"][0]) if "allOf" in language else resolve(SCHEMA, language)
    assert {"auto", "en", "es", "yue"} <= set(language["enum"])
    responses = SCHEMA["paths"]["/api/v1/jobs/transcription"]["post"]["responses"]
    assert "422" in responses


def test_a_jobs_output_data_documents_the_transcript():
    job = resolve(SCHEMA, SCHEMA["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]["content"]
                  ["application/json"]["schema"])
    assert "`transcript`" in job["properties"]["output_data"]["description"]
