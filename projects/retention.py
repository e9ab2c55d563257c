"""What the projects app prunes (auteur/core/retention.py runs it): storage and EDL documents left
behind by deleted projects.

Deleting a project removes its media rows by cascade, in its transaction, and its objects
(``projects/<id>/``) after commit through ``media.delete_objects`` (then ``media.sweep``, when
its retries are spent). Objects can still land after the deletion, from a job's store step that
was already uploading, or have been left by a deletion before that hand-over. This sweep lists
the project folders in storage, ``batch_size`` at a time, and deletes every one whose project no
longer exists. A project's row is committed before anything can write under its folder, so a
folder without a row is never a project still being made.

A project's EDL document and its history (MongoDB) are deleted after the project's commit, and
only logged when that fails (MongoDB unreachable, a process that died in between): the second
sweep walks both collections, ``batch_size`` documents at a time, and deletes those whose project
no longer exists. The document is written inside the transaction that creates its project, so a
document younger than EDL_ORPHAN_GRACE is left alone: its project may not be committed yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from pymongo.collection import Collection

from auteur.core.retention import Sweep, SweepContext, SweepResult
from media.services.deletion import media_delete_objects
from media.storage import get_storage
from projects.edl.store import edl_collection, history_collection, store_errors
from projects.models import Project

PROJECTS_FOLDER = "projects"


def _project_folders() -> Iterator[uuid.UUID]:
    for name in get_storage().list_folders(PROJECTS_FOLDER):
        try:
            yield uuid.UUID(name)
        except ValueError:
            continue  # not a project's folder: never ours to delete


def deleted_project_objects_sweep(ctx: SweepContext) -> SweepResult:
    folders = _project_folders()
    orphans = objects = batches = 0
    while batch := list(islice(folders, ctx.batch_size)):
        batches += 1
        existing = set(Project.objects.filter(pk__in=batch).values_list("pk", flat=True))
        gone = [f"{PROJECTS_FOLDER}/{project_id}" for project_id in batch if project_id not in existing]
        orphans += len(gone)
        if gone and not ctx.dry_run:
            objects += media_delete_objects(keys=(), prefixes=gone)
        if ctx.out_of_time():
            break
    details = {} if ctx.dry_run else {"objects": objects}
    return SweepResult("deleted_project_objects", orphans, batches, ctx.dry_run, details=details)


# Far longer than any transaction that creates a project (its EDL document is written inside it).
# The rule's text in SWEEPS says it too.
EDL_ORPHAN_GRACE = timedelta(hours=1)


def _project_id(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None  # not a project's id: never ours to judge


def _orphans(collection: Collection[dict[str, Any]], ctx: SweepContext, made_before: datetime) -> tuple[int, int]:
    """Walk ``collection`` by ``_id``, one batch per find, and delete (unless a dry run) each
    document of a project that no longer exists, made before ``made_before``. Deletes by ``_id``,
    so a document written since the batch was read is never taken with it.
    Returns (documents deleted or due, batches)."""
    found = batches = 0
    last: Any = None
    while True:
        query = {} if last is None else {"_id": {"$gt": last}}
        with store_errors():
            docs = list(collection.find(query, {"project_id": 1, "created_at": 1}).sort("_id", 1).limit(ctx.batch_size))
        if not docs:
            break
        batches += 1
        last = docs[-1]["_id"]
        owners = {doc["_id"]: _project_id(doc.get("project_id")) for doc in docs}
        live = set(Project.objects.filter(pk__in={p for p in owners.values() if p}).values_list("pk", flat=True))
        gone = [
            doc["_id"] for doc in docs
            if owners[doc["_id"]] not in (None, *live)
            and isinstance(doc.get("created_at"), datetime) and doc["created_at"] < made_before
        ]
        found += len(gone)
        if gone and not ctx.dry_run:
            with store_errors():
                collection.delete_many({"_id": {"$in": gone}})
        if len(docs) < ctx.batch_size or ctx.out_of_time():
            break
    return found, batches


def deleted_project_edls_sweep(ctx: SweepContext) -> SweepResult:
    made_before = ctx.now - EDL_ORPHAN_GRACE
    edls, edl_batches = _orphans(edl_collection(), ctx, made_before)
    history, history_batches = (0, 0) if ctx.out_of_time() else _orphans(history_collection(), ctx, made_before)
    return SweepResult("deleted_project_edls", edls + history, edl_batches + history_batches, ctx.dry_run,
                       details={"edl": edls, "history": history})


SWEEPS = [
    Sweep("deleted_project_objects", "projects.retention.deleted_project_objects",
          "storage folders of projects that no longer exist", deleted_project_objects_sweep),
    Sweep("deleted_project_edls", "projects.retention.deleted_project_edls",
          "EDL documents and history of projects that no longer exist (written over an hour ago)",
          deleted_project_edls_sweep),
]
