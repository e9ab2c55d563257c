"""The result cache: a user's identical work completes at once, with the outputs it got before.

Work is identical when its key is (`cache_key`): the SHA-256 of the job type, this server's GPU
backend, the engine (its model, its local model and its version: gpu_tasks/types.py) and the
request's parameters, with every media file the request names (a field, a render's clips)
replaced by the SHA-256 of its bytes. So the same file in two projects is the same input, and a
file re-uploaded too; a new engine version or another seed is other work. Only a type whose
output is a function of these is cached (`Determinism.INPUT`); a generator only when the request
names its seed (`Determinism.SEED`: without one, each call draws a fresh one). A request naming a
file whose hash is not known (stored before hashes were recorded) is not cached.

A hit is served by the submission itself, with no GPU call and no wait: the earlier job's output
files are copied as the new job's (server-side on S3), its results (a transcript, an answer)
repeated, and the job completes in the transaction that charges it the cache price. Nothing is
copied before everything that would refuse the submission has passed (its Idempotency-Key, its
quote, the balance: jobs/intake/submission.py), and the copies count against the user's
storage quota from the moment they are leased (403 `quota_exceeded`, nothing copied, when they
would not fit). The price:
AUTEUR_RESULT_CACHE_PRICE_PERCENT of its price (10 %), rounded up, at least 1 credit; with a
quote, the lower of the two. The source is the user's latest completed job with the key whose
output files all still exist (a user may have deleted one). Never across users: the lookup reads
the user's own jobs. The body's `cache: false` asks for a fresh run; its result is cached for
later all the same.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from jobs.inputs import SUBMISSION_OPTIONS
from jobs.life.outputs import queue_transcript_to_edl
from jobs.life.status import job_complete_from_cache
from jobs.life.timeline_swap import job_timeline_swap_requested
from jobs.life.transcript_edl import PENDING
from jobs.models import Job, JobStatus
from jobs.selectors.requests import JobRequest
from jobs.specs import Determinism, JobSpec, OutputKind
from media.models import MediaFile, MediaStatus
from media.services.captions import media_attach_caption
from media.services.outputs import OutputCopies, media_copy_outputs, media_save_copies

# Raised when the key's recipe changes, so that no key of the old recipe is matched.
CACHE_KEY_VERSION = 1
# Input params that are not the work: derived from it (the price's quantities), naming where it is
# stored (a voice's sample key: the voice's id stands for it), what is done with the output, or how
# a submission asked for it to run (its options: never in a job's input_params, and never in a key
# whatever an older job or another path stored).
_NOT_WORK = frozenset({"_quantities", "voice_sample_key", "replace_in_timeline", *SUBMISSION_OPTIONS})
# What a job's results say of that job alone, not of its work: made again for the new job.
_PER_JOB = frozenset({"output_media_ids", "caption_key", "edl", "timeline"})
# How many of the user's completed jobs with the key are looked at for one whose files remain.
_CANDIDATES = 3


def cache_key(*, spec: JobSpec, request: JobRequest) -> str:
    """The key of the request's work, or "" when its output is not a function of it."""
    engine = spec.engine
    params = {k: v for k, v in request.input_params.items() if k not in _NOT_WORK}
    if engine.determinism is Determinism.NONE:
        return ""
    if engine.determinism is Determinism.SEED and params.get("seed") is None:
        return ""
    if request.content is None or not all(request.content.values()):
        return ""
    canonical = json.dumps({
        "v": CACHE_KEY_VERSION, "type": spec.type.value, "backend": settings.AUTEUR_GPU_BACKEND,
        "engine": {"model": engine.model, "local_model": engine.local_model, "version": engine.version},
        "input": _by_content(params, request.content),
    }, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_content(value: Any, content: dict[str, str]) -> Any:
    """`value` with each media id found in it replaced by its file's content hash."""
    if isinstance(value, dict):
        return {k: _by_content(v, content) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_content(v, content) for v in value]
    if isinstance(value, str) and value in content:
        return f"sha256:{content[value]}"
    return value


def cache_price(cost: int) -> int:
    """What a job served from the cache costs, for a job whose price is `cost`."""
    return min(cost, max(1, math.ceil(cost * settings.AUTEUR_RESULT_CACHE_PRICE_PERCENT / 100)))


@dataclass(frozen=True)
class CacheHit:
    source: Job
    outputs: list[MediaFile]  # its output files, in its order


def cache_lookup(*, user_id: uuid.UUID, key: str) -> CacheHit | None:
    """The user's latest completed job with this key whose output files all still exist."""
    if not key:
        return None
    candidates = Job.objects.filter(user_id=user_id, cache_key=key, status=JobStatus.COMPLETED).order_by(
        "-completed_at")[:_CANDIDATES]
    for source in candidates:
        ids = [str(i) for i in (source.output_data or {}).get("output_media_ids") or []]
        found = {str(m.pk): m for m in MediaFile.objects.filter(
            pk__in=ids, user_id=user_id, source_job_id=source.pk, status=MediaStatus.READY)}
        if len(found) == len(ids):
            return CacheHit(source=source, outputs=[found[i] for i in ids])
    return None


@dataclass(frozen=True)
class CachedResult:
    """A hit made ready for job `job_id`: its output files copied, its results to repeat."""

    job_id: uuid.UUID
    project_id: uuid.UUID  # where the copies are
    source_id: uuid.UUID
    output_data: dict[str, Any]
    copies: OutputCopies


def cache_prepare(*, hit: CacheHit, job_id: uuid.UUID, project_id: uuid.UUID,
                  derived_from: str | None = None) -> CachedResult | None:
    """Copy the hit's output files as job `job_id`'s (outside any transaction: the copies are
    leased until `cache_complete` commits their rows, and counted against the user's storage
    quota: QuotaExceeded when they would not fit). None if a file was deleted meanwhile.
    Only once nothing else can refuse the submission."""
    source = hit.source
    prefix, renamed_prefix = f"{source.type}-{str(source.pk)[:8]}-", f"{source.type}-{str(job_id)[:8]}-"

    def renamed(name: str) -> str:
        return renamed_prefix + name.removeprefix(prefix)

    copies = media_copy_outputs(sources=hit.outputs, job_id=job_id, project_id=project_id, renamed=renamed,
                                derived_from=derived_from)
    if copies is None:
        return None
    output_data = {k: v for k, v in (source.output_data or {}).items() if k not in _PER_JOB}
    return CachedResult(job_id=job_id, project_id=project_id, source_id=source.pk, output_data=output_data,
                        copies=copies)


def cache_complete(*, job: Job, spec: JobSpec, cached: CachedResult) -> None:
    """Give the new job (created and charged in the caller's transaction) its outputs, and
    complete it: what storing a GPU call's result does (jobs.life.outputs), from the cache."""
    output_data = dict(cached.output_data)
    if spec.output is OutputKind.TRANSCRIPT:
        output_data["caption_key"] = media_attach_caption(media_id=job.input_params["media_id"],
                                                          transcript=cached.output_data)
        # Written into the project's timeline once the job is committed, by the task that retries it.
        output_data["edl"] = {"status": PENDING}
        job_pk = job.pk
        transaction.on_commit(lambda: queue_transcript_to_edl(job_pk), robust=True)
    output_media = media_save_copies(cached.copies)
    if output_media:
        output_data["output_media_ids"] = output_media
    job_timeline_swap_requested(job=job, output_data=output_data)
    job_complete_from_cache(job=job, output_data=output_data, output_media=output_media)
