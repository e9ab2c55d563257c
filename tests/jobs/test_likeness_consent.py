"""Likeness consent through the API: a workspace's policy, attestations, the verification job, the
check at submission of the types that use a face (lip sync, performance cloning, gaze redirection),
and revocation. Each refusal asserts that nothing was made or charged.

The verification's engine runs in tests/gpu_tasks (F's face tests); here its figures come from the
noop backend's canned result, set per test (the engine seam), and the worker's own bound judges them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.core import rls
from auteur.core.errors import ApplicationError
from auteur.users.models import Membership, User, Workspace
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from gpu_tasks.backends import noop
from gpu_tasks.engines import face_embed, likeness_consent
from gpu_tasks.types import JobType, OutputKind
from jobs import gpu_client
from jobs.life import moderation
from jobs.life.publish import Step
from jobs.models import Job, JobModeration, JobStatus
from jobs.selectors import requests
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import Consent, ConsentChallenge, ConsentSubject, MediaFile
from media.services.consents import consent_revoke
from tests.factories import (
    MediaFileFactory,
    ProjectFactory,
    acting_in,
    likeness_consent_for,
    pictures_passed,
    team_workspace,
)
from tests.jobs.support import consent_challenge, ledger_state
from tests.jobs.test_output_moderation import finish, running

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
ATTEST = "/api/v1/consents/attestations"
WHEN = "2026-01-05T10:00:00Z"


def policy_url(workspace: Any) -> str:
    return f"/api/v1/workspaces/{getattr(workspace, 'pk', workspace)}/likeness-policy"


@pytest.fixture
def team(make_user) -> dict[str, Any]:
    """A funded team workspace with an owner, an admin and an editor, and a video and an image in it."""
    owner, admin, editor = make_user(), make_user(), make_user()
    workspace = team_workspace(owner)
    Membership.objects.create(workspace=workspace, user=admin, role="admin")
    Membership.objects.create(workspace=workspace, user=editor, role="editor")
    account = User.objects.get(pk=workspace.pk)
    credit_grant(user=account, amount=1000, type="bonus", description="test")
    project = ProjectFactory.create(user=account)
    return {"workspace": workspace, "account": account, "project": project,
            "owner": acting_in(owner, workspace), "admin": acting_in(admin, workspace),
            "editor": acting_in(editor, workspace),
            "video": MediaFileFactory.create(project=project, type="video", content_sha256="a1" * 32),
            "image": MediaFileFactory.create(project=project, type="image", content_sha256="b2" * 32),
            "audio": MediaFileFactory.create(project=project, type="audio")}


def attest(client: APIClient, *media: MediaFile) -> Any:
    return client.post(ATTEST, {"subject_media_ids": [str(m.pk) for m in media], "person_name": "Ada Example",
                                "consent_obtained_at": WHEN, "evidence": "Signed release R-17, kept in the HR drive."},
                       format="json")


def lip_sync(client: APIClient, video: MediaFile, audio: MediaFile, path: str = "lip-sync") -> Any:
    return client.post(f"{JOBS}/{path}", {"video_media_id": str(video.pk), "audio_media_id": str(audio.pk)},
                       format="json")


def refunds(job_id: Any) -> int:
    return CreditTransaction.objects.filter(job_id=job_id, type="refund").count()


# ----------------------------------------------------------------------------- the policy


def test_a_personal_workspace_cannot_choose_the_attested_policy(auth_client, user):
    refused = auth_client.put(policy_url(user), {"likeness_policy": "attested"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "personal_workspace", refused.json()
    assert Workspace.objects.get(pk=user.pk).likeness_policy == "verified"
    assert auth_client.get(f"/api/v1/workspaces/{user.pk}").json()["likeness_policy"] == "verified"
    # The database holds the rule too.
    with pytest.raises(IntegrityError), transaction.atomic():
        Workspace.objects.filter(pk=user.pk).update(likeness_policy="attested")


def test_only_an_owner_sets_the_policy(team):
    for role in ("admin", "editor"):
        refused = team[role].put(policy_url(team["workspace"]), {"likeness_policy": "attested"}, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["details"]["action"] == "workspace.likeness_policy"
    assert Workspace.objects.get(pk=team["workspace"].pk).likeness_policy == "verified"
    done = team["owner"].put(policy_url(team["workspace"]), {"likeness_policy": "attested"}, format="json")
    assert done.status_code == 200 and done.json()["likeness_policy"] == "attested", done.json()
    assert team["owner"].put(policy_url(team["workspace"]), {"likeness_policy": "maybe"},
                             format="json").status_code == 400


# ----------------------------------------------------------------------------- attestations


def test_an_attestation_is_refused_under_the_verified_policy(team, auth_client, user):
    project = ProjectFactory.create(user=user)
    mine = MediaFileFactory.create(project=project, type="video", content_sha256="c3" * 32)
    for client, media in ((team["owner"], team["video"]), (auth_client, mine)):
        refused = attest(client, media)
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["code"] == "permission_denied"
        assert refused.json()["error"]["details"]["reason"] == "policy_verified"
    assert not Consent.objects.exists() and not ConsentSubject.objects.exists()


def test_owners_and_admins_attest_under_the_attested_policy_and_the_consent_shows_it(team):
    Workspace.objects.filter(pk=team["workspace"].pk).update(likeness_policy="attested")
    refused = attest(team["editor"], team["video"])
    assert refused.status_code == 403 and refused.json()["error"]["details"]["action"] == "consents.attest"
    assert not Consent.objects.exists()

    made = attest(team["admin"], team["video"], team["image"], team["video"])
    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["kind"] == "likeness" and body["status"] == "attested" and body["usable"] is True
    admin_id = str(Membership.objects.get(workspace=team["workspace"], role="admin").user_id)
    assert body["attestation"]["attested_by"] == admin_id
    assert body["attestation"]["person_name"] == "Ada Example"
    assert body["attestation"]["evidence"].startswith("Signed release R-17")
    assert body["attestation"]["consent_obtained_at"].startswith("2026-01-05T10:00:00")
    assert sorted(s["content_sha256"] for s in body["subjects"]) == ["a1" * 32, "b2" * 32]
    shown = team["editor"].get(f"/api/v1/consents/{body['id']}")
    assert shown.status_code == 200 and shown.json()["attestation"] == body["attestation"]


def test_an_attested_consent_is_usable_only_while_the_policy_is_attested(team, gpu_backend):
    gpu_backend("noop")
    Workspace.objects.filter(pk=team["workspace"].pk).update(likeness_policy="attested")
    consent_id = attest(team["owner"], team["video"]).json()["id"]
    accepted = lip_sync(team["editor"], team["video"], team["audio"])
    assert accepted.status_code == 202, accepted.json()
    assert Job.objects.get(pk=accepted.json()["job_id"]).input_params["_likeness_consent_id"] == consent_id

    assert team["owner"].put(policy_url(team["workspace"]), {"likeness_policy": "verified"},
                             format="json").status_code == 200
    before = ledger_state(team["account"])
    refused = lip_sync(team["editor"], team["video"], team["audio"])
    assert refused.status_code == 403, refused.json()
    assert refused.json()["error"]["details"] == {"field": "video_media_id", "media_id": str(team["video"].pk),
                                                  "reason": "policy"}
    assert ledger_state(team["account"]) == before
    kept = team["owner"].get(f"/api/v1/consents/{consent_id}").json()
    assert kept["status"] == "attested" and kept["usable"] is False


# ----------------------------------------------------------------------------- using a face


@pytest.mark.parametrize("job_type,face", [("lip-sync", "video"), ("performance-cloning", "image"),
                                           ("gaze-redirection", "video")])
def test_a_face_no_consent_covers_is_refused_at_no_cost_and_a_covered_one_accepted(
    job_type, face, auth_client, funded, project, media, gpu_backend
):
    gpu_backend("noop")
    bodies = {"lip-sync": {"video_media_id": str(media["video"].pk), "audio_media_id": str(media["audio"].pk)},
              "performance-cloning": {"source_image_media_id": str(media["image"].pk),
                                      "driving_video_media_id": str(media["video"].pk)},
              "gaze-redirection": {"video_media_id": str(media["video"].pk)}}
    field = {"lip-sync": "video_media_id", "performance-cloning": "source_image_media_id",
             "gaze-redirection": "video_media_id"}[job_type]
    pictures_passed(media["video"], media["image"])  # (their pictures screened and passed: only consent is in question)
    before = ledger_state(funded)
    for path in (job_type, f"{job_type}/quote"):
        refused = auth_client.post(f"{JOBS}/{path}", bodies[job_type], format="json")
        assert refused.status_code == 403, refused.json()
        error = refused.json()["error"]
        assert error["code"] == "consent_required"
        assert error["details"] == {"field": field, "media_id": str(media[face].pk), "reason": "missing"}
    batch = auth_client.post(f"{JOBS}/batch", {"items": [{"type": job_type, "input": bodies[job_type]}]},
                             format="json")
    assert batch.status_code == 403 and batch.json()["error"]["code"] == "consent_required", batch.json()
    assert ledger_state(funded) == before

    # Another workspace's consent of the same bytes covers nothing here.
    MediaFile.objects.filter(pk=media[face].pk).update(content_sha256="f6" * 32)
    media[face].refresh_from_db()
    likeness_consent_for(MediaFileFactory.create(project=ProjectFactory.create(), type=media[face].type,
                                                 content_sha256="f6" * 32))
    assert auth_client.post(f"{JOBS}/{job_type}", bodies[job_type], format="json").status_code == 403
    assert ledger_state(funded) == before

    consent = likeness_consent_for(media[face])
    accepted = auth_client.post(f"{JOBS}/{job_type}", bodies[job_type], format="json")
    assert accepted.status_code == 202, accepted.json()
    assert Job.objects.get(pk=accepted.json()["job_id"]).input_params["_likeness_consent_id"] == str(consent.pk)


def test_a_retry_needs_a_consent_usable_now(auth_client, funded, project, media, gpu_backend):
    gpu_backend("noop")
    consent = likeness_consent_for(media["video"])
    job_id = lip_sync(auth_client, media["video"], media["audio"]).json()["job_id"]
    Job.objects.filter(pk=job_id).update(status="failed", retryable=True, error_code="gpu_timeout")
    Consent.objects.filter(pk=consent.pk).update(status="revoked", revoked_at=timezone.now(), revoked_by="member")
    before = ledger_state(funded)
    for path, body in ((f"{JOBS}/{job_id}/retry", None), (f"{JOBS}/bulk/retry", {"status": ["failed"]})):
        refused = auth_client.post(path, body, format="json")
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"]["details"]["reason"] == "revoked"
    assert ledger_state(funded) == before
    renewed = likeness_consent_for(media["video"])
    retried = auth_client.post(f"{JOBS}/{job_id}/retry")
    assert retried.status_code == 202, retried.json()
    assert Job.objects.get(pk=retried.json()["job_id"]).input_params["_likeness_consent_id"] == str(renewed.pk)


# ----------------------------------------------------------------------------- revocation


def test_revoking_a_likeness_cancels_its_waiting_lip_syncs_refunded_once(auth_client, funded, project, media,
                                                                          gpu_backend):
    gpu_backend("noop")
    consent = likeness_consent_for(media["video"])
    waiting = [lip_sync(auth_client, media["video"], media["audio"]).json()["job_id"] for _ in range(2)]
    other_video = MediaFileFactory.create(project=project, type="video")
    likeness_consent_for(other_video)
    untouched = lip_sync(auth_client, other_video, media["audio"]).json()["job_id"]
    balance = credit_balance_get(user=funded)

    revoked = auth_client.post(f"/api/v1/consents/{consent.pk}/revoke")
    assert revoked.status_code == 200, revoked.json()
    assert revoked.json()["jobs_canceled"] == 2
    for job_id in waiting:
        job = Job.objects.get(pk=job_id)
        assert (job.status, job.error_code) == (JobStatus.CANCELED, "consent_revoked")
        assert refunds(job_id) == 1
    assert Job.objects.get(pk=untouched).status != JobStatus.CANCELED and refunds(untouched) == 0
    refunded = sum(Job.objects.get(pk=j).credits_cost for j in waiting)
    assert credit_balance_get(user=funded) == balance + refunded

    again = auth_client.post(f"/api/v1/consents/{consent.pk}/revoke")
    assert again.status_code == 200 and again.json()["jobs_canceled"] == 0
    assert all(refunds(j) == 1 for j in waiting) and credit_balance_get(user=funded) == balance + refunded
    refused = lip_sync(auth_client, media["video"], media["audio"])
    assert refused.status_code == 403 and refused.json()["error"]["details"]["reason"] == "revoked"


def test_a_running_lip_sync_whose_likeness_is_revoked_keeps_nothing(auth_client, funded, project, media,
                                                                      gpu_backend):
    gpu_backend("noop")
    consent = likeness_consent_for(media["video"])
    job_id = lip_sync(auth_client, media["video"], media["audio"]).json()["job_id"]
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=gpu_client.spawn("lip-sync", {}))
    assert auth_client.post(f"/api/v1/consents/{consent.pk}/revoke").json()["jobs_canceled"] == 0
    STEP_TASKS[job_spec("lip-sync").family, Step.FINISH].apply(args=(job_id,))
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "consent_revoked")
    assert refunds(job_id) == 1 and not MediaFile.objects.filter(source_job_id=job_id).exists()


# ----------------------------------------------------------------------------- scoping


def test_another_workspaces_consent_and_media_are_not_found(auth_client, funded, make_user):
    stranger = make_user()
    theirs = likeness_consent_for(MediaFileFactory.create(project=ProjectFactory.create(user=stranger), type="video"))
    for response in (auth_client.get(f"/api/v1/consents/{theirs.pk}"),
                     auth_client.post(f"/api/v1/consents/{theirs.pk}/revoke"),
                     auth_client.post(f"/api/v1/consents/{theirs.pk}/revoke-link")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "consent_not_found"
    assert Consent.objects.get(pk=theirs.pk).status == "verified"

    team = team_workspace(funded)
    Workspace.objects.filter(pk=team.pk).update(likeness_policy="attested")
    their_video = MediaFile.objects.get(user=stranger, type="video")
    refused = attest(acting_in(funded, team), their_video)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "media_not_found", refused.json()
    assert Consent.objects.count() == 1


# ----------------------------------------------------------------------------- the verification job


def face_figures(*, challenge: Any = 0.0, phrase: Any = 0.0, similarity: Any = 0.8, recording: int = 16,
                 subject: int = 16, sync: Any = 0.6, mouth_motion: Any = 0.02) -> dict[str, Any]:
    return {"phrase": {"challenge_wer": challenge, "phrase_wer": phrase, "transcript_words": 17},
            "face": {"similarity": similarity, "recording_faces": recording, "subject_faces": subject},
            "liveness": {"sync": sync, "mouth_motion": mouth_motion, "frames": 150}}


def verify(client: APIClient, funded: Any, monkeypatch: Any, figures: dict[str, Any]) -> Job:
    """A likeness-consent job accepted through the API, run on the noop backend with `figures` as its
    engine's result (the noop's canned verification, which never verifies anyone, replaced)."""
    project = ProjectFactory.create(user=funded)
    recording = MediaFileFactory.create(project=project, type="video", content_sha256="d4" * 32, duration_ms=20_000)
    subject = MediaFileFactory.create(project=project, type="image", content_sha256="e5" * 32)
    issued = client.post("/api/v1/likeness/consent-challenges")
    assert issued.status_code == 201, issued.json()
    assert issued.json()["statement"] == "I agree to have my face used in this workspace."
    accepted = client.post(f"{JOBS}/likeness-consent", {
        "challenge_id": issued.json()["challenge_id"], "recording_media_id": str(recording.pk),
        "subject_media_id": str(subject.pk)}, format="json")
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["credits_cost"] == 1
    job_id = accepted.json()["job_id"]
    now = timezone.now()
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, started_at=now, inference_started_at=now,
                                         gpu_call_id=gpu_client.spawn("likeness-consent", {}))
    monkeypatch.setitem(noop._CANNED, OutputKind.VERIFICATION, lambda: json.loads(json.dumps(figures)))
    monkeypatch.setitem(noop._ENGINE_FIELDS, JobType.LIKENESS_CONSENT, {"models": {"face_embedding": "sface"}})
    STEP_TASKS[job_spec("likeness-consent").family, Step.FINISH].apply(args=(job_id,))
    return Job.objects.get(pk=job_id)


def test_a_passed_verification_records_the_consent_covering_the_subject(auth_client, funded, gpu_backend,
                                                                        monkeypatch):
    gpu_backend("noop")
    job = verify(auth_client, funded, monkeypatch, face_figures(similarity=0.81, phrase=0.125))
    assert job.status == JobStatus.COMPLETED, (job.status, job.error_code, job.error_message)
    consent = Consent.objects.get(job_id=job.pk)
    assert job.output_data == {"passed": True, "checks": {"phrase": "passed", "face": "passed", "speaking": "passed"},
                               "consent_id": str(consent.pk)}
    # The figures stay with the consent, for staff.
    assert consent.kind == "likeness" and consent.status == "verified"
    assert consent.similarity == 0.81 and consent.threshold == face_embed.DEFAULT_THRESHOLD
    assert consent.phrase_wer == 0.125 and consent.max_wer == 0.25
    assert consent.faces == {"recording_faces": 16, "subject_faces": 16, "liveness": {
        "sync": 0.6, "mouth_motion": 0.02, "frames": 150, "min_sync": likeness_consent.MIN_SYNC,
        "min_mouth_motion": likeness_consent.MIN_MOUTH_MOTION}}
    assert consent.checks == {"phrase": "passed", "face": "passed", "speaking": "passed"}
    assert consent.models_used == {"face_embedding": "sface"}
    assert list(consent.subjects.values_list("content_sha256", flat=True)) == ["e5" * 32]
    shown = auth_client.get(f"/api/v1/consents/{consent.pk}").json()
    assert shown["usable"] is True and shown["attestation"] is None and "similarity" not in json.dumps(shown)


@pytest.mark.parametrize("figures,failed", [
    (face_figures(phrase=0.6), "phrase"),
    (face_figures(similarity=0.1), "face"),
    (face_figures(similarity=None, subject=0), "face"),
    (face_figures(sync=None, mouth_motion=0.0), "speaking"),  # a still picture on camera
    (face_figures(sync=0.05), "speaking"),  # a mouth that does not move with the words
])
def test_a_failed_verification_says_which_check_failed_and_covers_nothing(auth_client, funded, gpu_backend,
                                                                         monkeypatch, figures, failed):
    gpu_backend("noop")
    job = verify(auth_client, funded, monkeypatch, figures)
    assert job.status == JobStatus.COMPLETED, (job.status, job.error_code, job.error_message)
    consent = Consent.objects.get(job_id=job.pk)
    assert consent.status == "failed" and not consent.subjects.exists()
    assert job.output_data["passed"] is False and job.output_data["checks"][failed] == "failed"
    assert set(job.output_data) == {"passed", "checks", "consent_id"}
    assert sum(state == "failed" for state in job.output_data["checks"].values()) == 1


def test_a_voice_challenge_is_no_likeness_challenge(auth_client, funded, gpu_backend):
    gpu_backend("noop")
    project = ProjectFactory.create(user=funded)
    recording = MediaFileFactory.create(project=project, type="video", content_sha256="d4" * 32, duration_ms=20_000)
    voice_challenge = consent_challenge(funded)
    before = ledger_state(funded)
    refused = auth_client.post(f"{JOBS}/likeness-consent", {
        "challenge_id": str(voice_challenge.pk), "recording_media_id": str(recording.pk),
        "subject_media_id": str(recording.pk)}, format="json")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "challenge_not_found"
    assert ledger_state(funded) == before
    assert ConsentChallenge.objects.get(pk=voice_challenge.pk).used_by_job_id is None


def test_a_likeness_challenge_is_no_voice_challenge(auth_client, funded):
    audio = MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="audio", content_sha256="ab" * 32)
    issued = auth_client.post("/api/v1/likeness/consent-challenges").json()["challenge_id"]
    before = ledger_state(funded)
    refused = auth_client.post(f"{JOBS}/voice-consent", {"challenge_id": issued, "recording_media_id": str(audio.pk),
                                                         "sample_media_id": str(audio.pk)}, format="json")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "challenge_not_found"
    assert ledger_state(funded) == before and ConsentChallenge.objects.get(pk=issued).used_by_job_id is None


# ----------------------------------------------------------------------------- attacks, performed


def test_an_attestation_names_at_most_twenty_files_a_past_date_and_its_evidence(team):
    Workspace.objects.filter(pk=team["workspace"].pk).update(likeness_policy="attested")
    base = {"subject_media_ids": [str(team["video"].pk)], "person_name": "Ada Example", "consent_obtained_at": WHEN,
            "evidence": "Signed release R-17."}
    changes: list[dict[str, Any]] = [
        {"subject_media_ids": [str(team["video"].pk)] * 21}, {"subject_media_ids": []},
        {"consent_obtained_at": "2999-01-01T00:00:00Z"}, {"evidence": ""}, {"person_name": "x" * 201},
        {"similarity": 0.99}]
    for change in changes:
        refused = team["owner"].post(ATTEST, {**base, **change}, format="json")
        assert refused.status_code == 400, (change, refused.json())
    assert not Consent.objects.exists()


def test_the_api_role_inserts_only_attested_likeness_consents_of_its_own(funded, make_user):
    verified = likeness_consent_for(MediaFileFactory.create(project=ProjectFactory.create(user=funded), type="video"))
    stranger = make_user()
    with rls.request_scope():
        rls.act_as(funded.pk)
        for fields in ({"kind": "likeness", "status": "verified", "challenge_id": uuid.uuid4(), "job_id": uuid.uuid4()},
                       {"kind": "likeness", "status": "attested", "user_id": stranger.pk},
                       {"kind": "voice", "status": "verified", "challenge_id": uuid.uuid4(), "job_id": uuid.uuid4()}):
            with pytest.raises(DatabaseError), transaction.atomic():
                Consent.objects.create(**{"user_id": funded.pk, "checks": {}, **fields})
        attested = Consent.objects.create(user_id=funded.pk, kind="likeness", status="attested", checks={})
        ConsentSubject.objects.create(consent=attested, user_id=funded.pk, content_sha256="ab" * 32)
        for consent, similarity in ((attested, 0.99), (verified, None)):
            with pytest.raises(DatabaseError), transaction.atomic():
                ConsentSubject.objects.create(consent=consent, user_id=funded.pk, content_sha256="cd" * 32,
                                              similarity=similarity)
    assert Consent.objects.filter(user=funded).count() == 2
    assert set(ConsentSubject.objects.values_list("content_sha256", flat=True)) == {
        verified.subjects.get().content_sha256, "ab" * 32}


def test_a_workspaces_account_reads_its_own_policy_and_no_other(team, funded):
    with rls.request_scope():
        rls.act_as(team["account"].pk)
        assert Workspace.objects.filter(pk=team["workspace"].pk).values_list("likeness_policy", flat=True).get() \
            == "verified"
        assert not Workspace.objects.filter(pk=funded.pk).exists()


def test_a_revocation_committed_between_the_check_and_the_charge_refuses_the_submission(
    auth_client, funded, project, media, gpu_backend, monkeypatch
):
    gpu_backend("noop")
    consent = likeness_consent_for(media["video"])
    checked = requests.likeness_consent_check

    def check_then_revoked(**kwargs: Any) -> Consent:
        found = checked(**kwargs)
        consent_revoke(consent_id=found.pk, by="subject")  # the person's link, committed meanwhile
        return found

    monkeypatch.setattr(requests, "likeness_consent_check", check_then_revoked)
    before = ledger_state(funded)
    refused = lip_sync(auth_client, media["video"], media["audio"])
    assert refused.status_code == 403, refused.json()
    assert refused.json()["error"]["details"]["reason"] == "revoked"
    assert ledger_state(funded) == before and Consent.objects.get(pk=consent.pk).status == "revoked"


def test_a_likeness_is_revoked_by_the_persons_link_and_by_staff(auth_client, funded, project, media, gpu_backend):
    gpu_backend("noop")
    by_link, by_staff = likeness_consent_for(media["video"]), likeness_consent_for(media["image"])
    lip = lip_sync(auth_client, media["video"], media["audio"]).json()["job_id"]
    animated = auth_client.post(f"{JOBS}/performance-cloning", {
        "source_image_media_id": str(media["image"].pk), "driving_video_media_id": str(media["video"].pk)},
        format="json").json()["job_id"]
    token = auth_client.post(f"/api/v1/consents/{by_link.pk}/revoke-link").json()["token"]
    revoked = APIClient().post("/api/v1/consents/revoke", {"token": token}, format="json")
    assert revoked.status_code == 200 and revoked.json()["jobs_canceled"] == 1, revoked.json()
    assert Job.objects.get(pk=lip).error_code == "consent_revoked" and refunds(lip) == 1
    assert Job.objects.get(pk=animated).status != JobStatus.CANCELED
    _, canceled = consent_revoke(consent_id=by_staff.pk, by="staff")
    assert canceled == 1 and Job.objects.get(pk=animated).error_code == "consent_revoked" and refunds(animated) == 1
    assert Consent.objects.get(pk=by_staff.pk).revoked_by == "staff"


def test_a_withheld_lip_sync_whose_likeness_was_since_revoked_is_never_released(
        auth_client, funded, project, media, gpu_backend, settings, admin_user, tmp_path):
    """The store step keeps nothing of a face whose consent was revoked; staff's release must not either."""
    gpu_backend("noop")
    settings.MEDIA_ROOT, settings.AWS_STORAGE_BUCKET_NAME = str(tmp_path / "storage"), ""
    settings.AUTEUR_SCREENING_INJECT = "lip-sync:output=1.0"
    consent = likeness_consent_for(media["video"])
    job = finish(running(auth_client, project, "lip-sync", {"video_media_id": str(media["video"].pk),
                                                            "audio_media_id": str(media["audio"].pk)}))
    assert job.error_code == "output_moderated", (job.status, job.error_code, job.error_message)
    consent_revoke(consent_id=consent.pk, by="subject")
    balance = credit_balance_get(user=funded)
    with pytest.raises(ApplicationError) as refused:
        moderation.moderation_release(job_id=job.pk, staff_user=admin_user)
    assert refused.value.code == "consent_revoked"
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert credit_balance_get(user=funded) == balance
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def test_the_database_holds_what_an_attestation_may_be(funded):
    for fields in ({"kind": "voice", "status": "attested"},  # only a likeness is attested
                   {"kind": "voice", "status": "verified"},  # a voice's consent is always a verification's
                   {"kind": "likeness", "status": "attested", "job_id": uuid.uuid4()}):  # a job or none of both
        with pytest.raises(IntegrityError), transaction.atomic():
            Consent.objects.create(user=funded, checks={}, **fields)
    consent = Consent.objects.create(user=funded, kind="likeness", status="attested", checks={})
    with pytest.raises(IntegrityError), transaction.atomic():
        ConsentSubject.objects.create(consent=consent, user=funded, content_sha256="not a hash")
    assert Consent.objects.count() == 1 and not ConsentSubject.objects.exists()
