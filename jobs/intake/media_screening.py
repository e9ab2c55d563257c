"""The content policy on the pictures a generative model is given: each input image, and frames of
each input video, that a request names in a screened field (`jobs.inputs.MediaRef(screened=True)`:
the face a lip sync re-times, a performance cloning animates or a gaze redirection turns), screened
once the request is resolved and before it is priced, so a refused file is a 422
`content_policy_violation` naming the field, with no job and nothing charged (jobs.intake.screening
builds the answer and records the refusal).

What is scored: an image's one frame, or AUTEUR_SCREENING_INPUT_VIDEO_FRAMES frames of a video spread
evenly over its length (the first included), each whole and, when it is not square, in square
windows along its long side; decoded only in the probe's sandbox
(media.probing.facts.screen_frames_spread), scored by the embedded image screener (open_nsfw,
`sexual` only: gpu_tasks.screening.image). A file that cannot be decoded for it within the probe's
limits is refused (422 `media_unscreenable`): nothing unscreened reaches a model.

Cost: a verdict is kept per (owner, content SHA-256, screener) in `MediaVerdict`, so a file is
decoded and scored once whatever job, quote, batch or retry names it next; later requests read one
row. Each uploaded image and video is screened once it is ready, on the media queue
(`media_verdict_keep`, sent by the jobs app's `media_ready` receiver), so a request rarely pays for
it; one that comes first (the task not run yet, or lost: its message is sent at most once) screens
the file itself. `screener` names the model, its threshold and the frames sampled: a change of any
decides again. A file not yet hashed (older than its hash) is screened each time.

The test seam AUTEUR_SCREENING_INJECT ("lip-sync:input=1.0") refuses that share of the files a
type's requests name, drawn from each file's SHA-256 (so a file is refused always or never),
recorded as category `injected` and never kept as a verdict.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from jobs import gpu_client
from jobs.errors import MediaUnscreenable
from jobs.life.moderation import INJECTED_CATEGORY, INJECTED_MODEL, injected
from jobs.models import MediaVerdict
from jobs.specs import JobSpec
from media.models import MediaFile, MediaStatus, MediaType
from media.probing.service import screening_frames_spread
from media.storage import get_storage

logger = logging.getLogger(__name__)

PICTURE_TYPES = (MediaType.IMAGE, MediaType.VIDEO)  # the files whose pictures are screened


@dataclass(frozen=True)
class PictureVerdict:
    """The content policy's verdict on one file's pictures: the categories refused (none: it passes)."""

    categories: tuple[str, ...]
    model_version: str
    strict_categories: tuple[str, ...] = ()  # what a workspace's strict policy refuses besides `categories`


def screened_media(spec: JobSpec, params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{field as the answer names it: media id} of the request's screened media fields it sets."""
    return {f"{prefix}{name}": str(params[name]) for name in spec.screened_media if params.get(name)}


def screener_version() -> str:
    """What a kept verdict was decided by: the image screener's model and threshold, and how many
    frames of a video it saw."""
    return (f"{gpu_client.image_screener_version()}/t{gpu_client.IMAGE_SCREEN_THRESHOLD:g}"
            f"/n{settings.AUTEUR_SCREENING_INPUT_VIDEO_FRAMES}")


def media_flagged(fields: Mapping[str, str], job_types: Mapping[str, str]) -> dict[str, PictureVerdict]:
    """{field: its file's verdict} of the fields whose file the policy refuses (the platform's, or a
    workspace's strict one: `PictureVerdict.strict_categories`). `fields`: {field:
    media id}, the files already found to be the caller's, ready, of the kinds the field takes
    (jobs.selectors.requests); `job_types`: each field's job type (the test seam is per type). Each
    distinct file is decided once."""
    if not fields:
        return {}
    files = {str(m.pk): m for m in MediaFile.objects.filter(pk__in={uuid.UUID(v) for v in fields.values()})
             .only("id", "user_id", "type", "storage_key", "content_sha256", "duration_ms")}
    decided: dict[tuple[str, str], PictureVerdict] = {}
    flagged: dict[str, PictureVerdict] = {}
    for field, media_id in fields.items():
        media = files.get(media_id)
        if media is None:  # deleted since it was resolved: the charge's lock on it refuses the job
            continue
        key = (media_id, job_types[field])
        if key not in decided:
            decided[key] = _verdict(media, field=field, job_type=job_types[field])
        if decided[key].categories or decided[key].strict_categories:
            flagged[field] = decided[key]
    return flagged


def media_verdict_keep(media_id: uuid.UUID | str) -> bool:
    """Screen an uploaded image or video now and keep its verdict, so that the requests that name it
    read one row. False when there is nothing to keep: not a ready picture with its hash, kept
    already, or not decodable within the probe's limits (a request naming it is then refused
    `media_unscreenable`, as it would be without this)."""
    media = (MediaFile.objects.filter(pk=media_id, status=MediaStatus.READY, type__in=PICTURE_TYPES)
             .exclude(content_sha256="").only("id", "user_id", "type", "storage_key", "content_sha256",
                                               "duration_ms").first())
    if media is None or MediaVerdict.objects.filter(user_id=media.user_id, content_sha256=media.content_sha256,
                                                    screener=screener_version()).exists():
        return False
    try:
        _screened(media, field="media_id")
    except MediaUnscreenable:
        return False
    return True


def _verdict(media: MediaFile, *, field: str, job_type: str) -> PictureVerdict:
    sha256 = media.content_sha256
    if injected(job_type, "input", sha256 or str(media.pk)):
        return PictureVerdict(categories=(INJECTED_CATEGORY,), model_version=INJECTED_MODEL)
    return _screened(media, field=field)


def _screened(media: MediaFile, *, field: str) -> PictureVerdict:
    """The file's kept verdict, or its pictures decoded and scored now (and the verdict kept)."""
    sha256 = media.content_sha256
    screener = screener_version()
    if sha256:
        kept = (MediaVerdict.objects.filter(user_id=media.user_id, content_sha256=sha256, screener=screener)
                .values_list("categories", "top_score").first())
        if kept is not None:
            return _decided(tuple(kept[0]), kept[1], screener)
    count = settings.AUTEUR_SCREENING_INPUT_VIDEO_FRAMES if media.type == MediaType.VIDEO else 1
    try:
        with get_storage().local_path(media.storage_key) as path:
            frames = screening_frames_spread(path, count=count, duration_ms=media.duration_ms)
    except FileNotFoundError:  # its object is gone (deleted meanwhile): nothing to screen, nothing to run
        frames = None
    if not frames:
        raise MediaUnscreenable(
            f"{field}: the file could not be examined for the content policy within the limits allowed.",
            details={"field": field, "media_id": str(media.pk)},
        )
    categories: tuple[str, ...] = ()
    top = 0.0
    step = gpu_client.IMAGE_SCREEN_MAX_FRAMES
    for start in range(0, len(frames), step):
        scored = gpu_client.screen_images(frames[start:start + step])
        top = max(top, scored.top_score)
        categories = tuple(dict.fromkeys((*categories, *scored.categories)))
    if sha256:
        # Two requests screening one file at once both decide it; the first row stays.
        MediaVerdict.objects.bulk_create([MediaVerdict(
            user_id=media.user_id, content_sha256=sha256, screener=screener, categories=list(categories),
            top_score=top, frames=len(frames),
        )], ignore_conflicts=True)
    return _decided(categories, top, screener)


def _decided(categories: tuple[str, ...], top_score: float, screener: str) -> PictureVerdict:
    strict = tuple(c for c in gpu_client.image_refused_at(top_score, strict=True) if c not in categories)
    return PictureVerdict(categories=categories, model_version=screener, strict_categories=strict)
