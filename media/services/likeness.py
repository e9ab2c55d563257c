"""Likeness consent: whose face a workspace's jobs may use.

Lip sync, performance cloning and gaze redirection make a person's face say or do what they did not.
A job of those types is accepted only when a likeness consent of the workspace covers the file whose
face it uses, by the SHA-256 of the file's bytes (`ConsentSubject`): a copy of the file is covered,
a re-encoded version is not. A consent is either

- verified: the person read a phrase the server issued on camera, and a `likeness-consent` job
  found the phrase in the recording and the recording's face in the file
  (`likeness_record_verification`, at the job's store step); or
- attested: an owner or admin of a workspace whose policy is `attested` states that they hold the
  person's consent, who and when, and what evidence they keep (`likeness_attest`).

Attested consents are usable only while the workspace's policy is `attested` (an owner switching
it back to `verified` leaves them stored and unusable); a revoked consent is never usable again. The
consent a job was accepted under is kept in its input (LIKENESS_PARAM in jobs.payloads), so that a
revocation finds the jobs that wait on it (jobs/life/bulk.py) and a running one keeps nothing.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, transaction

from auteur.users.errors import PermissionDenied
from auteur.users.models import LikenessPolicy, User, Workspace
from media.errors import ConsentRequired, SubjectNotReady
from media.models import (
    Consent,
    ConsentAttestation,
    ConsentKind,
    ConsentStatus,
    ConsentSubject,
    MediaFile,
    MediaStatus,
)
from media.probing.facts import content_sha256
from media.storage import get_storage

logger = logging.getLogger(__name__)

# How many files one attestation may cover.
MAX_ATTESTED_SUBJECTS = 20


def workspace_likeness_policy(user_id: uuid.UUID) -> str:
    """The policy of the workspace whose account is `user_id` (`verified` for an account without one)."""
    policy = Workspace.objects.filter(pk=user_id).values_list("likeness_policy", flat=True).first()
    return str(policy or LikenessPolicy.VERIFIED)


def media_sha256(media: MediaFile) -> str:
    """The SHA-256 of a ready file's bytes: as the probe recorded it, else read now and recorded
    (files stored before hashes were kept, until the backfill reaches them; bounded by the upload
    size limit). "" for a file that is not ready, or whose object is gone."""
    if media.content_sha256 or media.status != MediaStatus.READY:
        return media.content_sha256
    try:
        with get_storage().local_path(media.storage_key) as path:
            sha256 = content_sha256(path)
    except FileNotFoundError:
        return ""
    MediaFile.objects.filter(pk=media.pk, content_sha256="").update(content_sha256=sha256)
    media.content_sha256 = sha256
    return sha256


def _usable(consent: Consent, policy: str) -> bool:
    return consent.status == ConsentStatus.VERIFIED or (
        consent.status == ConsentStatus.ATTESTED and policy == LikenessPolicy.ATTESTED)


def likeness_consent_check(*, user: User, media: MediaFile, field: str) -> Consent:
    """The workspace's likeness consent that covers `media`'s face (a verified one first, then the
    newest), or 403 `consent_required` whose `details.reason` says why there is none usable:
    `missing` (none covers these bytes), `policy` (only attested ones, and the workspace's policy
    is `verified`), `revoked` (only revoked ones)."""
    sha256 = media_sha256(media)
    consents = [s.consent for s in ConsentSubject.objects.filter(
        user_id=user.pk, content_sha256=sha256, consent__kind=ConsentKind.LIKENESS).select_related("consent")
    ] if sha256 else []
    policy = workspace_likeness_policy(user.pk)
    usable = [c for c in consents if _usable(c, policy)]
    if usable:
        return min(usable, key=lambda c: (c.status != ConsentStatus.VERIFIED, -c.created_at.timestamp()))
    details = {"field": field, "media_id": str(media.pk)}
    if any(c.status == ConsentStatus.ATTESTED for c in consents):
        raise ConsentRequired("The face in this file is covered only by attested consents, and this workspace's "
                              "likeness policy is `verified`: verify the person's consent on camera.",
                              details={**details, "reason": "policy"})
    if consents:
        raise ConsentRequired("The consent that covered the face in this file was revoked.",
                              details={**details, "reason": "revoked"})
    raise ConsentRequired("The face in this file is covered by no likeness consent of this workspace: verify the "
                          "person's consent (a likeness-consent job naming this file) or, where the workspace's "
                          "policy allows it, attest it.", details={**details, "reason": "missing"})


def likeness_consent_usable(consent_id: uuid.UUID | str, *, field: str) -> None:
    """403 `consent_required` (reason `revoked`, or `policy`) unless the consent a job was accepted
    under is usable now (a retry's check)."""
    consent = Consent.objects.filter(pk=consent_id, kind=ConsentKind.LIKENESS).first()
    if consent is not None and _usable(consent, workspace_likeness_policy(consent.user_id)):
        return
    reason = "policy" if consent is not None and consent.status == ConsentStatus.ATTESTED else "revoked"
    raise ConsentRequired("The likeness consent this job was accepted under is no longer usable.",
                          details={"field": field, "consent_id": str(consent_id), "reason": reason})


def likeness_consents_revoked_locked(consent_ids: Iterable[str | None]) -> str | None:
    """In the caller's transaction: the likeness consents `consent_ids` read under a share lock (a
    revocation, which holds its consent for update, waits for the caller's commit, or committed
    before this read), and the id of one revoked, if any."""
    ids = sorted({str(c) for c in consent_ids if c})
    if not ids:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text, status FROM consents WHERE id = ANY(%s::uuid[]) ORDER BY id FOR SHARE", [ids])
        return next((pk for pk, state in cursor.fetchall() if state == ConsentStatus.REVOKED), None)


def likeness_consent_revoked(consent_id: uuid.UUID | str | None) -> bool:
    """Whether the consent a job was accepted under was revoked since (its store step asks)."""
    if not consent_id:
        return False
    return Consent.objects.filter(pk=consent_id, status=ConsentStatus.REVOKED).exists()


def likeness_record_verification(*, job_id: uuid.UUID, user_id: uuid.UUID, member_id: uuid.UUID | None,
                                 challenge_id: uuid.UUID | str, recording_media_id: uuid.UUID | str | None,
                                 subject_media_id: uuid.UUID | str | None, subject_sha256: str,
                                 checks: dict[str, bool], figures: dict[str, Any]) -> Consent:
    """A likeness verification's outcome, once per job (a redelivered store finds the first):
    verified, covering the subject file's bytes, when every check passed; failed otherwise.
    `figures`: what was measured and the bounds it was held to."""
    passed = bool(checks) and all(checks.values()) and bool(subject_sha256)
    with transaction.atomic():
        consent, created = Consent.objects.get_or_create(
            job_id=job_id,
            defaults={
                "user_id": user_id, "member_id": member_id, "kind": ConsentKind.LIKENESS,
                "status": ConsentStatus.VERIFIED if passed else ConsentStatus.FAILED,
                "challenge_id": challenge_id, "recording_media_id": recording_media_id,
                "checks": {name: "passed" if ok else "failed" for name, ok in checks.items()},
                "challenge_wer": figures["challenge_wer"], "phrase_wer": figures["phrase_wer"],
                "similarity": figures["similarity"], "threshold": figures["threshold"],
                "max_wer": figures["max_wer"], "faces": figures.get("faces"),
                "models_used": figures.get("models") or {},
            },
        )
        if created and passed:
            ConsentSubject.objects.create(consent=consent, user_id=user_id, content_sha256=subject_sha256,
                                          media_id=subject_media_id, similarity=figures["similarity"])
    return consent


def likeness_attest(*, user: User, member_id: uuid.UUID | None, media: Sequence[MediaFile], person_name: str,
                    consent_obtained_at: datetime.datetime, evidence: str) -> Consent:
    """An attested likeness consent covering the faces in `media` (the workspace's own files), stated by
    `member_id` (an owner or admin: the API's role check): who the person is, when they consented, and
    what the workspace holds as evidence. 403 `permission_denied` (`details.reason`
    `policy_verified`) unless the workspace's policy is `attested`; 422 `media_not_ready`
    for a file not ready or whose bytes cannot be read."""
    if workspace_likeness_policy(user.pk) != LikenessPolicy.ATTESTED:
        raise PermissionDenied("This workspace's likeness policy is `verified`: a likeness consent must be verified "
                               "on camera (an owner may change the policy).", details={"reason": "policy_verified"})
    hashes: dict[str, MediaFile] = {}
    for index, file in enumerate(media):
        sha256 = media_sha256(file)
        if not sha256:
            raise SubjectNotReady("A file must be ready to be covered by a consent.",
                                          details={"field": f"subject_media_ids[{index}]", "media_id": str(file.pk)})
        hashes.setdefault(sha256, file)
    with transaction.atomic():
        consent = Consent.objects.create(user=user, member_id=member_id, kind=ConsentKind.LIKENESS,
                                         status=ConsentStatus.ATTESTED, checks={})
        ConsentSubject.objects.bulk_create([
            ConsentSubject(consent=consent, user=user, content_sha256=sha256, media_id=file.pk)
            for sha256, file in hashes.items()])
        ConsentAttestation.objects.create(consent=consent, user=user, attested_by=member_id or user.pk,
                                          person_name=person_name, consent_obtained_at=consent_obtained_at,
                                          evidence=evidence)
    logger.info("likeness consent %s attested: %d files", consent.pk, len(hashes))
    return consent


def consent_usable_now(consent: Consent) -> bool:
    """Whether a consent can be used now: a voice's verified, a likeness's verified or attested under
    an `attested` policy."""
    if consent.kind == ConsentKind.LIKENESS:
        return _usable(consent, workspace_likeness_policy(consent.user_id))
    return consent.status == ConsentStatus.VERIFIED
