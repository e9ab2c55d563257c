"""Output screening: what a job made is screened before it is kept, and a flagged output is withheld.

The store step (jobs.life.outputs) asks `output_verdict` once the call's result was checked and
before any media row exists (rows are made `ready`, so a user could list one at once). A verdict
that flags the outputs withholds them (`output_withheld`): each file goes to the job's quarantine
folder (`quarantine/<job_id>/<name>`, media.services.keys), which no row a user can read names and
which is deleted AUTEUR_MODERATION_QUARANTINE_DAYS later; the job fails `output_moderated`,
refunded exactly once (jobs.life.status.job_fail), with no `completed` event and no outputs; and a
`JobModeration` row, written in the same transaction as the failure, tells staff what was flagged
and where the files wait.

What is screened:
- speech (`tts`): the transcript of the generated speech, by the text screener under the "full"
  policy. The local engine (eSpeak NG) says exactly the text it was given, so its transcript is the
  job's `text`; a result may state the transcript it heard (`output_transcript`, checked as input by
  gpu_tasks.results), which is then screened too.
- images (`image-generation`): each image, decoded in the sandbox (media.probing.facts.screen_frames,
  bounded by AUTEUR_MEDIA_MAX_PIXELS and the probe's limits), by the embedded image screener
  (gpu_tasks.screening.image: open_nsfw, category `sexual` only);
- video (`video-generation`, `lip-sync`, `performance-cloning`, `gaze-redirection`): the video's
  frames at AUTEUR_SCREENING_OUTPUT_VIDEO_FRAMES moments spread evenly over its length (its length
  measured from the packets, never the header; each moment's frame decoded from the key frame before
  it: media.probing.facts.screen_frames_spread), in the sandbox, scored as images are.
  An uploaded video is first moved to the job's quarantine folder, where no URL writes, and
  screened there: what is kept (moved on from there) is what was screened;
- nothing else: generated audio without speech, and a render's or a compression's video (the user's
  own media, cut or re-encoded), are not screened by a model here. The test seam below can flag any
  type.

The test seam: AUTEUR_SCREENING_INJECT ("image-generation:output=1.0;tts:output=0.05") flags that
share of each type's jobs, recorded with source `injected`. The draw is derived from the job's id,
so every delivery of one job's store step reaches the same verdict.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from credits.services.ledger import credit_adjust
from jobs import gpu_client
from jobs.events.record import job_event_record
from jobs.life.standing import standing_outputs_count
from jobs.life.status import job_fail
from jobs.models import Job, JobEventType, JobModeration, ModerationSource, ModerationState
from jobs.payloads import LIKENESS_PARAM
from jobs.selectors.requests import content_policy_strict, job_voice_uses
from jobs.specs import JobType, OutputKind, job_spec
from media.models import MediaFile, PendingObjectDeletion
from media.probing.service import screening_frames, screening_frames_spread
from media.services.consents import consents_revoked_locked
from media.services.deletion import PREFIX_MARK, media_delete_objects
from media.services.keys import media_prefix, quarantine_folder
from media.services.likeness import likeness_consents_revoked_locked
from media.services.outputs import media_create_output, output_media_id
from media.storage import get_storage

# What the test seam flags: a job's outputs at its store step, or the input files a request names
# (refused at submission, jobs.intake.media_screening).
INJECT_KINDS = ("output", "input")
INJECTED_CATEGORY = "injected"  # what an injected flag is recorded as: no screener named a category
INJECTED_MODEL = "injected"
# The types whose image outputs the image screener sees (each image, one frame).
IMAGE_TYPES = frozenset({JobType.IMAGE_GENERATION.value})
# The types whose video outputs it sees (frames spread over each video): the generative ones.
VIDEO_TYPES = frozenset({JobType.VIDEO_GENERATION.value, JobType.LIP_SYNC.value, JobType.PERFORMANCE_CLONING.value,
                         JobType.GAZE_REDIRECTION.value})
OUTPUT_TRANSCRIPT = "output_transcript"  # a result's transcript of the speech it made
_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class OutputVerdict:
    """Why a job's outputs are withheld: the categories, who decided, the screener's version."""

    categories: tuple[str, ...]
    source: str
    model_version: str


def parse_inject_spec(spec: str) -> dict[tuple[str, str], float]:
    """{(job type or "*", kind): share flagged} from a spec like "image-generation:output=1.0;tts:output=0.05;
    lip-sync:input=1.0". ValueError for anything malformed: an unknown type or kind, a share outside
    [0, 1], a type named twice for one kind."""
    table: dict[tuple[str, str], float] = {}
    for part in (p.strip() for p in (spec or "").split(";")):
        if not part:
            continue
        type_name, sep, body = (s.strip() for s in part.partition(":"))
        if not sep or not body:
            raise ValueError(f"screening injection {part!r}: expected 'type:output=rate'")
        if type_name != "*":
            try:
                type_name = JobType(type_name).value
            except ValueError:
                raise ValueError(f"screening injection: unknown job type {type_name!r}") from None
        kind, eq, value = (s.strip() for s in body.partition("="))
        if not eq or kind not in INJECT_KINDS:
            raise ValueError(f"screening injection {part!r}: unknown kind {kind!r} (expected one of {INJECT_KINDS})")
        if (type_name, kind) in table:
            raise ValueError(f"screening injection: {type_name!r} given twice for {kind}")
        if not _NUMBER.match(value) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"screening injection {part!r}: rate {value!r} is not a number in [0, 1]")
        table[type_name, kind] = float(value)
    return table


@functools.lru_cache(maxsize=4)
def _inject_table(spec: str) -> dict[tuple[str, str], float]:
    return parse_inject_spec(spec)


def injected_rate(job_type: str, kind: str = "output") -> float:
    """The share of `job_type`'s jobs (kind "output") or of the files its requests name (kind
    "input") that the test seam flags: the one place AUTEUR_SCREENING_INJECT is read."""
    table = _inject_table(settings.AUTEUR_SCREENING_INJECT or "")
    return table.get((job_type, kind), table.get(("*", kind), 0.0))


def _draw(job_id: uuid.UUID | str) -> float:
    """A number in [0, 1) fixed by the job's id (or a file's SHA-256): each delivery of its store
    step, each request naming the file, draws the same."""
    digest = hashlib.sha256(f"screening-inject:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def injected(job_type: str, kind: str, key: uuid.UUID | str) -> bool:
    """Whether the test seam flags this job's outputs, or this file (`key`: its SHA-256) as an input."""
    rate = injected_rate(job_type, kind)
    return rate > 0 and _draw(key if kind == "output" else f"{kind}:{key}") < rate


def screened_kinds(job: Job) -> frozenset[OutputKind]:
    """The kinds of the job's outputs the image screener sees (each landed first for it)."""
    if job.type in IMAGE_TYPES:
        return frozenset({OutputKind.IMAGE})
    if job.type in VIDEO_TYPES:
        return frozenset({OutputKind.VIDEO})
    return frozenset()


def output_verdict(job: Job, result: Mapping[str, Any], landed: Mapping[str, Path] | None = None,
                   ) -> OutputVerdict | None:
    """The verdict on a job's outputs before they are kept: None when they may be, else why not.
    `landed`: {output name: local file} of the outputs to screen (screened_kinds)."""
    if injected(job.type, "output", job.pk):
        return OutputVerdict(categories=(INJECTED_CATEGORY,), source=ModerationSource.INJECTED,
                             model_version=INJECTED_MODEL)
    if job.type == JobType.TTS.value:
        return _speech_verdict(job, result)
    if landed:
        return _pictures_verdict(job, landed)
    return None


def _pictures_verdict(job: Job, landed: Mapping[str, Path]) -> OutputVerdict | None:
    """Each image, one frame, and each video, frames spread over its length, decoded in the sandbox
    and scored by the embedded image screener. An output that cannot be decoded within the probe's
    limits is refused as the probe would refuse it."""
    engine = job_spec(job.type).engine
    frames: list[bytes] = []
    for name, path in landed.items():
        if engine.output_kind(name) is OutputKind.VIDEO:
            decoded = screening_frames_spread(path, count=settings.AUTEUR_SCREENING_OUTPUT_VIDEO_FRAMES)
        else:
            decoded = screening_frames(path, count=1, every_s=1.0)
        if not decoded:
            raise gpu_client.PermanentGpuError("invalid_result", f"output {name} could not be decoded to be screened")
        frames += decoded
    top, version = 0.0, ""
    for start in range(0, len(frames), gpu_client.IMAGE_SCREEN_MAX_FRAMES):
        part = gpu_client.screen_images(frames[start:start + gpu_client.IMAGE_SCREEN_MAX_FRAMES])
        top, version = max(top, part.top_score), part.model_version
        if part.categories:
            return OutputVerdict(categories=part.categories, source=ModerationSource.EMBEDDED,
                                 model_version=part.model_version)
    # What the platform's policy passes, the workspace's strict one may not.
    strict = gpu_client.image_refused_at(top, strict=True)
    if strict and content_policy_strict(job.user_id):
        return OutputVerdict(categories=strict, source=ModerationSource.EMBEDDED, model_version=version)
    return None


def _speech_verdict(job: Job, result: Mapping[str, Any]) -> OutputVerdict | None:
    """The transcript of the speech a TTS job made, screened as text a user sent would be."""
    texts = [job.input_params.get("text"), result.get(OUTPUT_TRANSCRIPT)]
    step = gpu_client.SCREEN_MAX_CHARS
    pieces = {f"transcript#{n}-{start}": (text[start:start + step], "full")
              for n, text in enumerate(dict.fromkeys(t for t in texts if isinstance(t, str) and t))
              for start in range(0, len(text), step)}
    if not pieces:
        return None
    screening = gpu_client.screen_texts(pieces)
    found = screening.flagged
    if not found and screening.strict_flagged and content_policy_strict(job.user_id):
        found = screening.strict_flagged  # what the workspace's strict policy refuses besides
    if not found:
        return None
    categories = tuple(dict.fromkeys(c for flagged in found.values() for c in flagged))
    return OutputVerdict(categories=categories, source=ModerationSource.EMBEDDED,
                         model_version=screening.model_version)


def quarantine_lease(job: Job) -> None:
    """The deletion of the job's quarantine folder once staff's time to decide has passed: written
    before any file goes there, so nothing is kept longer whatever happens to the processes."""
    key = quarantine_folder(job_id=job.pk) + PREFIX_MARK
    if not PendingObjectDeletion.objects.filter(key=key).exists():
        due_at = timezone.now() + timedelta(days=settings.AUTEUR_MODERATION_QUARANTINE_DAYS)
        PendingObjectDeletion.objects.create(key=key, due_at=due_at)


def quarantine_lease_release(job: Job) -> None:
    """The lease of the job's quarantine folder once nothing of it is left there: the outputs it held
    while they were screened were kept (moved to their own keys)."""
    PendingObjectDeletion.objects.filter(key=quarantine_folder(job_id=job.pk) + PREFIX_MARK).delete()


def output_withheld(*, job: Job, verdict: OutputVerdict, quarantine: list[dict[str, str]]) -> bool:
    """Fail the job `output_moderated` (refunded once, no outputs, no `completed` event) and record
    what was withheld, in one transaction; its files are in the quarantine folder already. True if
    this call did it; False when the job had ended meanwhile (a duplicate delivery of this step did
    it, or the reaper failed it: then, unless a verdict was recorded, the quarantined files go now)."""
    detail = f"output flagged ({verdict.source}: {', '.join(verdict.categories)})"
    with transaction.atomic():
        failed = job_fail(job_id=job.pk, code="output_moderated", detail=detail, retryable=False)
        if failed:
            JobModeration.objects.create(job_id=job.pk, user_id=job.user_id, categories=list(verdict.categories),
                                         source=verdict.source, quarantine=quarantine,
                                         model_version=verdict.model_version[:64])
    if not failed and not JobModeration.objects.filter(job_id=job.pk).exists():
        folder = quarantine_folder(job_id=job.pk)
        media_delete_objects(keys=[], prefixes=[folder])
        PendingObjectDeletion.objects.filter(key=folder + PREFIX_MARK).delete()
    return failed


@transaction.atomic
def moderation_confirm(*, job_id: uuid.UUID | str, staff_user: User) -> bool:
    """Staff agree with the verdict: the output stays withheld, and goes when its quarantine lapses.
    True if this call decided it (a held one); a released or confirmed one is left as it is. The
    confirmation counts towards its account's review hold (jobs.life.standing), in this transaction."""
    held = JobModeration.objects.filter(job_id=job_id, state=ModerationState.HELD).values_list("user_id", flat=True)
    user_id = held.first()
    if user_id is None or not held.update(state=ModerationState.CONFIRMED, decided_by=staff_user,
                                          decided_at=timezone.now()):
        return False
    standing_outputs_count(user_id=user_id)
    return True


def moderation_release(*, job_id: uuid.UUID | str, staff_user: User) -> list[str] | None:
    """Staff let the user have a withheld output, in one transaction: the job is charged its cost
    again through the staff correction (credit_adjust, idempotency key `moderation-release:<job>`,
    which refuses a balance that cannot cover it: 402 insufficient_credits, nothing done; speech in a
    voice whose consent was revoked is refused, consent_revoked), each
    quarantined file becomes a media file of the job's project as any output does (probed, with
    its thumbnail), and an `output_released` event names them. The job stays failed: ended jobs
    stay ended. Returns the new media ids; None when it was released already (nothing done).
    A release refused or failed part way leaves no object behind: the rows roll back, and the
    objects copied for them (each under its media's folder, an id derived from the job and the
    name: no other row names one) are deleted."""
    copied: list[str] = []
    try:
        return _release(job_id, staff_user, copied)
    except BaseException:
        if copied:
            media_delete_objects(keys=[], prefixes=copied)
        raise


def _release(job_id: uuid.UUID | str, staff_user: User, copied: list[str]) -> list[str] | None:
    with transaction.atomic():
        hold = JobModeration.objects.select_for_update().select_related("job", "job__user").get(job_id=job_id)
        if hold.state == ModerationState.RELEASED:
            return None
        job = hold.job
        if job.project_id is None:
            raise ApplicationError("The job's project was deleted: there is nowhere to release its output to.",
                                   code="project_deleted")
        # What the store step would not keep, a release does not make: speech in a voice whose consent
        # was revoked since (read under a share lock, as the store step reads it).
        uses = job_voice_uses(job)
        if uses and (revoked := consents_revoked_locked(uses.values())):
            raise ApplicationError(f"The consent of voice {revoked} was revoked: nothing spoken in it is released.",
                                   code="consent_revoked")
        # Nor a face whose likeness consent was revoked since (lip sync, performance cloning, gaze).
        if likeness_consents_revoked_locked([job.input_params.get(LIKENESS_PARAM)]):
            raise ApplicationError("The likeness consent of the face it uses was revoked: nothing is released.",
                                   code="consent_revoked")
        charge = 0
        if job.credits_cost:
            credit_adjust(user=job.user, amount=-job.credits_cost, staff_user=staff_user,
                          reason=f"moderated output of job {job.pk} released by staff",
                          idempotency_key=f"moderation-release:{job.pk}")
            charge = job.credits_cost
        copied += [media_prefix(project_id=job.project_id, media_id=output_media_id(
            job_id=job.pk, name=_released_name(job, entry))) for entry in hold.quarantine]
        try:
            media_ids = [str(_released(job, job.project_id, entry).pk) for entry in hold.quarantine]
        except FileNotFoundError:  # the quarantine lapsed (and its charge above rolls back with this)
            raise ApplicationError("The withheld output was deleted when its quarantine lapsed.",
                                   code="quarantine_lapsed") from None
        hold.state, hold.decided_by, hold.decided_at = ModerationState.RELEASED, staff_user, timezone.now()
        hold.save(update_fields=["state", "decided_by", "decided_at"])
        job_event_record(job.pk, JobEventType.OUTPUT_RELEASED, output_media_ids=media_ids, charged=charge)
    return media_ids


def _released(job: Job, project_id: uuid.UUID, entry: Mapping[str, str]) -> MediaFile:
    """A quarantined output as a media file of the job's project: a copy of the object, stored as
    any output is (media_create_output: probed in the sandbox, idempotent per job and name)."""
    spec = job_spec(job.type)
    kind = spec.engine.output_kind(entry["name"])
    with get_storage().local_path(entry["key"]) as path, tempfile.TemporaryDirectory(prefix="auteur-release-") as tmp:
        copy = Path(tmp) / f"output{Path(entry['filename']).suffix[:16]}"
        shutil.copyfile(path, copy)
        return media_create_output(
            project_id=project_id, user_id=job.user_id, job_id=job.pk,
            name=_released_name(job, entry),
            type=kind.value if kind.is_media else OutputKind.VIDEO.value, mime_type=entry["content_type"],
            local_path=copy,
            derived_from=job.input_params.get(spec.version_of) if spec.version_of else None,
        )


def _released_name(job: Job, entry: Mapping[str, str]) -> str:
    """A released output's name, as the store step names a kept one."""
    return f"{job.type}-{str(job.pk)[:8]}-{entry['filename']}"
