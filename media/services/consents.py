"""Voice consent: the phrase a speaker reads, the verification's outcome, and who may use a voice.

A voice is cloned only from a sample whose speaker recorded their consent: they read a phrase the
server issued (fresh words and a statement of consent) and a verification job checked that the
recording says it and that its speaker is the sample's. The job claims its challenge in the
transaction that charges it (`consent_challenge_claim`), so a challenge is read once; the worker
records the outcome with every figure measured (`consent_record_verification`); a voice is then
made from that sample naming the consent (media.services.voices.voice_create), and only a voice
with a verified consent, or one made before consents existed and still within its grace, is
usable (`voice_consent_state`).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.utils import timezone

from auteur.core.quotas import quota_check, quota_lock
from auteur.users.models import User
from media.consent_phrases import LIKENESS_STATEMENT, STATEMENT, new_challenge_words
from media.errors import (
    ChallengeExpired,
    ChallengeNotFound,
    ChallengeUsed,
    ConsentNotFound,
    ConsentRequired,
    TooManyConsentAttempts,
)
from media.hooks import consent_revoked
from media.models import Consent, ConsentChallenge, ConsentKind, ConsentRevoker, ConsentStatus, MediaFile, VoiceClone

logger = logging.getLogger(__name__)
FAILED_WINDOW = datetime.timedelta(days=1)
# What a revocation link's token is signed for: it names one consent, and nothing else verifies it.
REVOKE_SALT = "auteur.media.consent-revoke"


# The statement each kind of consent's challenge ends with.
STATEMENTS = {ConsentKind.VOICE: STATEMENT, ConsentKind.LIKENESS: LIKENESS_STATEMENT}


def consent_challenge_create(*, user: User, member_id: uuid.UUID | None,
                             kind: str = ConsentKind.VOICE) -> ConsentChallenge:
    """A fresh phrase of `kind` (its statement: STATEMENTS) for `member_id` of the workspace `user` to read, valid
    AUTEUR_CONSENT_CHALLENGE_TTL_SECONDS. 403 `quota_exceeded` past AUTEUR_CONSENT_OPEN_CHALLENGES
    unused ones; 429 `too_many_consent_attempts` after AUTEUR_CONSENT_FAILED_PER_DAY failed
    verifications in the last 24 hours."""
    now = timezone.now()
    with transaction.atomic():
        quota_lock(user_id=user.pk)
        failed = list(Consent.objects.filter(user=user, status=ConsentStatus.FAILED, created_at__gt=now - FAILED_WINDOW)
                      .order_by("created_at").values_list("created_at", flat=True))
        limit = int(settings.AUTEUR_CONSENT_FAILED_PER_DAY)
        if len(failed) >= limit:
            retry_at = failed[-limit] + FAILED_WINDOW
            raise TooManyConsentAttempts(
                f"{len(failed)} consent verifications failed in the last 24 hours: no new challenge until "
                f"{retry_at.isoformat()}.",
                details={"failed": len(failed), "limit": limit, "retry_after_seconds": max(1, int((retry_at - now)
                                                                                                   .total_seconds()))},
            )
        quota_check(name="consent_challenges",
                    used=ConsentChallenge.objects.filter(user=user, used_by_job_id=None, expires_at__gt=now).count())
        ttl = datetime.timedelta(seconds=int(settings.AUTEUR_CONSENT_CHALLENGE_TTL_SECONDS))
        return ConsentChallenge.objects.create(user=user, member_id=member_id, kind=ConsentKind(kind),
                                               words=new_challenge_words(), statement=STATEMENTS[ConsentKind(kind)],
                                               language="en", expires_at=now + ttl)


def consent_challenge_claim(*, user_id: uuid.UUID, member_id: uuid.UUID | None, challenge_id: uuid.UUID | str,
                            job_id: uuid.UUID, kind: str = ConsentKind.VOICE) -> ConsentChallenge:
    """Mark the challenge read by `job_id`, in the caller's transaction (the one that charges the
    job, so a refusal charges nothing). 404 `challenge_not_found` for one not issued to this member
    of this workspace, or of another kind (a voice's statement is no consent to a face's use), 409
    `challenge_used` for one a job already read, 410 `challenge_expired`."""
    try:
        pk = uuid.UUID(str(challenge_id))
    except ValueError:
        raise ChallengeNotFound("No such consent challenge.", details={"field": "challenge_id"}) from None
    challenge = ConsentChallenge.objects.select_for_update().filter(pk=pk, user_id=user_id).first()
    if challenge is None or challenge.member_id != member_id or challenge.kind != kind:
        raise ChallengeNotFound("No such consent challenge.", details={"field": "challenge_id"})
    if challenge.used_by_job_id is not None:
        raise ChallengeUsed("This challenge was already read in a recording: ask for a new one.",
                            details={"field": "challenge_id"})
    if challenge.expires_at <= timezone.now():
        raise ChallengeExpired("This challenge has expired: ask for a new one.",
                               details={"field": "challenge_id", "expired_at": challenge.expires_at.isoformat()})
    ConsentChallenge.objects.filter(pk=pk, used_by_job_id=None).update(used_by_job_id=job_id)
    return challenge


def consent_record_verification(*, job_id: uuid.UUID, user_id: uuid.UUID, member_id: uuid.UUID | None,
                                challenge_id: uuid.UUID | str, recording_media_id: uuid.UUID | str | None,
                                sample_sha256: str, checks: dict[str, bool], figures: dict[str, Any]) -> Consent:
    """The verification job's outcome, once per job (a redelivered store finds the first): verified
    when every check passed. `figures`: what was measured and the bounds it was held to."""
    consent, _ = Consent.objects.get_or_create(
        job_id=job_id,
        defaults={
            "user_id": user_id, "member_id": member_id, "kind": ConsentKind.VOICE,
            "status": ConsentStatus.VERIFIED if checks and all(checks.values()) else ConsentStatus.FAILED,
            "challenge_id": challenge_id, "recording_media_id": recording_media_id, "sample_sha256": sample_sha256,
            "checks": {name: "passed" if ok else "failed" for name, ok in checks.items()},
            "challenge_wer": figures["challenge_wer"], "phrase_wer": figures["phrase_wer"],
            "similarity": figures["similarity"], "threshold": figures["threshold"], "max_wer": figures["max_wer"],
            "stretch_similarity": figures.get("stretch_similarity"),
            "stretch_threshold": figures.get("stretch_threshold"),
            "models_used": figures.get("models") or {},
        },
    )
    return consent


def consent_for_sample(*, user: User, consent_id: uuid.UUID | str | None, media: MediaFile) -> Consent:
    """The verified consent that allows cloning `media`, or 403 `consent_required` whose
    `details.reason` says what is missing: `missing` (none named, or not this workspace's),
    `failed` (its verification failed), `other_sample` (it was verified against another sample),
    `used` (another voice was made with it)."""
    def refused(reason: str, message: str) -> ConsentRequired:
        return ConsentRequired(message, details={"field": "consent_id", "reason": reason})

    consent = None
    if consent_id is not None:
        consent = Consent.objects.filter(pk=consent_id, user=user, kind=ConsentKind.VOICE).first()
    if consent is None:
        raise refused("missing", "A voice needs its speaker's verified consent: run a voice-consent job with this "
                                 "sample and name its consent.")
    if consent.status == ConsentStatus.REVOKED:
        raise refused("revoked", "This consent was revoked.")
    if consent.status != ConsentStatus.VERIFIED:
        raise refused("failed", "This consent's verification failed: it cannot make a voice.")
    if not media.content_sha256 or consent.sample_sha256 != media.content_sha256:
        raise refused("other_sample", "This consent was verified against another sample.")
    if VoiceClone.objects.filter(consent=consent).exists():
        raise refused("used", "Another voice was made with this consent.")
    return consent


def voice_consent_state(voice: VoiceClone, now: datetime.datetime | None = None) -> str:
    """`verified` (usable), `grace` (made before consents existed: usable until
    `consent_grace_until`), `required` (not usable until a verified consent is attached) or
    `revoked` (its consent was withdrawn: never usable again)."""
    if voice.consent_id is not None:
        consent = voice.consent
        return "revoked" if consent is not None and consent.status == ConsentStatus.REVOKED else "verified"
    if voice.consent_grace_until is not None and (now or timezone.now()) < voice.consent_grace_until:
        return "grace"
    return "required"


def voice_consent_check(voice: VoiceClone, *, field: str) -> str:
    """403 `consent_required` unless `voice` is usable now; its state otherwise."""
    state = voice_consent_state(voice)
    if state == "revoked":
        raise ConsentRequired("This voice's consent was revoked: it cannot be used.",
                              details={"field": field, "voice_id": str(voice.pk), "reason": "revoked"})
    if state == "required":
        raise ConsentRequired(
            "This voice has no verified consent of its speaker: attach one (POST /voices/{id}/consent) to use it.",
            details={"field": field, "voice_id": str(voice.pk), "reason": "missing"},
        )
    return state


@dataclass(frozen=True)
class VoiceUse:
    """A voice a job speaks in, or whose speech it puts in a face's mouth: its id, its row (None once
    deleted), and the consent it had when its speech was made (None: it had none, or it is used now)."""

    voice_id: str
    voice: VoiceClone | None
    consent_id: str | None = None


def voice_use_check(use: VoiceUse, *, field: str) -> None:
    """403 `consent_required` unless the voice may be used now: the voice itself (`voice_consent_check`),
    and the consent its speech was made under, which a revocation ends even after the voice is
    deleted; speech of a deleted voice that had no consent is refused (`missing`)."""
    if use.voice is not None:
        voice_consent_check(use.voice, field=field)
    details = {"field": field, "voice_id": use.voice_id}
    if use.consent_id and Consent.objects.filter(pk=use.consent_id, status=ConsentStatus.REVOKED).exists():
        raise ConsentRequired("The consent of the voice this speech was made in was revoked.",
                              details={**details, "reason": "revoked"})
    if use.voice is None and not use.consent_id:
        raise ConsentRequired("The voice this speech was made in was deleted without a consent of its speaker.",
                              details={**details, "reason": "missing"})


def voice_use_revoked(use: VoiceUse) -> bool:
    """Whether the voice's consent, or the one its speech was made under, was revoked."""
    try:
        voice_use_check(use, field="")
    except ConsentRequired as refused:
        return refused.details.get("reason") == "revoked"
    return False


def consents_revoked_locked(uses: Iterable[VoiceUse]) -> str | None:
    """In the caller's transaction: the consents of `uses` read under a share lock (a revocation, which
    holds them for update, waits for the caller's commit, or committed before this read), and the id
    of a voice whose consent is revoked, if any."""
    uses = list(uses)
    ids = sorted({str(c) for use in uses for c in (use.consent_id, use.voice and use.voice.consent_id) if c})
    if not ids:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text, status FROM consents WHERE id = ANY(%s::uuid[]) ORDER BY id FOR SHARE", [ids])
        revoked = {pk for pk, state in cursor.fetchall() if state == ConsentStatus.REVOKED}
    return next((use.voice_id for use in uses
                 if {str(use.consent_id), str(use.voice and use.voice.consent_id)} & revoked), None)


def consent_get(*, user: User, consent_id: uuid.UUID | str) -> Consent:
    """One of the workspace's consents; 404 `consent_not_found` for another's or none."""
    consent = Consent.objects.filter(pk=consent_id, user=user).first()
    if consent is None:
        raise ConsentNotFound("No such consent.")
    return consent


def consent_revoke_token(consent: Consent) -> str:
    """The token of the link its speaker revokes the consent with (POST /consents/revoke): signed
    with the server's secret, naming the consent, valid as long as the consent exists."""
    return signing.dumps(str(consent.pk), salt=REVOKE_SALT)


def consent_by_revoke_token(token: str) -> Consent:
    """The consent a revocation token names; 404 `consent_not_found` for a token not signed here,
    altered, or of a consent since deleted (one answer for all)."""
    try:
        pk = uuid.UUID(str(signing.loads(token, salt=REVOKE_SALT)))
    except (signing.BadSignature, ValueError, TypeError):
        raise ConsentNotFound("No such consent.") from None
    consent = Consent.objects.filter(pk=pk).first()
    if consent is None:
        raise ConsentNotFound("No such consent.")
    return consent


def consent_revoke(*, consent_id: uuid.UUID | str, by: str, user: User | None = None,
                   member_id: uuid.UUID | None = None) -> tuple[Consent, int]:
    """Revoke a consent at once and for good: the voice made with it (or the faces a likeness consent
    covers) is refused from now on, and the waiting jobs that use it are canceled and refunded in the
    same transaction (the revocation handlers: jobs/receivers.py); a running one is failed when its
    outputs would be stored. `user`: the workspace whose consent it must be (404 `consent_not_found`
    otherwise); None for the speaker's signed link and staff. Revoking one already revoked changes nothing. Returns the
    consent and how many jobs were canceled."""
    with transaction.atomic():
        found = Consent.objects.select_for_update().filter(pk=consent_id)
        consent = (found.filter(user=user) if user is not None else found).first()
        if consent is None:
            raise ConsentNotFound("No such consent.")
        if consent.status == ConsentStatus.REVOKED:
            return consent, 0
        consent.status, consent.revoked_at = ConsentStatus.REVOKED, timezone.now()
        consent.revoked_by, consent.revoked_by_member = ConsentRevoker(by), member_id
        consent.save(update_fields=["status", "revoked_at", "revoked_by", "revoked_by_member"])
        voice_id = VoiceClone.objects.filter(consent=consent).values_list("pk", flat=True).first()
        canceled = consent_revoked(consent.user_id, consent.pk, voice_id)
    logger.info("consent %s revoked by %s: %d waiting jobs canceled", consent.pk, by, canceled)
    return consent, canceled
