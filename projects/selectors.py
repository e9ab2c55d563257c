from __future__ import annotations

import uuid

from django.db.models import QuerySet

from auteur.users.models import User
from projects.errors import ProjectNotFound
from projects.models import Project


def project_list(*, user: User) -> QuerySet[Project]:
    return Project.objects.filter(user=user).order_by("-updated_at", "-id")


def project_library_get(*, user: User) -> Project | None:
    """The user's default "Library" project, if it was made yet."""
    return Project.objects.filter(user=user, is_library=True).first()


def project_get(*, user: User, project_id: uuid.UUID | str) -> Project:
    """The user's project, or 404: another user's project is indistinguishable from none."""
    try:
        return Project.objects.get(pk=uuid.UUID(str(project_id)), user=user)
    except (Project.DoesNotExist, ValueError):
        raise ProjectNotFound("No such project.") from None
