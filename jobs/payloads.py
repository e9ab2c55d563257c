"""What a job sends to the GPU backend: its stored parameters, with each input as a ref.

An input ref is a local path when the worker shares the local storage (the local backend),
else a signed URL valid for `ttl` seconds (AUTEUR_SIGNED_URL_TTL_SECONDS, as every signed URL:
jobs/specs.py `build_payload` says why that is enough).
A media input of known length also carries it as `max_duration_ms`: the probe's measure, which
is what a duration-priced job was charged for (a ready file's duration never changes). The
engines read no further into the file than that, whatever its bytes hold by the time they run.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from django.conf import settings

from jobs import gpu_client
from media.models import MediaFile
from media.services.captions import media_caption_read
from media.storage import get_local_storage, get_storage

if TYPE_CHECKING:
    from jobs.models import Job

# The backends that run on this machine and read the worker's files.
LOCAL_BACKENDS = ("local", "noop")
# More than a video-query engine reads of a transcript (it keeps the first 8,000 characters).
TRANSCRIPT_MAX_CHARS = 20_000


def input_ref(key: str, ttl_seconds: int) -> dict[str, Any]:
    """The object at `key` as an engine input: a path on this machine, or a signed download URL."""
    local = get_local_storage()
    if local is not None and settings.AUTEUR_GPU_BACKEND in LOCAL_BACKENDS:
        return {"path": str(local.path(key))}
    return {"url": get_storage().for_engines().presign_get(key, expires_in=ttl_seconds).url}


def media_payload(job: Job, ttl: int) -> dict[str, Any]:
    """The parameters, each `<name>_media_id` sent as `<name>_media` (`media_id` as `media`) and a
    voice's sample as `voice_sample`, as refs."""
    params = dict(job.input_params)
    ids = {k: v for k, v in params.items() if k.endswith("media_id") and v}
    files = {
        str(pk): (key, duration_ms)
        for pk, key, duration_ms in MediaFile.objects.filter(pk__in=ids.values()).values_list(
            "pk", "storage_key", "duration_ms"
        )
    } if ids else {}  # no query to build for a job without input files (text to speech, say)
    payload: dict[str, Any] = {"job_id": str(job.id), **params}
    for name, media_id in ids.items():
        if str(media_id) in files:
            key, duration_ms = files[str(media_id)]
            ref = input_ref(key, ttl)
            if duration_ms:
                ref["max_duration_ms"] = duration_ms
            payload[name.removesuffix("_id")] = ref
    if params.get("voice_sample_key"):
        payload["voice_sample"] = input_ref(params["voice_sample_key"], ttl)
    return payload


# Where a verification's input_params keep the phrase of the challenge it claimed, and the SHA-256 of
# the sample it verifies a consent for (JobSpec.claims_challenge, JobSpec.consent_sample).
PHRASE_PARAM = "_phrase"
SAMPLE_SHA256_PARAM = "_sample_sha256"
# Where a job speaking in a voice keeps the id of the voice's consent when it was accepted: a
# revocation of that consent reaches its speech even once the voice is deleted.
CONSENT_PARAM = "_consent_id"


def voice_consent_payload(job: Job, ttl: int) -> dict[str, Any]:
    """The media payload, with the claimed challenge's words and statement, which the recording must say."""
    payload = media_payload(job, ttl)
    phrase = payload.pop(PHRASE_PARAM)
    payload.pop(SAMPLE_SHA256_PARAM, None)
    payload.update(phrase_words=list(phrase["words"]), statement=str(phrase["statement"]),
                   sample_max_s=int(settings.AUTEUR_VOICE_SAMPLE_MAX_SECONDS))
    return payload


# Where a job that uses a face keeps the id of the likeness consent it was accepted under
# (JobSpec.likeness_of): a revocation of that consent finds it.
LIKENESS_PARAM = "_likeness_consent_id"


def likeness_consent_payload(job: Job, ttl: int) -> dict[str, Any]:
    """The recording and subject as refs, with the claimed challenge's words and statement, which the
    recording must say (gpu_tasks.engines.likeness_consent's payload)."""
    payload = media_payload(job, ttl)
    phrase = payload.pop(PHRASE_PARAM)
    payload.pop(SAMPLE_SHA256_PARAM, None)
    payload.update(phrase_words=list(phrase["words"]), statement=str(phrase["statement"]),
                   sample_offsets=likeness_offsets(job))
    return payload


def likeness_offsets(job: Job) -> list[float]:
    """Where in each of its stretches a likeness verification samples the subject's frames: drawn from
    the job and this server's secret, so that nobody can show the person only at those moments."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"likeness-offsets:{job.pk}".encode(), hashlib.sha256).digest()
    digest += hashlib.sha256(digest).digest()
    return [int.from_bytes(digest[2 * i:2 * i + 2], "big") / 65536 for i in range(gpu_client.likeness_samples())]


# Where a request's input_params keep the transcript taken when it was resolved (JobSpec.transcript_of).
TRANSCRIPT_PARAM = "_transcript"


def transcript_snapshot(media: MediaFile) -> str:
    """The text of the file's transcript (its captions) as a model is given it: the first
    TRANSCRIPT_MAX_CHARS characters; "" when it has none."""
    captions = media_caption_read(media=media) if media.caption_key else None
    text = (captions or {}).get("text")
    return text[:TRANSCRIPT_MAX_CHARS] if isinstance(text, str) and text.strip() else ""


def video_query_payload(job: Job, ttl: int) -> dict[str, Any]:
    """The media payload, plus the video's transcript as it was when the job was accepted, and
    screened then (a transcript written afterwards is not what was screened). A job accepted before
    transcripts were taken at submission is sent the file's transcript of now."""
    payload = media_payload(job, ttl)
    if TRANSCRIPT_PARAM in job.input_params:
        text = payload.pop(TRANSCRIPT_PARAM)
    else:
        video = MediaFile.objects.filter(pk=job.input_params["video_media_id"]).only("caption_key").first()
        text = transcript_snapshot(video) if video is not None else ""
    if text:
        payload["transcript"] = text
    return payload


def render_payload(job: Job, ttl: int) -> dict[str, Any]:
    """The timeline snapshot, with every media file its clips use as `media: {id: {kind, ref}}`."""
    params = dict(job.input_params)
    tracks = params["edl"]["tracks"]
    ids = {clip["media_file_id"] for t in tracks for clip in t["clips"] if not clip.get("deleted")}
    files = MediaFile.objects.filter(pk__in=ids, project=job.project_id)
    media = {str(m.pk): {"kind": m.type, **input_ref(m.storage_key, ttl)} for m in files}
    return {"job_id": str(job.id), **params, "media": media}
