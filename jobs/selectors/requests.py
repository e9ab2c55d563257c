"""What a submission's body names, read from the database and checked, scoped to the caller.

In two steps, with the API's cheap checks between them. First the owner checks
(`job_request_objects`), before anything else is checked of the request or the account, so that
an object that is not the caller's is a 404 whatever the caller's plan or balance: the project
(404 `project_not_found`): the one named, else the one the body's media files share (404
`media_not_found` for a file that is not the caller's, 422 `media_projects_differ` when they are
in more than one), else, for a body naming no media file, the caller's "Library" project (None
here when it does not exist yet: `job_submit` makes it, in the transaction that charges the job,
so a refused submission leaves none behind); each `MediaRef` field's file, of that project (404
`media_not_found` for another project's or user's file); a `VoiceRef`'s voice (404
`voice_not_found`). Then, after the cheap checks (plan, backend, credits: jobs/intake/submission.py
`job_submit_precheck`), the rest (`job_request_resolve`): each file ready (422 `media_not_ready`),
of an allowed kind (422 `wrong_media_type`) and within its engine's limits as its probed facts show
them (422 `input_limit_exceeded`: the spec's `media_limits`, the engine's own numbers); for a
render, the timeline snapshot (422 `edl_limit_exceeded` for a timeline over the limits, or cut
into more pieces than the render engine takes, checked before the pieces are built; 422
`empty_timeline`, 422 `edl_invalid` for effects the render would refuse, 422 `no_captions`, 422
`media_not_ready` for clips whose media is gone or not ready): reading and cutting a timeline
costs more than the cheap checks do. The result is what `job_submit` needs: the JSON
`input_params` stored on the job (ids as strings, plus `_quantities`, which a retry prices again
with), the `quantities` the price is computed from (never sent by the client), and the media to
lock.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auteur.core.collector import collector_paused
from auteur.users.models import ContentPolicy, User, Workspace
from jobs import gpu_client
from jobs.errors import (
    EmptyTimeline,
    InputLimitExceeded,
    MediaNotReady,
    MediaProjectsDiffer,
    NoCaptions,
    RecordingRequired,
    WrongMediaType,
)
from jobs.inputs import MediaRef, VoiceRef
from jobs.models import Job
from jobs.payloads import CONSENT_PARAM, LIKENESS_PARAM, SAMPLE_SHA256_PARAM, TRANSCRIPT_PARAM, transcript_snapshot
from jobs.specs import JobSpec, JobType, job_spec
from media.models import MediaFile, MediaStatus, VoiceClone
from media.selectors import media_get, media_get_for_user, voice_get
from media.services.consents import VoiceUse, voice_use_check
from media.services.likeness import likeness_consent_check, media_sha256
from projects.captions import CaptionStyle, render_caption_files
from projects.edl.cuts import DEFAULT_PADDING_MS, Cuts, count_pieces, cut_tracks, transcript_cuts
from projects.edl.documents import edl_limits
from projects.edl.effects import check_tracks_effects
from projects.edl.selectors import edl_snapshot
from projects.edl.validation import check_edl_limits
from projects.errors import EdlLimitExceeded
from projects.models import Project
from projects.selectors import project_get, project_library_get


@dataclass(frozen=True)
class JobRequest:
    project: Project | None  # None: the user's Library, which does not exist yet
    input_params: dict[str, Any]
    quantities: dict[str, Any]
    media_ids: list[uuid.UUID]
    # Each media file the request names (by id, as in input_params): the SHA-256 of its bytes, ""
    # when unknown. The result cache identifies the input by these (jobs/intake/result_cache.py);
    # None (a request rebuilt from a job's input, a retry's) is never cached.
    content: dict[str, str] | None = None


@dataclass(frozen=True)
class RequestObjects:
    """What a body names, found among the caller's own objects (`job_request_objects`)."""

    project: Project | None  # None: the user's Library, which does not exist yet
    params: dict[str, Any]  # the body, each reference by its id as a string, a voice's sample key added
    media: dict[str, MediaFile]  # each MediaRef field's file
    voices: dict[str, VoiceClone] = dataclasses.field(default_factory=dict)  # each VoiceRef field's voice


class Finder:
    """How `job_request_objects` reads the caller's objects: each read is the selector's own (404
    for one that is not the caller's). `memo=True` reads each object once, however many requests
    name it (a batch's items naming one voice or project)."""

    def __init__(self, user: User, *, memo: bool = False) -> None:
        self.user = user
        self._memo: dict[tuple[str, str, str], Any] | None = {} if memo else None

    def _read(self, key: tuple[str, str, str], read: Callable[[], Any]) -> Any:
        if self._memo is None:
            return read()
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def project(self, project_id: uuid.UUID | str) -> Project:
        return self._read(("project", str(project_id), ""), lambda: project_get(user=self.user, project_id=project_id))

    def library(self) -> Project | None:
        return self._read(("library", "", ""), lambda: project_library_get(user=self.user))

    def media(self, project_id: uuid.UUID, media_id: uuid.UUID | str) -> MediaFile:
        return self._read(("media", str(project_id), str(media_id)),
                          lambda: media_get(user=self.user, project_id=project_id, media_id=media_id))

    def media_of_user(self, media_id: uuid.UUID | str) -> MediaFile:
        return self._read(("user_media", str(media_id), ""),
                          lambda: media_get_for_user(user=self.user, media_id=media_id))

    def voice(self, voice_id: uuid.UUID | str) -> VoiceClone:
        return self._read(("voice", str(voice_id), ""), lambda: voice_get(user=self.user, voice_id=voice_id))


def job_request_objects(*, user: User, spec: JobSpec, data: Mapping[str, Any],
                        finder: Finder | None = None) -> RequestObjects:
    """The owner checks, before any other check of the request: the project and each media file
    and voice the body (`spec.input`'s validated_data) names must be the caller's (404 otherwise,
    whatever else is wrong with the request or the account: one answer for any object that is not
    theirs). A few primary-key reads (`finder`'s); nothing is computed from what they find."""
    find = finder or Finder(user)
    params = dict(data)
    project = _project(find, spec, params.pop("project_id", None), params)
    media: dict[str, MediaFile] = {}
    voices: dict[str, VoiceClone] = {}
    for name, field in spec.references.items():
        if isinstance(field, MediaRef) and project is not None:  # (None: the body names no media)
            media[name] = find.media(project.pk, params[name])
            params[name] = str(media[name].pk)
        elif isinstance(field, VoiceRef) and params.get(name):
            voice = voices[name] = find.voice(params[name])
            params.update({name: str(voice.pk), "voice_sample_key": voice.sample_key})
    return RequestObjects(project=project, params=params, media=media, voices=voices)


def job_request_resolve(*, user: User, spec: JobSpec, objects: RequestObjects) -> JobRequest:
    """The request made of the caller's objects (`job_request_objects`): each file ready and of a
    kind its field takes, a render's timeline read, cut and captioned, the price's quantities."""
    params, project = dict(objects.params), objects.project
    for name, media in objects.media.items():
        field = spec.references[name]
        assert isinstance(field, MediaRef)
        _check_ready(name, media, field.kinds)
        _check_limits(spec, name, media)
    voices_consented(spec=spec, voices=objects.voices, media=objects.media)
    for name in spec.likeness_of:  # the consent it is accepted under: a revocation reaches it
        params[LIKENESS_PARAM] = str(likeness_consent_check(user=user, media=objects.media[name], field=name).pk)
    for name in spec.recordings:
        _check_recording(name, objects.media[name])
    for voice in objects.voices.values():  # the consent its speech is made under: a revocation reaches it
        params[CONSENT_PARAM] = str(voice.consent_id) if voice.consent_id else None
    if spec.claims_challenge:
        params[spec.claims_challenge] = str(params[spec.claims_challenge])
    if spec.consent_sample:
        params[SAMPLE_SHA256_PARAM] = _sample_sha256(spec, spec.consent_sample, objects.media[spec.consent_sample])
    locked = list(objects.media.values())
    if spec.timeline and project is not None:  # (a render's input requires project_id)
        params["edl"], locked = _timeline(user, project, params)
    if spec.transcript_of and spec.transcript_of in objects.media:
        # Taken now, even when empty: the model is sent what was screened, never a transcript written later.
        params[TRANSCRIPT_PARAM] = transcript_snapshot(objects.media[spec.transcript_of])
    quantities = spec.price.quantities(params, objects.media)
    return JobRequest(
        project=project,
        input_params={**params, "_quantities": quantities},
        quantities=quantities,
        media_ids=[m.pk for m in locked],
        content={str(m.pk): m.content_sha256 for m in locked},
    )


def voices_consented(*, spec: JobSpec, voices: Mapping[str, VoiceClone], media: Mapping[str, MediaFile]) -> None:
    """403 `consent_required` for a voice the request speaks in (a `VoiceRef`) or puts in a face's
    mouth (the voice of the TTS job that made a `spec.voice_of` file, or made the file that one is a
    version of), unless its speaker's verified consent is attached or its grace runs, and the
    consent its speech was made under was not revoked since (media.services.consents.voice_use_check)."""
    for name, use in _voice_uses(spec, voices, media).items():
        voice_use_check(use, field=name)


def _voice_uses(spec: JobSpec, voices: Mapping[str, VoiceClone], media: Mapping[str, MediaFile]
                ) -> dict[str, VoiceUse]:
    uses = {name: VoiceUse(str(voice.pk), voice) for name, voice in voices.items()}
    for name in spec.voice_of:
        behind = _speech_of(media[name]) if name in media else None
        if behind is not None:
            uses[name] = behind
    return uses


def job_voice_uses(job: Job) -> dict[str, VoiceUse]:
    """The voices a stored job speaks in or puts in a face's mouth, by the field that names them."""
    spec, params = job_spec(job.type), job.input_params
    uses: dict[str, VoiceUse] = {}
    for name, field in spec.references.items():
        if isinstance(field, VoiceRef) and params.get(name):
            voice = VoiceClone.objects.filter(pk=params[name], user_id=job.user_id).first()
            uses[name] = VoiceUse(str(params[name]), voice, params.get(CONSENT_PARAM))
    media = {name: file for name in spec.voice_of if params.get(name)
             if (file := MediaFile.objects.filter(pk=params[name], user_id=job.user_id).first()) is not None}
    return {**uses, **_voice_uses(spec, {}, media)}


def _speech_of(media: MediaFile) -> VoiceUse | None:
    """The voice whose speech `media` is: that of the TTS job that made it (or made the file it is a
    version of), with the consent the job recorded; None for a file no TTS job made."""
    job_id = media.source_job_id
    if job_id is None and media.derived_from_id is not None:
        job_id = MediaFile.objects.filter(pk=media.derived_from_id).values_list("source_job_id", flat=True).first()
    if job_id is None:
        return None
    params = Job.objects.filter(pk=job_id, type=JobType.TTS).values_list("input_params", flat=True).first() or {}
    voice_id = params.get("voice_id")
    if not voice_id:
        return None
    voice = VoiceClone.objects.filter(pk=voice_id, user_id=media.user_id).first()
    return VoiceUse(str(voice_id), voice, params.get(CONSENT_PARAM))


def _sample_sha256(spec: JobSpec, field: str, media: MediaFile) -> str:
    """The bytes a consent is verified for; a likeness consent covers them, so they must be known (read
    now if the probe has not recorded them: 422 `media_not_ready` when they cannot be read)."""
    if spec.challenge_kind != "likeness":
        return media.content_sha256
    sha256 = media_sha256(media)
    if not sha256:
        raise MediaNotReady("The file's bytes could not be read: upload it again.",
                            details={"field": field, "media_id": str(media.pk), "status": media.status})
    return sha256


def job_likeness_params(job: Job) -> dict[str, Any]:
    """A stored job's input as it would be accepted now (a retry's): with the likeness consent that
    covers the face it uses now (403 `consent_required` when none does: revoked since, or attested
    under a policy that is now `verified`)."""
    spec, params = job_spec(job.type), dict(job.input_params)
    for name in spec.likeness_of:
        media = MediaFile.objects.filter(pk=str(params.get(name)), user_id=job.user_id).first()
        if media is None:
            raise MediaNotReady("The file whose face the job uses was deleted.", details={"field": name})
        params[LIKENESS_PARAM] = str(likeness_consent_check(user=job.user, media=media, field=name).pk)
    return params


def job_request_get(*, user: User, spec: JobSpec, data: Mapping[str, Any]) -> JobRequest:
    """Resolve a body that `spec.input` validated (`data`: its validated_data): its objects, then
    the rest (for a caller that makes no other check in between)."""
    return job_request_resolve(user=user, spec=spec, objects=job_request_objects(user=user, spec=spec, data=data))


def _project(find: Finder, spec: JobSpec, project_id: uuid.UUID | None, params: dict[str, Any]) -> Project | None:
    if project_id is not None:
        return find.project(project_id)
    named = {name: params[name] for name, f in spec.references.items() if isinstance(f, MediaRef) and params.get(name)}
    if not named:
        return find.library()
    projects = {name: find.media_of_user(media_id).project_id for name, media_id in named.items()}
    if len(set(projects.values())) > 1:
        raise MediaProjectsDiffer(
            "The media files are in different projects: name the project with project_id, or use files of one "
            "project.",
            details={"projects": {name: str(pid) for name, pid in projects.items()}},
        )
    return find.project(next(iter(projects.values())))


def _check_ready(field: str, media: MediaFile, kinds: tuple[str, ...]) -> None:
    if media.status != MediaStatus.READY:
        raise MediaNotReady(
            f"The media file is not ready (status: {media.status}).",
            details={"field": field, "media_id": str(media.pk), "status": media.status},
        )
    if media.type not in kinds:
        raise WrongMediaType(
            f"{field} must be a {' or '.join(kinds)} file, not {media.type}.",
            details={"field": field, "media_id": str(media.pk), "type": media.type, "allowed": list(kinds)},
        )


def _check_recording(field: str, media: MediaFile) -> None:
    made = media.source_job_id is not None or (
        media.derived_from_id is not None
        and MediaFile.objects.filter(pk=media.derived_from_id, source_job_id__isnull=False).exists())
    if made:
        raise RecordingRequired(
            f"{field} must be a recording you uploaded, not a file a job made.",
            details={"field": field, "media_id": str(media.pk)},
        )


def _figure(value: float) -> int | float:
    """A limit or a measure as the API shows it: 60, not 60.0."""
    return int(value) if float(value).is_integer() else round(value, 3)


def _check_limits(spec: JobSpec, field: str, media: MediaFile) -> None:
    """422 `input_limit_exceeded` for a file past its engine's limit (`spec.media_limits`), as its
    probe measured it: its duration, and its frames (duration times frame rate, as the engine
    decodes them: every frame that starts before the end). A fact the probe did not give (no frame
    rate) is left to the engine, which checks what it decodes."""
    limit = spec.media_limits.get(field)
    if limit is None or not media.duration_ms:
        return
    seconds = media.duration_ms / 1000
    if limit.max_seconds is not None and seconds > limit.max_seconds:
        raise InputLimitExceeded(
            f"{field} is {_figure(seconds)} s long; {spec.type} takes at most {_figure(limit.max_seconds)} s.",
            details={"field": field, "media_id": str(media.pk), "limit": "max_seconds",
                     "max": _figure(limit.max_seconds), "value": _figure(seconds)},
        )
    fps = (media.metadata or {}).get("fps")
    if limit.max_frames is not None and isinstance(fps, int | float) and not isinstance(fps, bool) and fps > 0:
        frames = math.ceil(round(media.duration_ms * fps / 1000, 6))
        if frames > limit.max_frames:
            raise InputLimitExceeded(
                f"{field} has {frames} frames ({_figure(seconds)} s at {_figure(fps)} fps); {spec.type} takes at "
                f"most {limit.max_frames}.",
                details={"field": field, "media_id": str(media.pk), "limit": "max_frames", "max": limit.max_frames,
                         "value": frames},
            )


def _timeline(user: User, project: Project, params: dict[str, Any]) -> tuple[dict[str, Any], list[MediaFile]]:
    """The project's timeline as it is now, with `resolution` / `frame_rate` applied and the
    transcript's deletions cut (`params["cuts"]` records what was cut), and its media."""
    edl = edl_snapshot(project=project)
    # A timeline saved under other limits is refused before anything is computed from it.
    check_edl_limits(edl)
    # What the render does not read stays out of the job row (a transcript can be large): the
    # snapshot holds the clips already cut into the pieces that play.
    transcript = edl.pop("transcript", None) or {}
    edl.pop("history", None)
    check_tracks_effects(edl.get("tracks") or [])
    timeline = edl.setdefault("settings", {})
    if params.get("resolution"):
        width, _, height = params.pop("resolution").partition("x")
        timeline["resolution"] = {"width": int(width), "height": int(height)}
    if params.get("frame_rate") is not None:
        timeline["frame_rate"] = params.pop("frame_rate")
    with collector_paused():  # bounded by the timeline's limits: auteur/core/collector.py
        cuts = transcript_cuts(transcript, padding_ms=params.get("cut_padding_ms", DEFAULT_PADDING_MS))
        params["cuts"] = _cut(edl, cuts, padding_ms=params.get("cut_padding_ms", DEFAULT_PADDING_MS))
    clips = [c for t in edl.get("tracks") or [] for c in t["clips"]]
    if not clips:
        raise EmptyTimeline(
            "The cuts remove the whole timeline: nothing is left to render."
            if params["cuts"]["spans"]
            else "The timeline has no clips to render.",
            details={k: v for k, v in params["cuts"].items() if k != "spans"},
        )
    ids = {c["media_file_id"] for c in clips}
    found = {str(m.pk): m for m in MediaFile.objects.filter(project=project, user=user, pk__in=ids)}
    problems = [
        {
            "clip_id": c["clip_id"],
            "media_file_id": c["media_file_id"],
            "status": found[c["media_file_id"]].status if c["media_file_id"] in found else "missing",
        }
        for c in {c["clip_id"]: c for c in clips}.values()
        if c["media_file_id"] not in found or found[c["media_file_id"]].status != MediaStatus.READY
    ]
    if problems:
        raise MediaNotReady(
            "Some clips of the timeline use media that is not ready or no longer exists.",
            details={"clips": problems[:50]},
        )
    with collector_paused():
        params.update(_captions(edl, transcript, params, cuts))
    return edl, sorted(found.values(), key=lambda m: m.pk)


def _check_pieces(tracks: list[dict[str, Any]], cuts: Cuts) -> None:
    """422 `edl_limit_exceeded` when the cuts split the clips into more pieces than a render takes
    (the engine would refuse the job after it was charged): counted, not built."""
    maximum = min(edl_limits().max_render_pieces, gpu_client.render_max_pieces())
    pieces = count_pieces(tracks, cuts)
    if pieces > maximum:
        raise EdlLimitExceeded(
            f"A render takes at most {maximum} clips, counting each piece the transcript's cuts split a clip "
            f"into; this timeline makes {pieces}.",
            details={"limit": "render_pieces", "max": maximum, "count": pieces, "path": "tracks[].clips"},
        )


def _cut(edl: dict[str, Any], cuts: Cuts, *, padding_ms: int) -> dict[str, Any]:
    """Replace the snapshot's tracks by the pieces that play once the transcript's deletions are
    cut (deleted clips dropped); what was cut, and the timeline's length before and after."""
    before = int(edl["settings"].get("duration_ms") or 0)  # the end of the last non-deleted clip
    tracks = edl.get("tracks") or []
    _check_pieces(tracks, cuts)
    edl["tracks"] = cut_tracks(tracks, cuts)
    after = cuts.edited_duration(before)
    edl["settings"]["duration_ms"] = after  # what the render makes, and is priced by
    return {
        "padding_ms": padding_ms,
        "spans": [[start, end] for start, end in cuts.spans if start < before],
        "duration_before_ms": before,
        "duration_after_ms": after,
        "removed_ms": before - after,
    }


def _captions(edl: dict[str, Any], transcript: dict[str, Any], params: dict[str, Any], cuts: Cuts) -> dict[str, str]:
    """The caption files the render carries (at output times), for its `captions` mode."""
    style = params.pop("caption_style", None)
    files = render_caption_files(edl, transcript, params.get("captions", "none"),
                                 style=CaptionStyle(**style) if style else None,
                                 padding_ms=params["cuts"]["padding_ms"], cuts=cuts)  # the cuts the render makes
    if params.get("captions", "none") != "none" and not files:
        raise NoCaptions("The timeline's transcript has no words to caption.")
    return files


def content_policy_strict(account_id: uuid.UUID) -> bool:
    """Whether the account's workspace's owner chose the strict content policy (one read by key)."""
    policy = Workspace.objects.filter(pk=account_id).values_list("content_policy", flat=True).first()
    return policy == ContentPolicy.STRICT
