"""How the jobs app hooks into projects and media: they import no app above them, so they send
signals and call registered checks, which the jobs app connects here."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction

from auteur.core.publishing import send
from jobs import task_names
from jobs.events.stream import comment_stream_append
from jobs.intake.media_screening import PICTURE_TYPES
from jobs.intake.transcribe import job_auto_transcribe
from jobs.life.bulk import jobs_cancel_for_consent
from jobs.life.status import jobs_cancel_for_project
from jobs.selectors.jobs import job_media_in_use
from media.models import MediaFile

if TYPE_CHECKING:
    from projects.models import Comment

logger = logging.getLogger(__name__)


def on_project_deleting(sender: Any, project_id: uuid.UUID, **kwargs: Any) -> None:
    """Inside the deleting transaction: cancel and refund the project's unfinished jobs."""
    jobs_cancel_for_project(project_id=project_id)


def on_media_ready(sender: Any, media_id: uuid.UUID, **kwargs: Any) -> None:
    """Automatic transcription: a ready audio/video file of a project with
    `auto_transcribe` starts a transcription job, charged as usual; when the credits do not
    cover it, nothing is charged and the skip is recorded on the file's metadata. And an image or
    video has its pictures screened for the content policy (jobs.intake.media_screening)."""
    with transaction.atomic():
        job_auto_transcribe(media_id=media_id)
    # A picture's verdict decided now, on the media queue, rather than by the first request naming it.
    if MediaFile.objects.filter(pk=media_id, type__in=PICTURE_TYPES).exists():
        send(task_names.MEDIA_VERDICT, (str(media_id),), what="an upload's screening", resend=False)


def on_comment_changed(sender: Any, comment: Comment, change: str, member_id: uuid.UUID, **kwargs: Any) -> None:
    """Once a comment's change committed: on the workspace's event stream, for the members who follow
    its comments."""
    comment_stream_append(comment=comment, change=change, member_id=member_id)


def on_consent_revoked(user_id: uuid.UUID, consent_id: uuid.UUID, voice_id: uuid.UUID | None) -> int:
    """Inside the revoking transaction: cancel and refund the waiting jobs that use the consent's voice."""
    return jobs_cancel_for_consent(user_id=user_id, consent_id=consent_id, voice_id=voice_id)


def media_in_use(media: MediaFile) -> str | None:
    """The in-use check of media deletion: why the file cannot go, if an unfinished job reads it."""
    return job_media_in_use(media=media)
