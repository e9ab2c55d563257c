"""Every write of a project's EDL (timeline) except undo/redo: create, replace whole, delete.

``settings.duration_ms`` is computed by the server on every write: the end of the last
non-deleted clip on any track (0 for an empty timeline). A value sent by the client is accepted
and ignored, so a client may send back what it read.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from projects.edl.documents import edl_limits, edl_output
from projects.edl.store import edl_collection, history_collection, project_key, store_errors
from projects.edl.validation import edl_validate
from projects.edl.versions import conflict, first_version, head_get, stack_push, version_commit
from projects.models import Project

logger = logging.getLogger(__name__)


def edl_create(*, project: Project) -> dict[str, Any]:
    """The project's timeline: one empty video and one empty audio track. Idempotent."""
    return edl_output(first_version(project=project))


def edl_replace(*, project: Project, expected_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Save the client's whole document over version ``expected_version``.

    409 ``edl_conflict`` (with ``current_version``) when the stored version is another one,
    413/422 when the document is too large or invalid; nothing is written in any of these cases.
    Server fields in ``data`` (project_id, user_id, version, created_at, updated_at, history)
    are ignored: they are what the client read. A save clears what could be redone.
    """
    head = head_get(project=project)
    if head.version != expected_version:
        raise conflict(head.version)
    content = edl_validate(project=project, data=data)
    bound = edl_limits().history
    undo = stack_push(head.undo, head.version, bound)
    return version_commit(project=project, head=head, content=content, undo=undo, redo=[])


def edl_delete(*, project_id: uuid.UUID | str) -> None:
    """The document and its history. Idempotent (called when a project is deleted)."""
    key = project_key(project_id)
    with store_errors():
        edl_collection().delete_many({"project_id": key})
        history_collection().delete_many({"project_id": key})
    logger.info("EDL deleted", extra={"project_id": key})
