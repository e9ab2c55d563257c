"""The work a job costs, counted, so that it cannot grow unseen: the SQL statements, the
transactions committed and the broker messages of each stage of a job's life on the noop backend
(its submission, each task it sends, what follows its end) and of reading it.

Timings are the benchmarks' (bench/pipeline_throughput.py, bench/api_reads.py); these counts are
deterministic, so a change that adds a statement, a commit or a message to every job fails here.
A change that needs more raises the budget below in the same commit, with its reason; one that
needs less lowers it (the counts are exact, so an improvement is written down too).

Counted in this process: the request through Django's test client, then each message the job's
work sent, run in place (as a worker would run it, its connection checked at the task's start as
the worker's task_prerun does) in the order sent, until none is left. A statement is whatever is
sent to the server, Django's health check and the session's scope included; a transaction is a
COMMIT, or a statement run outside any transaction (which commits by itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from celery import current_app
from django.db import close_old_connections, connection

from auteur.core import publishing
from jobs.models import Job, JobStatus
from tests.jobs.support import jobs_url, submit, valid_body
from tests.sent import on_each_statement

pytestmark = [pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Cost:
    statements: int
    commits: int
    messages: int


# A TTS job on the noop backend, whose call is done at the first look: one step does it all.
JOB_LIFE_BUDGET: dict[str, Cost] = {
    # The request: its caller (the token's user, with the session's scope sent in the same message;
    # the kept connection checked without a statement: auteur/core/rls.py, auteur/core/postgres),
    # the project, the balance read before the charge; then one transaction: the job, the charge
    # (no savepoint: the job is new, so no charge of it exists to collide with), the `created`
    # event; the first step sent after commit.
    "POST /jobs/tts": Cost(statements=6, commits=4, messages=1),
    # The job; the claim (type lock, the user's slots, then the move with its charge on the type and
    # its `processing` event in one statement); the spawn's claim, then the call id with its
    # `started` event (and whether the owner's webhooks want it) in one statement; the inference's
    # end; whether a job of its type waits for the unit it freed; the output's row (not looked up
    # first: a job claimed in this step has stored nothing yet); the completion (the move, the
    # `completed` event, its webhooks and the usage event in one statement); the user's next job.
    "jobs.audio.prepare": Cost(statements=11, commits=8, messages=0),
}
DETAIL_BUDGET = Cost(statements=1, commits=1, messages=0)  # the job's row, its owner proven by it, the scope with it


@dataclass
class Meter:
    """Counts what runs on this process's database connection and what it sends to the broker."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    sent: list[publishing.Message] = field(default_factory=list)

    def cost(self) -> Cost:
        return Cost(len(self.statements), self.commits, len(self.sent))


@contextlib.contextmanager
def metered(monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    meter = Meter()

    def count_statement(cursor: psycopg.Cursor[Any], sql: str) -> None:
        meter.statements.append(sql)
        if cursor.connection.autocommit and sql.lstrip()[:6].upper() not in ("COMMIT", "BEGIN"):
            meter.commits += 1  # a statement outside a transaction commits by itself

    real_commit = connection.commit

    def count_commit() -> None:
        meter.commits += 1
        real_commit()

    monkeypatch.setattr(connection, "commit", count_commit)
    monkeypatch.setattr(publishing.unsent, "attempt", meter.sent.append)
    on_each_statement(monkeypatch, count_statement)
    yield meter
    monkeypatch.undo()


def in_a_workers_scope() -> None:
    """The session as a worker's is between tasks: in no user's scope (auteur/core/rls.py). This
    test's requests ran on the same session and moved it into their user's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def explain(stage: str, counted: Cost, budget: Cost, meter: Meter) -> str:
    statements = "\n".join(f"  {n + 1}. {' '.join(sql.split())[:300]}" for n, sql in enumerate(meter.statements))
    sent = ", ".join(m.name for m in meter.sent) or "none"
    return (f"{stage}: counted {counted}, budget {budget}. If the change needs it, change the budget in "
            f"tests/jobs/test_budget.py with its reason.\nstatements:\n{statements}\nmessages: {sent}")


def a_jobs_life(auth_client, project, media, monkeypatch) -> dict[str, tuple[Cost, Meter]]:
    """Each stage of one TTS job's life on the noop backend, metered."""
    counted: dict[str, tuple[Cost, Meter]] = {}
    with metered(monkeypatch) as meter:
        close_old_connections()  # as a server's request_started does (Django's test client leaves it out)
        response = submit(auth_client, "tts", valid_body("tts", project, media))
    assert response.status_code == 202, response.json()
    counted["POST /jobs/tts"] = (meter.cost(), meter)
    queue = list(meter.sent)
    while queue:
        message = queue.pop(0)
        assert message.name not in counted, f"{message.name} sent twice in one job's life"
        in_a_workers_scope()
        with metered(monkeypatch) as meter:
            close_old_connections()  # as the worker's task_prerun does (auteur/celery.py)
            current_app.tasks[message.name].apply(args=message.args).get()
        counted[message.name] = (meter.cost(), meter)
        queue.extend(meter.sent)
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.status == JobStatus.COMPLETED, job.error_detail
    return counted


def prepared(meter: Meter) -> list[str]:
    """The statements that prepared one (the session's scope may travel with it: auteur/core/rls.py)."""
    return [sql for sql in meter.statements if "PREPARE auteur_" in sql]


def test_a_jobs_life_costs_its_budget_and_no_more(auth_client, funded, project, media, gpu_backend, monkeypatch):
    gpu_backend("noop")
    current_app.loader.import_default_modules()  # the apps' tasks, as a worker has them
    # A session prepares each hot statement the first time it runs it (auteur/core/postgres/plans.py),
    # so the budget is a warm session's: the second job's. The first job's extra statements are
    # those PREPAREs, if any, and nothing else. The session is opened first: an earlier test in this process
    # may have left its connection to be closed by the next close_old_connections (its age, its
    # errors), and opening one (set_config of TimeZone) is no statement of the job's.
    close_old_connections()
    Job.objects.exists()
    first = a_jobs_life(auth_client, project, media, monkeypatch)
    counted = a_jobs_life(auth_client, project, media, monkeypatch)
    for stage, (cost, meter) in first.items():
        # (An earlier test in this process may have prepared them all on this session already.)
        assert cost.statements - len(prepared(meter)) == counted[stage][0].statements, explain(
            f"{stage}, the first job", cost, counted[stage][0], meter)
    assert not any(prepared(meter) for _, meter in counted.values()), "a statement was prepared again"

    report = {stage: cost for stage, (cost, _) in counted.items()}
    assert set(report) == set(JOB_LIFE_BUDGET), f"the stages changed: {report}"
    wrong = [explain(stage, cost, JOB_LIFE_BUDGET[stage], meter)
             for stage, (cost, meter) in counted.items() if cost != JOB_LIFE_BUDGET[stage]]
    assert not wrong, "\n\n".join(wrong)


def test_reading_a_job_costs_its_budget(auth_client, funded, project, media, gpu_backend, monkeypatch):
    gpu_backend("noop")
    job_id = submit(auth_client, "tts", valid_body("tts", project, media)).json()["job_id"]
    Job.objects.filter(pk=job_id).update(status=JobStatus.PROCESSING)
    assert auth_client.get(jobs_url(f"/{job_id}")).status_code == 200  # the session prepares the read
    with metered(monkeypatch) as meter:
        close_old_connections()  # as a server's request_started does
        assert auth_client.get(jobs_url(f"/{job_id}")).status_code == 200
    assert meter.cost() == DETAIL_BUDGET, explain("GET /jobs/{id}", meter.cost(), DETAIL_BUDGET, meter)
