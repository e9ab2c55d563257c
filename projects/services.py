from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction

from auteur.core.quotas import quota_check, quota_lock
from auteur.users.models import User
from media.services.deletion import media_delete_project_objects
from projects.edl.services import edl_create, edl_delete
from projects.models import Project
from projects.selectors import project_library_get
from projects.signals import project_deleting

logger = logging.getLogger(__name__)

LIBRARY_NAME = "Library"

EDITABLE_FIELDS = (
    "name", "description", "resolution", "frame_rate", "thumbnail_url", "auto_transcribe", "transcript_to_edl",
)


@transaction.atomic
def project_create(
    *,
    user: User,
    name: str,
    description: str = "",
    resolution: str = "1920x1080",
    frame_rate: Decimal = Decimal("30.00"),
    thumbnail_url: str = "",
    auto_transcribe: bool = True,
    transcript_to_edl: bool = True,
    member_id: uuid.UUID | None = None,
) -> Project:
    """A new project and its empty timeline; QuotaExceeded past the user's ``projects`` quota.
    `member_id`: the person who makes it (Project.member_id)."""
    quota_lock(user_id=user.pk)
    # The Library is made for the user, on demand: it never counts against the quota.
    quota_check(name="projects", used=Project.objects.filter(user=user, is_library=False).count())
    return _create(Project(
        user=user,
        name=name,
        description=description,
        resolution=resolution,
        frame_rate=frame_rate,
        thumbnail_url=thumbnail_url,
        auto_transcribe=auto_transcribe,
        transcript_to_edl=transcript_to_edl,
        member_id=member_id,
    ))


@transaction.atomic
def project_library_get_or_create(*, user: User) -> Project:
    """The user's default "Library" project, created on first use.

    Under the user's row lock, so two first submissions at once make one Library: the second
    waits, then finds the first's (the unique constraint backs this up).
    """
    quota_lock(user_id=user.pk)
    library = project_library_get(user=user)
    return library if library is not None else _create(Project(user=user, name=LIBRARY_NAME, is_library=True,
                                                                       auto_transcribe=False))


def _create(project: Project) -> Project:
    project.full_clean()
    project.save()
    # The EDL lives in MongoDB, outside this transaction. Creating it first and failing the
    # row would leave an orphan document (harmless: its project never existed); the other order
    # could leave a project without a timeline, which edl_get would recreate empty anyway.
    project.edl_id = str(edl_create(project=project)["id"])
    project.save(update_fields=["edl_id"])
    return project


@transaction.atomic
def project_update(*, project: Project, data: dict[str, Any]) -> Project:
    changed = [field for field in EDITABLE_FIELDS if field in data and getattr(project, field) != data[field]]
    for field in changed:
        setattr(project, field, data[field])
    if changed:
        project.full_clean()
        project.save(update_fields=[*changed, "updated_at"])
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete a project with everything that hangs off it.

    In the transaction: unfinished jobs are cancelled and refunded (the jobs app's receiver),
    media rows go by cascade. After commit: storage objects are deleted by a retried task, and
    the EDL document here (the EDL store is reached only by API processes).
    """
    project_id, user_id = project.id, project.user_id
    project_deleting.send(sender=Project, project_id=project_id)
    media_delete_project_objects(project_id=project_id)
    project.delete()
    transaction.on_commit(lambda: _delete_edl_quietly(project_id, user_id))


def _delete_edl_quietly(project_id: uuid.UUID, user_id: uuid.UUID) -> None:
    try:
        edl_delete(project_id=project_id, user_id=user_id)
    except Exception:
        # The project is gone; its document is an orphan nobody can reach. Log it for clean-up
        # rather than fail a deletion the user already got confirmed.
        logger.exception("could not delete the EDL of deleted project %s", project_id)
