"""GPU calls announce their end: a job moves on without polling, and nothing is lost or doubled."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from auteur.celery import app as celery_app
from credits.models import CreditTransaction
from credits.services.ledger import credit_grant
from gpu_tasks.announce import EVENTS_KEY, PROCESSING_KEY, Announcement, EventQueue, RedisAnnouncer, drain_once
from jobs.life.announcements import gpu_announcements_handle
from jobs.life.reaper import jobs_reap
from jobs.models import Job, JobEvent, JobEventType, JobStatus
from media.models import MediaFile
from tests.factories import ProjectFactory
from tests.jobs.conftest import wait_for, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INFER_RECEIVED = re.compile(r"Task jobs\.\w+\.infer\[[^\]]+\] received")
# A noop worker whose calls stay running for HOLD_S, as a long generation would.
HOLD_S = 2.0
NOOP = {"DJANGO_SETTINGS_MODULE": "bench.settings", "AUTEUR_GPU_BACKEND": "noop",
        "AUTEUR_NOOP_HOLD_SECONDS": str(HOLD_S)}


@pytest.fixture
def project(user):
    credit_grant(user=user, amount=200, type="bonus", description="test")
    return ProjectFactory.create(user=user, name="p")


@pytest.fixture
def events_list():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(EVENTS_KEY, PROCESSING_KEY)
    yield client
    client.delete(EVENTS_KEY, PROCESSING_KEY)


def submit_tts(client, project) -> str:
    response = client.post("/api/v1/jobs/tts", {"project_id": str(project.pk), "text": "Hello world"}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["job_id"]


def infer_deliveries(worker) -> int:
    return sum(1 for line in worker.lines if INFER_RECEIVED.search(line))


def test_a_job_completes_by_its_announcement_with_no_polling(start_worker, auth_client, project, events_list):
    # The worker counts every infer it receives: none left queued by an earlier test may reach it.
    celery_app.control.purge()
    worker = start_worker(**NOOP)
    job = wait_terminal(submit_tts(auth_client, project))
    assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
    assert MediaFile.objects.filter(source_job_id=job.pk).count() == 1
    # prepare looked once and found it running; only the announcement's consumer published infer.
    # (On failure: the worker's lines about infer steps and retries, to tell a retry from a publish.)
    assert infer_deliveries(worker) == 1, [line for line in worker.lines if "infer" in line or "etry" in line][-20:]
    assert events_list.llen(EVENTS_KEY) == 0 and events_list.llen(PROCESSING_KEY) == 0


def test_without_announcements_the_same_job_is_polled(start_worker, auth_client, project, events_list):
    # The control of the test above: the count it asserts does move when calls are polled.
    worker = start_worker(consumer=False, AUTEUR_GPU_ANNOUNCE="0", **NOOP)
    job = wait_terminal(submit_tts(auth_client, project))
    assert job.status == JobStatus.COMPLETED
    assert infer_deliveries(worker) >= 3  # 0.2 s, 0.4 s, 0.8 s, ... until the 2 s hold is over


def test_a_lost_announcement_is_recovered_by_the_reapers_poll(start_worker, auth_client, project, events_list):
    start_worker(consumer=False, **NOOP)  # nobody consumes: the announcement is as good as lost
    job_id = submit_tts(auth_client, project)
    wait_for(lambda: Job.objects.filter(pk=job_id, status=JobStatus.PROCESSING).exclude(gpu_call_id="").exists())
    wait_for(lambda: events_list.llen(EVENTS_KEY) == 1, timeout=HOLD_S + 30)  # the call has ended
    time.sleep(1)
    assert Job.objects.get(pk=job_id).status == JobStatus.PROCESSING  # nothing polls it
    silent_since = timezone.now() - timedelta(seconds=settings.AUTEUR_REAPER_REPOLL_AFTER_SECONDS + 1)
    Job.objects.filter(pk=job_id).update(updated_at=silent_since)
    assert jobs_reap()["repolled"] == 1
    job = wait_terminal(job_id)
    assert job.status == JobStatus.COMPLETED
    # The announcement found late is harmless: no processing job has that call any more.
    left = [a for a in map(Announcement.loads, events_list.lrange(EVENTS_KEY, 0, -1)) if a]
    assert gpu_announcements_handle(left) == {"ended": 0, "progress": 0, "ignored": 1}


def test_duplicate_announcements_are_harmless(start_worker, auth_client, project, events_list):
    start_worker(**NOOP)
    job = wait_terminal(submit_tts(auth_client, project))
    assert job.status == JobStatus.COMPLETED
    again = [Announcement(job.gpu_call_id, "succeeded"), Announcement(job.gpu_call_id, "failed"),
             Announcement(job.gpu_call_id, "progress", 50.0)]
    # Counted per call: the three fold into one end, which finds no processing job.
    assert gpu_announcements_handle(again) == {"ended": 0, "progress": 0, "ignored": 1}
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert list(CreditTransaction.objects.filter(job_id=job.pk).values_list("type", flat=True)) == ["usage"]
    assert MediaFile.objects.filter(source_job_id=job.pk).count() == 1


def test_progress_travels_by_announcement(auth_client, project, events_list):
    job_id = submit_tts(auth_client, project)  # no worker: the job is moved by hand
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, gpu_call_id="call-p", inference_started_at=None,
                                         updated_at=timezone.now() - timedelta(hours=1))
    counts = gpu_announcements_handle([Announcement("call-p", "progress", 12.0),
                                       Announcement("call-p", "progress", 35.0),
                                       Announcement("call-other", "progress", 90.0)])
    assert counts == {"ended": 0, "progress": 1, "ignored": 1}
    job = Job.objects.get(pk=job_id)
    assert job.progress == 35 and job.inference_started_at is not None
    assert job.updated_at > timezone.now() - timedelta(minutes=1)  # a sign of life for the reaper
    events = JobEvent.objects.filter(job_id=job_id, type=JobEventType.PROGRESS)
    assert [e.data["progress"] for e in events] == [35]


def test_a_consumer_that_crashes_mid_batch_loses_nothing(events_list):
    announce = RedisAnnouncer(settings.REDIS_URL)
    for i in range(3):
        announce(Announcement(f"call-{i}", "succeeded"))
    handled: list[str] = []

    def crash(batch: list[Announcement]) -> None:
        handled.append(batch[0].call_id)
        raise RuntimeError("consumer died mid-batch")

    with pytest.raises(RuntimeError):
        drain_once(EventQueue(events_list), crash, max_items=10, block_seconds=1)
    assert handled == ["call-0"]
    assert events_list.llen(EVENTS_KEY) == 0 and events_list.llen(PROCESSING_KEY) == 3
    # The next consumer re-handles what the dead one left, then acknowledges it.
    queue = EventQueue(events_list)
    left = queue.pending()
    assert [a.call_id for a in map(Announcement.loads, left) if a] == ["call-0", "call-1", "call-2"]
    queue.ack(left)
    assert events_list.llen(PROCESSING_KEY) == 0


def test_a_malformed_announcement_is_skipped_and_acknowledged(events_list):
    events_list.rpush(EVENTS_KEY, b"not json", b'{"call_id": "", "outcome": "succeeded"}', b'{"call_id": "c",'
                      b' "outcome": "exploded"}', Announcement("c-ok", "failed").dumps())
    seen: list[Announcement] = []
    assert drain_once(EventQueue(events_list), seen.extend, max_items=10, block_seconds=1) == 4
    assert [(a.call_id, a.outcome) for a in seen] == [("c-ok", "failed")]
    assert events_list.llen(PROCESSING_KEY) == 0


def test_a_modal_calls_announcement_reaches_its_job_through_the_consumer(auth_client, project, events_list,
                                                                          monkeypatch):
    import threading

    from gpu_tasks.backends.modal_backend import ModalBackend
    from gpu_tasks.modal_runtime import QueueAnnouncer
    from jobs import gpu_client
    from jobs.life.announcements import gpu_announcements_forward
    from tests.gpu_tasks.test_modal_backend import FakeModal, with_queue

    fake = FakeModal()
    queue, _ = with_queue(fake)
    monkeypatch.setattr(gpu_client, "backend", lambda: ModalBackend("auteur-test", modal_module=fake,
                                                                    announcements=True))
    job_id = submit_tts(auth_client, project)  # no worker: the job is moved by hand
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING, gpu_call_id="fc-0042")
    QueueAnnouncer(queue, "fc-0042").outcome({"state": "succeeded"})  # what the Modal function does
    stop = threading.Event()
    forward = threading.Thread(target=gpu_announcements_forward, kwargs={"stop": stop})
    forward.start()
    try:
        wait_for(lambda: events_list.llen(EVENTS_KEY) == 1, timeout=10)
    finally:
        stop.set()
        forward.join(10)
    seen: list[dict[str, int]] = []
    drain_once(EventQueue(events_list), lambda batch: seen.append(gpu_announcements_handle(batch)), max_items=10,
               block_seconds=1)
    assert seen == [{"ended": 1, "progress": 0, "ignored": 0}]  # its infer step was published
    assert events_list.llen(PROCESSING_KEY) == 0 and queue.items == []


# A batch as a runner or container that a crafted input took over could push it: progress that is
# NaN, infinite, negative or a string, a huge body, deep nesting, a call id with a NUL in it.
POISON = [
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": NaN}',
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": 1e999}',
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": -5}',
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": "50"}',
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": 50, "pad": "' + b"x" * 1_000_000 + b'"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"call_id": "call-\\u0000", "outcome": "failed"}',
    b'{"call_id": "call-good-progress", "outcome": "progress", "progress": 20, "at": 1e999}',
]


def test_a_poison_batch_is_dropped_and_the_consumer_survives_its_restart(auth_client, project, events_list,
                                                                          monkeypatch, caplog):
    import threading

    from django.db import connections

    from jobs.life import publish as pipeline
    from jobs.life.announcements import gpu_events_run

    old = timezone.now() - timedelta(hours=1)
    progressing, ending, broken = (submit_tts(auth_client, project) for _ in range(3))
    Job.objects.filter(pk=progressing).update(status=JobStatus.PROCESSING, gpu_call_id="call-good-progress",
                                              inference_started_at=None, updated_at=old)
    Job.objects.filter(pk=ending).update(status=JobStatus.PROCESSING, gpu_call_id="call-good-end")
    # A job whose handling raises (its type is no type): that announcement alone is dropped.
    Job.objects.filter(pk=broken).update(status=JobStatus.PROCESSING, gpu_call_id="call-broken", type="nonsense")
    published: list[str] = []
    real_publish = pipeline.publish

    def publish(job_id, job_type, step, **kwargs):
        published.append(str(job_id))
        return real_publish(job_id, job_type, step, **kwargs)

    monkeypatch.setattr(pipeline, "publish", publish)
    good = [Announcement("call-good-progress", "progress", 35.0).dumps().encode(),
            Announcement("call-broken", "succeeded").dumps().encode(),
            Announcement("call-good-end", "succeeded").dumps().encode()]
    # What a consumer that died on the poison left unacknowledged (it meets it again on restart),
    # and more of it still queued.
    events_list.rpush(PROCESSING_KEY, *POISON, good[0])
    events_list.rpush(EVENTS_KEY, *POISON, good[1], good[2])
    stop = threading.Event()

    def consume() -> None:
        try:
            gpu_events_run(stop=stop, block_seconds=0.2)
        finally:
            connections.close_all()  # the thread's own connection, which would keep the test database

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        wait_for(lambda: events_list.llen(EVENTS_KEY) == 0 and events_list.llen(PROCESSING_KEY) == 0, timeout=30)
        wait_for(lambda: str(ending) in published, timeout=10)
        assert consumer.is_alive(), "the consumer survived the poison"
    finally:
        stop.set()
        consumer.join(10)
    job = Job.objects.get(pk=progressing)
    assert job.progress == 35 and job.inference_started_at is not None
    assert published.count(str(ending)) == 1 and str(broken) in published
    assert Job.objects.get(pk=broken).status == JobStatus.PROCESSING  # dropped: the reaper's, as any lost one
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) >= 2 * len(POISON)  # each poisoned entry, in both lists, logged
    assert all(b"x" * 100 not in r.getMessage().encode() for r in dropped), "never the entry's content"
