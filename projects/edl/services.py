"""Every write of a project's EDL (timeline) except undo/redo: create, replace whole, delete.

``settings.duration_ms`` is computed by the server on every write: the end of the last
non-deleted clip on any track (0 for an empty timeline). A value sent by the client is accepted
and ignored, so a client may send back what it read.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction

from auteur.core.collector import collector_paused
from projects.edl.documents import edl_limits, edl_output
from projects.edl.selectors import edl_get
from projects.edl.store import edl_collection, history_collection, owned, project_key, store_errors
from projects.edl.validation import edl_validate
from projects.edl.versions import (
    Committed,
    Head,
    HeadStale,
    conflict,
    first_version,
    head_forget,
    head_get,
    head_remembered,
    stack_push,
    version_commit,
)
from projects.errors import EdlConflict, EdlInvalid
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
    return _replace_atomic(project, expected_version, data, None).output


def edl_replace_json(
    *, project: Project, expected_version: int, data: dict[str, Any], render: Callable[[dict[str, Any]], bytes]
) -> tuple[int, bytes]:
    """(version, edl_replace's answer rendered by ``render``), rendered while the save's history
    snapshot is being written."""
    output, body = _replace_atomic(project, expected_version, data, render)
    assert body is not None
    return int(output["version"]), body


def _replace_atomic(project: Project, expected_version: int, data: dict[str, Any],
                    render: Callable[[dict[str, Any]], bytes] | None) -> Committed:
    # One transaction from the validation's read of the clips' media rows (FOR SHARE) until the
    # document is written: a media file's deletion, which locks its row FOR UPDATE and then looks
    # for timelines that play it, either waits for this save or is seen by it (media_use.py).
    with collector_paused(), transaction.atomic():  # collector: bounded by the limits (auteur/core/collector.py)
        return _replace(project, expected_version, data, render)


def _replace(project: Project, expected_version: int, data: dict[str, Any],
             render: Callable[[dict[str, Any]], bytes] | None) -> Committed:
    head = head_remembered(project=project)
    if head is None or head.version != expected_version:
        head = _current_head(project, expected_version)
    try:
        content = edl_validate(project=project, data=data)
    except EdlInvalid:
        if head.remembered:  # a save over a stale version is a conflict first, as when read
            _current_head(project, expected_version)
        raise
    bound = edl_limits().history
    try:
        return version_commit(project=project, head=head, content=content,
                              undo=stack_push(head.undo, head.version, bound), redo=[], render=render)
    except HeadStale:
        head = _current_head(project, expected_version)
        return version_commit(project=project, head=head, content=content,
                              undo=stack_push(head.undo, head.version, bound), redo=[], render=render)


def _current_head(project: Project, expected_version: int) -> Head:
    """The stored head; 409 ``edl_conflict`` when it is not at ``expected_version``."""
    head = head_get(project=project)
    if head.version != expected_version:
        raise conflict(head.version)
    return head


# How often a server-side edit reads the timeline again after a concurrent save: each conflict
# means someone saved in the few milliseconds between our read and write.
EDIT_ATTEMPTS = 5


def edl_edit(
    *,
    project: Project,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    expected_version: int | None = None,
    attempts: int = EDIT_ATTEMPTS,
) -> dict[str, Any] | None:
    """A server-side edit of the timeline, saved as a client's save is (one undo step).

    ``change`` gets the current document (as GET shows it; its own copy) and returns the document
    to save, or None when there is nothing to change (then nothing is written and None returned).
    With ``expected_version``, a timeline saved since is 409 ``edl_conflict``, as for a client.
    Without it, a concurrent save makes the edit start over from the newer document, at most
    ``attempts`` times, then 409: another writer's save is never overwritten.
    """
    for attempt in range(attempts):
        doc = edl_get(project=project)
        if expected_version is not None and doc["version"] != expected_version:
            raise conflict(doc["version"])
        changed = change(doc)
        if changed is None:
            return None
        try:
            return edl_replace(project=project, expected_version=doc["version"], data=changed)
        except EdlConflict:
            if expected_version is not None or attempt == attempts - 1:
                raise
            logger.info("EDL edit retried after a concurrent save", extra={"project_id": project_key(project.pk)})
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


def edl_delete(*, project_id: uuid.UUID | str, user_id: uuid.UUID | str) -> None:
    """The document and its history. Idempotent (called when a project is deleted)."""
    owner = owned(project_id, user_id)
    with store_errors():
        edl_collection().delete_many(owner)
        history_collection().delete_many(owner)
    head_forget(owner)
    logger.info("EDL deleted", extra={"project_id": owner["project_id"]})
