"""Spoken languages: any Whisper code or `auto`, where this server's engine takes it."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_tasks.backends.modal_backend import ModalBackend
from jobs import gpu_client
from tests.gpu_tasks.test_modal_backend import FakeModal
from tests.jobs.support import (
    START_BALANCE,
    error_code,
    jobs_url,
    ledger_state,
    submit,
    valid_body,
)
from tests.media.conftest import local_storage  # noqa: F401 - fixture
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


@pytest.fixture
def on_modal(monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    fake = FakeModal()
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake))
    return fake


def transcription(project: Any, media: Any, **fields: Any) -> dict[str, Any]:
    return {**valid_body("transcription", project, media), **fields}


def types(client: Any) -> dict[str, Any]:
    response = client.get(jobs_url("/types"))
    assert response.status_code == 200
    return {t["type"]: t for t in response.json()["types"]}


@pytest.mark.parametrize("language", ["es", "auto", "en", "ja"])
def test_the_local_backend_takes_its_models_languages(auth_client, funded, project, media, language):
    response = submit(auth_client, "transcription", transcription(project, media, language=language))
    assert response.status_code == 202, response.json()
    assert credit_balance_after(funded) == START_BALANCE - 5


def credit_balance_after(user: Any) -> int:
    return ledger_state(user)[0]


def test_a_language_the_local_models_lack_is_422_naming_the_supported_and_charges_nothing(
    auth_client, funded, project, media
):
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", transcription(project, media, language="yue"))
    assert response.status_code == 422 and error_code(response) == "language_unsupported"
    details = response.json()["error"]["details"]
    assert details["field"] == "language" and details["language"] == "yue" and details["backend"] == "local"
    codes = [entry["code"] for entry in details["supported"]]
    assert codes[0] == "auto" and {"en", "es", "de"} <= set(codes) and "yue" not in codes
    assert ledger_state(funded) == before  # no charge, no job


def test_a_code_that_is_no_whisper_language_is_a_validation_error(auth_client, funded, project, media):
    before = ledger_state(funded)
    response = submit(auth_client, "transcription", transcription(project, media, language="xx"))
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert "language" in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


def test_modal_takes_every_whisper_language(auth_client, funded, project, media, on_modal):
    response = submit(auth_client, "transcription", transcription(project, media, language="yue"))
    assert response.status_code == 202, response.json()
    listed = types(auth_client)["transcription"]["languages"]
    assert listed[0] == {"code": "auto", "name": "Detect the language"}
    assert {"code": "yue", "name": "Cantonese"} in listed and len(listed) == 101


def test_job_types_list_the_languages_of_the_types_that_take_one(auth_client):
    listed = types(auth_client)
    codes = {entry["code"] for entry in listed["transcription"]["languages"]}
    assert {"auto", "en", "es"} <= codes and "yue" not in codes
    assert {"code": "es", "name": "Spanish"} in listed["transcription"]["languages"]
    assert listed["tts"]["languages"] is None


@pytest.mark.usefixtures("local_storage")
def test_modal_is_sent_the_language_and_the_job_records_the_detected_one(
    auth_client, funded, project, media, on_modal, settings
):
    from gpu_tasks.contract import status_record
    from jobs.life.inference import job_poll, job_spawn
    from jobs.life.outputs import job_result_store
    from jobs.models import Job, JobStatus

    settings.AUTEUR_GPU_BACKEND = "modal"  # inputs go as signed URLs, as they do to Modal
    detected = {"language": "es", "duration_ms": 900, "text": "Hola.", "model": "whisper-large-v3",
                "segments": [{"id": "seg-0001", "speaker": "SPEAKER_00", "start_ms": 0, "end_ms": 900,
                              "text": "Hola.", "words": [{"word": "Hola.", "start_ms": 0, "end_ms": 900,
                                                          "confidence": None}]}],
                "diarization": {"performed": True, "speakers": 1}, "alignment": {"mode": "none"}}
    on_modal.script = [status_record("succeeded", result=detected)]  # what the Modal function answers
    response = submit(auth_client, "transcription", transcription(project, media, language="auto"))
    assert response.status_code == 202, response.json()
    job_id = response.json()["job_id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING)

    job_spawn(job_id=job_id)
    assert on_modal.payloads[0]["language"] == "auto"  # the engine detects it (test_transcription_hf.py)
    status = job_poll(job_id=job_id)
    assert status is not None and status.result is not None
    job_result_store(job_id=job_id, result=status.result)

    shown = auth_client.get(jobs_url(f"/{job_id}")).json()
    assert shown["status"] == "completed"
    assert shown["output_data"]["transcript"]["language"] == "es" and shown["output_data"]["language"] == "es"
