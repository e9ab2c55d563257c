"""What the projects app prunes (auteur/retention.py runs it): storage left behind by deleted
projects.

Deleting a project removes its media rows by cascade, in its transaction, and its objects
(``projects/<id>/``) after commit through ``media.delete_objects`` (then ``media.sweep``, when
its retries are spent). Objects can still land after the deletion, from a job's store step that
was already uploading, or have been left by a deletion before that hand-over. This sweep lists
the project folders in storage, ``batch_size`` at a time, and deletes every one whose project no
longer exists. A project's row is committed before anything can write under its folder, so a
folder without a row is never a project still being made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from itertools import islice

from auteur.retention import Sweep, SweepContext, SweepResult
from media.services.deletion import media_delete_objects
from media.storage import get_storage
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


SWEEPS = [
    Sweep("deleted_project_objects", "projects.retention.deleted_project_objects",
          "storage folders of projects that no longer exist", deleted_project_objects_sweep),
]
