"""Outputs that GPU calls PUT straight to object storage (media.services.gpu_outputs).

The spawn gives the call a signed target per large output; the call PUTs the file there and
names it in its result; the worker keeps it only once the key is the target, and the size and
SHA-256 it reads from the store are the ones stated. Storage here is the local backend, its
signed URLs served by the API itself on a loopback port (as `make run` serves them), so every
byte crosses real HTTP. Calls run through the fake Modal client (the function body runs in this
process, as a container would) and through the local backend's detached runner.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psutil
import pytest
from django.core.handlers.wsgi import WSGIHandler

from credits.models import CreditTransaction, Plan
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_grant
from credits.services.subscriptions import subscription_create
from gpu_tasks.backends.local import LocalBackend
from gpu_tasks.backends.modal_backend import ModalBackend
from gpu_tasks.contract import EngineContext, status_record
from jobs import gpu_client
from jobs.life.publish import Step
from jobs.models import Job, JobStatus
from jobs.specs import job_spec
from jobs.tasks import STEP_TASKS
from media.models import MediaFile, PendingObjectDeletion
from media.services import gpu_outputs
from media.services.keys import STAGING_KEY
from media.storage import get_storage
from tests.factories import ProjectFactory
from tests.gpu_tasks.probe_engines import video_fields, write_padded_mp4
from tests.gpu_tasks.test_modal_backend import FakeModal
from tests.jobs.conftest import wait_for
from tests.media.conftest import moto_endpoint, s3_storage  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

GIB = 1024**3


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def served(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Local object storage in a fresh folder, its signed URLs served by the API on a loopback port."""
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    settings.AWS_STORAGE_BUCKET_NAME = ""
    server = make_server("127.0.0.1", 0, WSGIHandler(), server_class=_ThreadingServer, handler_class=_Quiet)
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.AUTEUR_PUBLIC_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield tmp_path / "storage"
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(user: Any) -> Any:
    subscription_create(user=user, plan=Plan.PRO)  # text to video is a Pro feature
    credit_grant(user=user, amount=10_000, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


@pytest.fixture
def modal(monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    fake = FakeModal()
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake))
    return fake


def container(size: int, tamper: Callable[[dict[str, Any]], None] = lambda ref: None) -> Callable[..., Any]:
    """A Modal function body that writes a video of `size` bytes and delivers it as the payload
    says (the engines' own EngineContext.deliver); `tamper` then edits its ref, as a container a
    crafted input took over could."""

    def body(function: str, payload: dict[str, Any]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="container-") as work:
            ctx = EngineContext(workdir=Path(work), payload=payload, allow_paths=False)
            ref = ctx.deliver("video", write_padded_mp4(ctx.output_path("video", ".mp4"), size), "video/mp4")
        tamper(ref)
        return status_record("succeeded", result={**video_fields(), "outputs": {"video": ref}}, gpu_seconds=1.0)

    return body


def submit(auth_client: Any, project: Any, prompt: str = "a cat on the moon") -> Job:
    response = auth_client.post("/api/v1/jobs/video-generation", {"project_id": str(project.pk), "prompt": prompt},
                                format="json")
    assert response.status_code == 202, response.json()
    return Job.objects.get(pk=response.json()["job_id"])


def run_step(job: Job, step: Step) -> Job:
    """One step of the job, as a worker runs it (a failure goes through its task's on_failure)."""
    STEP_TASKS[job_spec(job.type).family, step].apply(args=(str(job.pk),))
    job.refresh_from_db()
    return job


class Memory:
    """The Python heap's peak (tracemalloc) and the process's resident peak over a block, sampled."""

    def __enter__(self) -> Memory:
        self.proc = psutil.Process()
        self.base_rss = self.proc.memory_info().rss
        self.peak_rss = self.base_rss
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        tracemalloc.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self.heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.stop.set()
        self.sampler.join()

    @property
    def rss_growth(self) -> int:
        return self.peak_rss - self.base_rss


def assert_stored(job: Job, size: int) -> MediaFile:
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
    (media,) = MediaFile.objects.filter(source_job_id=job.pk)
    path = Path(get_storage().path(media.storage_key))  # type: ignore[attr-defined]
    assert media.file_size_bytes == size == path.stat().st_size
    assert media.storage_key.startswith(f"projects/{job.project_id}/media/{media.pk}/")
    assert not PendingObjectDeletion.objects.filter(key__startswith="projects/").exists(), "its lease went with the row"
    return media


# ----------------------------------------------------------------------------- 2 GiB, memory flat


def test_a_2_gib_video_goes_from_a_modal_call_to_storage_with_the_workers_memory_flat(
    auth_client, project, served, modal, tmp_path
):
    modal.body = container(2 * GIB)
    job = submit(auth_client, project)
    with Memory() as memory:
        job = run_step(job, Step.PREPARE)
    media = assert_stored(job, 2 * GIB)
    (payload,) = modal.payloads
    target = payload["output_targets"]["video"]
    assert STAGING_KEY.match(target["key"]) and target["headers"] == {"Content-Type": "video/mp4"}
    assert "data" not in str(job.output_data)
    assert not (served / target["key"]).exists(), "the staged object was moved to the output's key"
    assert PendingObjectDeletion.objects.filter(key=target["key"].rsplit("/", 1)[0] + "/").exists()
    print(f"2 GiB output: heap peak {memory.heap_peak / 2**20:.1f} MiB, RSS growth {memory.rss_growth / 2**20:.1f} MiB")
    assert memory.heap_peak < 64 * 2**20
    assert memory.rss_growth < 256 * 2**20
    assert len(media.content_sha256) == 64


def test_a_2_gib_video_goes_from_a_local_runner_to_storage_with_the_workers_memory_flat(
    auth_client, project, served, monkeypatch, tmp_path
):
    engines = {"video-generation": "tests.gpu_tasks.probe_engines:padded_video"}
    runner = LocalBackend(tmp_path / "calls", engines=engines, upload_outputs=True)
    monkeypatch.setattr(gpu_client, "backend", lambda: runner)
    job = submit(auth_client, project, prompt=f"bytes:{2 * GIB} a cat")
    with Memory() as memory:
        job = run_step(job, Step.PREPARE)
        wait_for(lambda: runner.poll(job.gpu_call_id).done, timeout=300)
        job = run_step(job, Step.FINISH)
    assert_stored(job, 2 * GIB)
    print(f"2 GiB output: heap peak {memory.heap_peak / 2**20:.1f} MiB, RSS growth {memory.rss_growth / 2**20:.1f} MiB")
    assert memory.heap_peak < 64 * 2**20
    assert memory.rss_growth < 256 * 2**20
    assert not any((tmp_path / "calls").rglob("*.mp4")), "the runner streamed it from the box: no copy left"


# ----------------------------------------------------------------------------- forged references


def other_users_object(make_user: Callable[..., Any]) -> str:
    other = ProjectFactory.create(user=make_user(email="other@example.com"), name="theirs")
    key = f"projects/{other.pk}/media/00000000-0000-0000-0000-000000000001/secret.mp4"
    path = Path(get_storage().path(key))  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True)
    write_padded_mp4(path, 4096)
    return key


@pytest.mark.parametrize("forgery", ["another_users_key", "another_jobs_key", "another_output_name", "size",
                                     "sha256", "content_type", "not_uploaded"])
def test_a_forged_reference_fails_the_job_invalid_result_refunded_once(
    auth_client, user, project, served, modal, tmp_path, make_user, forgery
):
    theirs = other_users_object(make_user)
    other_job = "0" * 8 + "-0000-4000-8000-" + "0" * 12

    def forge(ref: dict[str, Any]) -> None:
        key = ref["key"]
        if forgery == "another_users_key":
            ref["key"] = theirs
        elif forgery == "another_jobs_key":
            ref["key"] = key.replace(key.split("/")[1], other_job)
        elif forgery == "another_output_name":
            ref["key"] = key.rsplit("/", 1)[0] + "/audio"
        elif forgery == "size":
            ref["size_bytes"] += 1
        elif forgery == "sha256":
            ref["sha256"] = hashlib.sha256(b"something else").hexdigest()
        elif forgery == "content_type":
            ref["content_type"] = "video/webm"
        else:  # a target named, and nothing PUT there
            get_storage().delete(key)

    modal.body = container(64 * 1024, forge)
    before = credit_balance_get(user=user)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert (job.status, job.error_code, job.retryable) == (JobStatus.FAILED, "invalid_result", False), job.error_message
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert credit_balance_get(user=user) == before
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not list((served / "projects" / str(project.pk)).rglob("*.mp4")), "nothing of it kept under the project"
    assert Path(get_storage().path(theirs)).stat().st_size == 4096, "another user's object is never moved"  # type: ignore[attr-defined]
    assert "127.0.0.1" not in job.error_message + job.error_detail, "no signed URL in the error"
    assert not PendingObjectDeletion.objects.filter(key__startswith="projects/").exists()


def test_a_piece_or_a_call_given_no_target_cannot_claim_an_upload(auth_client, project, served, modal, tmp_path):
    """A call given no target (here the result names a key of its own job's pattern) is refused:
    the object it names was never the target of an output it was given."""
    modal.body = None
    key = None

    def body(function: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal key
        assert "output_targets" in payload
        key = payload["output_targets"]["video"]["key"].rsplit("/", 2)[0] + "/" + "f" * 32 + "/video"
        ref = {"uploaded": True, "key": key, "size_bytes": 10, "sha256": "0" * 64, "content_type": "video/mp4",
               "filename": "v.mp4"}
        return status_record("succeeded", result={**video_fields(), "outputs": {"video": ref}}, gpu_seconds=1.0)

    modal.body = body
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result")


def test_a_late_put_through_a_target_after_the_store_changes_nothing_kept(auth_client, project, served, modal,
                                                                          tmp_path):
    import requests

    modal.body = container(64 * 1024)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    media = assert_stored(job, 64 * 1024)
    target = modal.payloads[0]["output_targets"]["video"]
    answer = requests.put(target["url"], data=b"late", headers=target["headers"], timeout=10)
    assert answer.status_code == 200  # the URL is valid until it expires; S3 could not refuse it either
    stored = Path(get_storage().path(media.storage_key))  # type: ignore[attr-defined]
    assert stored.stat().st_size == 64 * 1024 and hashlib.sha256(stored.read_bytes()).hexdigest() == \
        media.content_sha256
    lease = PendingObjectDeletion.objects.get(key=target["key"].rsplit("/", 1)[0] + "/")
    assert lease.due_at.timestamp() > time.time() + 3600, "the late object is deleted after the URL expires"


def test_a_redelivered_store_checks_what_it_moved_never_what_a_late_put_left(served, tmp_path):
    """The object at the output's key is the one checked: a second delivery of the store step does
    not move what a late PUT left at the target over it."""
    from media.services.gpu_outputs import StagedOutput, media_take_staged

    storage = get_storage()
    staged = StagedOutput(key=f"gpu-outputs/{'0' * 8}-0000-4000-8000-{'0' * 12}/{'a' * 32}/video", size=4, sha256="")
    storage.save(staged.key, io.BytesIO(b"good"), "video/mp4")
    final = "projects/p/media/m/out.mp4"
    assert media_take_staged(staged, final) == 4
    storage.save(staged.key, io.BytesIO(b"late and larger"), "video/mp4")
    assert media_take_staged(staged, final) == 4
    assert Path(storage.path(final)).read_bytes() == b"good"  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- S3


def test_a_modal_calls_video_goes_through_an_s3_bucket(auth_client, project, s3_storage, modal):  # noqa: F811
    """The same path against S3's API (moto's server over HTTP): a PUT signed for the key and the
    type, a server-side move, a download for the checks and the probe."""
    modal.body = container(256 * 1024)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
    (media,) = MediaFile.objects.filter(source_job_id=job.pk)
    storage = get_storage()
    target = modal.payloads[0]["output_targets"]["video"]
    assert storage.head(media.storage_key) == media.file_size_bytes == 256 * 1024
    assert storage.head(target["key"]) is None
    assert storage.content_type(media.storage_key) == "video/mp4"


# ----------------------------------------------------------------------------- in parts


@pytest.fixture
def in_parts(settings: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """Outputs larger than one PUT goes in parts: here past 1 MiB, in parts of 5 MiB (S3's least)."""
    monkeypatch.setattr(gpu_outputs, "SINGLE_PUT_MAX_BYTES", 2**20)
    monkeypatch.setattr(gpu_outputs, "OUTPUT_PART_BYTES", 5 * 2**20)
    settings.AUTEUR_GPU_OUTPUT_MAX_BYTES = 16 * 2**20
    return gpu_outputs.OUTPUT_PART_BYTES


def test_an_output_past_one_put_goes_in_parts(auth_client, project, served, modal, in_parts):
    modal.body = container(12 * 2**20)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    media = assert_stored(job, 12 * 2**20)
    target = modal.payloads[0]["output_targets"]["video"]
    assert target["max_bytes"] == 2**20 and target["multipart"]["part_bytes"] == in_parts
    assert len(target["multipart"]["parts"]) == 4  # for 16 MiB at most
    assert media.content_sha256 == hashlib.sha256(Path(get_storage().path(media.storage_key)).read_bytes()).hexdigest()  # type: ignore[attr-defined]
    assert not list(served.rglob(".multipart-*")), "the upload was completed"


def test_an_output_in_parts_goes_through_an_s3_bucket(auth_client, project, s3_storage, modal, in_parts):  # noqa: F811
    modal.body = container(11 * 2**20)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_message)
    (media,) = MediaFile.objects.filter(source_job_id=job.pk)
    storage = get_storage()
    assert storage.head(media.storage_key) == media.file_size_bytes == 11 * 2**20
    assert storage.content_type(media.storage_key) == "video/mp4"
    assert not storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads")  # type: ignore[attr-defined]


@pytest.mark.parametrize("forgery", ["another_jobs_upload", "parts_not_as_stated", "short_middle_part", "no_upload"])
def test_a_forged_upload_in_parts_fails_the_job_refunded_once(
    auth_client, user, project, served, modal, in_parts, forgery
):
    elsewhere = gpu_outputs.media_output_targets(
        job_id="0" * 8 + "-0000-4000-8000-" + "0" * 12, user_id=user.pk, outputs={"video": "video/mp4"},
        max_bytes=16 * 2**20, ttl_seconds=600)["video"]

    def forge(ref: dict[str, Any]) -> None:
        if forgery == "another_jobs_upload":
            ref["upload_id"] = elsewhere["multipart"]["upload_id"]
        elif forgery == "parts_not_as_stated":
            ref["size_bytes"] -= 1
        elif forgery == "short_middle_part":  # part 1 PUT again, a byte short: the object would have a hole
            import requests

            first = modal.payloads[-1]["output_targets"]["video"]["multipart"]["parts"][0]["url"]
            assert requests.put(first, data=b"\0" * (in_parts - 1), timeout=30).status_code == 200
        else:
            del ref["upload_id"]

    modal.body = container(12 * 2**20, forge)
    before = credit_balance_get(user=user)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result"), job.error_message
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert credit_balance_get(user=user) == before
    assert not MediaFile.objects.filter(source_job_id=job.pk).exists()
    assert not list((served / "projects" / str(project.pk)).rglob("*.mp4"))
    assert "127.0.0.1" not in job.error_message + job.error_detail


def test_a_part_larger_than_its_url_is_refused(served, user, in_parts):
    import requests

    target = gpu_outputs.media_output_targets(
        job_id="0" * 8 + "-0000-4000-8000-" + "0" * 12, user_id=user.pk, outputs={"video": "video/mp4"},
        max_bytes=16 * 2**20, ttl_seconds=600)["video"]
    parts = target["multipart"]["parts"]
    answer = requests.put(parts[0]["url"], data=b"\0" * (in_parts + 1), timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "part_size_mismatch"
    assert requests.put(parts[1]["url"], data=b"\0" * 10, timeout=30).status_code == 200


def test_an_upload_in_parts_left_open_goes_with_its_lease(user, s3_storage, in_parts):  # noqa: F811
    """S3 keeps (and bills) the parts of an upload nobody completed until it is aborted: the lease's
    deletion of the target's folder aborts it."""
    target = gpu_outputs.media_output_targets(
        job_id="0" * 8 + "-0000-4000-8000-" + "0" * 12, user_id=user.pk, outputs={"video": "video/mp4"},
        max_bytes=16 * 2**20, ttl_seconds=600)["video"]
    storage = get_storage()
    client, bucket = storage.client, storage.bucket  # type: ignore[attr-defined]
    uploads = client.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [target["multipart"]["upload_id"]]
    storage.delete_prefix(target["key"].rsplit("/", 1)[0])
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_part_still_being_written_cannot_change_the_object_once_made(served, user, in_parts):
    """A PUT of a part not listed (its body held back) finishes before the upload is completed, or
    finds it closed: never writes into the object after its checks."""
    import socket
    from urllib.parse import urlsplit

    target = gpu_outputs.media_output_targets(
        job_id="0" * 8 + "-0000-4000-8000-" + "0" * 12, user_id=user.pk, outputs={"video": "video/mp4"},
        max_bytes=16 * 2**20, ttl_seconds=600)["video"]
    upload_id, parts = target["multipart"]["upload_id"], target["multipart"]["parts"]
    storage = get_storage()
    import requests

    assert requests.put(parts[0]["url"], data=b"a" * 1000, timeout=30).status_code == 200
    url = urlsplit(parts[1]["url"])
    held = socket.create_connection((url.hostname, url.port), timeout=30)
    held.sendall(f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 100\r\n\r\n".encode())
    time.sleep(0.5)  # the PUT holds the upload's lock, its body not sent

    def send_body_later() -> None:
        time.sleep(1.0)
        held.sendall(b"E" * 100)

    sender = threading.Thread(target=send_body_later)
    sender.start()
    listed = [part for part in storage.multipart_parts(target["key"], upload_id) if part.number == 1]
    storage.multipart_complete(target["key"], upload_id, listed)  # waits for the PUT in flight
    sender.join()
    held.close()
    size = storage.head(target["key"])
    time.sleep(0.5)
    assert storage.head(target["key"]) == size == 1000, "nothing written into the object after it was made"


def test_an_upload_id_is_its_keys_only(served, user, in_parts):
    targets = gpu_outputs.media_output_targets(
        job_id="0" * 8 + "-0000-4000-8000-" + "0" * 12, user_id=user.pk,
        outputs={"video": "video/mp4", "audio": "audio/wav"}, max_bytes=16 * 2**20, ttl_seconds=600)
    video, audio = targets["video"], targets["audio"]
    with pytest.raises(FileNotFoundError):
        get_storage().multipart_parts(audio["key"], video["multipart"]["upload_id"])


def test_parts_the_store_will_not_complete_fail_the_job_and_the_upload_is_aborted(
    auth_client, user, project, served, modal, in_parts, monkeypatch
):
    """S3 answers InvalidPart where a part was PUT again between the listing and the completion."""
    from media.storage.base import PartsRefused
    from media.storage.local import LocalStorage

    def refuse(self: Any, key: str, upload_id: str, parts: Any) -> None:
        raise PartsRefused("InvalidPart")

    monkeypatch.setattr(LocalStorage, "multipart_complete", refuse)
    modal.body = container(12 * 2**20)
    job = run_step(submit(auth_client, project), Step.PREPARE)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "invalid_result"), job.error_message
    assert CreditTransaction.objects.filter(job_id=job.pk, type="refund").count() == 1
    assert not list(served.rglob(".multipart-*")), "its parts are not kept until the lease"
