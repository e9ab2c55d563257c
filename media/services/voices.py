"""Voice clones: made from a user's ready audio file, with a small WAV sample of their own."""

from __future__ import annotations

import base64
import dataclasses
import logging
import tempfile
import uuid
import wave
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

import gpu_tasks.confined as confined
from auteur.core.quotas import quota_check, quota_lock
from auteur.users.models import User
from media.errors import ConsentRequired, InvalidVoiceSample, MediaNotFound
from media.models import MediaFile, MediaStatus, MediaType, VoiceClone
from media.probing.facts import ffmpeg_exe
from media.probing.service import probe_limits
from media.services.consents import consent_for_sample
from media.services.deletion import schedule_object_deletion
from media.storage import get_storage
from media.storage.base import PresignedDownload

logger = logging.getLogger(__name__)

VOICE_MIN_MS = 3_000
# What a voice's sample is stored as: small, and what the voice-cloning engine reads (24 kHz).
SAMPLE_RATE = 24_000
SAMPLE_CONTENT_TYPE = "audio/wav"
TRANSCODE_TIMEOUT_SECONDS = 120


def voice_sample_max_ms() -> int:
    return int(settings.AUTEUR_VOICE_SAMPLE_MAX_SECONDS) * 1000


def transcode_voice_sample(source: Path, target: Path, *, max_ms: int) -> int:
    """Write the first ``max_ms`` of the source's first audio stream as a mono 16-bit WAV.

    The upload is decoded by ffmpeg in a confined child (gpu_tasks.confined: the sandbox, memory,
    CPU and time limits, no secret in its environment), as its probe was; this process only writes
    the PCM it answers into the WAV. Returns the WAV's duration in ms, counted from the samples
    (not from any header the upload carried). InvalidVoiceSample if it cannot be decoded; why goes
    to the log.
    """
    # The probe's sandbox and memory, a server of its own (no PyAV to load: ffmpeg decodes), and
    # room for the PCM in base64.
    limits = dataclasses.replace(probe_limits().confined(), preload=(), cpu_seconds=TRANSCODE_TIMEOUT_SECONDS,
                                 timeout_seconds=TRANSCODE_TIMEOUT_SECONDS + 10,
                                 max_result_bytes=4 * max_ms * SAMPLE_RATE // 1000 + 1024**2)
    try:
        answer = confined.call("media.probing.facts:voice_pcm", limits=limits, path=source, max_ms=max_ms,
                               sample_rate=SAMPLE_RATE, ffmpeg=ffmpeg_exe(), timeout_s=TRANSCODE_TIMEOUT_SECONDS)
        pcm = base64.b64decode(answer["pcm"], validate=True) if isinstance(answer, dict) and "pcm" in answer else None
        if pcm is None:
            raise ValueError(str(answer.get("error") if isinstance(answer, dict) else answer)[-500:])
    except (confined.BudgetSpent, confined.Refused, ValueError) as exc:
        logger.warning("voice sample transcode failed (%s): %s", type(exc).__name__, exc)
        raise InvalidVoiceSample("The sample's audio could not be decoded.", details={"field": "media_id"}) from None
    frames = len(pcm) // 2
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm[: frames * 2])
    return frames * 1000 // SAMPLE_RATE


def _check_voice_quota(user: User) -> None:
    quota_check(name="voices", used=VoiceClone.objects.filter(user=user).count())


def voice_create(*, user: User, media: MediaFile, name: str, consent_id: uuid.UUID | str | None,
                 member_id: uuid.UUID | None = None) -> VoiceClone:
    """Clone a voice from one of the user's ready audio files (at least 3 s long), with its
    speaker's verified consent to it (`consent_id`: 403 `consent_required` otherwise, see
    media.services.consents.consent_for_sample; one consent makes one voice).

    The sample is stored under the voice's own key as a mono 24 kHz WAV of at most
    AUTEUR_VOICE_SAMPLE_MAX_SECONDS (the start of the file), so a voice costs little storage
    and deleting the media file or its project leaves the voice working.
    """
    if media.user_id != user.pk:
        raise MediaNotFound("No such media file.")
    if media.type != MediaType.AUDIO:
        raise InvalidVoiceSample("A voice sample must be an audio file.", details={"field": "media_id"})
    if media.status != MediaStatus.READY:
        raise InvalidVoiceSample(
            f"The sample must be processed first (it is {media.status}).", details={"field": "media_id"}
        )
    _too_short(media.duration_ms or 0)
    consent = consent_for_sample(user=user, consent_id=consent_id, media=media)
    _check_voice_quota(user)  # before the transcode, not to do it for nothing; checked again below
    voice_id = uuid.uuid4()
    sample_key = f"voices/{voice_id}/sample.wav"
    storage = get_storage()
    try:
        with tempfile.TemporaryDirectory(prefix="auteur-voice-") as tmp, storage.local_path(media.storage_key) as src:
            wav = Path(tmp) / "sample.wav"
            sample_ms = transcode_voice_sample(src, wav, max_ms=voice_sample_max_ms())
            _too_short(sample_ms)  # the audio really decoded, whatever the file's header said
            with wav.open("rb") as fh:
                # The sample first: a voice row never exists without it.
                storage.save(sample_key, fh, SAMPLE_CONTENT_TYPE)
    except FileNotFoundError:
        raise InvalidVoiceSample("The file is missing from storage.", details={"field": "media_id"}) from None
    try:
        with transaction.atomic():
            quota_lock(user_id=user.pk)
            _check_voice_quota(user)
            voice = VoiceClone.objects.create(
                id=voice_id,
                user=user,
                member_id=member_id,
                name=name.strip(),
                sample_key=sample_key,
                sample_duration_ms=sample_ms,
                source_media=media,
                consent=consent,
            )
    except IntegrityError:
        storage.delete(sample_key)
        # Another voice was made with the same consent meanwhile (one voice per consent).
        raise ConsentRequired("Another voice was made with this consent.",
                              details={"field": "consent_id", "reason": "used"}) from None
    except BaseException:
        storage.delete(sample_key)
        raise
    logger.info("voice %s: created from media %s (%d ms sample)", voice.pk, media.pk, sample_ms)
    return voice


def _too_short(duration_ms: int) -> None:
    if duration_ms < VOICE_MIN_MS:
        raise InvalidVoiceSample(
            f"A voice sample must last at least {VOICE_MIN_MS // 1000} seconds; "
            f"this one lasts {duration_ms / 1000:.1f} s.",
            details={"field": "media_id", "duration_ms": duration_ms, "min_ms": VOICE_MIN_MS},
        )


def voice_consent_attach(*, voice: VoiceClone, consent_id: uuid.UUID | str) -> VoiceClone:
    """Attach its speaker's verified consent to a voice made before consents existed: the consent
    must have been verified against the file the voice was made from (403 `consent_required`
    otherwise; a voice whose file was deleted is made again from a new upload)."""
    if voice.consent_id is not None:
        raise ConsentRequired("This voice already has a consent.", details={"field": "consent_id", "reason": "used"})
    source = voice.source_media
    if source is None:
        raise ConsentRequired("The file this voice was made from was deleted: make the voice again from a new "
                              "upload, with its consent.", details={"field": "consent_id", "reason": "other_sample"})
    consent = consent_for_sample(user=voice.user, consent_id=consent_id, media=source)
    try:
        with transaction.atomic():
            updated = VoiceClone.objects.filter(pk=voice.pk, consent=None).update(consent=consent)
    except IntegrityError:
        updated = 0
    if not updated:
        raise ConsentRequired("Another voice was made with this consent.",
                              details={"field": "consent_id", "reason": "used"})
    voice.refresh_from_db()
    logger.info("voice %s: consent %s attached", voice.pk, consent.pk)
    return voice


def voice_delete(*, voice: VoiceClone) -> None:
    with transaction.atomic():
        deleted, _ = VoiceClone.objects.filter(pk=voice.pk).delete()
        if deleted:
            schedule_object_deletion([voice.sample_key], [f"voices/{voice.pk}"])
    logger.info("voice %s: deleted", voice.pk)


def voice_sample_url(*, voice: VoiceClone) -> PresignedDownload:
    return get_storage().presign_get(voice.sample_key)
