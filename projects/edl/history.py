"""Undo and redo of a project's EDL (timeline): stepping along its stacks of versions.

The EDL holds two stacks of version numbers, ``undo_versions`` and ``redo_versions``, whose
content is kept in ``edl_history`` (``projects.edl.versions``). Undo and redo each write a NEW
version whose content is the older/newer state; a normal save clears the redo side. Both
stacks hold at most ``AUTEUR_EDL_HISTORY`` (N) versions, and N together (undo moves a version
from one stack to the other), so a project keeps at most N + 1 snapshots.
"""

from __future__ import annotations

from typing import Any

from projects.edl.documents import edl_limits
from projects.edl.store import history_collection, owned_by, store_errors
from projects.edl.versions import conflict, head_get, snapshot_unpack, stack_push, version_commit
from projects.errors import NothingToRedo, NothingToUndo
from projects.models import Project


def _step(project: Project, expected_version: int | None, *, back: bool) -> dict[str, Any]:
    head = head_get(project=project)
    if expected_version is not None and head.version != expected_version:
        raise conflict(head.version)
    owner = owned_by(project)
    stack = list(head.undo if back else head.redo)
    snapshot: dict[str, Any] | None = None
    with store_errors():
        while stack and snapshot is None:
            found = history_collection().find_one({**owner, "version": stack.pop()})
            snapshot = snapshot_unpack(found) if found else None
    if snapshot is None:
        if back:
            raise NothingToUndo("There is nothing to undo.", details={"current_version": head.version})
        raise NothingToRedo("There is nothing to redo.", details={"current_version": head.version})
    bound = edl_limits().history
    if back:
        undo, redo = stack, stack_push(head.redo, head.version, bound)
    else:
        undo, redo = stack_push(head.undo, head.version, bound), stack
    return version_commit(project=project, head=head, content=snapshot, undo=undo, redo=redo).output


def edl_undo(*, project: Project, expected_version: int | None = None) -> dict[str, Any]:
    """A new version with the content before the last change; 409 ``nothing_to_undo``.

    The restored content is not validated again: it was valid when saved. A media file deleted
    since then is reported by whatever uses the timeline (a render), and the next save names it.
    """
    return _step(project, expected_version, back=True)


def edl_redo(*, project: Project, expected_version: int | None = None) -> dict[str, Any]:
    """A new version with the content the last undo took back; 409 ``nothing_to_redo``."""
    return _step(project, expected_version, back=False)
