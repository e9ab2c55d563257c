"""Attacks on voice consent and its revocation, each performed: cloning a voice without a valid
consent, reading a challenge twice, using a voice whose consent is missing or revoked by every
path, the public revocation link, GPU results as untrusted input, what the answers disclose, and
the speaker checkpoint's reader. Each asserts the attack refused or bounded, and that its side
effect (a voice, a job, a charge, a consent) did not happen."""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
import pickle
import struct
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from django.core import signing
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.core import rls
from auteur.users.services import user_issue_token
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from gpu_tasks.backends import noop
from gpu_tasks.engines import speaker
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.types import OutputKind
from jobs import gpu_client
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import Consent, ConsentChallenge, MediaFile, VoiceClone
from media.services.consents import REVOKE_SALT, consent_revoke, consent_revoke_token
from tests.factories import ConsentFactory, MediaFileFactory, ProjectFactory, VoiceCloneFactory, likeness_consent_for
from tests.jobs.support import consent_challenge

JOBS = "/api/v1/jobs"
VOICES = "/api/v1/voices"
REVOKE = "/api/v1/consents/revoke"

# Attacks that succeed today, performed; strict: each fails the run once its hole is closed, to be unmarked.


def charges(user: Any) -> int:
    return CreditTransaction.objects.filter(user=user).exclude(type="bonus").count()


def refunds(job_id: Any) -> int:
    return CreditTransaction.objects.filter(job_id=job_id, type="refund").count()


def consent_body(challenge: Any, audio: MediaFile) -> dict[str, Any]:
    return {"challenge_id": str(getattr(challenge, "pk", challenge)), "recording_media_id": str(audio.pk),
            "sample_media_id": str(audio.pk)}


def client_of(user: Any) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
    return client


def tts_speech(user: Any, voice: VoiceClone) -> MediaFile:
    """Speech a completed TTS job made in `voice` (an audio file of its output)."""
    project = ProjectFactory.create(user=user)
    # As a TTS submission records it: the voice, and the consent it had then.
    made = Job.objects.create(user=user, project=project, type="tts", credits_cost=2, status="completed",
                              input_params={"text": "hi", "voice_id": str(voice.pk),
                                            "_consent_id": str(voice.consent_id) if voice.consent_id else None})
    return MediaFileFactory.create(project=project, type="audio", source_job_id=made.pk)


def race(*calls: Any) -> list[Any]:
    """Run `calls` at once (each in its own thread and database connection): what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except Exception as exc:
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# ----------------------------------------------------------------------------- cloning without a valid consent


@pytest.mark.django_db
def test_a_revoked_consent_makes_no_voice_and_attaches_to_none(auth_client, funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    revoked = ConsentFactory.create(user=funded, sample_sha256=audio.content_sha256)
    consent_revoke(consent_id=revoked.pk, by="member", user=funded)
    made = auth_client.post(VOICES, {"media_id": str(audio.pk), "name": "x", "consent_id": str(revoked.pk)},
                            format="json")
    assert made.status_code == 403 and made.json()["error"]["details"]["reason"] == "revoked", made.json()
    older = VoiceCloneFactory.create(user=funded, consent=None, source_media=audio)
    attached = auth_client.post(f"{VOICES}/{older.pk}/consent", {"consent_id": str(revoked.pk)}, format="json")
    assert attached.status_code == 403 and attached.json()["error"]["details"]["reason"] == "revoked"
    assert VoiceClone.objects.filter(consent=revoked).count() == 0
    older.refresh_from_db()
    assert older.consent_id is None


@pytest.mark.django_db
def test_another_workspaces_consent_of_the_same_bytes_attaches_to_none_of_mine(auth_client, funded, make_user):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="cd" * 32)
    theirs = ConsentFactory.create(user=make_user(), sample_sha256=audio.content_sha256)
    mine = VoiceCloneFactory.create(user=funded, consent=None, source_media=audio)
    response = auth_client.post(f"{VOICES}/{mine.pk}/consent", {"consent_id": str(theirs.pk)}, format="json")
    assert response.status_code == 403 and response.json()["error"]["details"]["reason"] == "missing"
    mine.refresh_from_db()
    assert mine.consent_id is None


@pytest.mark.django_db(transaction=True)
def test_two_voices_racing_for_one_consent_make_one(funded, project, samples):
    from tests.jobs.conftest import upload_local

    client = client_of(funded)
    media = upload_local(client, project, samples.wav, "audio/wav")
    consent = ConsentFactory.create(user=funded, sample_sha256=media.content_sha256)
    body = {"media_id": str(media.pk), "name": "twin", "consent_id": str(consent.pk)}
    clients = [client_of(funded), client_of(funded)]
    answers = race(*(lambda c=c: c.post(VOICES, body, format="json") for c in clients))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 403], [a.json() for a in answers]
    refused = next(a for a in answers if a.status_code == 403).json()["error"]
    assert refused["code"] == "consent_required" and refused["details"]["reason"] == "used"
    assert VoiceClone.objects.filter(consent=consent).count() == 1 and VoiceClone.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_older_voices_racing_to_attach_one_consent_get_one(funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ef" * 32)
    consent = ConsentFactory.create(user=funded, sample_sha256=audio.content_sha256)
    voices = [VoiceCloneFactory.create(user=funded, consent=None, source_media=audio) for _ in range(2)]
    clients = [client_of(funded), client_of(funded)]
    answers = race(*(lambda c=c, v=v: c.post(f"{VOICES}/{v.pk}/consent", {"consent_id": str(consent.pk)},
                                             format="json") for c, v in zip(clients, voices, strict=True)))
    assert sorted(a.status_code for a in answers) == [200, 403], [a.json() for a in answers]
    assert VoiceClone.objects.filter(consent=consent).count() == 1


# ----------------------------------------------------------------------------- reading a challenge twice


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(3))
def test_two_verifications_racing_for_one_challenge_charge_one_job(funded, round_):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    challenge = consent_challenge(funded)
    balance = credit_balance_get(user=funded)
    clients = [client_of(funded), client_of(funded)]
    answers = race(*(lambda c=c: c.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json")
                     for c in clients))
    assert sorted(a.status_code for a in answers) == [202, 409], [a.json() for a in answers]
    assert next(a for a in answers if a.status_code == 409).json()["error"]["code"] == "challenge_used"
    job = Job.objects.get(type="voice-consent")
    assert charges(funded) == 1 and credit_balance_get(user=funded) == balance - job.credits_cost
    assert ConsentChallenge.objects.get(pk=challenge.pk).used_by_job_id == job.pk


@pytest.mark.django_db
def test_an_idempotent_replay_reads_the_challenge_once_and_a_changed_body_reads_none(auth_client, funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    first, second = consent_challenge(funded), consent_challenge(funded)
    key = {"HTTP_IDEMPOTENCY_KEY": f"consent-{uuid.uuid4()}"}
    accepted = auth_client.post(f"{JOBS}/voice-consent", consent_body(first, audio), format="json", **key)
    assert accepted.status_code == 202, accepted.json()
    replay = auth_client.post(f"{JOBS}/voice-consent", consent_body(first, audio), format="json", **key)
    assert replay.status_code in (200, 202) and replay.json()["job_id"] == accepted.json()["job_id"]
    changed = auth_client.post(f"{JOBS}/voice-consent", consent_body(second, audio), format="json", **key)
    assert changed.status_code in (409, 422) and changed.json()["error"]["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1 and charges(funded) == 1
    assert ConsentChallenge.objects.get(pk=second.pk).used_by_job_id is None


@pytest.mark.django_db(transaction=True)
def test_two_racing_submissions_with_one_idempotency_key_charge_one_job(funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    challenge = consent_challenge(funded)
    key = {"HTTP_IDEMPOTENCY_KEY": f"consent-{uuid.uuid4()}"}
    clients = [client_of(funded), client_of(funded)]
    answers = race(*(lambda c=c: c.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json", **key)
                     for c in clients))
    assert Job.objects.count() == 1 and charges(funded) == 1
    job_id = str(Job.objects.get().pk)
    # The loser finds the challenge claimed by the winner, and answers with the winner's job.
    assert sorted(answer.status_code for answer in answers) == [200, 202], [a.json() for a in answers]
    assert {answer.json()["job_id"] for answer in answers} == {job_id}

@pytest.mark.django_db
def test_a_quote_reads_no_challenge_and_its_submission_reads_it_once(auth_client, funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    challenge = consent_challenge(funded)
    quote = auth_client.post(f"{JOBS}/voice-consent/quote", consent_body(challenge, audio), format="json")
    assert quote.status_code in (200, 201), quote.json()
    assert ConsentChallenge.objects.get(pk=challenge.pk).used_by_job_id is None and charges(funded) == 0
    quote_id = quote.json()["quote_id"]
    body = {**consent_body(challenge, audio), "quote_id": quote_id}
    assert auth_client.post(f"{JOBS}/voice-consent", body, format="json").status_code == 202
    again = auth_client.post(f"{JOBS}/voice-consent", body, format="json")
    assert again.status_code in (404, 409, 410), again.json()
    assert Job.objects.count() == 1 and charges(funded) == 1



@pytest.mark.django_db
def test_speech_this_server_synthesized_is_no_consent_recording(auth_client, funded):
    project = ProjectFactory.create(user=funded)
    sample = MediaFileFactory.create(project=project, type="audio", content_sha256="ab" * 32)
    graced = VoiceCloneFactory.create(user=funded, consent=None, source_media=sample,
                                      consent_grace_until=timezone.now() + datetime.timedelta(days=10))
    # The voice, in its grace, reads the challenge (a TTS job of the phrase): its output is the "recording".
    reading = tts_speech(funded, graced)
    MediaFile.objects.filter(pk=reading.pk).update(project=project)
    body = {"challenge_id": str(consent_challenge(funded).pk), "recording_media_id": str(reading.pk),
            "sample_media_id": str(sample.pk)}
    response = auth_client.post(f"{JOBS}/voice-consent", body, format="json")
    assert response.status_code in (403, 422), response.json()
    assert not Job.objects.filter(type="voice-consent").exists() and charges(funded) == 0

# ----------------------------------------------------------------------------- a revoked voice, by every path


@pytest.mark.django_db
def test_a_revoked_voice_is_refused_by_every_path_and_nothing_is_charged(auth_client, funded, gpu_backend):
    gpu_backend("noop")  # (a backend that runs lip sync)
    voice = VoiceCloneFactory.create(user=funded)
    body = {"text": "Hello there.", "voice_id": str(voice.pk)}
    quote = auth_client.post(f"{JOBS}/tts/quote", body, format="json")
    assert quote.status_code in (200, 201), quote.json()
    accepted = auth_client.post(f"{JOBS}/tts", body, format="json")
    assert accepted.status_code == 202
    Job.objects.filter(pk=accepted.json()["job_id"]).update(status="failed", retryable=True, error_code="gpu_timeout")
    speech = tts_speech(funded, voice)
    video = MediaFileFactory.create(project=speech.project, type="video")
    likeness_consent_for(video)  # (its face consented: only the voice is in question)
    consent_revoke(consent_id=str(voice.consent_id), by="subject")
    jobs, spent = Job.objects.count(), charges(funded)

    attempts = [
        (f"{JOBS}/tts", body), (f"{JOBS}/tts/quote", body),
        (f"{JOBS}/tts", {**body, "quote_id": quote.json()["quote_id"]}),
        (f"{JOBS}/{accepted.json()['job_id']}/retry", None), (f"{JOBS}/bulk/retry", {"status": ["failed"]}),
        ("/api/v1/jobs/batch", {"items": [{"type": "tts", "input": body}]}),
        (f"{JOBS}/lip-sync", {"video_media_id": str(video.pk), "audio_media_id": str(speech.pk)}),
    ]
    for path, attempt in attempts:
        refused = auth_client.post(path, attempt, format="json")
        assert refused.status_code == 403, (path, refused.json())
        assert refused.json()["error"]["code"] == "consent_required", (path, refused.json())
        assert refused.json()["error"]["details"]["reason"] == "revoked", (path, refused.json())
    assert Job.objects.count() == jobs and charges(funded) == spent


@pytest.mark.django_db
def test_deleting_a_revoked_voice_does_not_free_its_speech_for_a_lip_sync(auth_client, funded, gpu_backend):
    gpu_backend("noop")
    voice = VoiceCloneFactory.create(user=funded)
    speech = tts_speech(funded, voice)
    video = MediaFileFactory.create(project=speech.project, type="video")
    likeness_consent_for(video)  # (its face consented: only the voice is in question)
    body = {"video_media_id": str(video.pk), "audio_media_id": str(speech.pk)}
    assert auth_client.post(f"/api/v1/consents/{voice.consent_id}/revoke").status_code == 200
    assert auth_client.post(f"{JOBS}/lip-sync", body, format="json").status_code == 403

    assert auth_client.delete(f"{VOICES}/{voice.pk}").status_code == 204
    after = auth_client.post(f"{JOBS}/lip-sync", body, format="json")
    assert after.status_code == 403, after.json()
    assert after.json()["error"]["details"]["reason"] == "revoked"
    assert not Job.objects.filter(type="lip-sync").exists() and charges(funded) == 0


@pytest.mark.django_db
def test_a_voice_deleted_before_its_revocation_leaves_its_speech_refused(auth_client, funded, gpu_backend):
    gpu_backend("noop")
    voice = VoiceCloneFactory.create(user=funded)
    consent_id = str(voice.consent_id)
    speech = tts_speech(funded, voice)
    video = MediaFileFactory.create(project=speech.project, type="video")
    likeness_consent_for(video)  # (its face consented: only the voice is in question)
    body = {"video_media_id": str(video.pk), "audio_media_id": str(speech.pk)}
    assert auth_client.delete(f"{VOICES}/{voice.pk}").status_code == 204
    revoked = APIClient().post(REVOKE, {"token": consent_revoke_token(Consent.objects.get(pk=consent_id))},
                               format="json")
    assert revoked.status_code == 200, revoked.json()
    after = auth_client.post(f"{JOBS}/lip-sync", body, format="json")
    assert after.status_code == 403, after.json()
    assert not Job.objects.filter(type="lip-sync").exists() and charges(funded) == 0


@pytest.mark.django_db(transaction=True)
def test_a_revocation_committed_while_a_running_job_stores_its_outputs_keeps_nothing(
    funded, gpu_backend, monkeypatch
):
    from jobs.life import outputs

    gpu_backend("noop")
    voice = VoiceCloneFactory.create(user=funded)
    accepted = client_of(funded).post(f"{JOBS}/tts", {"text": "Hello there.", "voice_id": str(voice.pk)},
                                      format="json")
    assert accepted.status_code == 202, accepted.json()
    job_id = accepted.json()["job_id"]
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=gpu_client.spawn("tts", {"text": "x"}))
    real = outputs._store_outputs

    def store_then_revoked(*args: Any, **kwargs: Any) -> Any:
        stored = real(*args, **kwargs)
        # The speaker's link, committed by another connection while this store runs.
        race(lambda: consent_revoke(consent_id=str(voice.consent_id), by="subject"))
        return stored

    monkeypatch.setattr(outputs, "_store_outputs", store_then_revoked)
    STEP_TASKS[job_spec("tts").family, Step.FINISH].apply(args=(job_id,))
    assert Consent.objects.get(pk=str(voice.consent_id)).status == "revoked"
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "consent_revoked")
    assert refunds(job_id) == 1
    assert not MediaFile.objects.filter(source_job_id=job_id).exists()


# ----------------------------------------------------------------------------- the public revocation link


@pytest.mark.django_db
def test_revocation_tokens_other_than_the_issued_one_revoke_nothing(funded):
    consent = ConsentFactory.create(user=funded)
    anonymous = APIClient(raise_request_exception=False)
    forged = [
        signing.dumps(str(consent.pk)),  # signed here, for another purpose
        signing.dumps(str(consent.pk), salt="auteur.something-else"),
        signing.dumps(str(consent.pk), salt=REVOKE_SALT, key="not-the-server-secret-0123456789abcdef"),
        signing.dumps(str(uuid.uuid4()), salt=REVOKE_SALT),  # signed here for a consent that does not exist
        signing.dumps({"pk": str(consent.pk)}, salt=REVOKE_SALT),  # a structure, not an id
        signing.dumps(str(consent.pk), salt=REVOKE_SALT).upper(),
        "x" * 500, "",
    ]
    answers = [anonymous.post(REVOKE, {"token": token}, format="json") for token in forged]
    for token, answer in zip(forged, answers, strict=True):
        assert answer.status_code in (400, 404), (token, answer.json())
    not_found = [a.json() for a in answers if a.status_code == 404]
    assert not_found and all(body == not_found[0] for body in not_found), "one answer for every refused token"
    assert anonymous.post(REVOKE, {"token": "y" * 501}, format="json").status_code == 400
    assert Consent.objects.get(pk=consent.pk).status == "verified"


@pytest.mark.django_db
def test_a_token_revokes_its_own_consent_alone_and_tells_nothing_of_its_workspace(funded, make_user):
    mine, theirs = ConsentFactory.create(user=funded), ConsentFactory.create(user=make_user())
    VoiceCloneFactory.create(user=funded, consent=mine, name="Secret project narrator")
    answer = APIClient().post(REVOKE, {"token": consent_revoke_token(mine)}, format="json")
    assert answer.status_code == 200, answer.json()
    assert set(answer.json()) == {"consent_id", "status", "revoked_at", "jobs_canceled"}
    text = json.dumps(answer.json())
    for secret in (str(funded.pk), funded.email, "Secret project", str(mine.sample_sha256), "similarity"):
        assert secret not in text
    assert Consent.objects.get(pk=theirs.pk).status == "verified"
    assert Consent.objects.get(pk=mine.pk).revoked_by == "subject"


@pytest.mark.django_db
def test_guessing_revocation_tokens_is_rate_limited(settings):
    settings.AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = 5
    anonymous = APIClient(raise_request_exception=False, REMOTE_ADDR="203.0.113.7")
    consent = ConsentFactory.create()
    codes = [anonymous.post(REVOKE, {"token": f"{uuid.uuid4()}:guess:{i}"}, format="json").status_code
             for i in range(5)]
    assert set(codes) <= {400, 404}
    limited = anonymous.post(REVOKE, {"token": consent_revoke_token(consent)}, format="json")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert Consent.objects.get(pk=consent.pk).status == "verified"


@pytest.mark.django_db
def test_the_api_role_updates_no_consent_of_another_workspace_and_no_figure_of_its_own(funded, make_user):
    mine, theirs = ConsentFactory.create(user=funded), ConsentFactory.create(user=make_user())
    with rls.request_scope():
        rls.act_as(funded.pk)
        assert Consent.objects.filter(pk=theirs.pk).update(status="revoked") == 0
        assert not Consent.objects.filter(pk=theirs.pk).exists()
        for column, value in (("similarity", 0.99), ("sample_sha256", "00" * 32), ("user_id", theirs.user_id)):
            with pytest.raises(DatabaseError), transaction.atomic():
                Consent.objects.filter(pk=mine.pk).update(**{column: value})
        with pytest.raises(DatabaseError), transaction.atomic():
            Consent.objects.filter(pk=mine.pk).delete()
    assert Consent.objects.get(pk=theirs.pk).status == "verified"
    assert Consent.objects.get(pk=mine.pk).similarity == 0.95


@pytest.mark.django_db
def test_the_api_role_can_only_revoke_its_consents_never_verify_one(funded):
    failed = ConsentFactory.create(user=funded, status="failed")
    with rls.request_scope():
        rls.act_as(funded.pk)
        with pytest.raises(DatabaseError), transaction.atomic():
            Consent.objects.filter(pk=failed.pk).update(status="verified")
        assert Consent.objects.filter(pk=failed.pk).update(status="revoked", revoked_at=timezone.now(),
                                                           revoked_by="member") == 1
    assert Consent.objects.get(pk=failed.pk).status == "revoked"


@pytest.mark.django_db
def test_the_api_role_cannot_free_a_used_challenge(funded):
    used = consent_challenge(funded)
    ConsentChallenge.objects.filter(pk=used.pk).update(used_by_job_id=uuid.uuid4())
    with rls.request_scope():
        rls.act_as(funded.pk)
        with pytest.raises(DatabaseError), transaction.atomic():
            ConsentChallenge.objects.filter(pk=used.pk).update(used_by_job_id=None)
    assert ConsentChallenge.objects.get(pk=used.pk).used_by_job_id is not None


# ----------------------------------------------------------------------------- GPU results are input


def _verification_job(funded: Any) -> str:
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    accepted = client_of(funded).post(f"{JOBS}/voice-consent", consent_body(consent_challenge(funded), audio),
                                      format="json")
    assert accepted.status_code == 202, accepted.json()
    job_id = accepted.json()["job_id"]
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=gpu_client.spawn("voice-consent", {}))
    return job_id


def _finish_with(monkeypatch: Any, job_id: str, result: dict[str, Any], models: Any = None) -> Job:
    monkeypatch.setitem(noop._CANNED, OutputKind.VERIFICATION, lambda: json.loads(json.dumps(result)))
    # The engine's own fields hold its canned speaker figures: only the models stay beside `result`.
    monkeypatch.setitem(noop._ENGINE_FIELDS, noop.JobType.VOICE_CONSENT,
                        {"models": {"transcription": "noop", "speaker": "noop"} if models is None else models})
    STEP_TASKS[job_spec("voice-consent").family, Step.FINISH].apply(args=(job_id,))
    return Job.objects.get(pk=job_id)


def _figures(challenge: Any = 0.0, phrase: Any = 0.0, similarity: Any = 0.99, stretch: Any = 0.95) -> dict[str, Any]:
    return {"phrase": {"challenge_wer": challenge, "phrase_wer": phrase, "transcript_words": 20},
            "speaker": {"similarity": similarity, "stretch_similarity": stretch}}


@pytest.mark.django_db
@pytest.mark.parametrize("figures", [
    _figures(challenge=math.nan), _figures(similarity=math.inf), _figures(similarity=-math.inf),
    _figures(challenge=-0.5), _figures(phrase=-1e-9), _figures(challenge=2.0), _figures(phrase=1e6),
    _figures(similarity=1.5), _figures(similarity=True), _figures(challenge="0"), _figures(similarity=None),
    _figures(stretch=math.nan), _figures(stretch=1.5), _figures(stretch=None),
    {"phrase": {"challenge_wer": 0.0, "phrase_wer": 0.0}}, {"speaker": {"similarity": 0.99}},
    {"phrase": [0.0, 0.0], "speaker": {"similarity": 0.99}},
], ids=lambda f: json.dumps(f)[:60])
def test_verification_figures_out_of_bounds_fail_the_job_and_record_no_consent(funded, gpu_backend, monkeypatch,
                                                                              figures):
    gpu_backend("noop")
    job_id = _verification_job(funded)
    balance = credit_balance_get(user=funded)
    monkeypatch.setitem(noop._CANNED, OutputKind.VERIFICATION, lambda: figures)
    monkeypatch.setitem(noop._ENGINE_FIELDS, noop.JobType.VOICE_CONSENT, {})  # (its canned speaker figures)
    STEP_TASKS[job_spec("voice-consent").family, Step.FINISH].apply(args=(job_id,))
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result"), (job.status, job.error_code)
    assert not Consent.objects.filter(job_id=job_id).exists()
    assert refunds(job_id) == 1 and credit_balance_get(user=funded) == balance + job.credits_cost


@pytest.mark.django_db
def test_what_a_gpu_result_adds_is_neither_kept_nor_believed(funded, gpu_backend, monkeypatch):
    gpu_backend("noop")
    job_id = _verification_job(funded)
    smuggled = {**_figures(challenge=0.9, phrase=0.9, similarity=0.2),
                "passed": True, "checks": {"phrase": "passed", "speaker": "passed"},
                "consent_id": str(ConsentFactory.create(user=funded).pk), "transcript": "the words they really said",
                "revoke_token": "planted"}
    smuggled["phrase"]["text"] = "the words they really said"
    job = _finish_with(monkeypatch, job_id, smuggled)
    assert job.status == JobStatus.COMPLETED, (job.status, job.error_code, job.error_message)
    consent = Consent.objects.get(job_id=job_id)
    assert consent.status == "failed" and consent.checks == {"phrase": "failed", "speaker": "failed"}
    assert job.output_data == {"passed": False, "checks": consent.checks, "consent_id": str(consent.pk)}
    assert "the words they really said" not in json.dumps(Consent.objects.filter(pk=consent.pk).values().first(),
                                                           default=str)


@pytest.mark.django_db
def test_a_models_map_from_the_gpu_keeps_only_short_model_names(funded, gpu_backend, monkeypatch):
    gpu_backend("noop")
    job_id = _verification_job(funded)
    # Under the result's size limit (16 MiB): only the verdict's own reading bounds what is kept.
    models = {"transcription": "tiny.en", "speaker": "x" * 5000, "nested": {"a": [1, 2]},
              **{f"m{i}": "x" * 1000 for i in range(1000)}}
    job = _finish_with(monkeypatch, job_id, _figures(), models=models)
    assert job.status == JobStatus.COMPLETED, (job.status, job.error_code)
    assert Consent.objects.get(job_id=job_id).models_used == {"transcription": "tiny.en", "speaker": "x" * 200}
    job_id = _verification_job(funded)
    _finish_with(monkeypatch, job_id, _figures(), models=["not", "a", "map"])
    assert Consent.objects.get(job_id=job_id).models_used == {}


# ----------------------------------------------------------------------------- a sample of two speakers


def test_a_sample_whose_kept_part_is_another_speaker_fails_the_speaker_check(tmp_path):
    import numpy as np

    from gpu_tasks.contract import EngineContext
    from gpu_tasks.engines import voice_consent
    from gpu_tasks.engines.media import decode_audio
    from gpu_tasks.engines.tts import synthesize, write_wav

    victim, reader = "en-us+f2", "en-us+m3"
    text = "The quick brown fox jumps over the lazy dog near the river bank, and then it rests in the shade."

    def speech(words: str, voice: str) -> tuple[np.ndarray, int]:
        pcm, rate = synthesize(words, speed=0.9, voice=voice)
        return np.frombuffer(pcm, dtype=np.int16), rate

    theirs, rate = speech(text, victim)
    mine, _ = speech(" ".join([text] * 4), reader)
    kept_s = 30  # what POST /voices keeps of a sample (AUTEUR_VOICE_SAMPLE_MAX_SECONDS's default)
    head = np.zeros(kept_s * rate, dtype=np.int16)
    head[: 5 * rate] = theirs[: 5 * rate]  # 5 s of the other speaker, then silence, to 30 s
    sample = tmp_path / "sample.wav"
    write_wav(sample, np.concatenate([head, mine]).tobytes(), rate)
    reading = tmp_path / "reading.wav"
    phrase = "orange, window, garden, river, silver, morning, candle, yellow. I agree to have my voice cloned."
    write_wav(reading, speech(phrase, reader)[0].tobytes(), rate)

    read = speaker.embed_samples(decode_audio(reading, voice_consent.SAMPLE_RATE, max_s=voice_consent.MAX_RECORDING_S))
    kept = speaker.embed_samples(decode_audio(sample, voice_consent.SAMPLE_RATE, max_s=kept_s))
    assert speaker.similarity(read, kept) < speaker.DEFAULT_THRESHOLD, "the voice's own sample is the other speaker"
    # The engine as the server calls it: told how much of the sample the voice keeps.
    words = ["orange", "window", "garden", "river", "silver", "morning", "candle", "yellow"]
    body = {"recording_media": {"path": str(reading)}, "sample_media": {"path": str(sample)},
            "phrase_words": words, "statement": "I agree to have my voice cloned.", "sample_max_s": kept_s}
    figures = voice_consent.run_local(body, EngineContext(workdir=tmp_path / "work", payload=body))
    verdict = voice_consent.passes(figures, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD)
    assert verdict["checks"]["speaker"] == "failed", figures



def test_a_file_of_another_speaker_then_the_readers_phrase_verifies_nobody(tmp_path):
    import numpy as np

    from gpu_tasks.contract import EngineContext
    from gpu_tasks.engines import voice_consent
    from gpu_tasks.engines.media import decode_audio
    from gpu_tasks.engines.tts import synthesize, write_wav
    from media.consent_phrases import STATEMENT, phrase_text

    victim, reader = "en-us+f2", "en-us+m3"
    # Words Whisper tiny.en hears in eSpeak's voices (as tests/jobs/test_voice_consent_pipeline.py draws them).
    words = ["orange", "window", "garden", "river", "silver", "morning", "candle", "yellow"]
    text = "The quick brown fox jumps over the lazy dog near the river bank, and then it rests in the shade. "
    theirs, rate = synthesize(text * 3, speed=0.9, voice=victim)
    phrase, _ = synthesize(phrase_text(words, STATEMENT), speed=0.9, voice=reader)
    kept_s = 28  # inside what POST /voices keeps of a sample (its first 30 s)
    head = np.zeros(kept_s * rate, dtype=np.int16)
    spoken = np.frombuffer(theirs, dtype=np.int16)[: kept_s * rate]
    head[: len(spoken)] = spoken
    recording, sample = tmp_path / "recording.wav", tmp_path / "sample.wav"
    for path in (recording, sample):  # two uploads of the same bytes: two media ids
        write_wav(path, head.tobytes() + phrase, rate)
    body = {"recording_media": {"path": str(recording)}, "sample_media": {"path": str(sample)},
            "phrase_words": words, "statement": STATEMENT, "sample_max_s": 30}
    figures = voice_consent.run_local(body, EngineContext(workdir=tmp_path / "work", payload=body))
    kept = speaker.embed_samples(decode_audio(sample, voice_consent.SAMPLE_RATE, max_s=30))
    write_wav(tmp_path / "reading.wav", phrase, rate)
    reading = speaker.embed_samples(decode_audio(tmp_path / "reading.wav", voice_consent.SAMPLE_RATE))
    assert speaker.similarity(kept, reading) < speaker.DEFAULT_THRESHOLD, "the voice would be the other speaker's"
    assert not voice_consent.passes(figures, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD)["passed"], figures

# ----------------------------------------------------------------------------- what the answers disclose


@pytest.mark.django_db
def test_a_verifications_answers_events_and_logs_carry_no_figure_nor_transcript(funded, gpu_backend, monkeypatch,
                                                                               caplog, make_user):
    gpu_backend("noop")
    caplog.set_level(logging.DEBUG)
    job_id = _verification_job(funded)
    job = _finish_with(monkeypatch, job_id, _figures(challenge=0.0, phrase=0.125, similarity=0.9375))
    assert job.status == JobStatus.COMPLETED and job.output_data["passed"] is True
    token = consent_revoke_token(Consent.objects.get(job_id=job_id))
    client = client_of(funded)
    shown = [client.get(f"{JOBS}/{job_id}").json(), client.get(f"{JOBS}/{job_id}/events").json(),
             client.get(f"{JOBS}?type=voice-consent").json(),
             [event.data for event in JobEvent.objects.filter(job_id=job_id)]]
    text = json.dumps(shown, default=str)
    for figure in ("0.9375", "0.125", "similarity", "wer", "transcript", token):
        assert figure not in text, figure
    for record in caplog.records:
        assert token not in record.getMessage() and "0.9375" not in record.getMessage()
    # Another workspace reads neither the job nor its token.
    stranger = client_of(make_user())
    assert stranger.get(f"{JOBS}/{job_id}").status_code == 404
    assert token not in json.dumps(stranger.get(JOBS).json())



@pytest.mark.django_db
def test_a_viewer_who_may_not_edit_voices_cannot_revoke_a_consent_nor_get_its_link(make_user):
    from auteur.users.models import Membership, User
    from tests.factories import acting_in, team_workspace

    owner, viewer = make_user(), make_user()
    workspace = team_workspace(owner)
    Membership.objects.create(workspace=workspace, user=viewer, role="viewer")
    account = User.objects.get(pk=workspace.pk)
    voice = VoiceCloneFactory.create(user=account)
    consent = Consent.objects.get(pk=str(voice.consent_id))
    client = acting_in(viewer, workspace)
    assert client.post(f"/api/v1/consents/{consent.pk}/revoke").status_code == 403  # the member API: voices.edit
    assert client.post(f"/api/v1/consents/{consent.pk}/revoke-link").status_code == 403
    assert Consent.objects.get(pk=consent.pk).status == "verified"
    # Whoever may edit voices gets the link, and the link alone revokes.
    link = acting_in(owner, workspace).post(f"/api/v1/consents/{consent.pk}/revoke-link")
    assert link.status_code == 200 and link.json()["consent_id"] == str(consent.pk)
    assert APIClient().post(REVOKE, {"token": link.json()["token"]}, format="json").status_code == 200
    assert Consent.objects.get(pk=consent.pk).status == "revoked"
    other = ConsentFactory.create(user=make_user())
    assert acting_in(owner, workspace).post(f"/api/v1/consents/{other.pk}/revoke-link").status_code == 404


# ----------------------------------------------------------------------------- the speaker checkpoint's reader


def _legacy_checkpoint(root: Any, storages: list[tuple[str, str, int]], data: dict[str, bytes] | None = None,
                       *, raw_root: bytes | None = None) -> bytes:
    """A checkpoint in torch.save's legacy layout: magic, protocol, system info, `root` (or the raw
    pickle `raw_root`), the storage keys, then each storage's element count and bytes."""
    out = io.BytesIO()
    for small in (speaker.LEGACY_MAGIC, speaker.LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(small, out, protocol=2)
    out.write(raw_root if raw_root is not None else pickle.dumps(root, protocol=2))
    pickle.dump([key for key, _, _ in storages], out, protocol=2)
    for key, _kind, count in storages:
        out.write(struct.pack("<q", count))
        out.write((data or {}).get(key, b""))
    return out.getvalue()


class _Persistent(pickle.Pickler):
    """Writes a storage reference as torch does: a persistent id naming it."""

    def persistent_id(self, obj: Any) -> Any:
        return obj if isinstance(obj, tuple) and obj and obj[0] == "storage" else None


class _Tensor:
    """Pickled as torch pickles a tensor: torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, ...)."""

    def __init__(self, storage: tuple[Any, ...], shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> Any:
        return (_rebuild_tensor_v2, (self.storage, 0, self.shape, tuple(1 for _ in self.shape), False,
                                     OrderedDict()))


def _rebuild_tensor_v2(*args: Any) -> Any:
    raise AssertionError("never called here: only its name is pickled")


def _pickle_root(root: Any) -> bytes:
    """`root` pickled as torch.save pickles it: its one name is lent for the dump (in place of torch's
    own, when another test of this process imported torch), then what was there is put back."""
    import sys
    import types

    utils = types.ModuleType("torch._utils")
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    lent = {"torch": types.ModuleType("torch"), "torch._utils": utils}
    before = {name: sys.modules.get(name) for name in lent}
    sys.modules.update(lent)
    try:
        out = io.BytesIO()
        _Persistent(out, protocol=2).dump(root)
        return out.getvalue()
    finally:
        for name, module in before.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def _read(tmp_path: Path, blob: bytes) -> Any:
    path = tmp_path / "pretrained.pt"
    path.write_bytes(blob)
    return speaker.read_checkpoint(path, "model_state")


def test_a_checkpoint_claiming_a_huge_storage_is_refused_without_allocating_it(tmp_path):
    storage = ("storage", "FloatStorage", "0", "cpu", 2**60, None)
    root = {"model_state": OrderedDict(w=_Tensor(storage, (2**60,)))}
    blob = _legacy_checkpoint(None, [("0", "FloatStorage", 2**60)], raw_root=_pickle_root(root))
    with pytest.raises((EOFError, pickle.UnpicklingError, ValueError)):
        _read(tmp_path, blob)


def test_a_checkpoint_whose_tensor_reaches_past_its_storage_is_refused(tmp_path):
    storage = ("storage", "FloatStorage", "0", "cpu", 4, None)
    root = {"model_state": OrderedDict(w=_Tensor(storage, (2**31, 2**31, 4)))}
    blob = _legacy_checkpoint(None, [("0", "FloatStorage", 4)], {"0": b"\0" * 16}, raw_root=_pickle_root(root))
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        _read(tmp_path, blob)


@pytest.mark.parametrize("payload", [
    # A storage type's name called (REDUCE) as if it were a class, then os.system by every route pickle has.
    b"\x80\x02}q\x00X\x0b\x00\x00\x00model_stateq\x01ctorch\nFloatStorage\nq\x02)Rq\x03s.",
    b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.",
    b"\x80\x02cbuiltins\neval\nq\x00X\x01\x00\x00\x001q\x01\x85q\x02Rq\x03.",
    b"(cos\nsystem\nS'true'\no.",
    b"(S'true'\nios\nsystem\n.",
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",
    # Copyreg's extension registry names a class by a number: still found through find_class.
    b"\x80\x02\x82\x01.",
])
def test_a_checkpoint_naming_anything_but_tensors_is_refused_unrun(tmp_path, payload, monkeypatch):
    ran: list[Any] = []
    monkeypatch.setattr("os.system", lambda *a: ran.append(a))
    blob = _legacy_checkpoint(None, [], raw_root=payload)
    with pytest.raises((pickle.UnpicklingError, TypeError, ValueError, EOFError, KeyError)):
        _read(tmp_path, blob)
    assert ran == []


def test_a_crafted_checkpoint_is_model_unavailable_not_a_crash(tmp_path, monkeypatch):
    storage = ("storage", "FloatStorage", "0", "cpu", 2**60, None)
    blob = _legacy_checkpoint(None, [("0", "FloatStorage", 2**60)],
                              raw_root=_pickle_root({"model_state": OrderedDict(w=_Tensor(storage, (2**60,)))}))
    path = tmp_path / "pretrained.pt"
    path.write_bytes(blob)
    monkeypatch.setattr(speaker, "weights_path", lambda: path)
    speaker._cached_encoder.cache_clear()
    try:
        with pytest.raises(PermanentGpuError) as refused:
            speaker.load_encoder()
        assert refused.value.code == "model_unavailable"
    finally:
        speaker._cached_encoder.cache_clear()
