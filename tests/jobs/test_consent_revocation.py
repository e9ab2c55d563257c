"""Revoking a voice consent: by a member, by the speaker's signed link, by staff. The voice is refused
at once, its waiting jobs are canceled and refunded exactly once, a running one keeps nothing it makes."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from jobs import gpu_client
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import Consent, MediaFile, VoiceClone
from media.services.consents import consent_revoke_token
from tests.factories import ConsentFactory, MediaFileFactory, ProjectFactory, VoiceCloneFactory, likeness_consent_for

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"


@pytest.fixture
def voice(funded) -> VoiceClone:
    return VoiceCloneFactory.create(user=funded)


def speak(client: Any, voice: VoiceClone, text: str = "Hello there.") -> str:
    response = client.post(f"{JOBS}/tts", {"text": text, "voice_id": str(voice.pk)}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["job_id"]


def refunds(job_id: Any) -> int:
    return CreditTransaction.objects.filter(job_id=job_id, type="refund").count()


def test_a_members_revocation_cancels_the_waiting_jobs_of_the_voice_refunded_once(
    auth_client, funded, voice, gpu_backend
):
    gpu_backend("noop")
    waiting = [speak(auth_client, voice), speak(auth_client, voice, "Another line.")]
    other_voice = VoiceCloneFactory.create(user=funded)
    untouched = speak(auth_client, other_voice)
    # A lip sync of speech the voice made earlier uses it too.
    project = ProjectFactory.create(user=funded)
    made = Job.objects.create(user=funded, project=project, type="tts", credits_cost=2, status="completed",
                              input_params={"text": "hi", "voice_id": str(voice.pk)})
    speech = MediaFileFactory.create(project=project, type="audio", source_job_id=made.pk)
    video = MediaFileFactory.create(project=project, type="video")
    likeness_consent_for(video)  # (its face consented: only the voice is in question)
    lip_sync = auth_client.post(f"{JOBS}/lip-sync", {"video_media_id": str(video.pk),
                                                     "audio_media_id": str(speech.pk)}, format="json")
    assert lip_sync.status_code == 202, lip_sync.json()
    waiting.append(lip_sync.json()["job_id"])
    balance = credit_balance_get(user=funded)
    costs = sum(Job.objects.filter(pk__in=waiting).values_list("credits_cost", flat=True))

    revoked = auth_client.post(f"/api/v1/consents/{voice.consent_id}/revoke")
    assert revoked.status_code == 200, revoked.json()
    assert revoked.json()["status"] == "revoked" and revoked.json()["jobs_canceled"] == 3
    assert credit_balance_get(user=funded) == balance + costs
    for job in Job.objects.filter(pk__in=waiting):
        assert (job.status, job.error_code, job.credits_refund) == (JobStatus.CANCELED, "consent_revoked",
                                                                    job.credits_cost)
        assert refunds(job.pk) == 1
        assert JobEvent.objects.filter(job_id=job.pk, type="canceled").count() == 1
    assert Job.objects.get(pk=untouched).status != JobStatus.CANCELED and refunds(untouched) == 0
    consent = Consent.objects.get(pk=voice.consent_id)
    assert consent.revoked_by == "member" and consent.revoked_by_member == funded.pk and consent.revoked_at

    # At once and for good: the voice is refused, and a second revocation changes nothing.
    refused = auth_client.post(f"{JOBS}/tts", {"text": "Again.", "voice_id": str(voice.pk)}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["reason"] == "revoked"
    assert auth_client.get(f"/api/v1/voices/{voice.pk}").json()["voice"]["consent_status"] == "revoked"
    again = auth_client.post(f"/api/v1/consents/{voice.consent_id}/revoke")
    assert again.status_code == 200 and again.json()["jobs_canceled"] == 0
    assert sum(refunds(job_id) for job_id in waiting) == 3


def test_the_speakers_link_revokes_without_signing_in_and_a_forged_one_does_nothing(funded, voice, auth_client,
                                                                                   gpu_backend):
    gpu_backend("noop")
    job_id = speak(auth_client, voice)
    token = consent_revoke_token(voice.consent)
    payload, stamp, signature = token.split(":")
    # Another consent's payload under this one's signature, and this one's under another's.
    other_payload, _, other_signature = consent_revoke_token(ConsentFactory.create(user=funded)).split(":")
    anonymous = APIClient(raise_request_exception=False)
    for forged in (f"{other_payload}:{stamp}:{signature}", f"{payload}:{stamp}:{other_signature}",
                   f"{payload}:{stamp}:{signature[:-1]}", "not-a-token", ""):
        response = anonymous.post("/api/v1/consents/revoke", {"token": forged}, format="json")
        assert response.status_code in (400, 404), (forged, response.json())
        if response.status_code == 404:
            assert response.json()["error"]["code"] == "consent_not_found"
    assert Consent.objects.get(pk=voice.consent_id).status == "verified"
    assert Job.objects.get(pk=job_id).status != JobStatus.CANCELED

    revoked = anonymous.post("/api/v1/consents/revoke", {"token": token}, format="json")
    assert revoked.status_code == 200, revoked.json()
    assert revoked.json()["jobs_canceled"] == 1
    assert Consent.objects.get(pk=voice.consent_id).revoked_by == "subject"
    assert Job.objects.get(pk=job_id).status == JobStatus.CANCELED and refunds(job_id) == 1


def test_another_workspaces_consent_is_not_found_and_stays(auth_client, make_user):
    theirs = ConsentFactory.create(user=make_user())
    response = auth_client.post(f"/api/v1/consents/{theirs.pk}/revoke")
    assert response.status_code == 404 and response.json()["error"]["code"] == "consent_not_found"
    assert Consent.objects.get(pk=theirs.pk).status == "verified"


def test_a_running_job_of_a_revoked_voice_keeps_nothing_and_is_refunded_once(auth_client, funded, voice,
                                                                            gpu_backend):
    gpu_backend("noop")
    running = []
    for _ in range(2):
        job_id = speak(auth_client, voice)
        now = timezone.now()
        Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                             gpu_call_id=gpu_client.spawn("tts", {"text": "x"}))
        running.append(Job.objects.get(pk=job_id))
    STEP_TASKS[job_spec("tts").family, Step.FINISH].apply(args=(str(running[0].pk),))
    assert Job.objects.get(pk=running[0].pk).status == JobStatus.COMPLETED  # before: kept

    assert auth_client.post(f"/api/v1/consents/{voice.consent_id}/revoke").json()["jobs_canceled"] == 0
    balance = credit_balance_get(user=funded)
    STEP_TASKS[job_spec("tts").family, Step.FINISH].apply(args=(str(running[1].pk),))
    job = Job.objects.get(pk=running[1].pk)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "consent_revoked")
    assert refunds(job.pk) == 1 and credit_balance_get(user=funded) == balance + job.credits_cost
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert MediaFile.objects.filter(source_job_id=running[0].pk).exists()
