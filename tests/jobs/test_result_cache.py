"""The result cache: a user's identical work completes at once, with no GPU call, for the cache
price; other work (another seed, another engine version, other bytes), another user, or a
request that opts out runs. Its input files are identified by the SHA-256 of their bytes."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.types import JOB_TYPES, JobType
from jobs.intake import result_cache
from jobs.life import outputs
from jobs.models import Job, JobEvent, JobStatus
from media.models import MediaFile, PendingObjectDeletion
from media.services.sweep import media_sweep
from media.storage import get_storage
from tests.factories import ProjectFactory
from tests.jobs.support import START_BALANCE, error_code, jobs_url, submit

pytestmark = pytest.mark.django_db

PROMPT = {"prompt": "a lighthouse at dusk", "seed": 7}
IMAGE_PRICE = 4  # one image
CACHE_PRICE = 1  # a tenth of 4, rounded up


@pytest.fixture(autouse=True)
def noop(gpu_backend: Any) -> None:
    """Every type runs on the noop backend, whose canned results the tests store as a worker would."""
    gpu_backend("noop")


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if a GPU call is spawned or a pipeline published; returns what was tried."""
    tried: list[str] = []
    monkeypatch.setattr("jobs.gpu_client.spawn", lambda job_type, payload: tried.append(f"spawn {job_type}"))
    monkeypatch.setattr("jobs.life.publish.start",
                        lambda job_id, job_type, trace="": tried.append(f"publish {job_type}"))
    return tried


def image_body(project: Any, **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project.pk), **PROMPT, **extra}


def run(job_id: Any) -> Job:
    """What a worker does with the job: its call's result stored, the job completed."""
    job = Job.objects.get(pk=job_id)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, started_at=timezone.now())
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = outputs.job_result_store(job_id=job.pk, result=fixed_result(JobType(job.type)))
    assert done is not None and done.status == JobStatus.COMPLETED
    return done


def completed_job(client: Any, project: Any, job_type: str = "image-generation", **extra: Any) -> Job:
    response = submit(client, job_type, image_body(project, **extra))
    assert response.status_code == 202 and response.json()["status"] == "pending", response.json()
    return run(response.json()["job_id"])


def test_a_hit_completes_at_submission_without_a_gpu_call_for_the_cache_price(auth_client, funded, project,
                                                                              no_gpu):
    source = completed_job(auth_client, project)
    [source_output] = MediaFile.objects.filter(source_job_id=source.pk)
    balance = credit_balance_get(user=funded)

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = submit(auth_client, "image-generation", image_body(project))
    assert response.status_code == 202, response.json()
    accepted = response.json()
    assert accepted["status"] == "completed" and accepted["credits_cost"] == CACHE_PRICE
    assert accepted["cache"] == {"hit": True, "source_job_id": str(source.pk)}
    assert no_gpu == [], "no GPU call, no pipeline"
    job = Job.objects.get(pk=accepted["job_id"])
    assert (job.attempts, job.gpu_call_id, job.progress, job.gpu_seconds) == (0, "", 100, 0.0)
    # Charged the cache price, once.
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", "amount")) == [
        ("usage", -CACHE_PRICE)]
    assert credit_balance_get(user=funded) == balance - CACHE_PRICE
    # Its own copy of the output: another file of the project, the same bytes.
    [output] = MediaFile.objects.filter(source_job_id=job.pk)
    assert output.pk != source_output.pk and output.storage_key != source_output.storage_key
    assert (output.project_id, output.status, output.content_sha256) == (project.pk, "ready",
                                                                          source_output.content_sha256)
    with get_storage().open(output.storage_key) as copy, get_storage().open(source_output.storage_key) as original:
        assert copy.read() == original.read()
    assert output.name == source_output.name.replace(str(source.pk)[:8], str(job.pk)[:8])
    assert not PendingObjectDeletion.objects.exists(), "the copy's lease went with its row"

    detail = auth_client.get(jobs_url(f"/{job.pk}")).json()
    assert detail["status"] == "completed" and detail["cache"] == {"hit": True, "source_job_id": str(source.pk)}
    assert [m["id"] for m in detail["output_media"]] == [str(output.pk)]
    def results(output_data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in output_data.items() if k != "output_media_ids"}

    assert results(detail["output_data"]) == results(source.output_data)
    assert detail["output_data"]["output_media_ids"] == [str(output.pk)]
    assert detail["charge"]["charged"] == CACHE_PRICE and detail["charge"]["net"] == CACHE_PRICE
    assert "result cache" in detail["charge"]["entries"][0]["description"]
    listed = auth_client.get(jobs_url(), {"type": "image-generation"}).json()["jobs"]
    assert [j["cache"]["hit"] for j in listed] == [True, False]
    events = list(JobEvent.objects.filter(job=job).values_list("type", "data"))
    assert [t for t, _ in events] == ["submitted", "completed"]
    assert events[1][1]["cache"] == {"hit": True, "source_job_id": str(source.pk)}
    assert events[1][1]["charge"] == {"charged": CACHE_PRICE, "refunded": 0, "net": CACHE_PRICE}


def test_another_seed_another_engine_version_or_opting_out_runs_the_job(auth_client, funded, project, no_gpu,
                                                                       monkeypatch):
    completed_job(auth_client, project)

    def accepted(body: dict[str, Any]) -> dict[str, Any]:
        response = submit(auth_client, "image-generation", body)
        assert response.status_code == 202, response.json()
        return response.json()

    other_seed = accepted(image_body(project, seed=8))
    opted_out = accepted(image_body(project, cache=False))
    no_seed = accepted({"project_id": str(project.pk), "prompt": PROMPT["prompt"]})
    for answer in (other_seed, opted_out, no_seed):
        assert answer["status"] == "pending" and answer["cache"] == {"hit": False, "source_job_id": None}
        assert answer["credits_cost"] == IMAGE_PRICE
    assert Job.objects.get(pk=no_seed["job_id"]).cache_key == "", "without a seed a generator is not cached"

    spec = JOB_TYPES[JobType.IMAGE_GENERATION]
    monkeypatch.setattr("jobs.specs.JOB_TYPES", {**JOB_TYPES, JobType.IMAGE_GENERATION: dataclasses.replace(
        spec, version=spec.version + 1)})
    new_version = accepted(image_body(project))
    assert new_version["status"] == "pending" and new_version["credits_cost"] == IMAGE_PRICE


def test_another_user_never_hits(auth_client, funded, project, make_user, client_for, no_gpu):
    completed_job(auth_client, project)
    other = make_user()
    credit_grant(user=other, amount=100, type="bonus", description="test")
    theirs = ProjectFactory.create(user=other)
    response = submit(client_for(other), "image-generation", image_body(theirs))
    assert response.status_code == 202
    assert response.json()["status"] == "pending" and response.json()["cache"]["hit"] is False


def test_the_same_bytes_in_another_project_hit_and_other_bytes_miss(auth_client, funded, project, make_media,
                                                                    no_gpu):
    video = make_media(project, "video", content_sha256="a" * 64)
    body = {"project_id": str(project.pk), "media_id": str(video.pk), "preset": "480p"}
    source = run(submit(auth_client, "compression", body).json()["job_id"])

    second = ProjectFactory.create(user=funded)
    same_bytes = make_media(second, "video", content_sha256="a" * 64)
    other_bytes = make_media(second, "video", content_sha256="b" * 64)
    unknown = make_media(second, "video")  # stored before hashes were recorded
    with TestCase.captureOnCommitCallbacks(execute=True):
        hit = submit(auth_client, "compression", {**body, "project_id": str(second.pk),
                                                  "media_id": str(same_bytes.pk)}).json()
    assert hit["status"] == "completed" and hit["cache"]["source_job_id"] == str(source.pk)
    [output] = MediaFile.objects.filter(source_job_id=hit["job_id"])
    assert output.project_id == second.pk, "the outputs go to the new job's project"
    for media in (other_bytes, unknown):
        miss = submit(auth_client, "compression", {**body, "project_id": str(second.pk), "media_id": str(media.pk)})
        assert miss.json()["status"] == "pending", media.content_sha256
    assert Job.objects.get(pk=miss.json()["job_id"]).cache_key == ""


def test_a_source_whose_output_was_deleted_is_not_served(auth_client, funded, project, no_gpu):
    source = completed_job(auth_client, project)
    MediaFile.objects.filter(source_job_id=source.pk).delete()
    response = submit(auth_client, "image-generation", image_body(project))
    assert response.json()["status"] == "pending" and response.json()["credits_cost"] == IMAGE_PRICE


def test_a_source_whose_object_vanished_is_not_served(auth_client, funded, project, no_gpu):
    source = completed_job(auth_client, project)
    [output] = MediaFile.objects.filter(source_job_id=source.pk)
    get_storage().delete(output.storage_key)
    response = submit(auth_client, "image-generation", image_body(project))
    assert response.json()["status"] == "pending" and response.json()["credits_cost"] == IMAGE_PRICE


def test_a_refused_hit_charges_nothing_and_its_copies_are_swept(auth_client, funded, project, no_gpu, monkeypatch):
    completed_job(auth_client, project)
    before = (credit_balance_get(user=funded), Job.objects.count(), MediaFile.objects.count())

    def refused(**kwargs: Any) -> None:
        raise RuntimeError("the database went away mid-transaction")

    monkeypatch.setattr("jobs.intake.submission.credit_deduct_for_job", refused)
    assert submit(auth_client, "image-generation", image_body(project)).status_code == 500
    assert (credit_balance_get(user=funded), Job.objects.count(), MediaFile.objects.count()) == before
    [lease] = PendingObjectDeletion.objects.all()
    prefix = lease.key.rstrip("/")
    assert list(get_storage()._walk(prefix)), "the copy was made before the refusal"
    media_sweep(now=timezone.now() + timedelta(hours=2))
    assert not PendingObjectDeletion.objects.exists()
    assert list(get_storage()._walk(prefix)) == [], "the sweep deleted the copy no row names"


def test_a_quote_says_when_the_cache_would_serve_and_its_price_is_honoured(auth_client, funded, project, no_gpu):
    source = completed_job(auth_client, project)
    quote = auth_client.post(jobs_url("/image-generation/quote"), image_body(project), format="json").json()
    assert quote["credits_cost"] == IMAGE_PRICE
    assert quote["cache"] == {"hit": True, "source_job_id": str(source.pk), "credits_cost": CACHE_PRICE}
    fresh = auth_client.post(jobs_url("/image-generation/quote"), image_body(project, seed=9), format="json").json()
    assert fresh["cache"] == {"hit": False, "source_job_id": None, "credits_cost": None}
    response = submit(auth_client, "image-generation", {**image_body(project), "quote_id": quote["quote_id"]})
    assert response.json()["status"] == "completed" and response.json()["credits_cost"] == CACHE_PRICE
    again = submit(auth_client, "image-generation", {**image_body(project), "quote_id": quote["quote_id"]})
    assert again.status_code == 409 and error_code(again) == "quote_used"


def test_types_whose_output_is_not_a_function_of_the_input_are_never_cached(auth_client, funded, project, no_gpu):
    """TTS samples its noise and takes no seed: the same text twice runs twice."""
    body = {"project_id": str(project.pk), "text": "Hello world"}
    first = submit(auth_client, "tts", body).json()
    run(first["job_id"])
    second = submit(auth_client, "tts", body).json()
    assert second["status"] == "pending" and Job.objects.get(pk=second["job_id"]).cache_key == ""


def test_the_cache_price_is_a_tenth_rounded_up_at_least_one_credit(settings):
    assert [result_cache.cache_price(c) for c in (1, 4, 10, 11, 50)] == [1, 1, 1, 2, 5]
    settings.AUTEUR_RESULT_CACHE_PRICE_PERCENT = 100
    assert result_cache.cache_price(50) == 50


def test_an_upload_and_a_job_output_record_the_sha256_of_their_bytes(auth_client, funded, project, samples):
    from tests.jobs.conftest import upload_local

    video = upload_local(auth_client, project, samples.video, "video/mp4")
    assert video.content_sha256 == hashlib.sha256(samples.video.read_bytes()).hexdigest()
    detail = auth_client.get(f"/api/v1/projects/{project.pk}/media/{video.pk}").json()["media"]
    assert detail["content_sha256"] == video.content_sha256
    source = completed_job(auth_client, project)
    [output] = MediaFile.objects.filter(source_job_id=source.pk)
    with get_storage().open(output.storage_key) as fh:
        assert output.content_sha256 == hashlib.sha256(fh.read()).hexdigest()


def test_credits_balance_stays_exact(auth_client, funded, project, no_gpu):
    """Two hits and a miss: the balance is the start less each job's one charge."""
    completed_job(auth_client, project)
    for _ in range(2):
        submit(auth_client, "image-generation", image_body(project))
    submit(auth_client, "image-generation", image_body(project, seed=11))
    assert credit_balance_get(user=funded) == START_BALANCE - 2 * IMAGE_PRICE - 2 * CACHE_PRICE


# ----------------------------------------------------------------------------- through a worker


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_through_a_worker_the_same_file_transcribed_in_another_project_is_served_from_the_cache(
        celery_worker, auth_client, user, tmp_path):
    """The first transcription runs on the local backend; the same bytes uploaded to a second project
    are transcribed at once, for a fifth of the price, with no call: their caption and the second
    project's timeline get the words all the same."""
    from tests.jobs.conftest import speech_wav, upload_local, wait_for, wait_terminal

    credit_grant(user=user, amount=100, type="bonus", description="test")
    first, second = (ProjectFactory.create(user=user, name=name) for name in ("first", "second"))
    wav = speech_wav(tmp_path / "speech.wav", "The quick brown fox jumps over the lazy dog.")
    original = upload_local(auth_client, first, wav, "audio/wav")
    response = submit(auth_client, "transcription", {"project_id": str(first.pk), "media_id": str(original.pk)})
    source = wait_terminal(response.json()["job_id"])
    assert source.status == JobStatus.COMPLETED and source.attempts == 1, (source.error_code, source.error_detail)

    again = upload_local(auth_client, second, wav, "audio/wav", filename="again.wav")
    assert again.content_sha256 == original.content_sha256
    response = submit(auth_client, "transcription", {"project_id": str(second.pk), "media_id": str(again.pk)})
    accepted = response.json()
    assert (accepted["status"], accepted["credits_cost"], accepted["cache"]) == (
        "completed", 1, {"hit": True, "source_job_id": str(source.pk)})
    job = Job.objects.get(pk=accepted["job_id"])
    assert (job.attempts, job.gpu_call_id) == (0, "")
    assert job.output_data["segments"] == source.output_data["segments"]
    again.refresh_from_db()
    assert again.caption_key and get_storage().head(again.caption_key)
    # The worker's task writes the words into the second project's timeline as the first job's store
    # did into the first's (neither timeline has a clip of the file here: "unchanged").
    wait_for(lambda: Job.objects.get(pk=job.pk).output_data["edl"]["status"] != "pending", timeout=60)
    assert Job.objects.get(pk=job.pk).output_data["edl"] == source.output_data["edl"]
    assert list(JobEvent.objects.filter(job=job).values_list("type", flat=True)) == ["submitted", "completed"]
    assert credit_balance_get(user=user) == 100 - 5 - 1


def test_the_schema_describes_the_cache_fields():
    from tests.contract.support import served_schema

    schemas = served_schema()["components"]["schemas"]
    for name in ("JobAccepted", "Job", "JobSummary"):
        assert schemas[name]["properties"]["cache"]["allOf"][0]["$ref"].endswith("/Cache"), name
        assert "cache" in schemas[name]["required"], name
    assert set(schemas["Cache"]["properties"]) == {"hit", "source_job_id"}
    assert set(schemas["QuoteCache"]["properties"]) == {"hit", "source_job_id", "credits_cost"}
    assert schemas["Media"]["properties"]["content_sha256"]["type"] == "string"
    for name in ("ImageGenerationInputRequest", "TranscriptionInputRequest"):
        field = schemas[name]["properties"]["cache"]
        assert field["type"] == "boolean" and field["default"] is True and "cache price" in field["description"]


def test_files_stored_before_hashes_were_recorded_are_hashed_by_the_backfill(auth_client, funded, project,
                                                                             samples):
    from media.probing.service import media_hash_backfill
    from tests.factories import MediaFileFactory
    from tests.jobs.conftest import upload_local

    video = upload_local(auth_client, project, samples.video, "video/mp4")
    expected = video.content_sha256
    MediaFile.objects.filter(pk=video.pk).update(content_sha256="")  # as a file of an older release
    gone = MediaFileFactory.create(project=project, type="video")  # its object is not in storage
    assert media_hash_backfill() == 1
    video.refresh_from_db()
    gone.refresh_from_db()
    assert (video.content_sha256, gone.content_sha256) == (expected, "")
    assert media_hash_backfill() == 0, "nothing left to read but the file without an object"


def test_an_automatic_transcription_and_a_clients_of_the_same_file_are_one_work_charged_once(
        auth_client, funded, project, make_media, no_gpu):
    """A project that transcribes its uploads, then the client's own transcription of the same file
    seconds later (the README's tour): the client is answered with the automatic job, done, and
    charged nothing more (tests/jobs/test_transcription_dedupe.py). The automatic job's input is the
    work alone, as the API keeps it: no options in it, so a client's request with options is the
    same work, and the same cache key."""
    from jobs.intake.transcribe import job_auto_transcribe

    project.auto_transcribe = True
    project.save(update_fields=["auto_transcribe"])
    sound = make_media(project, "audio", content_sha256="c" * 64, duration_ms=60_000)
    before = credit_balance_get(user=funded)
    automatic = job_auto_transcribe(media_id=sound.pk)
    assert automatic is not None
    assert not set(automatic.input_params) & result_cache.SUBMISSION_OPTIONS, automatic.input_params
    run(automatic.pk)
    body = {"project_id": str(project.pk), "media_id": str(sound.pk)}
    # Options are not the work either: another priority, a run deadline.
    for extra in ({}, {"priority": "low", "run_within_seconds": 600}):
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = submit(auth_client, "transcription", {**body, **extra})
        accepted = response.json()
        assert response.status_code == 200 and accepted["deduplicated"] is True
        assert (accepted["job_id"], accepted["status"]) == (str(automatic.pk), "completed")
    assert credit_balance_get(user=funded) == before - automatic.credits_cost
    # Asked to run again (`cache: false`), it is one more job of the same cache key.
    with TestCase.captureOnCommitCallbacks(execute=False):
        fresh = submit(auth_client, "transcription", {**body, "cache": False}).json()
    assert Job.objects.get(pk=fresh["job_id"]).cache_key == automatic.cache_key != ""


def test_a_batch_item_the_cache_serves_completes_at_submission_for_the_cache_price(auth_client, funded, project,
                                                                                   no_gpu):
    source = completed_job(auth_client, project)
    balance = credit_balance_get(user=funded)
    items = [{"type": "image-generation", "input": image_body(project)},
             {"type": "image-generation", "input": image_body(project, seed=8)}]
    quote = auth_client.post(jobs_url("/batch/quote"), {"items": items}, format="json").json()
    assert [(i["credits_cost"], i["cache"]) for i in quote["items"]] == [(CACHE_PRICE, True), (IMAGE_PRICE, False)]
    assert quote["credits_cost"] == CACHE_PRICE + IMAGE_PRICE
    single = auth_client.post(jobs_url("/image-generation/quote"), image_body(project), format="json").json()
    assert single["cache"]["credits_cost"] == quote["items"][0]["credits_cost"]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = auth_client.post(jobs_url("/batch"), {"items": items}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["credits_cost"] == quote["credits_cost"] and body["counts"]["completed"] == 1
    hit, miss = (Job.objects.get(pk=i) for i in body["job_ids"])
    assert hit.status == JobStatus.COMPLETED and hit.cache_source_id == source.pk and hit.credits_cost == CACHE_PRICE
    assert MediaFile.objects.filter(source_job_id=hit.pk).count() == 1
    assert miss.status == JobStatus.QUEUED and miss.credits_cost == IMAGE_PRICE
    assert credit_balance_get(user=funded) == balance - CACHE_PRICE - IMAGE_PRICE
    assert [t for t, in JobEvent.objects.filter(job=hit).values_list("type")] == ["submitted", "completed"]
