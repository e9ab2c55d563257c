"""Where EDL documents live: one MongoDB connection per process and the two collections.

Also the two things every access needs: the filter a project's documents are found by (its id
and its owner's), and the rule that an unreachable store is a 503 the client may retry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import mongoengine
from django.conf import settings
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure

from projects.edl.documents import ALIAS, EDL, EDLHistory
from projects.edl.partial import forget_probe
from projects.errors import EdlUnavailable
from projects.models import Project

logger = logging.getLogger(__name__)

# Fail fast when MongoDB is unreachable: an API request should answer 503, not hang.
SERVER_SELECTION_TIMEOUT_MS = 3_000
CONNECT_TIMEOUT_MS = 3_000
SOCKET_TIMEOUT_MS = 15_000

_lock = threading.Lock()
_connected_pid: int | None = None


def _connect() -> None:
    """Register the connection once per process; a forked child registers its own.

    ``connect=False`` opens no socket until the first operation, so importing or configuring
    this in a parent that later forks (gunicorn --preload, Celery prefork) shares nothing. A
    MongoClient must never be used across fork: when the pid changed, the inherited client is
    dropped and a fresh one registered.
    """
    global _connected_pid
    pid = os.getpid()
    if _connected_pid == pid:
        return
    with _lock:
        if _connected_pid == pid:
            return
        mongoengine.disconnect(alias=ALIAS)
        mongoengine.connect(
            host=settings.MONGODB_URI,
            alias=ALIAS,
            connect=False,
            uuidRepresentation="standard",
            tz_aware=True,
            serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
            connectTimeoutMS=CONNECT_TIMEOUT_MS,
            socketTimeoutMS=SOCKET_TIMEOUT_MS,
        )
        EDL.ensure_indexes()
        EDLHistory.ensure_indexes()
        _connected_pid = pid


def disconnect() -> None:
    """Forget the connection (tests that point MONGODB_URI elsewhere; process shutdown), and what
    was learnt of its server (projects.edl.partial)."""
    global _connected_pid
    with _lock:
        mongoengine.disconnect(alias=ALIAS)
        _connected_pid = None
        forget_probe()


def edl_collection() -> Collection[dict[str, Any]]:
    _connect()
    collection: Collection[dict[str, Any]] = EDL._get_collection()
    return collection


def history_collection() -> Collection[dict[str, Any]]:
    _connect()
    collection: Collection[dict[str, Any]] = EDLHistory._get_collection()
    return collection


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """An unreachable MongoDB is a 503 the client may retry, not a 500."""
    try:
        yield
    except ConnectionFailure as exc:
        logger.warning("EDL store unreachable: %s", type(exc).__name__)
        raise EdlUnavailable("The timeline store is unavailable. Try again shortly.") from None


def project_key(project_id: Any) -> str:
    """The canonical string form of a project id, as stored in EDL documents."""
    try:
        return str(uuid.UUID(str(project_id)))
    except ValueError:
        return str(project_id)


def owned(project_id: Any, user_id: Any) -> dict[str, str]:
    """The filter of every read and write of a project's documents: the project's id AND its
    owner's. A project id from anywhere else (another user's, in a job's input or a client's
    document) finds nothing of that user's: the owner comes from the caller's own project row.
    (The unique project_id index finds the one candidate; its owner must match too.)"""
    return {"project_id": project_key(project_id), "user_id": str(user_id)}


def owned_by(project: Project) -> dict[str, str]:
    return owned(project.pk, project.user_id)
