"""The reads of a project's EDL (timeline) document."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from projects.edl.documents import edl_output
from projects.edl.store import edl_collection, owned_by, store_errors
from projects.edl.versions import first_version
from projects.models import Project


def edl_get(*, project: Project) -> dict[str, Any]:
    """The project's timeline (created on first use)."""
    with store_errors():
        raw = edl_collection().find_one(owned_by(project))
    return edl_output(raw if raw is not None else first_version(project=project))


def edl_get_json(*, project: Project, render: Callable[[dict[str, Any]], bytes]) -> tuple[int, bytes]:
    """(version, edl_get's answer rendered by ``render``)."""
    edl = edl_get(project=project)
    return int(edl["version"]), render(edl)


def edl_frame_rate(*, project: Project) -> float:
    """The timeline's frame rate, read without the rest of the document (which may be megabytes)."""
    with store_errors():
        raw = edl_collection().find_one(owned_by(project), {"settings": 1})
    if raw is None:
        raw = first_version(project=project)
    return float(raw["settings"]["frame_rate"])


def edl_snapshot(*, project: Project) -> dict[str, Any]:
    """A deep, JSON-safe copy of the current timeline, for a render job's input."""
    copied: dict[str, Any] = json.loads(json.dumps(edl_get(project=project)))
    return copied
