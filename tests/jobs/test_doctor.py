"""`manage.py doctor` against the test stack: the real servers, a real worker, real jobs."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command

from auteur.core.queues import ALL_QUEUES
from jobs.models import Job, JobStatus
from tests.factories import ProjectFactory
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def doctor() -> str:
    out = io.StringIO()
    call_command("doctor", stdout=out)
    return out.getvalue()


def test_doctor_prints_components_versions_queues_and_the_oldest_job_per_state(start_worker: Any, user: Any):
    project = ProjectFactory.create(user=user, name="p")
    old = Job.objects.create(user=user, project=project, type="compression", credits_cost=1,
                             status=JobStatus.PENDING)
    Job.objects.create(user=user, project=project, type="render", credits_cost=1, status=JobStatus.PENDING)
    worker = start_worker(consumer=False)
    worker.stop()  # the pending jobs above stay pending: nothing consumes their (absent) messages
    text = doctor()
    for component in ("postgres", "redis", "mongodb", "storage"):
        assert re.search(rf"^{component} +ok$", text, re.M), text
    assert re.search(r"^workers +degraded .*queues_without_workers", text, re.M), text
    assert re.search(r"^gpu_backend +ok$", text, re.M)
    assert re.search(r"^postgres server +\d+", text, re.M) and re.search(r"^redis server +\d+\.", text, re.M)
    assert re.search(r"^celery +5\.", text, re.M) and re.search(r"^mongodb server +\S+", text, re.M)
    assert re.search(r"^celery broker +(redis|RabbitMQ [\d.]+) at (redis|amqp)://", text, re.M), text
    assert not re.search(r"^\w[\w ]* +unavailable", text, re.M), text  # every version is read
    # The operator's side of `feature_unavailable`: each type this server cannot run, and why.
    assert re.search(r"^lip-sync +weights for \S+ not found in .+; run manage.py download_models lip-sync$", text,
                     re.M), text
    for queue in ALL_QUEUES:
        assert re.search(rf"^{queue} +\d+  NO WORKER$", text, re.M), text
    assert re.search(rf"^pending +{old.id} compression created", text, re.M), text
    assert re.search(r"^completed +none$", text, re.M)

    start_worker(consumer=False)
    # A worker that said "ready." answers an inspect within the doctor's 1 s, but not always at once
    # on a machine busy with other tests: ask again for a while.
    def workers_ok() -> str | None:
        answer = doctor()
        return answer if re.search(r"^workers +ok$", answer, re.M) else None

    text = wait_for(workers_ok, timeout=30)
    assert re.search(r"^workers +ok$", text, re.M), text
    for queue in ALL_QUEUES:
        assert re.search(rf"^{queue} +\d+  test-\d+@", text, re.M), text
