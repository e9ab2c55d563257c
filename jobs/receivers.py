"""How the jobs app hooks into projects and media, which cannot import it (DESIGN.md layering)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction

from jobs import services

logger = logging.getLogger(__name__)


def on_project_deleting(sender: Any, project_id: uuid.UUID, **kwargs: Any) -> None:
    """Inside the deleting transaction: cancel and refund the project's unfinished jobs."""
    services.jobs_cancel_for_project(project_id=project_id)


def on_media_ready(sender: Any, media_id: uuid.UUID, **kwargs: Any) -> None:
    """Automatic transcription (CodeEndelea): a ready audio/video file of a project with
    `auto_transcribe` starts a transcription job, charged as usual; when the credits do not
    cover it, nothing is charged and the skip is recorded on the file's metadata."""
    with transaction.atomic():
        services.job_auto_transcribe(media_id=media_id)
