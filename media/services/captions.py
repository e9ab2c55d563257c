"""Captions: a job's transcript stored as JSON beside the media file it transcribes."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from django.utils import timezone

from media.models import MediaFile
from media.services.keys import caption_key_for
from media.storage import get_storage


def media_attach_caption(*, media_id: uuid.UUID | str, transcript: dict[str, object]) -> str:
    """Store a transcript as the media file's caption JSON (under its own prefix); idempotent.

    The key is fixed per media file, so a redelivered store step overwrites the same object.
    Returns the key.
    """
    media = MediaFile.objects.get(pk=media_id)
    key = caption_key_for(media)
    body = json.dumps(transcript, ensure_ascii=False).encode()
    get_storage().save(key, io.BytesIO(body), "application/json")
    MediaFile.objects.filter(pk=media.pk).exclude(caption_key=key).update(caption_key=key, updated_at=timezone.now())
    return key


def media_caption_read(*, media: MediaFile) -> dict[str, Any] | None:
    """The file's caption JSON (its latest completed transcription), or None when it has none."""
    if not media.caption_key:
        return None
    try:
        with get_storage().open(media.caption_key) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
