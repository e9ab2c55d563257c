"""Files a job produced, stored as media of its project, and their removal when the job fails."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from auteur.core.errors import ApplicationError
from auteur.core.prepared import PreparedInsert, PreparedRead
from auteur.core.quotas import quota_check, quota_lock
from media.errors import StorageError
from media.models import MediaFile, MediaType, PendingObjectDeletion
from media.probing.facts import ProbeResult, content_sha256, probe_captions, probe_pcm_wav
from media.probing.sandbox import probe_isolated
from media.probing.service import probe_limits, save_thumbnail, stored_duration_ms
from media.selectors import media_bytes_used
from media.services.deletion import (
    PREFIX_MARK,
    media_delete_objects,
    schedule_object_deletion,
    schedule_public_deletion,
)
from media.services.gpu_outputs import StagedOutput, check_staged, media_take_staged
from media.services.keys import (
    MAX_FILENAME_LENGTH,
    media_key,
    media_prefix,
    normalize_content_type,
    object_keys,
    thumbnail_key_for,
)
from media.status import new_ready
from media.storage import get_storage

logger = logging.getLogger(__name__)

# A redelivered store step derives the same id, hence the same key: nothing is uploaded twice.
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1d0a52-5c43-4c0e-9d3b-3f1f4e0f8a11")
# How long a copy of another job's output waits for its row before the sweep deletes it: far
# longer than the transaction that inserts the row may run.
COPY_LEASE_SECONDS = 3600


# Every job that stores a file asks first whether an earlier delivery stored it, then inserts its
# row: built once per process (auteur.core.prepared). The (job, name) pair is unique.
_INSERT = PreparedInsert(MediaFile)
_OUTPUT = PreparedRead(lambda job_id, name: MediaFile.objects.filter(source_job_id=job_id, name=name),
                       job_id=uuid.UUID(int=1), name="\x00output name")


def media_create_output(
    *,
    project_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    name: str,
    type: str,
    mime_type: str,
    local_path: str | Path | None = None,
    staged: StagedOutput | None = None,
    generation: dict[str, Any] | None = None,
    derived_from: uuid.UUID | str | None = None,
    first_store: bool = False,
) -> MediaFile:
    """Store a file a job produced as a ``ready`` MediaFile of its project; idempotent.

    `generation`: every parameter that shaped the file (model, seed, steps, prompt...), kept in
    its metadata under "generation" beside what the probe read, so a result can be reproduced.
    `derived_from`: the input file the output is a version of (a compression's source).
    `local_path`: the file, which this call takes once it stores it (moved into the storage where
    it can be, else removed once stored); one found already stored is left to the caller.
    `staged`: instead, the object a GPU call PUT to its target (media.services.gpu_outputs),
    moved to the output's key first, then checked against what the call's result states and
    probed there (read in place from local storage, else through a scratch copy): its bytes
    never pass through this process's memory whole. A refused one is deleted (OutputRefused).

    One output per (job, name), by a unique constraint; the id is derived from both, so a
    redelivered store step finds the row (and uploads nothing), or, racing another delivery,
    writes the same bytes to the same key and loses the insert harmlessly. `first_store`: the
    caller knows no delivery stored the job's outputs before (it claimed the job in this step), so
    the row is not looked for first (a duplicate would still lose the insert, as in a race).
    """
    if type not in MediaType.values:
        raise ApplicationError(f"Unknown media type {type!r}.", code="invalid_media_type")
    existing: MediaFile | None = None if first_store else _OUTPUT.object(job_id=uuid.UUID(str(job_id)), name=name)
    if existing is not None:
        return existing
    media_id = output_media_id(job_id=job_id, name=name)
    key = media_key(project_id=project_id, media_id=media_id, filename=name)
    row = {"id": media_id, "project_id": project_id, "user_id": user_id, "name": name[:MAX_FILENAME_LENGTH],
           "type": type, "mime_type": normalize_content_type(mime_type) or "application/octet-stream",
           "storage_key": key, "derived_from_id": derived_from, "source_job_id": job_id}
    if staged is None:
        if local_path is None:
            raise ValueError("an output is a local file or a staged object")
        path = Path(local_path)
        media = _described(row, path, generation, sha256=content_sha256(path))
        try:
            get_storage().save_file(media.storage_key, path, media.mime_type)
        except BaseException:
            _forget_thumbnail(media)  # no row will point at it; the error to report is the store's
            raise
    else:
        # Leased before it is moved under the output's prefix: a store cut short (its time limit, a
        # killed worker) and never redelivered leaves no object there without a row for long.
        prefix = media_prefix(project_id=project_id, media_id=media_id)
        lease = PendingObjectDeletion.objects.create(
            key=prefix + PREFIX_MARK, due_at=timezone.now() + timedelta(seconds=COPY_LEASE_SECONDS), user_id=user_id,
            bytes=staged.size)
        try:
            # Its size first: an object larger than stated is refused before a byte is read.
            check_staged(staged, size=media_take_staged(staged, key))
            with get_storage().local_path(key) as path:
                sha256 = content_sha256(path)
                check_staged(staged, size=path.stat().st_size, sha256=sha256)
                media = _described(row, path, generation, sha256=sha256)
        except ApplicationError:
            # Refused: no row will name it, nor its thumbnail if one was made (under its prefix). A
            # store that failed on the way keeps it, for the step's next delivery to check again.
            with contextlib.suppress(Exception):
                media_delete_objects(keys=[], prefixes=[prefix])
            PendingObjectDeletion.objects.filter(pk=lease.pk).delete()
            raise
    try:
        # Inside a caller's transaction, a savepoint: a lost insert leaves that transaction whole.
        # Outside one, one statement committed by itself (no BEGIN, no COMMIT).
        with transaction.atomic() if transaction.get_connection().in_atomic_block else contextlib.nullcontext():
            _INSERT.run(media)
    except IntegrityError:
        existing = MediaFile.objects.filter(source_job_id=job_id, name=name).first()
        if existing is not None:
            if staged is not None:
                _release_leases(prefix)
            return existing
        # Not a duplicate (the project is gone, say): nothing refers to what we uploaded.
        media_delete_objects(keys=object_keys(media))
        raise
    if staged is not None:
        _release_leases(prefix)
    logger.info("media %s: stored output of job %s", media.pk, job_id, extra={"job_id": str(job_id)})
    return media


def _release_leases(prefix: str) -> None:
    """A row names the output's objects now: the leases its store's deliveries took on them go."""
    PendingObjectDeletion.objects.filter(key=prefix + PREFIX_MARK).delete()


def _described(row: dict[str, Any], path: Path, generation: dict[str, Any] | None, *, sha256: str) -> MediaFile:
    """The output's row (not saved) from what the probe reads of its file at `path`, with its
    thumbnail stored; ApplicationError `output_not_decodable` when the file is no usable media."""
    result = _probe_output(path, row["type"])
    if not result.ok:
        raise ApplicationError(
            f"The job produced an unusable file: {result.rejection_reason}.",
            code="output_not_decodable",
        )
    media = new_ready(
        **row,
        file_size_bytes=path.stat().st_size,
        content_sha256=sha256,
        duration_ms=stored_duration_ms(result),
        metadata={**result.metadata, **({"generation": generation} if generation else {})},
    )
    media.thumbnail_key = save_thumbnail(media=media, source=path, duration_ms=result.duration_ms)
    return media


def _forget_thumbnail(media: MediaFile) -> None:
    if media.thumbnail_key:
        with contextlib.suppress(Exception):
            media_delete_objects(keys=[media.thumbnail_key])


def output_media_id(*, job_id: uuid.UUID | str, name: str) -> uuid.UUID:
    """The id of job `job_id`'s output called `name`: the same for every delivery of its store."""
    return uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{job_id}/{name}")


@dataclass(frozen=True)
class OutputCopies:
    """Another job's output files copied as a job's own (media_copy_outputs): the objects are
    stored, the rows not yet (media_save_copies, in the caller's transaction)."""

    media: list[MediaFile]
    leases: list[int]  # PendingObjectDeletion rows that delete the copies unless the rows commit


def media_copy_outputs(
    *, sources: list[MediaFile], job_id: uuid.UUID, project_id: uuid.UUID, renamed: Callable[[str], str],
    derived_from: uuid.UUID | str | None = None,
) -> OutputCopies | None:
    """Copy `sources` (a job's output files) as job `job_id`'s outputs in `project_id`, named
    `renamed(source name)`: the objects now, server-side where the store can (S3's CopyObject),
    each under the key a stored output of that job and name has, a version of `derived_from` (the
    new job's input) where the job's outputs are versions of it. None if a source object is gone
    (deleted meanwhile): what was copied of them is deleted again.

    Call it only once nothing else can refuse the request the copies are for: a copy costs
    storage however briefly it lives. Each copy is leased first: a deletion of its prefix,
    committed and due in an hour, that `media_save_copies` removes in the transaction that
    inserts the rows. A transaction that rolls back, or a process that dies in between, leaves
    the lease, and the sweep deletes the copies; no object is ever left without a row. The lease
    counts the copies' bytes against the user's ``storage_bytes`` quota until the rows take over:
    copies that would not fit are refused (QuotaExceeded, 403) before a byte is copied.
    """
    storage = get_storage()
    copies = []
    for source in sources:
        name = renamed(source.name)
        media_id = output_media_id(job_id=job_id, name=name)
        copies.append(new_ready(
            id=media_id, project_id=project_id, user_id=source.user_id, name=name[:MAX_FILENAME_LENGTH],
            type=source.type, mime_type=source.mime_type,
            file_size_bytes=source.file_size_bytes,
            storage_key=media_key(project_id=project_id, media_id=media_id, filename=name),
            duration_ms=source.duration_ms, metadata=source.metadata, content_sha256=source.content_sha256,
            source_job_id=job_id, derived_from_id=derived_from,
        ))
    due = timezone.now() + timedelta(seconds=COPY_LEASE_SECONDS)
    with transaction.atomic():
        for user_id in {m.user_id for m in copies}:  # (one: a job's outputs are its user's)
            quota_lock(user_id=user_id)
            quota_check(name="storage_bytes", used=media_bytes_used(user_id=user_id),
                        adding=sum(m.file_size_bytes for m in copies if m.user_id == user_id))
        leases = PendingObjectDeletion.objects.bulk_create(
            PendingObjectDeletion(key=media_prefix(project_id=project_id, media_id=m.pk) + PREFIX_MARK, due_at=due,
                                  user_id=m.user_id, bytes=m.file_size_bytes)
            for m in copies
        )
    try:
        for source, copy in zip(sources, copies, strict=True):
            storage.copy(source.storage_key, copy.storage_key)
            if source.thumbnail_key:
                copy.thumbnail_key = thumbnail_key_for(copy)
                storage.copy(source.thumbnail_key, copy.thumbnail_key)
    except FileNotFoundError:
        # No job will have these copies: gone now rather than in an hour, their bytes with them
        # (should the store fail, the leases stay and the sweep does it).
        with contextlib.suppress(StorageError):
            media_delete_objects(keys=[], prefixes=[media_prefix(project_id=project_id, media_id=m.pk) for m in copies])
            PendingObjectDeletion.objects.filter(pk__in=[lease.pk for lease in leases]).delete()
        return None
    return OutputCopies(media=copies, leases=[lease.pk for lease in leases])


def media_save_copies(copies: OutputCopies) -> list[str]:
    """The copies' rows, and their leases gone: call it inside the transaction that makes them a
    job's. Their ids."""
    MediaFile.objects.bulk_create(copies.media)
    PendingObjectDeletion.objects.filter(pk__in=copies.leases).delete()
    return [str(m.pk) for m in copies.media]


def _probe_output(path: Path, type: str) -> ProbeResult:
    """What a job's file is. Every byte of it may have been crafted (by a taken-over GPU container),
    so FFmpeg's C parsers read it only in the sandbox. Two kinds are read here instead, by parsers
    that cannot be subverted that way: a subtitle file (text), and a plain PCM WAV, whose header a
    bounded pure-Python reader checks entirely (what TTS and audio generation write; it saves the
    sandbox's fork and PyAV's probe, about 15 ms of CPU per job). A WAV that reader does not
    account for entirely goes to the sandbox like everything else."""
    if type == MediaType.CAPTIONS:
        return probe_captions(path)
    if type == MediaType.AUDIO:
        result = probe_pcm_wav(path)
        if result is not None:
            return result
    return probe_isolated(path, type, limits=probe_limits())


@transaction.atomic
def media_delete_job_outputs(*, job_id: uuid.UUID | str) -> int:
    """Remove what a job stored before it failed (its refund must not leave it the outputs).

    Rows now, objects after commit (the same retried task as every deletion). Returns the count.
    Its own transaction (a savepoint inside a caller's): the rows are locked, and a worker that
    finds its job ended while storing calls it with no transaction open.
    """
    # Locked: a publication of one of them that records itself now waits, then finds the row gone.
    outputs = list(MediaFile.objects.select_for_update().filter(source_job_id=job_id))
    keys = [key for media in outputs for key in object_keys(media)]
    published = schedule_public_deletion(outputs)
    MediaFile.objects.filter(pk__in=[m.pk for m in outputs]).delete()
    schedule_object_deletion(keys, published)
    return len(outputs)
