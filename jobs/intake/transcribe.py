"""Automatic transcription: a newly ready audio or video file of a project that asks for it."""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from auteur.users.models import ApiKey
from auteur.users.roles import scope_allows
from credits.errors import InsufficientCredits, SpendCapReached
from jobs.errors import FeatureUnavailable, MediaDurationUnknown
from jobs.inputs import SubmissionOptions
from jobs.intake.submission import job_submit, request_hash
from jobs.models import AUTO_TRANSCRIBE_KEY_PREFIX, IdempotencyRecord, Job
from jobs.selectors.requests import job_request_get
from jobs.specs import JobType, job_spec
from media.models import MediaFile, MediaType

logger = logging.getLogger(__name__)



def job_auto_transcribe(*, media_id: uuid.UUID | str) -> Job | None:
    """Start the transcription of a newly ready file when its project asks for it; idempotent.

    The job is what the API would make of `{project_id, media_id}`. One automatic transcription
    per file (a second signal, or a sweep calling again, finds it). When the job cannot be made
    (credits or the uploader's budget short, the backend cannot transcribe, the file's length
    unknown) nothing is charged and the reason is recorded on the file.
    """
    media = MediaFile.objects.select_related("project", "user").filter(pk=media_id).first()
    if media is None or media.type not in (MediaType.AUDIO, MediaType.VIDEO) or not media.project.auto_transcribe:
        return None
    key = f"{AUTO_TRANSCRIBE_KEY_PREFIX}{media.pk}"
    existing = IdempotencyRecord.objects.filter(user=media.user, key=key).select_related("job").first()
    if existing is not None:
        return existing.job
    scopes = None
    if media.member_id is not None:
        uploader = ApiKey.objects.filter(pk=media.member_id, user_id=media.user_id)
        scopes = uploader.values_list("scopes", flat=True).first()
    if scopes is not None and not scope_allows(frozenset(scopes), "jobs.run"):
        # Uploaded with an API key that may not run jobs: its upload spends nothing either.
        _skipped(media, "permission_denied", "The file was uploaded with an API key without the jobs:write scope.")
        return None
    spec = job_spec(JobType.TRANSCRIPTION)
    body = {"project_id": str(media.project_id), "media_id": str(media.pk)}
    data = spec.input(data=body)
    data.is_valid(raise_exception=True)
    # The work alone, as the API keeps it: the same file transcribed by a client later is one cache key.
    fields = dict(data.validated_data)
    options = SubmissionOptions.pop(fields)
    try:
        with transaction.atomic():
            request = job_request_get(user=media.user, spec=spec, data=fields)
            # On behalf of whoever uploaded the file (a team workspace's member): its charge names them.
            job, _ = job_submit(
                user=media.user, spec=spec, request=request, idempotency_key=key,
                body_hash=request_hash(spec.type, body), scheduling=options.scheduling, use_cache=options.use_cache,
                member_id=media.member_id,
            )
    except (InsufficientCredits, SpendCapReached, FeatureUnavailable, MediaDurationUnknown) as exc:
        # The owner reads the media's metadata: it gets what a client may be told, not an operator's hint;
        # and every member who sees the file reads it: a member's budget is not told there.
        reason, _details = exc.public()
        if isinstance(exc, SpendCapReached):
            reason = f"A spend cap ({exc.details.get('cap')}) of whoever uploaded the file does not cover it."
        _skipped(media, exc.code, reason)
        return None
    return job


def _skipped(media: MediaFile, code: str, reason: str) -> None:
    metadata = {**media.metadata, "auto_transcribe": {"skipped": code, "reason": reason}}
    MediaFile.objects.filter(pk=media.pk).update(metadata=metadata)
    logger.info("automatic transcription of media %s skipped: %s", media.pk, code)
