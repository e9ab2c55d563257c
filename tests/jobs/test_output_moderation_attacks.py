"""Attacks on output screening, each performed: a GPU result shaped to slip past the screener (an
image that cannot be decoded within the limits, an animated picture, more images than one screening
batch, an image sent as an uploaded object), what a user can read of a withheld job, and staff's
release (who may run it, where it goes, what it tells). Each asserts the attack refused or bounded,
and that its side effect (a kept file, a charge, a refund) did not happen."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from PIL import Image

from auteur.core.errors import ApplicationError
from credits.models import CreditTransaction
from credits.selectors import credit_balance_get
from gpu_tasks.backends.noop import fixed_result
from gpu_tasks.results import MAX_OUTPUTS
from gpu_tasks.types import JobType
from jobs import gpu_client
from jobs.life import moderation
from jobs.life.outputs import job_result_store
from jobs.life.publish import Step
from jobs.models import Job, JobEvent, JobModeration, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import MediaFile
from media.services.keys import quarantine_key
from projects.models import Project
from tests.factories import ProjectFactory
from tests.jobs.test_output_moderation import finish, running

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"
HOLDS = "/admin/jobs/jobmoderation/"


@pytest.fixture
def project(funded):
    return ProjectFactory.create(user=funded, name="p")


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    settings.AWS_STORAGE_BUCKET_NAME = ""
    return tmp_path / "storage"


def failed(job: Job, exc: Exception) -> None:
    """What the worker's finish step does with the refusal its store step raised (JobStep.on_failure)."""
    STEP_TASKS[job_spec(job.type).family, Step.FINISH].on_failure(exc, "task", (str(job.pk),), {}, None)  # type: ignore[arg-type]


def ledger(job: Job) -> list[str]:
    return sorted(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True))


def files(storage: Path) -> list[str]:
    return sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def image_result(images: dict[str, bytes], content_type: str = "image/png") -> dict[str, Any]:
    result = fixed_result(JobType.IMAGE_GENERATION)
    suffix = {"image/png": ".png", "image/webp": ".webp", "image/jpeg": ".jpg"}[content_type]
    result["outputs"] = {name: {"data": data, "content_type": content_type, "filename": f"{name}{suffix}"}
                         for name, data in images.items()}
    return result


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(side: int) -> bytes:
    """A PNG whose header claims side x side grey pixels, with the start of their (all-zero) data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def picture(color: tuple[int, int, int], fmt: str = "PNG", **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, format=fmt, **save)
    return out.getvalue()


def animated(fmt: str) -> bytes:
    """Two frames: a benign first one, and another that a viewer shows after it."""
    out = io.BytesIO()
    first, second = Image.new("RGB", (64, 64), (0, 200, 0)), Image.new("RGB", (64, 64), (220, 0, 0))
    first.save(out, format=fmt, save_all=True, append_images=[second], duration=[100, 5000], loop=0)
    return out.getvalue()


HOSTILE = {
    # 900 megapixels claimed in a few hundred bytes: refused from the header, never decoded.
    "decompression bomb": (lambda: png_bomb(30_000), "image/png"),
    "truncated": (lambda: picture((10, 20, 30))[:60], "image/png"),
    "garbage behind a PNG signature": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "image/png"),
    # A viewer plays every frame; the screener would see only the first: never kept.
    "animated PNG": (lambda: animated("PNG"), "image/png"),
    "animated WebP": (lambda: animated("WEBP"), "image/webp"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_a_hostile_image_fails_the_job_cleanly_refunded_and_keeps_nothing(
        hostile, auth_client, funded, project, storage, gpu_backend):
    gpu_backend("noop")
    make, content_type = HOSTILE[hostile]
    balance = credit_balance_get(user=funded)  # before the job was charged
    job = running(auth_client, project, "image-generation", {"prompt": "a fox"})
    with pytest.raises(gpu_client.PermanentGpuError) as refused:
        job_result_store(job_id=job.pk, result=image_result({"image_1": make()}, content_type), job=job)
    assert refused.value.code == "invalid_result"
    failed(job, refused.value)
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")
    assert ledger(job) == ["refund", "usage"]
    assert credit_balance_get(user=funded) == balance
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobModeration.objects.filter(job_id=job.pk).exists()
    assert files(storage) == []
    # A redelivery refunds nothing more.
    assert job_result_store(job_id=job.pk, result=image_result({"image_1": make()}, content_type)) is None
    assert ledger(Job.objects.get(pk=job.pk)) == ["refund", "usage"]


def test_every_image_of_a_result_is_screened_before_any_row_names_one(
        auth_client, funded, project, storage, gpu_backend, monkeypatch):
    """As many images as a result may hold (a full screening batch), under names the engine never
    uses: each reaches the screener, and none is a media file while it is screened."""
    gpu_backend("noop")
    seen: list[int] = []
    real = gpu_client.screen_images

    def watched(frames: Any) -> Any:
        assert not MediaFile.objects.exists()  # nothing landed as a row before its verdict
        seen.append(len(frames))
        return real(frames)

    monkeypatch.setattr(gpu_client, "screen_images", watched)
    count = MAX_OUTPUTS
    images = {f"x{n}": picture((n * 20 % 256, 40, 90)) for n in range(count)}
    job = running(auth_client, project, "image-generation", {"prompt": "a fox"})
    job_result_store(job_id=job.pk, result=image_result(images), job=job)
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert sum(seen) == count == MediaFile.objects.filter(source_job_id=job.pk).count()


def test_an_image_sent_as_an_uploaded_object_is_never_kept_unscreened(
        auth_client, funded, project, storage, gpu_backend):
    """Images are inline only: one named as an object the call PUT is not landed for the screener,
    so it must never be stored either."""
    gpu_backend("noop")
    job = running(auth_client, project, "image-generation", {"prompt": "a fox"})
    result = fixed_result(JobType.IMAGE_GENERATION)
    result["outputs"] = {"image_1": {"uploaded": True, "key": f"gpu-outputs/{job.pk}/{'a' * 32}/image_1",
                                     "size_bytes": 100, "sha256": "0" * 64, "content_type": "image/png",
                                     "filename": "image_1.png"}}
    with pytest.raises(gpu_client.PermanentGpuError) as refused:
        job_result_store(job_id=job.pk, result=result, job=job)
    assert refused.value.code == "invalid_result"
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert files(storage) == []


def withheld_image(client: Any, project: Any, settings: Any) -> Job:
    settings.AUTEUR_SCREENING_INJECT = "image-generation:output=1.0"
    job = finish(running(client, project, "image-generation", {"prompt": "a fox"}))
    assert job.error_code == "output_moderated"
    return job


def test_a_user_reads_nothing_of_a_withheld_output(auth_client, funded, project, storage, gpu_backend, settings):
    """The job, its events and the project's media: no key, category, screener or file."""
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    hold = JobModeration.objects.get(job_id=job.pk)
    shown = [auth_client.get(f"{JOBS}/{job.pk}").content.decode(),
             auth_client.get(f"{JOBS}/{job.pk}/events").content.decode(),
             auth_client.get(f"/api/v1/projects/{project.pk}/media").content.decode()]
    for text in shown:
        assert "quarantine" not in text and hold.quarantine[0]["key"] not in text
        assert "injected" not in text and "flagged" not in text
    # A redelivery of the store step keeps nothing and refunds nothing more.
    assert job_result_store(job_id=job.pk, result=fixed_result(JobType.IMAGE_GENERATION)) is None
    assert ledger(Job.objects.get(pk=job.pk)) == ["refund", "usage"]
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def test_staff_who_may_only_view_holds_cannot_confirm_or_release(
        auth_client, funded, project, storage, gpu_backend, settings, make_user):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    viewer = make_user(email="viewer@example.com", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_jobmoderation"))
    client = Client()
    client.force_login(viewer)
    assert client.get(HOLDS).status_code == 200
    balance = credit_balance_get(user=funded)
    for action in ("release_selected", "confirm_selected"):
        client.post(HOLDS, {"action": action, "_selected_action": [str(job.pk)]}, follow=True)
    hold = JobModeration.objects.get(job_id=job.pk)
    assert (hold.state, hold.decided_by) == ("held", None)
    assert credit_balance_get(user=funded) == balance
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobEvent.objects.filter(job_id=job.pk, type="output_released").exists()
    # Nor can a signed-in user who is not staff reach the page at all.
    outsider = Client()
    outsider.force_login(funded)
    response = outsider.post(HOLDS, {"action": "release_selected", "_selected_action": [str(job.pk)]})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert JobModeration.objects.get(job_id=job.pk).state == "held"


def test_a_release_after_the_project_was_deleted_is_refused_and_charges_nothing(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    Project.objects.filter(pk=project.pk).delete()
    balance = credit_balance_get(user=funded)
    staff = superuser_client.session["_auth_user_id"]
    from auteur.users.models import User
    with pytest.raises(ApplicationError) as refused:
        moderation.moderation_release(job_id=job.pk, staff_user=User.objects.get(pk=staff))
    assert refused.value.code == "project_deleted"
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert credit_balance_get(user=funded) == balance
    assert not CreditTransaction.objects.filter(idempotency_key=f"moderation-release:{job.pk}").exists()
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()


def test_a_release_tells_the_user_only_the_new_files_and_the_charge_and_is_charged_once(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    gpu_backend("noop")
    job = withheld_image(auth_client, project, settings)
    for _ in range(2):
        superuser_client.post(HOLDS, {"action": "release_selected", "_selected_action": [str(job.pk)]}, follow=True)
    # A redelivered store step of the job after its release: nothing refunded, nothing stored again.
    assert job_result_store(job_id=job.pk, result=fixed_result(JobType.IMAGE_GENERATION)) is None
    released = JobEvent.objects.get(job_id=job.pk, type="output_released")
    media = MediaFile.objects.get(source_job_id=job.pk)
    assert released.data == {"output_media_ids": [str(media.pk)], "charged": job.credits_cost}
    assert ledger(job) == ["refund", "usage"]
    assert CreditTransaction.objects.filter(user=funded, type="adjustment").count() == 1
    assert quarantine_key(job_id=job.pk, name="image_1") not in media.storage_key
    events = auth_client.get(f"{JOBS}/{job.pk}/events").content.decode()
    assert "quarantine" not in events and "boss@example.com" not in events


def test_a_bomb_within_the_pixel_bound_is_decoded_only_within_the_sandbox_memory(
        auth_client, funded, project, storage, gpu_backend, settings, caplog):
    """8,000 x 8,000 pixels (under AUTEUR_MEDIA_MAX_PIXELS) in about 100 KB: decoded only in the
    confined child, whose memory bound here is too small for it; the job fails, refunded."""
    gpu_backend("noop")
    settings.AUTEUR_MEDIA_PROBE_MEMORY_MB = 160
    side = 8000
    raw = zlib.compress(b"\x00" * (3 * side + 1) * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # RGB: 192 MB decoded
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")
    assert len(bomb) < 200_000 and side * side <= settings.AUTEUR_MEDIA_MAX_PIXELS
    balance = credit_balance_get(user=funded)
    job = running(auth_client, project, "image-generation", {"prompt": "a fox"})
    with pytest.raises(gpu_client.PermanentGpuError) as refused:
        job_result_store(job_id=job.pk, result=image_result({"image_1": bomb}), job=job)
    # Stopped by the child's memory bound (MemoryError inside it, or the child ended), never a parse error.
    assert ("(KeyError): out of memory" in caplog.text) != ("(BudgetSpent)" in caplog.text)
    failed(job, refused.value)
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")
    assert ledger(job) == ["refund", "usage"] and credit_balance_get(user=funded) == balance
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists() and files(storage) == []


def test_a_withheld_speech_in_a_voice_whose_consent_was_since_revoked_is_never_released(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    """The store step keeps nothing spoken in a revoked voice; staff's release must not either."""
    from auteur.users.models import User
    from media.models import Consent
    from media.services.consents import consent_revoke
    from tests.factories import VoiceCloneFactory

    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "tts:output=1.0"
    voice = VoiceCloneFactory.create(user=funded)
    job = finish(running(auth_client, project, "tts", {"text": "Hello there.", "voice_id": str(voice.pk)}))
    assert job.error_code == "output_moderated"
    consent_revoke(consent_id=str(voice.consent_id), by="subject")
    assert Consent.objects.get(pk=str(voice.consent_id)).status == "revoked"
    balance = credit_balance_get(user=funded)
    staff = User.objects.get(pk=superuser_client.session["_auth_user_id"])
    with pytest.raises(ApplicationError) as refused:
        moderation.moderation_release(job_id=job.pk, staff_user=staff)
    assert refused.value.code == "consent_revoked"
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert credit_balance_get(user=funded) == balance
    assert not CreditTransaction.objects.filter(idempotency_key=f"moderation-release:{job.pk}").exists()
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not JobEvent.objects.filter(job_id=job.pk, type="output_released").exists()


def test_a_release_refused_halfway_leaves_no_object_behind(
        auth_client, funded, project, storage, gpu_backend, settings, superuser_client):
    """Two withheld images, the second's quarantine gone: the release is refused, and the first,
    copied before the refusal, leaves no object in the project's storage."""
    gpu_backend("noop")
    settings.AUTEUR_SCREENING_INJECT = "image-generation:output=1.0"
    job = running(auth_client, project, "image-generation", {"prompt": "a fox"})
    images = {"image_1": picture((0, 200, 0)), "image_2": picture((0, 0, 200))}
    job_result_store(job_id=job.pk, result=image_result(images), job=job)
    hold = JobModeration.objects.get(job_id=job.pk)
    assert [entry["name"] for entry in hold.quarantine] == ["image_1", "image_2"]
    from media.storage import get_storage
    get_storage().delete(hold.quarantine[1]["key"])
    response = superuser_client.post(HOLDS, {"action": "release_selected", "_selected_action": [str(job.pk)]},
                                     follow=True)
    assert "quarantine lapsed" in response.content.decode()
    assert JobModeration.objects.get(job_id=job.pk).state == "held"
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not [p for p in (storage / "projects").rglob("*") if p.is_file()]


def test_a_user_cannot_name_a_quarantine_key_as_a_jobs_input(
        auth_client, funded, project, storage, gpu_backend, settings):
    """The one storage key a request carries to a GPU call (a voice's sample) is the server's, never
    the body's: a quarantined output named there is not read."""
    gpu_backend("noop")
    withheld = withheld_image(auth_client, project, settings)
    key = JobModeration.objects.get(job_id=withheld.pk).quarantine[0]["key"]
    answer = auth_client.post(f"{JOBS}/tts", {"project_id": str(project.pk), "text": "Hello there.",
                                              "voice_sample_key": key}, format="json")
    if answer.status_code == 202:
        job = Job.objects.get(pk=answer.json()["job_id"])
        assert "voice_sample_key" not in job.input_params
        from jobs.payloads import media_payload
        assert key not in str(media_payload(job, 60))
    else:
        assert answer.status_code == 400, answer.json()
        assert not Job.objects.filter(type="tts").exists()
