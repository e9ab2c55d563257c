"""The one module through which the Django side reaches GPU inference.

It builds the configured backend from settings once per process. Tests replace Modal's cloud
below this module (gpu_tasks' Modal backend takes a fake `modal` client), never above it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from gpu_tasks import contract, engines
from gpu_tasks.announce import Announcement, EventQueue, RedisAnnouncer, drain_once
from gpu_tasks.announce import parse_all as parse_announcements
from gpu_tasks.backends import CallStatus, GpuBackend, make_backend
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.engines import input_bounds, video_generation, voice_consent, weights
from gpu_tasks.engines.timeline import MAX_CLIPS as RENDER_ENGINE_MAX_CLIPS
from gpu_tasks.engines.transcript import turns_of
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.input_bounds import Bound, Choices, InputBound, Resolution
from gpu_tasks.languages import LANGUAGE_CHOICES, describe
from gpu_tasks.pieces import Piece, pieces_between, plan_pieces, stitch_transcript
from gpu_tasks.results import UPLOADED, ResultLimits, check_result
from gpu_tasks.sandbox import Sandbox
from gpu_tasks.sandbox import detect as detect_sandbox
from gpu_tasks.screening import POLICY_VERSION, Screening, screen_fields
from gpu_tasks.screening.image import MAX_FRAMES as IMAGE_SCREEN_MAX_FRAMES
from gpu_tasks.screening.image import NSFW_THRESHOLD as IMAGE_SCREEN_THRESHOLD
from gpu_tasks.screening.image import ImageScreening
from gpu_tasks.screening.image import refused_at as image_refused_at
from gpu_tasks.screening.text import MAX_CHARS as SCREEN_MAX_CHARS

# What the jobs app needs of the GPU side's vocabulary: a call's status, its errors, the calls'
# announcements of their end, the spoken languages (Whisper's codes) a request may name, and the
# bounds each type's engines declare of a request's fields (the inputs read them: written once),
# how a long file is cut into pieces and their results stitched or joined (jobs.life.pieces), and
# the content policy's screening of the texts a model is asked to act on (jobs.intake.screening).
__all__ = [
    "IMAGE_SCREEN_MAX_FRAMES",
    "IMAGE_SCREEN_THRESHOLD",
    "LANGUAGE_CHOICES",
    "POLICY_VERSION",
    "SCREEN_MAX_CHARS",
    "UPLOADED",
    "Announcement",
    "Bound",
    "CallStatus",
    "Choices",
    "EventQueue",
    "GpuError",
    "ImageScreening",
    "InputBound",
    "PermanentGpuError",
    "Piece",
    "RedisAnnouncer",
    "Resolution",
    "Screening",
    "TransientGpuError",
    "drain_once",
    "image_refused_at",
    "input_bounds",
    "join_pieces",
    "parse_announcements",
    "pieces_between",
    "plan_pieces",
    "stitch_transcript",
    "turns_of",
]

logger = logging.getLogger(__name__)

JOIN_ENGINE = "gpu_tasks.engines.compression:join"


@lru_cache(maxsize=1)
def backend() -> GpuBackend:
    return make_backend(
        settings.AUTEUR_GPU_BACKEND,
        local_dir=settings.AUTEUR_GPU_LOCAL_DIR,
        models_dir=settings.AUTEUR_MODELS_DIR,
        modal_app=settings.AUTEUR_MODAL_APP,
        slots=settings.AUTEUR_LOCAL_RUNNER_SLOTS,
        memory_limit_mb=settings.AUTEUR_LOCAL_RUNNER_MEMORY_MB,
        # Drills only: the bench settings module sets these (bench/settings.py).
        faults=getattr(settings, "AUTEUR_FAULT_INJECTION", "") or None,
        fault_seed=getattr(settings, "AUTEUR_FAULT_SEED", None),
        announce_url=settings.AUTEUR_GPU_ANNOUNCE_URL if getattr(settings, "AUTEUR_GPU_ANNOUNCE", True) else None,
        noop_hold_seconds=getattr(settings, "AUTEUR_NOOP_HOLD_SECONDS", 0.0),
        noop_hold_spread_seconds=getattr(settings, "AUTEUR_NOOP_HOLD_SPREAD_SECONDS", 0.0),
        noop_status_latency_s=getattr(settings, "AUTEUR_NOOP_STATUS_LATENCY_MS", 0) / 1000,
        noop_hold_per_media_minute=getattr(settings, "AUTEUR_NOOP_HOLD_PER_MEDIA_MINUTE", 0.0),
        noop_spawn_log=getattr(settings, "AUTEUR_NOOP_SPAWN_LOG", ""),
        noop_spawn_latency_s=getattr(settings, "AUTEUR_NOOP_SPAWN_LATENCY_MS", 0) / 1000,
        result_limits=result_limits(),
        sandbox=sandbox(),
        upload_outputs=settings.AUTEUR_GPU_LOCAL_UPLOAD_OUTPUTS,
    )


def result_limits() -> ResultLimits:
    return ResultLimits(
        max_file_bytes=settings.AUTEUR_GPU_OUTPUT_MAX_BYTES,
        max_inline_bytes=settings.AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES,
        max_json_bytes=settings.AUTEUR_GPU_RESULT_MAX_BYTES,
    )


def sandbox() -> Sandbox:
    """How this process isolates the local engines and the probe's children (gpu_tasks.sandbox)."""
    return detect_sandbox(settings.AUTEUR_SANDBOX, settings.AUTEUR_SANDBOX_UID_BASE, settings.AUTEUR_SANDBOX_UID_COUNT)


def checked_result(job_type: str, call_id: str, result: Any) -> dict[str, Any]:
    """A finished call's result as it may be kept: what `call_id`'s backend produces, within the
    limits (gpu_tasks.results). Raises PermanentGpuError("invalid_result") otherwise."""
    return check_result(job_type, result, policy=backend().output_policy(call_id), limits=result_limits())


def save_output(call_id: str, ref: dict[str, Any], dest: Path) -> Path:
    """Keep one output of `call_id` (a checked ref, a file or bytes) at `dest`."""
    return contract.save_output(ref, dest, policy=backend().output_policy(call_id), limits=result_limits())


def join_pieces(pieces: list[Path], source: Path, dest: Path, *, preset_name: str, timeout_s: float) -> Path:
    """The pieces' videos end to end with the source's audio, at `dest` (gpu_tasks.engines.compression.join).

    Whatever the backend, the ffmpeg that joins them runs here under a local runner, as a local
    engine does: in the sandbox (a uid of its own, no network, where the machine allows), with the
    runner's minimal environment (none of this worker's secrets) and memory limit, on copies of
    the files; it parses what GPU containers and the user produced. Within `timeout_s`, or `timeout`."""
    joiner = LocalBackend(
        settings.AUTEUR_GPU_LOCAL_DIR, engines={"compression": JOIN_ENGINE}, time_limits={"compression": timeout_s},
        memory_limit_mb=settings.AUTEUR_LOCAL_RUNNER_MEMORY_MB, result_limits=result_limits(), sandbox=sandbox(),
    )  # fmt: skip
    payload = {"pieces": [{"path": str(path)} for path in pieces], "media": {"path": str(source)},
               "preset": preset_name}
    call_id, status = joiner.run("compression", payload)
    try:
        if status.state != "succeeded":
            raise status.error or PermanentGpuError("internal", "the join failed without an error")
        policy = joiner.output_policy(call_id)
        result = check_result("compression", status.result, policy=policy, limits=result_limits())
        video = (result.get("outputs") or {}).get("video")
        if video is None:
            raise PermanentGpuError("invalid_result", "the join delivered no video")
        contract.save_output(video, dest, policy=policy, limits=result_limits())
    finally:
        joiner.release(call_id)
    return dest


def reset() -> None:
    """Forget the built backend (tests that change the GPU settings call this)."""
    backend.cache_clear()


def check() -> None:
    """Raise when the configured backend does not answer (readiness, `manage.py doctor`)."""
    backend().check()


def supports(job_type: str) -> bool:
    return backend().supports(job_type)


def screen_texts(texts: Mapping[str, tuple[str, str]]) -> Screening:
    """The content policy's verdict on texts a model would act on ({field: (text, policy)}): the
    embedded screener, in this process (a model file loaded once; no call leaves the machine)."""
    return screen_fields(texts)


def screen_images(frames: Sequence[bytes]) -> ImageScreening:
    """The embedded image screener's verdict on decoded frames (224 x 224 RGB bytes, at most
    IMAGE_SCREEN_MAX_FRAMES), in this process (gpu_tasks.screening.image)."""
    from gpu_tasks.screening import image

    return image.screen_frames(frames)


def image_screener_version() -> str:
    """The embedded image screener's model version (named without loading the model)."""
    from gpu_tasks.screening import image

    return image.model_version()


def voice_consent_verdict(result: Mapping[str, Any]) -> tuple[dict[str, bool], dict[str, Any]]:
    """A voice-consent call's figures judged here, by this worker's own bounds (a GPU result is
    input): ({check: passed}, the figures with the bounds they were held to)."""
    from gpu_tasks.engines import speaker  # (the calibrated threshold beside the encoder it is for)

    verdict = voice_consent.passes(result, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD)
    phrase, voice = result["phrase"], result["speaker"]
    figures = {"challenge_wer": float(phrase["challenge_wer"]), "phrase_wer": float(phrase["phrase_wer"]),
               "similarity": float(voice["similarity"]), "threshold": speaker.DEFAULT_THRESHOLD,
               "stretch_similarity": float(voice["stretch_similarity"]), "stretch_threshold": speaker.STRETCH_THRESHOLD,
               "max_wer": voice_consent.MAX_WER, "models": _models_named(result.get("models"))}
    return {name: state == "passed" for name, state in verdict["checks"].items()}, figures


def likeness_samples() -> int:
    """How many of a likeness subject's frames a verification compares (one in each stretch)."""
    from gpu_tasks.engines import likeness_consent

    return likeness_consent.MAX_FRAMES


def likeness_consent_verdict(result: Mapping[str, Any]) -> tuple[dict[str, bool], dict[str, Any]]:
    """A likeness-consent call's figures judged here, by this worker's own bound on the face match (a GPU
    result is input): ({check: passed}, the figures with the bounds they were held to)."""
    from gpu_tasks.engines import face_embed, likeness_consent  # (the threshold beside the embedding it is for)

    threshold = face_embed.DEFAULT_THRESHOLD
    verdict = likeness_consent.passes(result, threshold)
    phrase, face, liveness = result["phrase"], result["face"], result["liveness"]
    similarity, sync = face.get("similarity"), liveness.get("sync")
    # The speaking check's figures and bounds are kept with the face counts (the consent's `faces`).
    speaking = {"sync": None if sync is None else float(sync), "mouth_motion": float(liveness["mouth_motion"]),
                "frames": int(liveness["frames"]), "min_sync": likeness_consent.MIN_SYNC,
                "min_mouth_motion": likeness_consent.MIN_MOUTH_MOTION}
    figures = {"challenge_wer": float(phrase["challenge_wer"]), "phrase_wer": float(phrase["phrase_wer"]),
               "similarity": None if similarity is None else float(similarity), "threshold": threshold,
               "max_wer": voice_consent.MAX_WER, "models": _models_named(result.get("models")),
               "faces": {"recording_faces": int(face["recording_faces"]), "subject_faces": int(face["subject_faces"]),
                         "liveness": speaking}}
    return {name: state == "passed" for name, state in verdict["checks"].items()}, figures


# The models a verification names (kept with its consent, for staff): these keys, short names.
_VERIFICATION_MODELS = ("transcription", "speaker", "face_detector", "face_embedding")
_MODEL_NAME_CHARS = 200


def _models_named(models: Any) -> dict[str, str]:
    """The model names a result gives, as far as they are names: whatever else it holds (other keys,
    structures, megabytes of text) is not kept."""
    named = models if isinstance(models, Mapping) else {}
    return {key: named[key][:_MODEL_NAME_CHARS] for key in _VERIFICATION_MODELS if isinstance(named.get(key), str)}


def unavailable_reason(job_type: str) -> str | None:
    """Why this server does not take jobs of the type now (None: it does): the operator switched it
    off (AUTEUR_FEATURES_OFF), or the backend cannot run it (no engine, no weights)."""
    if str(job_type) in settings.AUTEUR_FEATURES_OFF:
        return f"{job_type} is switched off on this server by its operator"
    return backend().unavailable_reason(job_type)


def languages(job_type: str) -> frozenset[str]:
    """The spoken languages this server's engine for `job_type` takes (empty: it takes none)."""
    return backend().languages(job_type)


def describe_languages(job_type: str) -> list[dict[str, str]]:
    """`[{code, name}]` of `languages(job_type)`, `auto` first."""
    return describe(languages(job_type))


def render_max_pieces() -> int:
    """The most clips (pieces, once cuts split them) one render takes: the engine refuses more."""
    return RENDER_ENGINE_MAX_CLIPS


def announces() -> bool:
    """Whether the backend's calls announce their end; if not, the infer step polls them."""
    return backend().announces


def take_announcements(max_items: int, timeout_s: float) -> list[Announcement]:
    """Announcements held by the backend itself (Modal's queue), for the consumer to forward."""
    return backend().take_announcements(max_items, timeout_s)


def holds_announcements() -> bool:
    return backend().holds_announcements


def stored_call_ids(call_id: str) -> list[str]:
    return backend().stored_call_ids(call_id)


def gpu_ladder(job_type: str) -> tuple[str, ...]:
    """The larger GPU classes this server's backend runs the type on after a call out of GPU memory."""
    return backend().gpu_ladder(job_type)


def gpu_ladder_next(job_type: str, gpu_class: str) -> str | None:
    """The class a call of the type that ran out of GPU memory on `gpu_class` ("": the type's own)
    runs on next; None at the top: the last class of its ladder, a type without one, or a class the
    ladder does not hold (the backend changed since)."""
    ladder = gpu_ladder(job_type)
    if not gpu_class:
        return ladder[0] if ladder else None
    at = ladder.index(gpu_class) if gpu_class in ladder else len(ladder)
    return ladder[at + 1] if at + 1 < len(ladder) else None


def output_targets(job_type: str) -> Mapping[str, str]:
    """{output name: content type} of the outputs a call of the type PUTs to targets the spawn
    gives (gpu_tasks.contract); empty when they all come back in its result."""
    return backend().output_targets(job_type)


def spawn(job_type: str, payload: dict[str, Any], gpu: str | None = None) -> str:
    """Start a call of the type (on `gpu`, a larger class of its ladder, when given); its id."""
    return backend().spawn(job_type, payload, gpu=gpu)


def poll(call_id: str) -> CallStatus:
    return backend().poll(call_id)


def cancel(call_id: str) -> None:
    backend().cancel(call_id)


def release(call_id: str) -> None:
    backend().release(call_id)


def weight_repos(job_type: str) -> dict[str, weights.Repo | weights.Release]:
    """{folder under AUTEUR_MODELS_DIR: hub repository} of what the type's engines load."""
    return engines.weight_repos(job_type)


def download_weights(folder: str, repo: weights.Repo | weights.Release, *, token: str | None = None) -> None:
    """Fetch a model into AUTEUR_MODELS_DIR (the engines read it from there with the hub off)."""
    weights.download(folder, repo, into=Path(settings.AUTEUR_MODELS_DIR), token=token)


def _quietly(action: Callable[[str], None], call_id: str) -> None:
    try:
        action(call_id)
    except GpuError as exc:
        logger.warning("GPU call %s: %s failed: %s", call_id, action.__name__, exc)


def cancel_quietly(call_id: str) -> None:
    """Best effort (a surplus or abandoned call): a failure is logged, never raised."""
    _quietly(cancel, call_id)


def release_quietly(call_id: str) -> None:
    _quietly(release, call_id)


def video_generation_cost(params: Mapping[str, Any]) -> tuple[float, str | None]:
    """A text-to-video request's estimated seconds on its GPU (the engine's cost model), and why it
    cannot finish within the type's time limit (None when it can)."""
    return video_generation.request_cost(params)
