"""How an EDL document is written: in one write, and only over the version the writer read.

Concurrency: each write is one pymongo write filtered on ``{_id, project_id, user_id, version}``
that bumps the version; a client that saved from a stale version gets 409 ``edl_conflict`` and
nothing is written. The write replaces the whole document (``replace_one``), or, where the server
applies numeric-index paths and the writer knows what the stored version holds, ``$set``s only the
parts that changed (``projects.edl.partial``): the stored document is the same either way.

Snapshots: the content of every version is also kept in ``edl_history`` (its settings, and its
tracks and transcript packed: ``snapshot_put``/``snapshot_unpack``),
written right after the version itself, so that the state a save supersedes is already there for
undo/redo (``projects.edl.history``).
The EDL holds two small stacks of version numbers, ``undo_versions`` and ``redo_versions``,
which change in the same atomic replace as the content; after each write the snapshots that
neither stack nor the current version refers to are deleted.

The head a write needs (the document's id, version, creation time and stacks) is remembered in
the cache after each write, so that a save over the version it just read does not read the
stored document first. It is only a guess: the guarded replace matches only the document with
that id at that version, whose stacks and creation time are exactly those remembered (a
document writes each version once), and any miss is retried on the stored head. A stale or lost
entry costs a read, never a wrong write.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import bson
from django.core.cache import cache
from pymongo.errors import DuplicateKeyError
from redis.exceptions import RedisError

from projects.edl.documents import PACKED, content_pack, edl_output, now, stored_content, stored_form
from projects.edl.partial import ContentDigest, content_digest, content_set, numeric_paths_applied
from projects.edl.store import edl_collection, history_collection, owned_by, store_errors
from projects.errors import EdlConflict, EdlUnavailable
from projects.models import Project, parse_resolution

logger = logging.getLogger(__name__)

DEFAULT_RESOLUTION = (1920, 1080)
HEAD_CACHE_SECONDS = 3600


def conflict(current_version: int | None) -> EdlConflict:
    return EdlConflict(
        "The timeline was changed since you loaded it. Reload it and apply your change again.",
        details={"current_version": current_version},
    )


def _new_document(project: Project) -> dict[str, Any]:
    try:
        width, height = parse_resolution(project.resolution)
    except ValueError:
        width, height = DEFAULT_RESOLUTION
    created = now()
    return {
        **owned_by(project),
        "version": 1,
        "created_at": created,
        "updated_at": created,
        "settings": {
            "resolution": {"width": width, "height": height},
            "frame_rate": float(project.frame_rate),
            "duration_ms": 0,
        },
        "tracks": [
            {"id": str(uuid.uuid4()), "type": "video", "name": "Video 1", "clips": []},
            {"id": str(uuid.uuid4()), "type": "audio", "name": "Audio 1", "clips": []},
        ],
        "transcript": {"generated_at": None, "segments": []},
        "undo_versions": [],
        "redo_versions": [],
    }


def first_version(*, project: Project) -> dict[str, Any]:
    """The stored document (its content readable), after writing version 1 (one empty video and
    audio track) if there is none."""
    owner = owned_by(project)
    with store_errors():
        existing = edl_collection().find_one(owner)
        if existing is not None:
            return stored_content(existing)
        doc = _new_document(project)
        try:
            stored = stored_form(doc)
            edl_collection().insert_one(stored)  # adds "_id" to stored
            doc["_id"] = stored["_id"]
        except DuplicateKeyError:
            # Created by a concurrent request between our read and insert: that one is the EDL.
            existing = edl_collection().find_one(owner)
            # None: deleted since (the project is being deleted), or the project id is another
            # user's, whose document this one may neither read nor replace.
            if existing is None:
                raise conflict(None) from None
            return stored_content(existing)
        snapshot_put(owner=owner, version=1, content=doc)
    logger.info("EDL created", extra={"project_id": owner["project_id"]})
    return doc


@dataclass(frozen=True)
class Head:
    """What a write needs of the current document, without its (large) content."""

    id: Any  # the document's _id
    version: int
    created_at: datetime
    undo: list[int]
    redo: list[int]
    remembered: bool = False  # from the cache, not read from the store: a guess (see above)
    # What this version's content holds, when its writer remembered it (projects.edl.partial).
    digest: ContentDigest | None = None


class HeadStale(Exception):
    """A write guarded by a remembered head matched nothing: read the stored head and retry."""


def _head_key(owner: dict[str, str]) -> str:
    return f"edl-head:{owner['project_id']}:{owner['user_id']}"


def head_remembered(*, project: Project) -> Head | None:
    """The head the last write of this EDL left in the cache, if any (None when Redis fails)."""
    try:
        raw = cache.get(_head_key(owned_by(project)))
    except RedisError as exc:
        logger.warning("EDL head not read from the cache (%s)", type(exc).__name__)
        return None
    if not isinstance(raw, dict):
        return None
    digest = raw.get("digest")
    return Head(id=raw["id"], version=raw["version"], created_at=raw["created_at"], undo=list(raw["undo"]),
                redo=list(raw["redo"]), remembered=True,
                digest=digest if isinstance(digest, ContentDigest) else None)


def _head_remember(owner: dict[str, str], head: Head) -> None:
    entry = {"id": head.id, "version": head.version, "created_at": head.created_at, "undo": head.undo,
             "redo": head.redo, "digest": head.digest}
    try:
        cache.set(_head_key(owner), entry, HEAD_CACHE_SECONDS)
    except RedisError as exc:
        logger.warning("EDL head not remembered (%s)", type(exc).__name__)


def head_forget(owner: dict[str, str]) -> None:
    try:
        cache.delete(_head_key(owner))
    except RedisError as exc:
        logger.warning("EDL head not forgotten (%s)", type(exc).__name__)


_HEAD_FIELDS = {"version": 1, "created_at": 1, "undo_versions": 1, "redo_versions": 1}


def head_get(*, project: Project) -> Head:
    """The current version and stacks of the project's EDL (created on first use)."""
    owner = owned_by(project)
    with store_errors():
        raw = edl_collection().find_one(owner, _HEAD_FIELDS)
    if raw is None:
        first_version(project=project)
        with store_errors():
            raw = edl_collection().find_one(owner, _HEAD_FIELDS)
        if raw is None:
            raise conflict(None)
    return Head(
        id=raw["_id"],
        version=raw["version"],
        created_at=raw["created_at"],
        undo=list(raw.get("undo_versions") or []),
        redo=list(raw.get("redo_versions") or []),
    )


def stack_push(stack: list[int], version: int, bound: int) -> list[int]:
    """``stack`` with ``version`` on top, keeping the ``bound`` most recent (none when 0)."""
    return [*stack, version][-bound:] if bound > 0 else []


class Committed(NamedTuple):
    """A written version as the API shows it, and rendered when the writer asked for that."""

    output: dict[str, Any]
    body: bytes | None


def version_commit(
    *, project: Project, head: Head, content: dict[str, Any], undo: list[int], redo: list[int],
    render: Callable[[dict[str, Any]], bytes] | None = None,
) -> Committed:
    """Replace version ``head.version`` with ``head.version + 1``; keep the superseded content.
    ``render`` (the API's JSON of the answer) runs while the version's snapshot is written."""
    owner = owned_by(project)
    new_version = head.version + 1
    new: dict[str, Any] = {
        **owner,
        "version": new_version,
        "created_at": head.created_at,
        "updated_at": now(),
        "settings": content["settings"],
        "tracks": content["tracks"],
        "transcript": content["transcript"],
        "undo_versions": undo,
        "redo_versions": redo,
    }
    stored = stored_form(new)
    with store_errors():
        digest = content_digest(content) if numeric_paths_applied(edl_collection().database) else None
        # The snapshot's text is made while the write is in flight (not beside the digest, which
        # would only take turns with it for the interpreter's lock).
        packing = _meanwhile(content_pack, content)
        try:
            _write_version(head, owner, stored, digest)
        except BaseException:
            packing.cancel()  # a write that failed needs no snapshot (one started runs to its end)
            raise
        # Snapshots no stack refers to any more, when this write dropped one (most saves once the
        # undo stack is full; none before). Only versions below ours: a later writer's snapshots
        # (>= new_version) are not ours to judge, and every version below ours that it still
        # refers to is in our stacks. The range also sweeps up what a crashed write left behind.
        # Deleted while the new snapshot is written: the two touch different versions.
        keep = set(undo) | set(redo)
        writes = []
        if (set(head.undo) | set(head.redo) | {head.version}) - keep - {new_version}:
            writes.append(_meanwhile(history_collection().delete_many,
                                     {**owner, "version": {"$lt": new_version, "$nin": sorted(keep)}}))
        # Only the writer that won version new_version gets here, so the snapshot is its own. The
        # answer is made (and rendered) while it is written; the save ends when both writes have,
        # failed or not.
        writes.append(_meanwhile(snapshot_put, owner=owner, version=new_version, content=content,
                                 packed=packing.result()))
        try:
            new["_id"] = head.id
            output = edl_output(new)
            body = render(output) if render is not None else None
        finally:
            wait(writes)
            for write in writes:
                write.result()
    _head_remember(owner, Head(id=head.id, version=new_version, created_at=head.created_at, undo=undo, redo=redo,
                               digest=digest))
    return Committed(output, body)


def _write_version(head: Head, owner: dict[str, str], stored: dict[str, Any], digest: ContentDigest | None) -> None:
    """Version ``head.version + 1`` (``stored``, whose content is digested as ``digest``) written
    over ``head.version``, as a ``$set`` of what changed where the server applies one (``digest``
    given), else whole. HeadStale, or 409 ``edl_conflict``, when the stored document is not at
    ``head.version``."""
    key = owner["project_id"]
    edls = edl_collection()
    guard = {"_id": head.id, **owner, "version": head.version}
    update = version_update(head, digest, stored)
    # update_one/replace_one, not find_one_and_*: only whether it matched matters, and the
    # server need not send anything of the old timeline back.
    if update is not None:
        matched = edls.update_one(guard, update).matched_count
    else:
        matched = edls.replace_one(guard, stored).matched_count
    if not matched and head.remembered:
        raise HeadStale
    if not matched:
        current = edls.find_one(owner, {"version": 1})
        current_version = current["version"] if current else None
        if current_version == head.version:
            # The embedded server answers "no match" when a replace fails; MongoDB would raise.
            logger.error("EDL replace matched nothing at the current version", extra={"project_id": key})
            raise EdlUnavailable("The timeline could not be saved. Try again.")
        logger.info(
            "EDL write conflict",
            extra={"project_id": key, "expected": head.version, "current": current_version},
        )
        raise conflict(current_version)


# A save's work that needs neither the other's result nor the caller's thread runs on this pool
# while the caller waits on the store (the two threads wait on sockets or compress, mostly out of
# the interpreter's lock).
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    # A pool's threads do not survive a fork (gunicorn, the prefork pool): each process makes its own.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _meanwhile(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn(*args, **kwargs)`` started on the pool; its result, or its exception, from ``.result()``."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="edl-save")
    # In the caller's context: what it logs carries the request's ids.
    return _pool.submit(contextvars.copy_context().run, fn, *args, **kwargs)


# The top-level fields every write sets besides the content (the rest of the document's head).
_BOOKKEEPING = ("version", "updated_at", "undo_versions", "redo_versions", "media_ids")


def version_update(head: Head, digest: ContentDigest | None, stored: dict[str, Any]) -> dict[str, Any] | None:
    """The ``$set`` that turns version ``head.version`` into ``stored`` when the server applies
    numeric-index paths (``digest`` given) and ``head`` knows what that version holds; None: replace
    the whole document. Either gives the same stored document (tests/projects/test_edl_partial.py)."""
    if digest is None or head.digest is None:
        return None
    paths = content_set(head.digest, digest, stored)
    if paths is None:
        return None
    return {"$set": {**paths, **{name: stored[name] for name in _BOOKKEEPING}}}


# Datetimes come back timezone-aware (UTC), as the store's own reads return them.
_CODEC: bson.CodecOptions[dict[str, Any]] = bson.CodecOptions(
    tz_aware=True, uuid_representation=bson.binary.UuidRepresentation.STANDARD
)


def snapshot_unpack(stored: dict[str, Any]) -> dict[str, Any]:
    """The content of an ``edl_history`` document: packed, compressed BSON, or (written before
    either) plain."""
    if PACKED in stored:
        return stored_content({"settings": stored["settings"], PACKED: stored[PACKED]})
    if "snapshot_z" in stored:
        unpacked: dict[str, Any] = bson.decode(zlib.decompress(stored["snapshot_z"]), codec_options=_CODEC)
        return unpacked
    plain: dict[str, Any] = stored["snapshot"]
    return plain


def snapshot_put(*, owner: dict[str, str], version: int, content: dict[str, Any], packed: str | None = None) -> None:
    """Keep the content of a version, for when undo or redo needs to return to it: its settings,
    and its tracks and transcript packed (projects.edl.documents.PACKED; ``packed``: packed already).

    Written right after the version itself; if the process dies in between, that version is
    skipped by undo/redo later (they step over missing snapshots) rather than restored wrongly.
    """
    if packed is None:
        packed = content_pack(content)
    doc = {**owner, "version": version, "settings": content["settings"], PACKED: packed, "created_at": now()}
    history = history_collection()
    try:
        history.insert_one(doc)
    except DuplicateKeyError:  # left by a deleted EDL of the same project id: ours replaces it
        # Deleted and inserted, not replaced: the embedded server cannot replace a document that
        # holds binary data.
        doc.pop("_id", None)
        history.delete_one({**owner, "version": version})
        history.insert_one(doc)
