"""Where a GPU call puts its large outputs, and what the worker checks before it keeps one.

A call's video or audio can be larger than any return path should carry (Modal caps a call's
return at 256 MiB, and inline bytes cross the worker's memory). So the spawn gives the call a
target per output: an object key of its own (``gpu-outputs/<job>/<random token>/<name>``) and a
URL signed for one PUT there, of at most the largest output accepted, in the content type the
output is written in. The call PUTs the file and names it in its result as
``{"uploaded": true, "key", "size_bytes", "sha256"}``.

That ref is the container's word, and the container may have been taken over by a crafted input.
The worker keeps the object only once (``staged_output`` then ``media_create_output``):

- the key is the target of this job and of this output name (never another user's object, never
  a file's key), and the content type is the one the target was signed for;
- the object is moved to the output's own key before anything reads it, so the URL, valid until
  it expires and impossible to revoke on S3, can no longer change what is checked;
- its size and SHA-256, read from the store, are the ones the ref states; then it is probed in
  the sandbox like any other output. Anything else fails the job ``invalid_result`` (refunded,
  as every failure) and leaves nothing of it.

An output may be larger than one PUT takes (5 GiB on S3 and R2): where the largest output
accepted is, the target also holds a multipart upload (`multipart`: its `upload_id`, `part_bytes`
and one URL per part, each for at most `part_bytes`, enough parts for the largest output). A call
whose file is larger than the single PUT takes PUTs it in parts of exactly `part_bytes` (the last
smaller) and names the upload in its ref; the worker completes the upload only if the store holds
parts 1 to n of exactly that size (the last at most), adding up to the size the ref states, then
checks the object as any other. An upload no call used is aborted with the target's folder.

Each target comes with a lease (a pending deletion of its folder, due once its URL has expired
and an hour more), written before the call starts: whatever the call PUTs and no store keeps
(the job failed, was canceled, or a PUT came late) is deleted then, whatever happens to the
processes in between.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from auteur.core.errors import ApplicationError
from media.models import PendingObjectDeletion
from media.services.deletion import PREFIX_MARK
from media.services.keys import STAGING_KEY, staging_folder
from media.storage import get_storage
from media.storage.base import PartsRefused

# A store runs within minutes of its call's end; the folder outlives the last URL by this much.
LEASE_MARGIN_SECONDS = 3600
# The largest object one PUT makes (S3, R2); a larger output goes in parts of OUTPUT_PART_BYTES.
SINGLE_PUT_MAX_BYTES = 5 * 1024**3
OUTPUT_PART_BYTES = 512 * 1024**2
UPLOAD_ID_MAX_CHARS = 1024


class OutputRefused(ApplicationError):
    """An uploaded output is not what its target was given for (the job fails `invalid_result`)."""

    code = "invalid_result"


@dataclass(frozen=True)
class StagedOutput:
    """An output a GPU call PUT to its target, as its result states it (checked by `staged_output`)."""

    key: str
    size: int
    sha256: str  # hexadecimal
    upload_id: str = ""  # a multipart target's upload, which the worker completes


def media_output_targets(
    *, job_id: uuid.UUID | str, user_id: uuid.UUID | str, outputs: Mapping[str, str], max_bytes: int,
    ttl_seconds: int,
) -> dict[str, dict[str, Any]]:
    """A target for each output (`{name: content type}`), valid `ttl_seconds`: where the call
    PUTs it (see the module docstring). Its lease is committed first."""
    folder = staging_folder(job_id=job_id, token=uuid.uuid4().hex)
    due_at = timezone.now() + timedelta(seconds=ttl_seconds + LEASE_MARGIN_SECONDS)
    PendingObjectDeletion.objects.create(key=folder + PREFIX_MARK, due_at=due_at, user_id=user_id)
    storage = get_storage().for_engines()  # the address the call reaches the store at
    targets: dict[str, dict[str, Any]] = {}
    for name, content_type in outputs.items():
        key = f"{folder}/{name}"
        single = min(max_bytes, SINGLE_PUT_MAX_BYTES)
        signed = storage.presign_put(key, content_type, single, exact=False, expires_in=ttl_seconds)
        targets[name] = {"key": key, "url": signed.url, "headers": dict(signed.headers), "max_bytes": single}
        if max_bytes > single:
            upload_id = storage.multipart_start(key, content_type, OUTPUT_PART_BYTES, checksums=False)
            parts = [{"number": number, "url": storage.presign_part_upto(key, upload_id, number, OUTPUT_PART_BYTES,
                                                                         expires_in=ttl_seconds).url}
                     for number in range(1, math.ceil(max_bytes / OUTPUT_PART_BYTES) + 1)]
            targets[name]["multipart"] = {"upload_id": upload_id, "part_bytes": OUTPUT_PART_BYTES, "parts": parts,
                                          "max_bytes": max_bytes}
    return targets


def staged_output(*, job_id: uuid.UUID | str, name: str, content_type: str, ref: Mapping[str, Any]) -> StagedOutput:
    """The object a checked `uploaded` ref names (gpu_tasks.results), if it is the target this
    job's call was given for output `name`, in the type the target was signed for."""
    found = STAGING_KEY.match(str(ref.get("key") or ""))
    if found is None or found["job"] != str(job_id) or found["name"] != name:
        raise OutputRefused(f"the GPU call's result was refused: output {name} names an object that is not its "
                            "target")
    if ref.get("content_type") != content_type:
        raise OutputRefused(f"the GPU call's result was refused: output {name} is not of the type its target takes")
    upload_id = ref.get("upload_id", "")
    if not isinstance(upload_id, str) or len(upload_id) > UPLOAD_ID_MAX_CHARS:
        raise OutputRefused(f"the GPU call's result was refused: output {name} names an upload that is not one")
    return StagedOutput(key=found.group(0), size=int(ref["size_bytes"]), sha256=str(ref["sha256"]),
                        upload_id=upload_id)


def _complete_parts(staged: StagedOutput) -> None:
    """Make the object of a multipart target from its parts, if they are what the call's result
    says: parts 1 to n, each OUTPUT_PART_BYTES but the last (at most that), of the stated size in
    all. An upload no longer open (completed by an earlier delivery, or never the target's: the
    store knows an upload id only with its key) is left to the checks that follow."""
    storage = get_storage()
    try:
        parts = storage.multipart_parts(staged.key, staged.upload_id)
    except FileNotFoundError:
        return
    sizes = [part.size for part in parts]
    try:
        if (not parts or [part.number for part in parts] != list(range(1, len(parts) + 1))
                or sum(sizes) != staged.size or any(size != OUTPUT_PART_BYTES for size in sizes[:-1])
                or not 0 < sizes[-1] <= OUTPUT_PART_BYTES):
            raise OutputRefused("the GPU call's result was refused: an uploaded output's parts are not the ones "
                                "it states")
        try:
            storage.multipart_complete(staged.key, staged.upload_id, parts)
        except FileNotFoundError:
            pass  # completed meanwhile by another delivery
        except PartsRefused as exc:  # a part PUT again since they were listed
            raise OutputRefused("the GPU call's result was refused: an uploaded output's parts changed while "
                                "they were checked") from exc
    except OutputRefused:
        with contextlib.suppress(FileNotFoundError):
            storage.multipart_abort(staged.key, staged.upload_id)  # its parts are not kept until the lease
        raise


def media_take_staged(staged: StagedOutput, key: str) -> int:
    """Move the staged object to `key`, where no URL writes; its size there. Moved already (by an
    earlier delivery of the store step) when `key` holds an object: that one is checked, never
    replaced by what a late PUT left at the target since. OutputRefused when neither holds one."""
    storage = get_storage()
    size = storage.head(key)
    if size is None and staged.upload_id:
        _complete_parts(staged)
    if size is None:
        with contextlib.suppress(FileNotFoundError):  # moved meanwhile by another delivery, or never uploaded
            storage.move(staged.key, key)
        size = storage.head(key)
    if size is None:
        raise OutputRefused("the GPU call's result was refused: an uploaded output is not in the store")
    return size


def check_staged(staged: StagedOutput, *, size: int, sha256: str | None = None) -> None:
    """OutputRefused unless the stored object has the size (and, given, the SHA-256) the call's
    result states."""
    if size != staged.size:
        raise OutputRefused(f"the GPU call's result was refused: an uploaded output has {size} bytes, "
                            f"not the {staged.size} it states")
    if sha256 is not None and sha256 != staged.sha256:
        raise OutputRefused("the GPU call's result was refused: an uploaded output's SHA-256 is not the one it "
                            "states")
