"""A client is told the code and a sentence, never the server's paths or an operator's hint.

A type whose weights are not on this server is refused 503 `feature_unavailable`; what to run to
fix it (and where the weights should be) goes to the log and `manage.py doctor` only.
"""

from __future__ import annotations

import logging

import pytest

from credits.models import Plan
from credits.services.subscriptions import subscription_create
from jobs.models import Job
from tests.jobs.support import error_code, ledger_state, submit, valid_body
from tests.projects.test_edl_support import clean_edl_store_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

SENTENCE = ("This feature is not available on this server: its GPU backend does not run it. "
            "An operator can enable it.")
# What the operator's reason holds, none of which a client may see.
OPERATOR_WORDS = ("manage.py", "download_models", "weights", "not found in")


@pytest.fixture
def models_dir(settings):
    """This server's models folder (the weights of image-generation are not in it)."""
    return str(settings.AUTEUR_MODELS_DIR)


def assert_tells_nothing(text: str, models_dir: str) -> None:
    assert models_dir not in text and models_dir.replace("/", "\\/") not in text
    for word in OPERATOR_WORDS:
        assert word not in text.lower(), word


def test_a_type_without_its_weights_is_503_with_a_sentence_and_the_hint_goes_to_the_log(
    auth_client, funded, project, media, models_dir, caplog
):
    subscription_create(user=funded, plan=Plan.PRO)
    before = ledger_state(funded)
    with caplog.at_level(logging.WARNING, logger="auteur.core.errors"):
        response = submit(auth_client, "image-generation", valid_body("image-generation", project, media))
    assert response.status_code == 503 and error_code(response) == "feature_unavailable"
    error = response.json()["error"]
    assert error["message"] == SENTENCE
    assert error["details"] == {"type": "image-generation", "backend": "local"}
    assert_tells_nothing(response.content.decode(), models_dir)
    # The operator learns where and what to run, from the log.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert models_dir in logged and "download_models image-generation" in logged
    assert ledger_state(funded) == before and not Job.objects.exists()


def test_the_job_type_list_tells_no_path_or_hint(auth_client, models_dir):
    response = auth_client.get("/api/v1/jobs/types")
    assert response.status_code == 200
    types = {t["type"]: t for t in response.json()["types"]}
    assert types["image-generation"]["available"] is False
    assert types["image-generation"]["reason"] == SENTENCE
    assert_tells_nothing(response.content.decode(), models_dir)


def test_a_skipped_automatic_transcription_records_the_sentence_for_its_owner(
    funded, project, media, models_dir, monkeypatch
):
    """The owner reads a media file's metadata: a refusal recorded there is the client's sentence."""
    from jobs import gpu_client
    from jobs.intake.transcribe import job_auto_transcribe

    # The GPU side, at its one client module: this server cannot transcribe, for an operator's reason.
    hint = f"weights for whisper not found in {models_dir}; run manage.py download_models transcription"
    monkeypatch.setattr(gpu_client, "unavailable_reason", lambda job_type: hint)
    project.auto_transcribe = True
    project.save(update_fields=["auto_transcribe"])
    audio = media["audio"]
    assert job_auto_transcribe(media_id=audio.pk) is None
    audio.refresh_from_db()
    skipped = audio.metadata["auto_transcribe"]
    assert skipped == {"skipped": "feature_unavailable", "reason": SENTENCE}
    assert not Job.objects.exists()
