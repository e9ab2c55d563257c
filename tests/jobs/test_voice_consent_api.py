"""Voice consent through the API: challenges issued and claimed once, voices made only with a
verified consent of their sample, and used only while they have one (or their grace runs).

The verification's engines run in tests/gpu_tasks/test_voice_consent.py and end to end in
tests/jobs/test_voice_consent_pipeline.py; here the outcomes are consents as the worker records them."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.utils import timezone

from auteur.users.models import Membership, User
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from jobs.models import Job
from media.consent_phrases import CHALLENGE_WORDS, STATEMENT
from media.models import ConsentChallenge, MediaFile, VoiceClone
from tests.factories import (
    ConsentFactory,
    MediaFileFactory,
    ProjectFactory,
    VoiceCloneFactory,
    acting_in,
    likeness_consent_for,
    team_workspace,
)
from tests.jobs.support import consent_challenge

pytestmark = pytest.mark.django_db

CHALLENGES = "/api/v1/voices/consent-challenges"
VOICES = "/api/v1/voices"
JOBS = "/api/v1/jobs"


@pytest.fixture
def audio(funded) -> MediaFile:
    return MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio",
                                   content_sha256="ab" * 32)


def consent_body(challenge: Any, audio: MediaFile) -> dict[str, Any]:
    return {"challenge_id": str(getattr(challenge, "pk", challenge)), "recording_media_id": str(audio.pk),
            "sample_media_id": str(audio.pk)}


def charges(user: Any) -> int:
    return CreditTransaction.objects.filter(user=user).exclude(type="bonus").count()


# ----------------------------------------------------------------------------- challenges


def test_a_challenge_is_eight_fresh_words_and_the_statement_for_ten_minutes(auth_client, user):
    first = auth_client.post(CHALLENGES)
    second = auth_client.post(CHALLENGES)
    assert first.status_code == 201, first.json()
    body = first.json()
    assert len(body["words"]) == 8 and len(set(body["words"])) == 8
    assert set(body["words"]) <= set(CHALLENGE_WORDS)
    assert body["statement"] == STATEMENT and body["language"] == "en"
    assert body["phrase"].startswith(", ".join(body["words"])) and body["phrase"].endswith(STATEMENT)
    expires = datetime.datetime.fromisoformat(body["expires_at"])
    assert datetime.timedelta(minutes=9) < expires - timezone.now() <= datetime.timedelta(minutes=10)
    assert body["words"] != second.json()["words"], "drawn afresh each time"
    challenge = ConsentChallenge.objects.get(pk=body["challenge_id"])
    assert challenge.user_id == user.pk and challenge.member_id == user.pk and challenge.used_by_job_id is None


def test_unused_challenges_are_capped_per_workspace(auth_client, settings):
    settings.AUTEUR_CONSENT_OPEN_CHALLENGES = 2
    assert [auth_client.post(CHALLENGES).status_code for _ in range(2)] == [201, 201]
    refused = auth_client.post(CHALLENGES)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["quota"] == "consent_challenges"
    assert ConsentChallenge.objects.count() == 2


def test_failed_verifications_stop_new_challenges_for_a_day(auth_client, user, settings):
    settings.AUTEUR_CONSENT_FAILED_PER_DAY = 2
    ConsentFactory.create(user=user, status="failed")
    assert auth_client.post(CHALLENGES).status_code == 201
    ConsentFactory.create(user=user, status="failed")
    refused = auth_client.post(CHALLENGES)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "too_many_consent_attempts"
    assert error["details"]["failed"] == 2 and 0 < error["details"]["retry_after_seconds"] <= 24 * 3600
    assert ConsentChallenge.objects.count() == 1


# ----------------------------------------------------------------------------- the verification job


def test_a_verification_claims_its_challenge_and_a_second_is_refused_uncharged(auth_client, funded, audio):
    challenge = consent_challenge(funded)
    first = auth_client.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json")
    assert first.status_code == 202, first.json()
    assert first.json()["credits_cost"] == 1
    job = Job.objects.get(pk=first.json()["job_id"])
    challenge.refresh_from_db()
    assert challenge.used_by_job_id == job.pk
    assert job.input_params["_phrase"] == {"words": challenge.words, "statement": challenge.statement}
    assert job.input_params["_sample_sha256"] == audio.content_sha256
    balance = credit_balance_get(user=funded)

    again = auth_client.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "challenge_used"
    assert credit_balance_get(user=funded) == balance and Job.objects.count() == 1


@pytest.mark.parametrize("case", ["expired", "unknown", "another_member", "another_workspace"])
def test_a_challenge_not_claimable_by_this_request_charges_nothing(case, auth_client, funded, audio, make_user):
    if case == "expired":
        challenge: Any = consent_challenge(funded)
        ConsentChallenge.objects.filter(pk=challenge.pk).update(
            created_at=timezone.now() - datetime.timedelta(minutes=20),
            expires_at=timezone.now() - datetime.timedelta(seconds=1))
    elif case == "unknown":
        challenge = uuid.uuid4()
    elif case == "another_member":
        challenge = consent_challenge(funded, member_id=uuid.uuid4())
    else:
        challenge = consent_challenge(make_user())
    response = auth_client.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json")
    expected = {"expired": (410, "challenge_expired")}.get(case, (404, "challenge_not_found"))
    assert (response.status_code, response.json()["error"]["code"]) == expected
    assert not Job.objects.exists() and charges(funded) == 0
    assert not ConsentChallenge.objects.filter(used_by_job_id__isnull=False).exists()


def test_a_verification_is_neither_retried_nor_batched(auth_client, funded, audio):
    challenge = consent_challenge(funded)
    job_id = auth_client.post(f"{JOBS}/voice-consent", consent_body(challenge, audio), format="json").json()["job_id"]
    Job.objects.filter(pk=job_id).update(status="failed", retryable=True, error_code="gpu_timeout")
    retry = auth_client.post(f"{JOBS}/{job_id}/retry")
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "job_not_retryable"
    bulk = auth_client.post(f"{JOBS}/bulk/retry", {"status": ["failed"]}, format="json")
    assert bulk.status_code in (200, 201) and bulk.json()["retried"] == 0, bulk.json()
    batch = auth_client.post("/api/v1/jobs/batch", {"items": [
        {"type": "voice-consent", "input": consent_body(consent_challenge(funded), audio)}]}, format="json")
    assert batch.status_code == 400 and "submit it alone" in str(batch.json())
    assert Job.objects.count() == 1 and charges(funded) == 1


def test_a_team_members_challenge_is_theirs_alone(make_user):
    owner, member = make_user(), make_user()
    workspace = team_workspace(owner)
    Membership.objects.create(workspace=workspace, user=member, role="admin")
    account = User.objects.get(pk=workspace.pk)
    credit_grant(user=account, amount=100, type="bonus", description="test")
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=account), type="audio",
                                    content_sha256="cd" * 32)
    issued = acting_in(owner, workspace).post(CHALLENGES)
    assert issued.status_code == 201, issued.json()
    by_member = acting_in(member, workspace).post(f"{JOBS}/voice-consent",
                                                  consent_body(issued.json()["challenge_id"], audio), format="json")
    assert by_member.status_code == 404 and by_member.json()["error"]["code"] == "challenge_not_found"
    by_owner = acting_in(owner, workspace).post(f"{JOBS}/voice-consent",
                                                consent_body(issued.json()["challenge_id"], audio), format="json")
    assert by_owner.status_code == 202, by_owner.json()


# ----------------------------------------------------------------------------- making and using voices


def test_a_voice_is_refused_without_a_verified_consent_of_its_own_sample(auth_client, funded, audio, make_user):
    other_sample = ConsentFactory.create(user=funded, sample_sha256="ef" * 32)
    failed = ConsentFactory.create(user=funded, status="failed", sample_sha256=audio.content_sha256)
    theirs = ConsentFactory.create(user=make_user(), sample_sha256=audio.content_sha256)
    used = ConsentFactory.create(user=funded, sample_sha256=audio.content_sha256)
    VoiceCloneFactory.create(user=funded, consent=used)
    for consent, reason in [(uuid.uuid4(), "missing"), (theirs.pk, "missing"), (failed.pk, "failed"),
                            (other_sample.pk, "other_sample"), (used.pk, "used")]:
        response = auth_client.post(VOICES, {"media_id": str(audio.pk), "name": "x", "consent_id": str(consent)},
                                    format="json")
        assert response.status_code == 403, (reason, response.json())
        error = response.json()["error"]
        assert error["code"] == "consent_required" and error["details"]["reason"] == reason
    assert auth_client.post(VOICES, {"media_id": str(audio.pk), "name": "x"}, format="json").status_code == 400
    assert VoiceClone.objects.count() == 1


def tts(client: Any, voice: VoiceClone) -> Any:
    return client.post(f"{JOBS}/tts", {"text": "Hello there.", "voice_id": str(voice.pk)}, format="json")


def test_a_voice_speaks_with_its_consent_or_within_its_grace_and_is_refused_after(auth_client, funded):
    consented = VoiceCloneFactory.create(user=funded)
    assert tts(auth_client, consented).status_code == 202
    graced = VoiceCloneFactory.create(user=funded, consent=None,
                                      consent_grace_until=timezone.now() + datetime.timedelta(days=1))
    assert tts(auth_client, graced).status_code == 202
    assert auth_client.get(f"{VOICES}/{graced.pk}").json()["voice"]["consent_status"] == "grace"
    jobs, spent = Job.objects.count(), charges(funded)

    VoiceClone.objects.filter(pk=graced.pk).update(consent_grace_until=timezone.now() - datetime.timedelta(seconds=1))
    for path in (f"{JOBS}/tts", f"{JOBS}/tts/quote"):
        refused = auth_client.post(path, {"text": "Hello there.", "voice_id": str(graced.pk)}, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["code"] == "consent_required"
        assert refused.json()["error"]["details"] == {"field": "voice_id", "voice_id": str(graced.pk),
                                                      "reason": "missing"}
    batch = auth_client.post("/api/v1/jobs/batch", {"items": [
        {"type": "tts", "input": {"text": "One.", "voice_id": str(consented.pk)}},
        {"type": "tts", "input": {"text": "Two.", "voice_id": str(graced.pk)}}]}, format="json")
    assert batch.status_code == 403 and batch.json()["error"]["details"]["item"] == 1
    assert Job.objects.count() == jobs and charges(funded) == spent
    assert auth_client.get(f"{VOICES}/{graced.pk}").json()["voice"]["consent_status"] == "required"


def test_a_retry_of_a_voice_whose_grace_ended_is_refused(auth_client, funded):
    graced = VoiceCloneFactory.create(user=funded, consent=None,
                                      consent_grace_until=timezone.now() + datetime.timedelta(days=1))
    job_id = tts(auth_client, graced).json()["job_id"]
    Job.objects.filter(pk=job_id).update(status="failed", retryable=True, error_code="gpu_timeout")
    VoiceClone.objects.filter(pk=graced.pk).update(consent_grace_until=timezone.now() - datetime.timedelta(seconds=1))
    spent = charges(funded)
    for path, body in ((f"{JOBS}/{job_id}/retry", None), (f"{JOBS}/bulk/retry", {"status": ["failed"]})):
        refused = auth_client.post(path, body, format="json")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "consent_required", refused.json()
    assert charges(funded) == spent and Job.objects.count() == 1


def test_a_lip_sync_of_speech_made_in_an_unconsented_voice_is_refused(auth_client, funded, gpu_backend):
    gpu_backend("noop")  # (a backend that runs lip sync)
    project = ProjectFactory.create(user=funded)
    voice = VoiceCloneFactory.create(user=funded, consent=None)
    made = Job.objects.create(user=funded, project=project, type="tts", credits_cost=2, status="completed",
                              input_params={"text": "hi", "voice_id": str(voice.pk)})
    speech = MediaFileFactory.create(project=project, type="audio", source_job_id=made.pk)
    compressed = MediaFileFactory.create(project=project, type="audio", derived_from=speech)
    video = MediaFileFactory.create(project=project, type="video")
    likeness_consent_for(video)  # (its face consented: only the voice is in question)
    recorded = MediaFileFactory.create(project=project, type="audio")
    for audio in (speech, compressed):
        refused = auth_client.post(f"{JOBS}/lip-sync", {"video_media_id": str(video.pk),
                                                        "audio_media_id": str(audio.pk)}, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["details"]["field"] == "audio_media_id"
        assert refused.json()["error"]["details"]["voice_id"] == str(voice.pk)
    assert Job.objects.count() == 1 and charges(funded) == 0
    accepted = auth_client.post(f"{JOBS}/lip-sync", {"video_media_id": str(video.pk),
                                                     "audio_media_id": str(recorded.pk)}, format="json")
    assert accepted.status_code == 202, accepted.json()
    VoiceClone.objects.filter(pk=voice.pk).update(consent=ConsentFactory.create(user=funded))
    assert auth_client.post(f"{JOBS}/lip-sync", {"video_media_id": str(video.pk), "audio_media_id": str(speech.pk)},
                            format="json").status_code == 202


def test_a_consent_is_attached_to_an_older_voice_made_from_the_same_file(auth_client, funded, audio):
    voice = VoiceCloneFactory.create(user=funded, consent=None, source_media=audio)
    wrong = ConsentFactory.create(user=funded, sample_sha256="01" * 32)
    refused = auth_client.post(f"{VOICES}/{voice.pk}/consent", {"consent_id": str(wrong.pk)}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["reason"] == "other_sample"
    right = ConsentFactory.create(user=funded, sample_sha256=audio.content_sha256)
    attached = auth_client.post(f"{VOICES}/{voice.pk}/consent", {"consent_id": str(right.pk)}, format="json")
    assert attached.status_code == 200, attached.json()
    assert attached.json()["voice"]["consent_status"] == "verified"
    assert attached.json()["voice"]["consent_id"] == str(right.pk)
    other = VoiceCloneFactory.create(user=funded, consent=None, source_media=audio)
    again = auth_client.post(f"{VOICES}/{other.pk}/consent", {"consent_id": str(right.pk)}, format="json")
    assert again.status_code == 403 and again.json()["error"]["details"]["reason"] == "used"


def test_another_workspaces_voice_cannot_be_given_a_consent(auth_client, funded, make_user):
    theirs = VoiceCloneFactory.create(user=make_user(), consent=None)
    mine = ConsentFactory.create(user=funded)
    response = auth_client.post(f"{VOICES}/{theirs.pk}/consent", {"consent_id": str(mine.pk)}, format="json")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.consent_id is None
