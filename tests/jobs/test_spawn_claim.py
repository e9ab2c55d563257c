"""One GPU call per attempt: the step that starts a job's call claims the right first, so a second
delivery of the step (a redelivered or republished message) starts none, and a call whose id
cannot be recorded (the database out of reach) is cancelled rather than left running unrecorded."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from jobs import gpu_client
from jobs.life import inference
from jobs.life import publish as pipeline
from jobs.life.status import job_claim_now
from jobs.models import Job, JobEvent, JobEventType, JobStatus


@pytest.fixture
def processing(auth_client: Any, project: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> str:
    """A claimed tts job (processing, no call yet); no broker message is left behind."""
    settings.AUTEUR_REAPER_REPOLL_AFTER_SECONDS = 2  # the claim's life: the record retries for 1 s
    monkeypatch.setattr(pipeline, "publish", lambda *args, **kwargs: True)
    accepted = auth_client.post("/api/v1/jobs/tts", {"project_id": str(project.pk), "text": "Hello"}, format="json")
    assert accepted.status_code == 202, accepted.json()
    job_id = str(accepted.json()["job_id"])
    job, claimed_now = job_claim_now(job_id=job_id)
    assert job is not None and claimed_now
    return job_id


class Calls:
    """gpu_client's spawn and cancel, recorded; a spawn can be held until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spawned: list[str] = []
        self.canceled: list[str] = []
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        monkeypatch.setattr(gpu_client, "spawn", self.spawn)
        monkeypatch.setattr(gpu_client, "cancel", self.canceled.append)

    def spawn(self, job_type: str, payload: dict[str, Any], gpu: str | None = None) -> str:
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(30)
        self.spawned.append(f"call-{len(self.spawned) + 1}")
        return self.spawned[-1]


@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_while_the_first_starts_the_call_starts_none(
    processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    calls.hold = threading.Event()
    first: dict[str, Any] = {}

    def deliver() -> None:
        try:
            first["job"] = inference.job_spawn(job_id=processing)
        finally:
            connection.close()

    thread = threading.Thread(target=deliver)
    thread.start()
    assert calls.entered.wait(30), "the first delivery is starting the call"
    second = inference.job_spawn(job_id=processing)  # the same step, delivered again meanwhile
    assert second is not None and second.gpu_call_id == "" and calls.spawned == []
    calls.hold.set()
    thread.join(30)

    assert calls.spawned == ["call-1"] and calls.canceled == []
    assert first["job"].gpu_call_id == "call-1"
    job = Job.objects.get(pk=processing)
    assert (job.gpu_call_id, job.attempts, job.spawn_claimed_at) == ("call-1", 1, None)
    # Later deliveries find the call recorded.
    again = inference.job_spawn(job_id=processing)
    assert again is not None and again.gpu_call_id == "call-1" and calls.spawned == ["call-1"]


@pytest.mark.django_db(transaction=True)
def test_a_call_id_is_recorded_once_the_database_answers_again(
    processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    real = inference.job_event_record  # records the call's id (the move) with its event
    failures = iter([OperationalError("server closed the connection"), OperationalError("could not connect")])

    def flaky(*args: Any, **values: Any) -> bool:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args, **values)

    monkeypatch.setattr(inference, "job_event_record", flaky)
    job = inference.job_spawn(job_id=processing)

    assert job is not None and job.gpu_call_id == "call-1"
    assert calls.spawned == ["call-1"] and calls.canceled == []
    assert Job.objects.get(pk=processing).gpu_call_id == "call-1"
    started = JobEvent.objects.filter(job_id=processing, type=JobEventType.INFERENCE_STARTED)
    assert [e.data["call_id"] for e in started] == ["call-1"]  # recorded once, with the id


@pytest.mark.django_db(transaction=True)
def test_a_call_whose_id_cannot_be_recorded_is_canceled_and_the_next_attempt_waits_for_the_claim(
    processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    real = inference.job_event_record

    def unreachable(*args: Any, **values: Any) -> bool:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(inference, "job_event_record", unreachable)
    with pytest.raises(OperationalError):
        inference.job_spawn(job_id=processing)
    assert calls.spawned == ["call-1"] and calls.canceled == ["call-1"], "never left running unrecorded"
    job = Job.objects.get(pk=processing)
    assert (job.status, job.gpu_call_id, job.attempts) == (JobStatus.PROCESSING, "", 1)
    assert job.spawn_claimed_at is not None

    monkeypatch.setattr(inference, "job_event_record", real)
    # A retry while the claim is young starts nothing: the claim's holder may yet record its call.
    young = inference.job_spawn(job_id=processing)
    assert young is not None and young.gpu_call_id == "" and calls.spawned == ["call-1"]
    # Once the claim is as old as the reaper's repoll threshold, its holder is taken for dead.
    Job.objects.filter(pk=processing).update(spawn_claimed_at=timezone.now() - timedelta(seconds=3))
    lapsed = inference.job_spawn(job_id=processing)
    assert lapsed is not None and lapsed.gpu_call_id == "call-2"
    stored = Job.objects.get(pk=processing)
    assert (stored.gpu_call_id, stored.attempts, stored.spawn_claimed_at) == ("call-2", 2, None)
    assert len(calls.spawned) == stored.attempts, "one call per attempt"


def test_a_claim_says_whether_it_made_it(processing: str) -> None:
    # A redelivered step finds the job processing: it carries on, but must not take it as new (its
    # outputs may be stored already: jobs.life.outputs looks for them).
    job, claimed_now = job_claim_now(job_id=processing)
    assert job is not None and job.status == JobStatus.PROCESSING and claimed_now is False


@pytest.mark.parametrize(("code", "released"), [("capacity", True), ("network", False)])
def test_a_spawn_the_backend_refused_lets_the_retry_spawn_at_once(
    processing: str, monkeypatch: pytest.MonkeyPatch, code: str, released: bool
) -> None:
    """A spawn refused for capacity started nothing: its claim goes, and the step's retry spawns
    at once. One that failed on the wire may have started a call: the claim stays until it lapses."""
    calls = Calls(monkeypatch)

    def refused(job_type: str, payload: dict[str, Any], gpu: str | None = None) -> str:
        raise gpu_client.TransientGpuError(code, "no")

    monkeypatch.setattr(gpu_client, "spawn", refused)
    with pytest.raises(gpu_client.TransientGpuError):
        inference.job_spawn(job_id=processing)
    job = Job.objects.get(pk=processing)
    assert (job.spawn_claimed_at is None) is released and job.attempts == 1
    monkeypatch.setattr(gpu_client, "spawn", calls.spawn)
    inference.job_spawn(job_id=processing)  # the step's retry
    assert calls.spawned == (["call-1"] if released else [])
