"""Storing a finished call's result: its files as media of the project, then the move to `completed`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from auteur.core import tracing
from jobs import gpu_client, task_names
from jobs.life import moderation, pieces
from jobs.life.publish import publish_task
from jobs.life.status import job_complete, job_fail, job_inference_ended
from jobs.life.timeline_swap import job_timeline_swap_requested, swap_asked
from jobs.life.transcript_edl import PENDING, job_transcript_to_edl_failed, job_transcript_to_edl_first
from jobs.models import Job, JobStatus
from jobs.payloads import LIKENESS_PARAM, SAMPLE_SHA256_PARAM
from jobs.selectors.requests import job_voice_uses
from jobs.specs import JobType, OutputKind, job_spec
from media.models import MediaFile
from media.services.captions import media_attach_caption
from media.services.consents import consent_record_verification, consents_revoked_locked, voice_use_revoked
from media.services.gpu_outputs import OutputRefused, check_staged, media_take_staged, staged_output
from media.services.keys import quarantine_key
from media.services.likeness import (
    likeness_consent_revoked,
    likeness_consents_revoked_locked,
    likeness_record_verification,
)
from media.services.outputs import media_create_output, media_delete_job_outputs
from media.storage import get_storage

logger = logging.getLogger(__name__)


def job_result_store(
    *, job_id: uuid.UUID | str, result: dict[str, Any], gpu_seconds: float = 0.0, job: Job | None = None,
    inference_ended: bool = False, first_store: bool = False,
) -> Job | None:
    """Store the call's outputs (idempotently) and complete the job. None if it is not processing.

    A job that ends otherwise while its outputs are being stored (failed by the reaper, say) was
    refunded, so it keeps none of them. `inference_ended`: the caller's poll stamped
    `inference_ended_at` just now (job_poll, on a call that succeeded), so it is not stamped again.
    `first_store`: no delivery has stored any of the job's outputs before (it was claimed in the
    caller's step), so none is looked for.
    """
    if job is None:
        job = Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).first()
    if job is None:
        return None
    with tracing.job_span("job.store", job):
        return _store(job, result, gpu_seconds, inference_ended=inference_ended, first_store=first_store)


def _store(job: Job, result: dict[str, Any], gpu_seconds: float, *, inference_ended: bool,
           first_store: bool) -> Job | None:
    # Checked before anything is stored, and each file again as it is opened: a result that is
    # not what the backend produces fails the job (refunded as any failure) and nothing of it is
    # kept (job_fail deletes what was stored).
    if job.gpu_call_id != pieces.PIECES:  # a job in pieces: each piece's result was checked as it came
        with _refusals_logged(job):
            result = gpu_client.checked_result(job.type, job.gpu_call_id, result)
    if not inference_ended and not job_inference_ended(job=job):
        return None
    output_data = {k: v for k, v in result.items() if k != "outputs"}
    uses = job_voice_uses(job)
    revoked = [use.voice_id for use in uses.values() if voice_use_revoked(use)]
    if revoked:  # withdrawn while it ran: nothing it made is kept, and the failure refunds it
        _revoked_fail(job, revoked[0])
        return None
    likeness = job.input_params.get(LIKENESS_PARAM)
    if likeness_consent_revoked(likeness):
        _revoked_fail(job, None)
        return None
    outputs = result.get("outputs") or {}
    with contextlib.ExitStack() as landings:
        # Screened before any row names an output (a row is made ready: its user could list it at
        # once); the images screened are landed first, and kept or withheld from where they landed.
        with _refusals_logged(job):
            landed = _landed_to_screen(job, outputs, landings)
            verdict = moderation.output_verdict(job, result, landed)
            if verdict is not None:
                quarantine = _quarantined(job, outputs, landed)
        if verdict is not None:
            moderation.output_withheld(job=job, verdict=verdict, quarantine=quarantine)
            _release_call(job)
            return None
        output_data.pop(moderation.OUTPUT_TRANSCRIPT, None)  # screened; the job's output is what it always was
        with _refusals_logged(job):
            output_media = _store_outputs(job, outputs, first_store=first_store, landed=landed)
        if any(ref.get(gpu_client.UPLOADED) for name, ref in outputs.items() if name in landed):
            moderation.quarantine_lease_release(job)  # what it held while screened is kept: none is left there
    if job.gpu_call_id == pieces.PIECES and output_media and "output_size_bytes" in output_data:
        output_data["output_size_bytes"] = MediaFile.objects.get(pk=output_media[0]).file_size_bytes
    if job_spec(job.type).output is OutputKind.TRANSCRIPT:
        output_data["caption_key"] = media_attach_caption(media_id=job.input_params["media_id"], transcript=output_data)
        edl = job_transcript_to_edl_first(job=job, output_data=output_data)
        if edl is not None:
            output_data["edl"] = edl
    if output_media:
        output_data["output_media_ids"] = output_media
    verification = job_spec(job.type).output is OutputKind.VERIFICATION
    # The completion is one statement (job_complete: the move, its event and usage), committed by
    # itself unless a caller's transaction is open: no BEGIN and COMMIT around it, two round trips
    # fewer a job (bench/pipeline_throughput.py). What it sends after commit (the event, the
    # user's next start) is sent once it returns, as after a transaction's commit. A timeline swap
    # asks for its task on commit before the move is made, so it keeps the transaction.
    # A verification's consent is recorded with the completion: a completed verification always has one.
    # So is a job that speaks in a voice: its consents are read again under a share lock, which a
    # revocation (holding them for update) waits for or has committed before.
    settled = transaction.atomic() if verification or uses or likeness or swap_asked(job) \
        or transaction.get_connection().in_atomic_block else contextlib.nullcontext()
    with settled:
        if uses and (revoked_now := consents_revoked_locked(uses.values())):
            _revoked_fail(job, revoked_now)  # (its stored outputs deleted with the failure)
            return None
        if likeness and likeness_consents_revoked_locked([likeness]):
            _revoked_fail(job, None)  # (its stored outputs deleted with the failure)
            return None
        if verification:
            output_data = _consent_recorded(job, output_data)
        job_timeline_swap_requested(job=job, output_data=output_data)
        if not job_complete(job=job, output_data=output_data, output_media=output_media, gpu_seconds=gpu_seconds):
            # Completed by a duplicate delivery of this step (the outputs are its too), or ended
            # otherwise meanwhile (failed by the reaper): refunded, so it keeps nothing.
            if not Job.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).exists():
                media_delete_job_outputs(job_id=job.pk)
            return None
        if (output_data.get("edl") or {}).get("status") == PENDING:
            job_pk = job.pk
            transaction.on_commit(lambda: queue_transcript_to_edl(job_pk), robust=True)
    _release_call(job)
    return job


def _revoked_fail(job: Job, voice_id: str | None) -> None:
    """`voice_id`: the voice whose consent was revoked; None: the likeness consent of the face it uses."""
    detail = f"the consent of voice {voice_id} was revoked" if voice_id else "the likeness consent it uses was revoked"
    job_fail(job_id=job.pk, code="consent_revoked", detail=detail, retryable=False)
    gpu_client.release_quietly(job.gpu_call_id)


def _release_call(job: Job) -> None:
    """The call's files are the store's now (kept, or withheld): the backend may drop its copies."""
    if job.gpu_call_id == pieces.PIECES:
        pieces.pieces_release(job)
    elif job.gpu_call_id:
        gpu_client.release_quietly(job.gpu_call_id)


def _consent_recorded(job: Job, figures: dict[str, Any]) -> dict[str, Any]:
    """Record the consent a verification's figures decide; what the owner is told of it: which checks
    passed and the consent's id, never a figure (the figures stay on the consent, for staff)."""
    params = job.input_params
    if job.type == JobType.LIKENESS_CONSENT:
        checks, kept = gpu_client.likeness_consent_verdict(figures)
        consent = likeness_record_verification(
            job_id=job.pk, user_id=job.user_id, member_id=job.member_id, challenge_id=params["challenge_id"],
            recording_media_id=params.get("recording_media_id"), subject_media_id=params.get("subject_media_id"),
            subject_sha256=params.get(SAMPLE_SHA256_PARAM, ""), checks=checks, figures=kept,
        )
        return {"passed": consent.status == "verified", "checks": dict(consent.checks), "consent_id": str(consent.pk)}
    checks, kept = gpu_client.voice_consent_verdict(figures)
    consent = consent_record_verification(
        job_id=job.pk, user_id=job.user_id, member_id=job.member_id, challenge_id=params["challenge_id"],
        recording_media_id=params.get("recording_media_id"), sample_sha256=params.get(SAMPLE_SHA256_PARAM, ""),
        checks=checks, figures=kept,
    )
    return {"passed": consent.status == "verified", "checks": dict(consent.checks), "consent_id": str(consent.pk)}


@contextlib.contextmanager
def _refusals_logged(job: Job) -> Iterator[None]:
    """A refused result is logged for operators: the rule it broke, never its content."""
    try:
        yield
    except gpu_client.PermanentGpuError as exc:
        if exc.code == "invalid_result":
            logger.warning("GPU result refused: job %s, call %s: %s", job.pk, job.gpu_call_id, exc.message,
                           extra={"job_id": str(job.pk)})
        raise


def queue_transcript_to_edl(job_id: uuid.UUID) -> None:
    """Retry writing the transcript into the project's timeline, by its own task (jobs.life.transcript_edl)."""
    if not publish_task(task_names.TRANSCRIPT_TO_EDL, (str(job_id),), job_id=job_id):
        job_transcript_to_edl_failed(job_id=job_id, exc=KombuOperationalError("the broker could not be reached"))


def _store_outputs(job: Job, outputs: dict[str, dict[str, Any]], *, first_store: bool,
                   landed: dict[str, Path] | None = None) -> list[str]:
    """Each output file as a media file of the job's project (idempotent per job and name).
    `landed`: outputs already landed to be screened, {name: local file}, stored from there.

    `outputs` are checked refs (gpu_client.checked_result): a plain base name, an allowed content
    type, and bytes or a file that the call's backend produced."""
    spec = job_spec(job.type)
    engine = spec.engine
    derived_from = job.input_params.get(spec.version_of) if spec.version_of else None
    stored: list[str] = []
    for name, ref in outputs.items():
        if job.project_id is None:
            break  # the project was deleted meanwhile; its job is being canceled
        kind = engine.output_kind(name)
        filename = ref["filename"]
        media_type = kind.value if kind.is_media else OutputKind.VIDEO.value
        output = functools.partial(
            media_create_output, project_id=job.project_id, user_id=job.user_id, job_id=job.id,
            name=f"{job.type}-{str(job.id)[:8]}-{filename}", type=media_type,
            mime_type=ref["content_type"], generation=ref.get("metadata"), derived_from=derived_from,
            first_store=first_store,
        )  # fmt: skip
        if ref.get(gpu_client.UPLOADED) and job.gpu_call_id != pieces.PIECES:
            # PUT by the call to the target its spawn gave (jobs.life.inference): checked there.
            expected = engine.uploaded_outputs.get(name, "")
            try:
                staged = staged_output(job_id=job.id, name=name, content_type=expected, ref=ref)
                if landed and name in landed:  # screened where it was held since (_held_to_screen)
                    staged = dataclasses.replace(staged, key=quarantine_key(job_id=job.pk, name=name), upload_id="")
                media = output(staged=staged)
            except OutputRefused as exc:
                raise gpu_client.PermanentGpuError("invalid_result", exc.message) from None
        elif landed and name in landed:
            media = output(local_path=landed[name])
        else:
            with _landing(job, filename) as dest:
                if job.gpu_call_id == pieces.PIECES:
                    local = pieces.pieces_save_output(job, name, dest)
                else:
                    local = gpu_client.save_output(job.gpu_call_id, ref, dest)
                media = output(local_path=local)
        stored.append(str(media.pk))
    return stored


def _landed_to_screen(job: Job, outputs: dict[str, dict[str, Any]], landings: contextlib.ExitStack,
                      ) -> dict[str, Path]:
    """{name: local file} of the outputs the image screener sees (moderation.screened_kinds), each
    landed as _store_outputs would land it: an inline one from the result (images are always
    inline; an image sent as an uploaded object is refused by the keep), a job in pieces' by joining
    them, and an uploaded video held where it is screened (`_held_to_screen`). An output a delivery
    before this one kept (its row exists) was screened then and is not again."""
    kinds = moderation.screened_kinds(job)
    if not kinds:
        return {}
    engine = job_spec(job.type).engine
    landed: dict[str, Path] = {}
    for name, ref in outputs.items():
        kind = engine.output_kind(name)
        if kind not in kinds or (kind is OutputKind.IMAGE and ref.get(gpu_client.UPLOADED)):
            continue
        if _kept_before(job, ref["filename"]):
            continue
        if job.gpu_call_id == pieces.PIECES:
            dest = landings.enter_context(_landing(job, ref["filename"]))
            landed[name] = Path(pieces.pieces_save_output(job, name, dest))
        elif ref.get(gpu_client.UPLOADED):
            landed[name] = _held_to_screen(job, name, ref, landings)
        else:
            dest = landings.enter_context(_landing(job, ref["filename"]))
            landed[name] = Path(gpu_client.save_output(job.gpu_call_id, ref, dest))
    return landed


def _kept_before(job: Job, filename: str) -> bool:
    """Whether a delivery of the store step before this one kept this output (a media row names it)."""
    return MediaFile.objects.filter(source_job_id=job.pk, name=f"{job.type}-{str(job.pk)[:8]}-{filename}").exists()


def _held_to_screen(job: Job, name: str, ref: dict[str, Any], landings: contextlib.ExitStack) -> Path:
    """An uploaded output, screened where no URL writes: moved from its target to its key in the
    job's quarantine folder (leased first, as a withheld one is; its size checked against what the
    result states before a byte is read) and read from there (a local copy where the store is
    remote). A late PUT to the target changes nothing there, so what is kept is what was screened:
    the keep moves it on from there (checking its size and SHA-256 as it checks any upload); a
    withheld one stays."""
    expected = job_spec(job.type).engine.uploaded_outputs.get(name, "")
    key = quarantine_key(job_id=job.pk, name=name)
    try:
        staged = staged_output(job_id=job.id, name=name, content_type=expected, ref=ref)
        moderation.quarantine_lease(job)
        check_staged(staged, size=media_take_staged(staged, key))
        path = Path(landings.enter_context(get_storage().local_path(key)))
    except OutputRefused as exc:
        with contextlib.suppress(Exception):
            get_storage().delete(key)  # refused: the job fails and keeps nothing of it
        raise gpu_client.PermanentGpuError("invalid_result", exc.message) from None
    return path


def _quarantined(job: Job, outputs: dict[str, dict[str, Any]], landed: dict[str, Path]) -> list[dict[str, str]]:
    """Each output file of a withheld job in its quarantine folder, for staff (jobs.life.moderation):
    an uploaded one moved there from its target (checked as a kept one would be), any other landed
    and saved there. Idempotent: the keys derive from the job and the output name, and a key a
    delivery before this one filled is kept as it is."""
    moderation.quarantine_lease(job)
    storage = get_storage()
    engine = job_spec(job.type).engine
    kept: list[dict[str, str]] = []
    for name, ref in outputs.items():
        key = quarantine_key(job_id=job.pk, name=name)
        if ref.get(gpu_client.UPLOADED) and job.gpu_call_id != pieces.PIECES:
            try:
                staged = staged_output(job_id=job.id, name=name, content_type=engine.uploaded_outputs.get(name, ""),
                                       ref=ref)
                check_staged(staged, size=media_take_staged(staged, key))
            except OutputRefused as exc:
                raise gpu_client.PermanentGpuError("invalid_result", exc.message) from None
        elif name in landed:
            storage.save_file(key, landed[name], ref["content_type"])
        elif not storage.exists(key):
            with _landing(job, ref["filename"]) as dest:
                if job.gpu_call_id == pieces.PIECES:
                    local = pieces.pieces_save_output(job, name, dest)
                else:
                    local = gpu_client.save_output(job.gpu_call_id, ref, dest)
                storage.save_file(key, Path(local), ref["content_type"])
        kept.append({"name": name, "key": key, "content_type": ref["content_type"], "filename": ref["filename"]})
    return kept


@contextlib.contextmanager
def _landing(job: Job, filename: str) -> Iterator[Path]:
    """Where an output lands on its way to storage (media_create_output moves it there); whatever
    is left is removed after. A job in pieces joins them in a folder of its own. Any other output
    is one new file, named at random, in this user's landing folder: no folder is made per output
    (where making an inode is dear, it was most of a small output's store on the benchmarks' disk)."""
    if job.gpu_call_id == pieces.PIECES:
        with tempfile.TemporaryDirectory(prefix="auteur-out-") as tmp:
            yield Path(tmp) / filename
        return
    dest = landing_folder() / f"{uuid.uuid4().hex}{Path(filename).suffix[:16]}"
    try:
        yield dest
    finally:
        dest.unlink(missing_ok=True)


_landing_folder: Path | None = None
LANDING_LEFTOVER_SECONDS = 24 * 3600  # a store takes minutes; an older file was left by a killed process


def landing_folder() -> Path:
    """This user's folder in the temporary folder where job outputs land, which no other user can
    enter (a directory of this uid, mode 0700, not a link: checked, or a private one is made
    instead). Made once; the first use in a process removes leftovers of killed processes."""
    global _landing_folder
    if _landing_folder is not None and _landing_folder.is_dir():
        return _landing_folder
    folder = Path(tempfile.gettempdir()) / f"auteur-landing-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or stat.S_IMODE(found.st_mode) & 0o077:
        logger.warning("the landing folder %s is not this user's alone: using a private one instead", folder)
        folder = Path(tempfile.mkdtemp(prefix="auteur-landing-"))
    too_old = time.time() - LANDING_LEFTOVER_SECONDS
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < too_old:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    _landing_folder = folder
    return folder
