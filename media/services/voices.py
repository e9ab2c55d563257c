"""Voice clones: made from a user's ready audio file, with a sample of their own."""

from __future__ import annotations

import logging
import uuid
from pathlib import PurePosixPath

from django.db import transaction

from auteur.users.models import User
from media.errors import InvalidVoiceSample, MediaNotFound
from media.models import MediaFile, MediaStatus, MediaType, VoiceClone
from media.services.deletion import schedule_object_deletion
from media.storage import get_storage
from media.storage.base import PresignedDownload

logger = logging.getLogger(__name__)

VOICE_MIN_MS = 3_000
VOICE_MAX_MS = 5 * 60_000


def voice_create(*, user: User, media: MediaFile, name: str) -> VoiceClone:
    """Clone a voice from one of the user's ready audio files (3 s to 5 min).

    The sample is copied to the voice's own key, so deleting the media file or its project
    leaves the voice working.
    """
    if media.user_id != user.pk:
        raise MediaNotFound("No such media file.")
    if media.type != MediaType.AUDIO:
        raise InvalidVoiceSample("A voice sample must be an audio file.", details={"field": "media_id"})
    if media.status != MediaStatus.READY:
        raise InvalidVoiceSample(
            f"The sample must be processed first (it is {media.status}).", details={"field": "media_id"}
        )
    duration = media.duration_ms or 0
    if not VOICE_MIN_MS <= duration <= VOICE_MAX_MS:
        raise InvalidVoiceSample(
            f"A voice sample must last between {VOICE_MIN_MS // 1000} seconds and {VOICE_MAX_MS // 60_000} minutes; "
            f"this one lasts {duration / 1000:.1f} s.",
            details={"field": "media_id", "duration_ms": duration, "min_ms": VOICE_MIN_MS, "max_ms": VOICE_MAX_MS},
        )
    voice_id = uuid.uuid4()
    ext = PurePosixPath(media.storage_key).suffix.lower()
    sample_key = f"voices/{voice_id}/sample{ext}"
    storage = get_storage()
    # The copy first: a voice row never exists without its sample.
    storage.copy(media.storage_key, sample_key)
    try:
        with transaction.atomic():
            voice = VoiceClone.objects.create(
                id=voice_id,
                user=user,
                name=name.strip(),
                sample_key=sample_key,
                sample_duration_ms=duration,
                source_media=media,
            )
    except BaseException:
        storage.delete(sample_key)
        raise
    logger.info("voice %s: created from media %s", voice.pk, media.pk)
    return voice


def voice_delete(*, voice: VoiceClone) -> None:
    with transaction.atomic():
        deleted, _ = VoiceClone.objects.filter(pk=voice.pk).delete()
        if deleted:
            schedule_object_deletion([voice.sample_key], [f"voices/{voice.pk}"])
    logger.info("voice %s: deleted", voice.pk)


def voice_sample_url(*, voice: VoiceClone) -> PresignedDownload:
    return get_storage().presign_get(voice.sample_key)
