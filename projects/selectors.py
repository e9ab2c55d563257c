from __future__ import annotations

import uuid

from django.db.models import QuerySet

from auteur.core.prepared import PreparedRead
from auteur.users.models import User
from projects.errors import ProjectNotFound
from projects.models import Project


def project_list(*, user: User) -> QuerySet[Project]:
    return Project.objects.filter(user=user).order_by("-updated_at", "-id")


def project_library_get(*, user: User) -> Project | None:
    """The user's default "Library" project, if it was made yet."""
    return Project.objects.filter(user=user, is_library=True).first()


# Every request about a project reads it: built once per process (auteur.core.prepared).
_OWNED = PreparedRead(lambda pk, user_id: Project.objects.filter(pk=pk, user_id=user_id),
                      pk=uuid.UUID(int=1), user_id=uuid.UUID(int=2))


def project_get(*, user: User, project_id: uuid.UUID | str) -> Project:
    """The user's project, or 404: another user's project is indistinguishable from none."""
    try:
        pk = uuid.UUID(str(project_id))
    except ValueError:
        raise ProjectNotFound("No such project.") from None
    project: Project | None = _OWNED.object(pk=pk, user_id=user.pk)
    if project is None:
        raise ProjectNotFound("No such project.")
    return project
