"""Swapping one media file for another throughout a timeline: a file's compressed version for it.

Every clip that plays the file (deleted ones too) plays the other from the same points, and the
transcript's segments of the file name the other: its words, their edits and the segments' ids
stay as they were, so the text edit goes on where it was. One undo step, as any save; the saved
timeline is validated as a client's is (the other file must be ready, of this project and of a
kind the clips' tracks take).

A re-encoded file may end a few milliseconds earlier than its source (an encoder's priming and
padding): a clip that played to the old file's end now plays to the new one's, shortened by at
most DURATION_SLACK_MS; a file shorter than that is another file (422 `media_too_short`).
"""

from __future__ import annotations

from typing import Any

from projects.edl.effects import expected_duration_ms
from projects.edl.services import edl_edit
from projects.errors import MediaTooShort
from projects.models import Project

DURATION_SLACK_MS = 250


def edl_replace_media(
    *, project: Project, media_id: str, replacement_id: str, replacement_duration_ms: int | None,
    expected_version: int | None = None,
) -> tuple[dict[str, Any] | None, int]:
    """Play `replacement_id` wherever the timeline plays `media_id`. (The saved timeline, or None
    when no clip plays it: nothing written; the number of clips changed.)"""
    changed = 0

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal changed
        changed = 0
        for track in doc.get("tracks") or []:
            for clip in track["clips"]:
                if clip.get("media_file_id") != media_id:
                    continue
                clip["media_file_id"] = replacement_id
                end = replacement_duration_ms
                if end is not None and clip["out_point_ms"] > end:
                    if clip["out_point_ms"] - end > DURATION_SLACK_MS:
                        raise MediaTooShort(
                            "The replacement ends before a clip's out point: it is not a version of the same file.",
                            details={"clip_id": clip.get("id"), "out_point_ms": clip["out_point_ms"],
                                     "replacement_duration_ms": end},
                        )
                    clip["out_point_ms"] = end
                    clip["duration_ms"] = expected_duration_ms(clip)
                changed += 1
        if not changed:
            return None
        for segment in (doc.get("transcript") or {}).get("segments") or []:
            if segment.get("media_file_id") == media_id:
                segment["media_file_id"] = replacement_id
        return doc

    saved = edl_edit(project=project, change=change, expected_version=expected_version)
    return saved, changed
