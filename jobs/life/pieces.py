"""A long file's job run as pieces: separate GPU calls at once, each retried on its own, stitched back.

A transcription or a compression of a file longer than AUTEUR_PIECES_MIN_MS is cut into pieces of
about AUTEUR_PIECES_TARGET_MS: a recording at its silences, a video at its keyframes
(gpu_tasks.pieces plans the cuts and stitches the transcripts). The job's `gpu_call_id` is then
PIECES, and its calls are its `JobPiece` rows': the spawn step starts at most `in_flight` of them
at once, each look polls the running ones, starts the next, re-spawns one that failed
transiently (its own attempts, MAX_PIECE_ATTEMPTS each), and fails the whole job on one that
failed for good (the usual refund: the job is charged for the whole file, once). Progress counts
the pieces. Where the transcription engine diarizes (DIARIZING_BACKENDS), one more call, a
SPEAKERS piece started first, diarizes the whole file, and the stitched words take its speakers.

When every piece has succeeded, the look answers a succeeded call whose result is the stitched
one, which the store step keeps as any call's: the transcript, or a compression's figures with
one `video` output that `pieces_save_output` joins from the pieces' files when it is stored (each
piece's result was checked as it arrived, and its call is kept until then).
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

import gpu_tasks.confined as confined
from auteur.core import tracing
from jobs import gpu_client
from jobs.events.record import job_event_record
from jobs.gpu_client import (
    CallStatus,
    PermanentGpuError,
    Piece,
    join_pieces,
    pieces_between,
    plan_pieces,
    stitch_transcript,
    turns_of,
)
from jobs.life.fairshare import others_waiting, start_due_on_commit, type_capacity, units_in_use
from jobs.life.publish import call_stop
from jobs.models import PIECES, Job, JobEventType, JobPiece, JobStatus
from jobs.specs import OutputKind, job_spec
from media.models import MediaFile
from media.probing.sandbox import media_call
from media.probing.service import probe_limits
from media.storage import get_storage

logger = logging.getLogger(__name__)

MAX_PIECE_ATTEMPTS = 3
MAX_IN_FLIGHT = 32
# The backends whose transcription engine labels speakers by diarizing the audio. There a long
# file's pieces only recognise words, and one more call (a SPEAKERS piece) diarizes the whole
# file beside them, so a speaker keeps one label across the pieces.
DIARIZING_BACKENDS = frozenset({"modal"})
COMPRESSION = "compression"


def _transcribes(job: Job) -> bool:
    return job_spec(job.type).output is OutputKind.TRANSCRIPT


def pieces_wanted(job: Job) -> bool:
    """Whether the job runs as pieces: a transcription or compression of a file longer than
    AUTEUR_PIECES_MIN_MS."""
    if not (_transcribes(job) or job.type == COMPRESSION) or settings.AUTEUR_PIECES_MIN_MS <= 0:
        return False
    if (job.input_params or {}).get("script"):
        return False  # aligned to a known script: the alignment reads the whole transcript at once
    duration = (job.input_params.get("_quantities") or {}).get("duration_ms") or 0
    return bool(duration > settings.AUTEUR_PIECES_MIN_MS)


def in_flight(job: Job) -> int:
    """How many of the job's pieces may run at once: the type's units that no other job holds and
    no other user waits for, at least 1 (the unit the job claimed when it started), at most
    MAX_IN_FLIGHT; with no capacity set, MAX_IN_FLIGHT. Fair share counts each running piece as a
    unit in use, so a job in pieces spreads over idle units only, and another user's queued job
    takes the next unit a piece frees (each piece's end starts the jobs due)."""
    capacity = type_capacity(job.type)
    if capacity <= 0:
        return MAX_IN_FLIGHT
    free = capacity - units_in_use(job.type, excluding=job.pk) - others_waiting(job.type, job.user_id, most=capacity)
    return max(1, min(MAX_IN_FLIGHT, free))


def time_limit_factor(job: Job) -> int:
    """How many of the type's time limits a job in pieces may take: its pieces in rounds of what
    may run at once (1 for any other job)."""
    if job.gpu_call_id != PIECES:
        return 1
    count = JobPiece.objects.filter(job=job).count()
    return max(1, math.ceil(count / in_flight(job)))


def pieces_plan(job: Job) -> list[Piece]:
    """Where to cut the job's file: a recording at its silences, a video at its keyframes. Both
    scans decode the upload, so they run as its probe does, in a child of the worker's media server
    (sandboxed, under the probe's limits), and read it as a bounded stream: no list of the file's
    packets, of which a small file can have tens of millions."""
    media = MediaFile.objects.get(pk=job.input_params["media_id"])
    target = settings.AUTEUR_PIECES_TARGET_MS
    with get_storage().local_path(media.storage_key) as path:
        if not _transcribes(job):
            bounds = _scan("gpu_tasks.pieces:scan_keyframe_bounds", path, target_ms=target)
            if not _ascending(bounds) or len(bounds) < 2:
                raise PermanentGpuError("invalid_media", "the video's keyframes could not be read")
            return pieces_between(bounds)
        quiet = _scan("gpu_tasks.pieces:scan_silences", path)
    if not all(isinstance(s, list) and len(s) == 2 and _ascending(s) for s in quiet):
        raise PermanentGpuError("invalid_media", "the recording's silences could not be read")
    return plan_pieces(media.duration_ms or 0, [(a, b) for a, b in quiet], target_ms=target,
                       window_ms=target // 4, overlap_ms=2_000)


def _ascending(values: Any) -> bool:
    """A list of whole milliseconds in increasing order: what a scan answers, checked as input."""
    return isinstance(values, list) and all(type(v) is int and v >= 0 for v in values) and all(
        a < b for a, b in itertools.pairwise(values))


def _scan(function: str, path: Path, **args: Any) -> Any:
    """A scan of the job's upload in a child of this worker's media server; what it could not read
    fails the job as the scan says (`invalid_media`), and so does a child that ran out of memory,
    CPU or time."""
    try:
        return media_call(function, path, limits=probe_limits(), **args)
    except confined.Refused as refusal:
        code = refusal.code if refusal.code in PermanentGpuError.codes else "invalid_media"
        raise PermanentGpuError(code, refusal.message) from None
    except confined.BudgetSpent as spent:
        raise PermanentGpuError("invalid_media", f"the file could not be read within the memory and time allowed "
                                                 f"({spent.cause})") from None


def _diarizes(job: Job) -> bool:
    """Whether the job's speakers come from a diarization of the whole file, beside its pieces."""
    return (_transcribes(job) and (job.input_params or {}).get("diarization", True) is not False
            and (job.gpu_backend or settings.AUTEUR_GPU_BACKEND) in DIARIZING_BACKENDS)


def pieces_start(job: Job) -> Job:
    """Cut the job into pieces (once: a redelivery finds them) and start the first of them."""
    if not JobPiece.objects.filter(job=job).exists():
        planned = pieces_plan(job)
        rows = [JobPiece(job=job, index=p.index, start_ms=p.start_ms, end_ms=p.end_ms,
                         audio_start_ms=p.audio_start_ms, audio_end_ms=p.audio_end_ms) for p in planned]
        if _diarizes(job):
            end = planned[-1].end_ms
            rows.append(JobPiece(job=job, index=len(planned), kind=JobPiece.Kind.SPEAKERS, start_ms=0, end_ms=end,
                                 audio_start_ms=0, audio_end_ms=end))
        JobPiece.objects.bulk_create(rows, ignore_conflicts=True)
        now = timezone.now()
        Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING, gpu_call_id="").update(
            gpu_call_id=PIECES, attempts=F("attempts") + 1, inference_started_at=now, updated_at=now)
        job_event_record(job.id, JobEventType.INFERENCE_STARTED, call_id=PIECES, pieces=len(planned),
                         speakers=len(rows) > len(planned))
        job.gpu_call_id, job.inference_started_at = PIECES, now
    pieces_spawn(job)
    return job


def pieces_spawn(job: Job) -> None:
    """Start pending pieces while fewer than `in_flight` run."""
    room = in_flight(job) - JobPiece.objects.filter(job=job, state=JobPiece.State.RUNNING).count()
    base = job_spec(job.type).build_payload(job)
    # The speakers' call first ("speakers" sorts after "span"): it hears the whole file.
    pending = JobPiece.objects.filter(job=job, state=JobPiece.State.PENDING).order_by("-kind", "index")
    for piece in pending[:max(0, room)]:
        if piece.attempts >= MAX_PIECE_ATTEMPTS:
            raise PermanentGpuError("internal", f"piece {piece.index} gave up after {piece.attempts} attempts")
        if piece.kind == JobPiece.Kind.SPEAKERS:
            payload = {**base, "speakers_only": True}
        else:
            payload = {**base, "span": {"start_ms": piece.audio_start_ms, "end_ms": piece.audio_end_ms}}
            if _transcribes(job):
                payload["diarization"] = False  # the speakers come from the whole file's call, if any
        with tracing.call_span(job, payload, piece=piece.index) as span:
            call_id = gpu_client.spawn(job.type, payload)
            span.set_attribute("auteur.gpu.call_id", call_id)
        won = JobPiece.objects.filter(pk=piece.pk, state=JobPiece.State.PENDING).update(
            state=JobPiece.State.RUNNING, call_id=call_id, attempts=F("attempts") + 1, started_at=timezone.now())
        if not won:
            call_stop(job.pk, call_id)


def pieces_poll(job: Job) -> CallStatus:
    """One look at every running piece; the stitched result once every piece has succeeded."""
    limit = job_spec(job.type).time_limit_seconds + settings.AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS
    for piece in JobPiece.objects.filter(job=job, state=JobPiece.State.RUNNING):
        status = gpu_client.poll(piece.call_id)
        # Two looks can poll one piece at once. Only the one that moves it on from this call acts:
        # the other may have read a call the first released after its success (a failure then).
        this_call = JobPiece.objects.filter(pk=piece.pk, state=JobPiece.State.RUNNING, call_id=piece.call_id)
        if status.state == "running":
            if piece.started_at and (timezone.now() - piece.started_at).total_seconds() > limit:
                gpu_client.cancel(piece.call_id)
                raise PermanentGpuError("timeout", f"piece {piece.index} ran past its {limit:g} s limit")
            if isinstance(status.progress, int | float) and math.isfinite(status.progress):
                JobPiece.objects.filter(pk=piece.pk).update(progress=max(0.0, min(100.0, float(status.progress))))
        elif status.state == "succeeded":
            result = gpu_client.checked_result(job.type, piece.call_id, status.result or {})
            if not this_call.update(
                state=JobPiece.State.SUCCEEDED, result=result, progress=100.0, gpu_seconds=status.gpu_seconds
            ):
                continue
            tracing.record_call(job, status.trace)
            if not result.get("outputs"):
                gpu_client.release_quietly(piece.call_id)  # else kept for its files until they are joined
            start_due_on_commit(job.type)  # the piece's unit is free
        else:
            error = status.error or PermanentGpuError("internal", "the GPU call failed without an error")
            if not error.retryable or piece.attempts >= MAX_PIECE_ATTEMPTS:
                if not this_call.exists():
                    continue
                pieces_cancel(job.pk)
                raise error
            if not this_call.update(state=JobPiece.State.PENDING):
                continue
            tracing.record_call(job, status.trace)
            job_event_record(job.id, JobEventType.INFERENCE_RETRY, code=error.code, piece=piece.index,
                             attempt=piece.attempts)
    pieces_spawn(job)
    pieces = list(JobPiece.objects.filter(job=job).order_by("index"))
    done = sum(p.state == JobPiece.State.SUCCEEDED for p in pieces)
    if pieces and done == len(pieces):
        return CallStatus(state="succeeded", result=_stitched(job, pieces), progress=100.0,
                          gpu_seconds=sum(p.gpu_seconds for p in pieces))
    progress = sum(p.progress for p in pieces) / max(1, len(pieces))
    return CallStatus(state="running", progress=progress)


def _stitched(job: Job, pieces: list[JobPiece]) -> dict[str, Any]:
    spans = [p for p in pieces if p.kind == JobPiece.Kind.SPAN]
    results = [p.result or {} for p in spans]
    if not _transcribes(job):
        return _joined(results)
    planned = [Piece(p.index, p.start_ms, p.end_ms, p.audio_start_ms, p.audio_end_ms) for p in spans]
    speakers = next((p.result or {} for p in pieces if p.kind == JobPiece.Kind.SPEAKERS), None)
    turns = None if speakers is None else turns_of(speakers)
    language = str(results[0].get("language") or job.input_params.get("language") or "en")
    stitched = stitch_transcript(planned, results, language=language, duration_ms=spans[-1].end_ms, turns=turns)
    for key in ("model", "diarization", "alignment"):
        if key in results[0]:
            stitched[key] = results[0][key]
    if turns is not None:
        stitched["diarization"] = {"performed": True, "speakers": len({t.speaker for t in turns})}
    stitched["pieces"] = len(spans)
    return stitched


def _joined(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A compression's result from its pieces': the first's figures, the pieces' length, and one
    video output, joined as it is stored (its size then too)."""
    first = results[0]
    video = dict(first["outputs"]["video"])
    video.pop("path", None)
    video.pop("data", None)
    return {**first, "duration_ms": sum(int(r.get("duration_ms") or 0) for r in results),
            "outputs": {"video": {**video, "pieces": len(results)}}, "pieces": len(results)}


def pieces_save_output(job: Job, name: str, dest: Path) -> Path:
    """Output `name` of a job in pieces at `dest`: each piece's file fetched from its own call (as
    any call's output is), then joined, with the source's audio."""
    pieces = list(JobPiece.objects.filter(job=job, state=JobPiece.State.SUCCEEDED).order_by("index"))
    if not pieces or len(pieces) != JobPiece.objects.filter(job=job).count():
        raise PermanentGpuError("internal", "a piece of the job has no result")
    media = MediaFile.objects.get(pk=job.input_params["media_id"])
    files = []
    for piece in pieces:
        ref = ((piece.result or {}).get("outputs") or {}).get(name)
        if not ref:
            raise PermanentGpuError("internal", f"piece {piece.index}'s {name} was not kept")
        # (A piece's call is given no output target: a piece is a short span, and its file joins the others here.)
        files.append(gpu_client.save_output(piece.call_id, ref, dest.parent / f"piece-{piece.index}.mp4"))
    with get_storage().local_path(media.storage_key) as source:
        join_pieces(files, source, dest, preset_name=str((pieces[0].result or {}).get("preset")),
                    timeout_s=job_spec(job.type).time_limit_seconds)
    for path in files:
        path.unlink(missing_ok=True)
    return dest


def pieces_cancel(job_id: Any) -> None:
    """Stop every running piece's call (the job failed, was canceled, or one piece failed for good),
    and let go of the finished ones' files."""
    for state, call_id in JobPiece.objects.filter(
            job_id=job_id, state__in=(JobPiece.State.RUNNING, JobPiece.State.SUCCEEDED)).values_list(
            "state", "call_id"):
        if state == JobPiece.State.RUNNING:
            call_stop(job_id, call_id)
        else:
            gpu_client.release_quietly(call_id)


def pieces_release(job: Job) -> None:
    """Let go of the finished pieces' calls once their files are stored."""
    for call_id in JobPiece.objects.filter(job=job, state=JobPiece.State.SUCCEEDED).values_list("call_id", flat=True):
        gpu_client.release_quietly(call_id)


def piece_job_ids(call_ids: list[str]) -> dict[str, Job]:
    """The processing jobs whose running pieces are these calls (an announcement's lookup)."""
    rows = JobPiece.objects.filter(call_id__in=call_ids, state=JobPiece.State.RUNNING,
                                   job__status=JobStatus.PROCESSING).select_related("job")
    return {row.call_id: row.job for row in rows}
