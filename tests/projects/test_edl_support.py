"""Fixtures and builders shared by the EDL tests (no tests here).

Imported by test_edl_*.py; the fixtures run against the real embedded MongoDB-protocol server
and Postgres that `make test` starts.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from auteur.users.models import User
from media.models import MediaFile
from projects.edl import store, versions
from projects.edl.documents import PACKED, content_pack
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.models import Project
from tests.factories import MediaFileFactory, ProjectFactory


@pytest.fixture(name="clean_edl_store")
def clean_edl_store_fixture() -> Iterator[None]:
    """MongoDB is not rolled back with the test's transaction: empty the EDL collections."""
    store.edl_collection().delete_many({})
    store.history_collection().delete_many({})
    yield
    store.edl_collection().delete_many({})
    store.history_collection().delete_many({})


@pytest.fixture(name="make_project")
def make_project_fixture(db: None) -> Callable[..., Project]:
    def make(user: User, **fields: Any) -> Project:
        return ProjectFactory.create(user=user, name=fields.pop("name", "Timeline test"), **fields)

    return make


@pytest.fixture(name="project")
def project_fixture(user: User, make_project: Callable[..., Project]) -> Project:
    return make_project(user)


@pytest.fixture(name="make_media")
def make_media_fixture(db: None) -> Callable[..., MediaFile]:
    def make(project: Project, **fields: Any) -> MediaFile:
        """A 10 s video unless told otherwise: timelines here are measured against its length."""
        values: dict[str, Any] = {"name": "clip.mp4", "type": "video", "duration_ms": 10_000, "file_size_bytes": 1}
        values.update(fields)
        return MediaFileFactory.create(project=project, **values)

    return make


def clip(media: MediaFile | str, track: dict[str, Any], *, start: int = 0, inp: int = 0, out: int = 1000,
         **extra: Any) -> dict[str, Any]:
    return {
        "id": extra.pop("id", f"clip-{uuid.uuid4().hex[:8]}"),
        "media_file_id": str(media.pk if isinstance(media, MediaFile) else media),
        "track_id": track["id"],
        "start_ms": start,
        "duration_ms": out - inp,
        "in_point_ms": inp,
        "out_point_ms": out,
        "effects": [],
        "deleted": False,
        **extra,
    }


def segment(start: int = 0, end: int = 1000, words: list[tuple[str, int, int]] | None = None,
            **extra: Any) -> dict[str, Any]:
    if words is None:
        middle = start + (end - start) // 2
        words = [("hello", start, middle), ("world", middle, end)]
    return {
        "id": extra.pop("id", f"seg-{uuid.uuid4().hex[:8]}"),
        "speaker": "Speaker 1",
        "start_ms": start,
        "end_ms": end,
        "text": " ".join(w for w, _, _ in words),
        "words": [{"word": w, "start_ms": s, "end_ms": e, "confidence": 0.9} for w, s, e in words],
        "deleted": False,
        "edited_text": None,
        **extra,
    }


def editable(edl_doc: dict[str, Any]) -> dict[str, Any]:
    """What a client edits and sends back: the document it read, deep-copied."""
    return copy.deepcopy(edl_doc)


def content(edl_doc: dict[str, Any]) -> dict[str, Any]:
    """The part of a document that undo/redo and round-trips compare."""
    return {k: edl_doc[k] for k in ("settings", "tracks", "transcript")}


def timeline_with(edl_doc: dict[str, Any], media: MediaFile, *, clips: int = 2) -> dict[str, Any]:
    """The document with `clips` back-to-back 1 s clips of `media` on its video track, and a transcript."""
    doc = editable(edl_doc)
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=i * 1000, inp=0, out=1000, id=f"c{i}") for i in range(clips)]
    doc["transcript"] = {
        "generated_at": "2026-01-31T12:00:00.000Z",
        "segments": [segment(0, 1000, id="s0"), segment(1000, 2000, id="s1")],
    }
    return doc


def legacy_packed(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored ``edl`` document as the store wrote it while the content was packed: tracks and
    transcript in one text field (content_z), no media_ids. Production only reads this form."""
    packed = {name: value for name, value in raw.items() if name not in ("tracks", "transcript", "media_ids")}
    packed[PACKED] = content_pack(raw)
    return packed


def saved_then_packed(project: Project, media: MediaFile) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A timeline of `media` saved, then its stored document rewritten in the packed form: (the saved
    answer, the store key, the structured document as it was stored before the rewrite)."""
    saved = edl_replace(project=project, expected_version=1, data=timeline_with(edl_get(project=project), media))
    key = {"project_id": str(project.pk)}
    raw = store.edl_collection().find_one(key)
    assert raw is not None
    store.edl_collection().replace_one(key, legacy_packed(raw))
    # A packed document was written before content was stored structured, by a writer that remembered
    # no digest of it (projects.edl.partial): the rewrite stands in for one, so the head the save above
    # remembered (whose digest describes the structured document) is forgotten, as such a document has none.
    versions.head_forget(store.owned_by(project))
    return saved, key, raw
