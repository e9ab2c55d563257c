"""Automatic transcription: a newly ready audio or video file of a project that asks for it, and
the one job that does that work for a client who then asks for it too."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.db import IntegrityError, transaction

from auteur.users.models import ApiKey, User
from auteur.users.roles import scope_allows
from credits.errors import InsufficientCredits, SpendCapReached
from jobs.errors import FeatureUnavailable, MediaDurationUnknown
from jobs.inputs import SubmissionOptions, WebhookRequest
from jobs.intake.submission import job_submit, request_hash
from jobs.models import ACTIVE_STATUSES, AUTO_TRANSCRIBE_KEY_PREFIX, IdempotencyRecord, Job, JobStatus
from jobs.selectors.requests import RequestObjects, job_request_get
from jobs.specs import JobSpec, JobType, job_spec
from media.models import MediaFile, MediaStatus, MediaType
from webhooks.models import JobWebhook
from webhooks.services import job_webhook_create

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
    body = _auto_body(media)
    fields, options = _auto_fields(body)
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


def _auto_body(media: MediaFile) -> dict[str, str]:
    """The body the automatic transcription of `media` is (what the API would take for it)."""
    return {"project_id": str(media.project_id), "media_id": str(media.pk)}


def _auto_fields(body: dict[str, str]) -> tuple[dict[str, Any], SubmissionOptions]:
    """The automatic transcription's validated fields and options. The work alone, as the API
    keeps it: the same file transcribed by a client later is one cache key."""
    data = job_spec(JobType.TRANSCRIPTION).input(data=body)
    data.is_valid(raise_exception=True)
    fields = dict(data.validated_data)
    return fields, SubmissionOptions.pop(fields)


# What an automatic transcription that does the work may be in: to come, under way or done.
_DOING_THE_WORK = (*ACTIVE_STATUSES, JobStatus.COMPLETED)


def _work(params: dict[str, Any]) -> Any:
    """A job's work as a request names it: its parameters less the quantities priced from them, in
    JSON's terms (ids as strings), for comparing two requests."""
    return json.loads(json.dumps({k: v for k, v in params.items() if k not in ("_quantities", "project_id")},
                                 sort_keys=True, default=str))


def transcription_already_asked(*, user: User, spec: JobSpec, objects: RequestObjects, member_id: uuid.UUID,
                                webhook: WebhookRequest | None = None) -> Job | None:
    """The automatic transcription that does the work this transcription request asks for (the
    same file, the same options), pending, running or done: the request's answer, charged nothing
    more. One job for one piece of work: a client that follows its upload with a transcription
    request, as the documented flow does, is not charged twice.

    A file of a project that transcribes its uploads, ready, whose automatic transcription has not
    been made yet nor skipped (its signal comes just after the file is ready, or was lost): it is
    made here, as the signal would make it (idempotent on its key), and answers the request. A
    request that names a webhook gets it on that job while it runs and has none, if it comes from
    the job's own submitter (a job's deliveries show what its submitter may see: another member's
    webhook on it could carry a balance that member may not read); otherwise the request is not
    answered with it. None: the request is submitted as any other."""
    media = objects.media.get("media_id")
    if spec.type != JobType.TRANSCRIPTION or media is None or objects.project is None:
        return None
    wanted = _work(objects.params)
    record = IdempotencyRecord.objects.filter(user=user, key=f"{AUTO_TRANSCRIBE_KEY_PREFIX}{media.pk}").first()
    job = None if record is None else Job.objects.filter(pk=record.job_id).first()
    # Made here only where the signal has not answered yet: a file whose automatic transcription was
    # skipped (its uploader's budget, a key that may not run jobs) is not charged to its uploader
    # because someone else asked.
    if (job is None and record is None and objects.project.auto_transcribe and media.status == MediaStatus.READY
            and "auto_transcribe" not in (media.metadata or {})
            and wanted == _work(_auto_fields(_auto_body(media))[0])):
        job = job_auto_transcribe(media_id=media.pk)
    if job is None or job.status not in _DOING_THE_WORK or _work(job.input_params) != wanted:
        return None
    if webhook is not None and job.status != JobStatus.COMPLETED and (
            (job.member_id or user.pk) != member_id or not _webhook_added(job, user, webhook)):
        return None
    return job


def _webhook_added(job: Job, user: User, webhook: WebhookRequest) -> bool:
    """Whether the request's webhook is now the job's (a job has at most one)."""
    try:
        with transaction.atomic():
            job_webhook_create(job_id=job.pk, owner=user, url=webhook.url, event_types=webhook.events)
        return True
    except IntegrityError:
        return JobWebhook.objects.filter(job_id=job.pk, url=webhook.url).exists()
