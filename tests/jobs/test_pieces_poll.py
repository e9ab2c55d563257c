"""One look at a job's pieces when another look polls them at the same time."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_tasks.backends.base import CallStatus
from gpu_tasks.errors import TransientGpuError
from jobs import gpu_client
from jobs.life import pieces
from jobs.models import PIECES, Job, JobEventType, JobPiece, JobStatus
from tests.factories import MediaFileFactory

pytestmark = pytest.mark.django_db

LOST = CallStatus.failed(TransientGpuError("worker_lost", "no such local call (its files are gone)"))


def test_a_look_that_finds_a_piece_settled_by_another_look_leaves_it_alone(user: Any, monkeypatch: Any) -> None:
    media = MediaFileFactory.create(project__user=user)
    job = Job.objects.create(user=user, project=media.project, type="transcription", credits_cost=1,
                             status=JobStatus.PROCESSING, gpu_call_id=PIECES,
                             input_params={"media_id": str(media.pk)})  # fmt: skip
    for index, attempts in ((0, 1), (1, pieces.MAX_PIECE_ATTEMPTS), (2, 1)):
        JobPiece.objects.create(job=job, index=index, start_ms=index * 8000, end_ms=(index + 1) * 8000,
                                audio_start_ms=index * 8000, audio_end_ms=(index + 1) * 8000,
                                state=JobPiece.State.RUNNING, call_id=f"c{index}", attempts=attempts)  # fmt: skip
    spawned: list[str] = []
    canceled: list[str] = []

    def poll(call_id: str) -> CallStatus:
        # Pieces 0 and 1: another look found them succeeded and released their calls just before
        # this look's poll, which then finds no such call. Piece 2's call really failed.
        if call_id in ("c0", "c1"):
            JobPiece.objects.filter(call_id=call_id).update(state=JobPiece.State.SUCCEEDED, result={"segments": []})
        return LOST

    def spawn(job_type: str, payload: dict[str, Any]) -> str:
        spawned.append(job_type)
        return f"c{len(spawned) + 2}"

    monkeypatch.setattr(gpu_client, "poll", poll)
    monkeypatch.setattr(gpu_client, "spawn", spawn)
    monkeypatch.setattr(gpu_client, "cancel", canceled.append)

    status = pieces.pieces_poll(job)

    assert status.state == "running"
    states = {p.index: (p.state, p.attempts, p.call_id) for p in JobPiece.objects.filter(job=job)}
    assert states == {0: ("succeeded", 1, "c0"), 1: ("succeeded", pieces.MAX_PIECE_ATTEMPTS, "c1"),
                      2: ("running", 2, "c3")}  # fmt: skip
    assert [e.data["piece"] for e in job.events.filter(type=JobEventType.INFERENCE_RETRY)] == [2]
    assert spawned == ["transcription"] and canceled == []
