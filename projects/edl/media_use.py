"""Which projects' timelines play a media file: one lookup on the ``media_ids`` index.

Every write of an ``edl`` document stores ``media_ids``, the media files its non-deleted clips
play (projects.edl.documents.media_ids_of), and the collection has an index on that field
(multikey on MongoDB: one entry per id in the array). Deleting a media file asks this module,
through the in-use check registered in ProjectsConfig.ready (media/hooks.py), and is refused with
409 ``media_in_use`` naming the projects while a timeline plays it. A deleted clip, or a transcript
segment transcribed from the file, does not hold it: neither is rendered from it.

A save and a deletion cannot pass each other: a save reads the media rows of its clips FOR SHARE
and keeps that lock until its document is written (projects.edl.services), and the deletion checks
here while it holds the row FOR UPDATE (media.services.deletion). Whichever locks first wins: the
deletion then sees the saved ``media_ids``, or the save finds no such file (422).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from projects.edl.store import edl_collection, store_errors
from projects.models import Project

if TYPE_CHECKING:
    from media.models import MediaFile

# The index the lookup runs on (declared with the EDL document's indexes, created at connect).
MEDIA_IDS_FIELD = "media_ids"
# A file plays in its own project's timeline only (validation refuses another project's file), so
# more than a few documents naming one file means data from elsewhere: the reason names these.
NAMED_AT_MOST = 20


def media_use_filter(media_id: uuid.UUID | str) -> dict[str, Any]:
    """The query of the timelines that play ``media_id``. ``$in`` of one value is how MongoDB
    matches an element of an array field (and runs on its multikey index); the embedded server
    matches an array field's elements with ``$in`` only, not with plain equality."""
    return {MEDIA_IDS_FIELD: {"$in": [str(media_id)]}}


def edl_projects_using_media(*, media_id: uuid.UUID | str, limit: int = NAMED_AT_MOST) -> list[str]:
    """The ids of the projects whose timeline plays ``media_id`` (at most ``limit``), sorted.
    503 ``edl_unavailable`` when the store is unreachable: the caller must not take that for "none"."""
    with store_errors():
        found = edl_collection().find(media_use_filter(media_id), {"project_id": 1, "_id": 0}).limit(limit)
        return sorted(str(doc["project_id"]) for doc in found)


def media_used_by_timelines(media: MediaFile) -> str | None:
    """The in-use check of media deletion (media/hooks.py): which projects' timelines play it."""
    project_ids = edl_projects_using_media(media_id=media.pk)
    if not project_ids:
        return None
    names = {str(pk): name for pk, name in Project.objects.filter(pk__in=project_ids).values_list("pk", "name")}
    named = ", ".join(f"{names[pid]!r} ({pid})" if pid in names else pid for pid in project_ids)
    return f"the timeline of project {named} plays it" if len(project_ids) == 1 else \
        f"the timelines of projects {named} play it"
