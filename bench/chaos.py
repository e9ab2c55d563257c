"""Chaos drill: jobs of every kind while workers die and Redis and Postgres restart; then proof
that nothing was lost and no credit moved twice.

    .venv/bin/python bench/chaos.py [--jobs 1000] [--users 30] [--clients 8] [--seed 7]
    .venv/bin/python bench/chaos.py --quick        # the short version that `make test` runs (75 jobs)
    AUTEUR_DEVSTACK_BROKER=rabbitmq .venv/bin/python bench/chaos.py --quick   # `make test-rabbitmq`

On a throwaway stack run as `make run` runs it (gunicorn API, two Celery workers on every queue,
beat with the reaper; Redis with its append-only file), with the `noop` GPU backend wrapped in
injected faults (transient and permanent errors, failures at spawn, calls that hang past their
time limit). Client threads submit the jobs over HTTP with an Idempotency-Key each, retrying
through outages, and cancel some of them. While the jobs run, at fixed fractions of the
submissions, the drill:

    SIGKILLs a worker's pool process; restarts Redis; SIGKILLs a whole worker node (and starts a
    new one); restarts Postgres; SIGKILLs a pool process again; and, when the broker is an
    embedded RabbitMQ node (AUTEUR_DEVSTACK_BROKER=rabbitmq), restarts that node.

Then it waits for every job to end and checks, from the database:

    no job lost (every accepted id exists; no job the clients do not know of) or stuck (all end
    completed, failed or canceled); every failed job refunded exactly once in full, every
    canceled one once by what it records (in full, or the unspent part of a job canceled after
    its inference started; none when that rounds to 0), no completed job refunded, one charge
    per job; `ledger_check` clean and no balance ever below 0; in the team workspaces, whose
    members submit concurrently from one pool, every charge and refund names a member of the team,
    the members' sums add up to the pool's spend, and no member with a budget ever spent past it
    (their entries replayed in order; some submissions must have met it);
    one set of outputs per completed job (none for the others); one terminal event per job.

It prints a table of figures and invariants, writes bench/results/chaos.json (or --out), and
exits 1 if any invariant fails; a job left running is named with its status, its last events and
what the reaper did with it. The full run keeps production's timing (time limits, grace, reaper
period and thresholds), so hung calls are timed out as in production (TTS: 120 s + 30 s grace)
and jobs whose messages died with a worker or a broker restart show up in the drain time.
--quick runs 75 jobs (and a batch of 15) with every disruption and production's timing scaled down
as a whole (--time-scale, 0.05: every time limit, the grace, the reaper's period, thresholds and
margin); its budgeted members have half the budget, as they submit half as much.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench._stack import (
    RESULTS_DIR,
    BenchStack,
    beat_argv,
    celery_worker_argv,
    django_stack,
    free_port,
    gunicorn_argv,
)

# Faults per type (gpu_tasks/backends/faults.py). Hangs only where the time limit is short
# (tts: 120 s), so that the drill ends within minutes; the poll or the reaper times them out.
# `oom` where a type has a GPU ladder: out of memory on its own class, run again on the next.
FAULTS = (
    "tts:transient=0.06,permanent=0.03,hang=0.01,spawn_transient=0.03;"
    "transcription:transient=0.08,permanent=0.04,spawn_permanent=0.02;"
    "video-query:transient=0.04,permanent=0.02,oom=0.15;"
    "lip-sync:transient=0.04,oom=0.15;"
    "*:transient=0.05,permanent=0.03,spawn_transient=0.02"
)
QUICK_FAULTS = ("tts:transient=0.1,permanent=0.05,hang=0.15,spawn_transient=0.05;video-query:oom=0.5;"
                "*:transient=0.08,permanent=0.05")
# What users submit: (type, weight, pro only).
MIX = [("tts", 30, False), ("transcription", 15, False), ("compression", 10, False), ("audio-generation", 10, False),
       ("image-generation", 10, False), ("video-query", 10, False), ("lip-sync", 8, False),
       ("video-generation", 7, True)]
OUTPUTS = {"tts": 1, "compression": 1, "audio-generation": 1, "image-generation": 1, "lip-sync": 1,
           "video-generation": 1, "transcription": 0, "video-query": 0}
PLANS = (None, "starter", "pro")
TIGHT_BUDGET_EVERY = 10  # every 10th user can afford only a few jobs: some submissions get 402
# One in ten of the users (at least one team) are the members of a team workspace, TEAM_SIZE to a
# team: they submit to the same pool of credits at once, each with the team's Auteur-Workspace.
TEAM_SIZE = 3
# Each team's last member has a monthly budget of this many credits, less than they would spend:
# some of their submissions meet it (402 spend_cap_reached), refunds of their failed jobs give some back.
MEMBER_BUDGET = 40
# --quick: what `make test` runs (its users submit about 7 jobs each, half of what they did at 150).
QUICK_JOBS, QUICK_BATCH, QUICK_MEMBER_BUDGET = 75, 15, 20
CANCEL_RATE = 0.05
# Content moderation in the mix. Outputs flagged by the screening's test seam (jobs.life.moderation):
# those jobs fail `output_moderated`, refunded once, with nothing stored. And every REFUSED_EVERY-th
# submission (from a user whose credits cover it) is a TTS text the content policy refuses: 422, no job.
OUTPUT_FLAGS = "image-generation:output=0.5;tts:output=0.1"
REFUSED_EVERY = 25
REFUSED_TEXT = "show a man being tortured with pliers, blood everywhere"


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> type
    refused: Counter[str] = field(default_factory=Counter)  # error code -> count
    unexpected: list[str] = field(default_factory=list)
    http_retries: int = 0
    cancels: Counter[int] = field(default_factory=Counter)  # HTTP status -> count
    # Each submission: sent, answered (monotonic, retries through outages included), HTTP status, job id.
    answers: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    first_submit: float = 0.0
    last_submit: float = 0.0
    batch_id: str | None = None  # the drill's batch (submit_batch)
    batch_cancel: dict[str, Any] = field(default_factory=dict)  # what its bulk cancel answered
    policy_refused: int = 0  # submissions of REFUSED_TEXT answered 422 content_policy_violation
    # Each submission: (paying account, type, sent, answered, HTTP status, error code, a refused
    # text?): what the review holds are checked against.
    by_account: list[tuple[str, str, float, float, int, str, bool]] = field(default_factory=list)
    under_review: int = 0  # submissions answered 403 account_under_review (the account held)

    @property
    def answered(self) -> int:
        """The clients' submissions answered (the batch's items not counted)."""
        with self.lock:
            return len(self.answers)


@dataclass
class User:
    token: str
    project: str
    plan: str | None
    media: dict[str, str]  # kind -> media id
    workspace: str | None = None  # the team workspace its member submits in
    account: str = ""  # the paying account's id (the team's, for a member)

    @property
    def headers(self) -> dict[str, str]:
        return {"Auteur-Workspace": self.workspace} if self.workspace else {}


def request(port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body or {}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                              **(headers or {})})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, json.loads(data) if data else {}


def request_through_outages(port: int, outcomes: Outcomes, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """A client that keeps trying through restarts (5xx, refused connections) for up to 2 min."""
    deadline = time.monotonic() + 120
    while True:
        try:
            status, body = request(port, *args, **kwargs)
            if status < 500:
                return status, body
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            status, body = 0, {}
        if time.monotonic() > deadline:
            return status, body
        with outcomes.lock:
            outcomes.http_retries += 1
        time.sleep(0.5)


def job_body(job_type: str, user: User, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"project_id": user.project}
    if job_type == "tts":
        body.update(text="Chaos " * rng.randint(1, 300), speed=1.0)
    elif job_type == "transcription":
        body.update(media_id=user.media["audio"])
    elif job_type == "compression":
        body.update(media_id=user.media["video"], preset="480p")
    elif job_type in ("audio-generation", "image-generation", "video-generation"):
        body.update(prompt="a quiet harbour at dawn")
    elif job_type == "video-query":
        body.update(video_media_id=user.media["video"], question="What happens?")
    elif job_type == "lip-sync":
        body.update(video_media_id=user.media["face"], audio_media_id=user.media["audio"])
    return body


def plan_submissions(users: list[User], jobs: int, rng: random.Random) -> list[tuple[int, str, dict[str, Any]]]:
    plan = []
    for i in range(jobs):
        user_index = i % len(users)
        user = users[user_index]
        choices = [(t, w) for t, w, pro in MIX if not pro or user.plan == "pro"]
        job_type = rng.choices([t for t, _ in choices], weights=[w for _, w in choices])[0]
        body = job_body(job_type, user, rng)
        if i % REFUSED_EVERY == 1:  # users 1, 6, 11...: never a tight budget's, never a team's
            job_type, body = "tts", {"project_id": user.project, "text": REFUSED_TEXT, "speed": 1.0}  # rng untouched
        plan.append((user_index, job_type, body))
    return plan


def planned_refusals(jobs: int) -> int:
    return len(range(1, jobs, REFUSED_EVERY))


def submit_all(port: int, users: list[User], plan: list[tuple[int, str, dict[str, Any]]], clients: int,
               outcomes: Outcomes, seed: int, rate: float = 0.0) -> None:
    """Every planned submission, over `clients` threads; at most `rate` per second when given (a
    drill whose faults must meet traffic), else as fast as the API answers."""
    work = iter(enumerate(plan))
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)  # noqa: S311 - a drill
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            i, (user_index, job_type, body) = item
            if rate:
                time.sleep(max(0.0, outcomes.first_submit + i / rate - time.monotonic()))
            user = users[user_index]
            sent = time.monotonic()
            status, data = request_through_outages(port, outcomes, "POST", f"/api/v1/jobs/{job_type}", user.token,
                                                    body, headers={"Idempotency-Key": f"chaos-{i}", **user.headers})
            with outcomes.lock:
                outcomes.last_submit = time.monotonic()
                outcomes.answers.append((sent, outcomes.last_submit, status,
                                         data["job_id"] if status in (200, 202) else None))
                refused_text = body.get("text") == REFUSED_TEXT
                code = data["error"].get("code", "") if isinstance(data.get("error"), dict) else ""
                outcomes.by_account.append((user.account, job_type, sent, outcomes.last_submit, status, code,
                                            refused_text))
                if status in (200, 202) and not refused_text:
                    outcomes.accepted[data["job_id"]] = job_type
                elif status == 422 and refused_text and code == "content_policy_violation":
                    outcomes.policy_refused += 1
                    continue
                elif status == 403 and code == "account_under_review":
                    outcomes.under_review += 1  # checked against the holds after the drill
                    continue
                elif status == 402:
                    outcomes.refused[data["error"]["code"]] += 1
                else:
                    outcomes.unexpected.append(f"{job_type}: {status} {str(data)[:300]}")
                    continue
            if status in (200, 202) and rng.random() < CANCEL_RATE:
                time.sleep(rng.uniform(0, 0.5))
                cancel_status, _ = request_through_outages(port, outcomes, "POST",
                                                           f"/api/v1/jobs/{data['job_id']}/cancel", user.token,
                                                           headers=user.headers)
                with outcomes.lock:
                    outcomes.cancels[cancel_status] += 1

    outcomes.first_submit = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def submit_batch(port: int, user: User, items: int, outcomes: Outcomes, rng: random.Random,
                 half_of_the_clients: int) -> None:
    """One batch of `items` TTS and transcription jobs (one Idempotency-Key, retried through
    outages), submitted as the drill starts; once the clients have sent half of theirs, its
    transcriptions still waiting are cancelled by a bulk cancel, while the faults go on."""
    types = ["tts" if n % 2 == 0 else "transcription" for n in range(items)]
    body = {"items": [{"type": t, "input": job_body(t, user, rng)} for t in types]}
    status, data = request_through_outages(port, outcomes, "POST", "/api/v1/jobs/batch", user.token, body,
                                           headers={"Idempotency-Key": "chaos-batch", **user.headers})
    with outcomes.lock:
        if status not in (200, 202):
            outcomes.unexpected.append(f"batch: {status} {str(data)[:300]}")
            return
        outcomes.batch_id = data["id"]
        outcomes.accepted.update(zip(data["job_ids"], types, strict=True))
    while outcomes.answered < half_of_the_clients:
        time.sleep(0.1)
    status, data = request_through_outages(port, outcomes, "POST", "/api/v1/jobs/bulk/cancel", user.token,
                                           {"batch_id": outcomes.batch_id, "type": "transcription"},
                                           headers=user.headers)
    with outcomes.lock:
        outcomes.batch_cancel = {"status": status, **data}


# ----------------------------------------------------------------------------- disruptions


class Workers:
    """The Celery worker nodes of the drill, by name; killed and replaced by the disruptions."""

    def __init__(self, stack: BenchStack, concurrency: int) -> None:
        self.stack, self.concurrency, self.nodes, self.started = stack, concurrency, {}, 0
        self.start()
        self.start()

    def start(self) -> None:
        self.started += 1
        name = f"chaos{self.started}"
        self.nodes[name] = self.stack.spawn(f"worker-{name}", celery_worker_argv(concurrency=self.concurrency,
                                                                                   name=name))

    def alive(self) -> list[str]:
        return [name for name, proc in self.nodes.items() if proc.poll() is None]

    def kill_pool_process(self) -> str:
        name = self.alive()[0]
        children = psutil.Process(self.nodes[name].pid).children(recursive=True)
        if not children:
            return f"no pool process in {name}"
        victim = children[0]
        victim.send_signal(signal.SIGKILL)
        return f"SIGKILL pool process {victim.pid} of worker {name}"

    def kill_node(self) -> str:
        name = self.alive()[-1]
        os.killpg(self.nodes[name].pid, signal.SIGKILL)
        self.nodes[name].wait(10)
        del self.nodes[name]
        self.start()
        return f"SIGKILL worker {name} (main and pool processes); started a new worker"


def disruptions(stack: BenchStack, workers: Workers) -> list[tuple[float, Callable[[], str]]]:
    """What the drill does, at which fraction of the submissions."""
    steps: list[tuple[float, Callable[[], str]]] = [
        (0.10, workers.kill_pool_process),
        (0.25, lambda: _restart(stack, "redis")),
        (0.40, workers.kill_node),
        (0.55, lambda: _restart(stack, "postgres")),
        (0.70, workers.kill_pool_process),
    ]
    if "rabbitmq" in stack.servers:
        # The broker itself: messages held unacknowledged come back, publishes in the gap fail
        # (the reaper republishes those jobs), countdown messages wait in its delay queues.
        steps.append((0.85, lambda: _restart(stack, "rabbitmq")))
    return steps


def disrupt(steps: list[tuple[float, Callable[[], str]]], outcomes: Outcomes, total: int,
            log: list[dict[str, Any]], stop: threading.Event) -> None:
    for fraction, action in steps:
        while outcomes.answered < fraction * total:
            if stop.wait(0.05):
                return
        began = time.monotonic()
        what = action()
        log.append({"at_submission": outcomes.answered, "what": what,
                    "seconds": round(time.monotonic() - began, 2)})
        print(f"  [chaos] after {outcomes.answered} submissions: {what}", flush=True)


def _restart(stack: BenchStack, name: str) -> str:
    stack.servers[name].restart()
    return f"restarted {name} (same port and data)"


# ----------------------------------------------------------------------------- invariants


def db(fn: Callable[[], Any]) -> Any:
    """Run a query, reconnecting once when the drill's own connection died with a restart."""
    from django.db import InterfaceError, OperationalError, connection

    try:
        return fn()
    except (OperationalError, InterfaceError):
        connection.close()
        return fn()


def wait_for_drain(ids: set[str], deadline_s: float) -> tuple[bool, float]:
    from jobs.models import TERMINAL_STATUSES, Job

    deadline = time.monotonic() + deadline_s
    while True:
        with contextlib.suppress(Exception):
            if not db(lambda: Job.objects.exclude(status__in=TERMINAL_STATUSES).exists()):
                return True, time.monotonic()
        if time.monotonic() > deadline:
            return False, time.monotonic()
        time.sleep(0.5)


def wait_for_batch_end(batch_id: str | None, deadline_s: float) -> None:
    """Until the batch's end is announced (a second after its last item ended, or the beat's sweep)."""
    from jobs.models import Batch

    deadline = time.monotonic() + deadline_s
    while batch_id is not None and time.monotonic() < deadline:
        if db(lambda: Batch.objects.filter(pk=batch_id, ended_at__isnull=False).exists()):
            return
        time.sleep(0.5)


def explain(job_ids: list[str], limit: int = 20) -> list[dict[str, Any]]:
    """What a job left running was doing: its status, its call, its last events, and the reaper's part."""
    from django.utils import timezone

    from jobs.models import Job, JobEvent

    now = timezone.now()
    reaper_types = ("republished", "repolled")
    stories = []
    # The jobs holding a call first: the queued ones wait behind them for their user's slots.
    left = sorted(Job.objects.filter(pk__in=job_ids), key=lambda j: (j.status != "processing", j.created_at))
    for job in left[:limit]:
        events = list(JobEvent.objects.filter(job=job).order_by("-id").values_list("type", "data", "created_at"))
        last = [f"{t} {json.dumps(d, default=str)[:120] if d else ''} ({(now - at).total_seconds():.0f} s ago)"
                for t, d, at in events[:6]][::-1]
        reaper = Counter(t for t, _, _ in events if t in reaper_types)
        started = job.inference_started_at
        stories.append({
            "job": str(job.pk), "type": job.type, "status": job.status, "attempts": job.attempts,
            "gpu_call": job.gpu_call_id or None,
            "inference_running_s": round((now - started).total_seconds(), 1) if started else None,
            "last_sign_of_life_s": round((now - job.updated_at).total_seconds(), 1),
            "reaper": dict(reaper) or "nothing yet",
            "last_events": last,
        })
        if job.status == "queued":
            holding = Job.objects.filter(user_id=job.user_id, status="processing").values_list("pk", flat=True)
            stories[-1]["behind"] = [str(pk) for pk in holding]
    return stories


def check(outcomes: Outcomes) -> tuple[dict[str, Any], dict[str, tuple[bool, str]]]:
    from django.db.models import Count, Min

    from credits.models import CreditTransaction
    from credits.selectors import ledger_check
    from jobs.life.refunds import failure_refund
    from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobModeration
    from jobs.specs import job_spec
    from media.models import MediaFile

    jobs = {str(j.pk): j for j in Job.objects.all()}
    ids = set(outcomes.accepted)
    statuses = Counter(j.status for j in jobs.values())
    ledger: dict[str, Counter[str]] = {}
    amounts_ok = True
    for tx in CreditTransaction.objects.filter(job_id__isnull=False):
        ledger.setdefault(str(tx.job_id), Counter())[tx.type] += 1
        job = jobs.get(str(tx.job_id))
        # A charge is the cost; a refund is what the job records it got back (all of it, or the
        # unspent part of a job canceled after its inference started).
        amounts_ok &= job is not None and abs(tx.amount) == (job.credits_cost if tx.type == "usage"
                                                             else job.credits_refund)
    events: dict[str, Counter[str]] = {}
    for job_id, type_, n in JobEvent.objects.values_list("job_id", "type").annotate(n=Count("id")):
        events.setdefault(str(job_id), Counter())[type_] = n
    outputs = Counter(str(m) for m in MediaFile.objects.filter(source_job_id__isnull=False)
                      .values_list("source_job_id", flat=True))
    # Each ledger row records the balance its own UPDATE left (credits/services/ledger.py): the lowest
    # of them is the lowest any balance ever was.
    lowest = CreditTransaction.objects.aggregate(low=Min("balance_after"))["low"] or 0

    def bad(predicate: Callable[[str, Job], bool]) -> list[str]:
        return sorted(job_id for job_id, job in jobs.items() if predicate(job_id, job))

    lost = sorted(ids - set(jobs)) + sorted(set(jobs) - ids)
    stuck = bad(lambda i, j: j.status not in TERMINAL_STATUSES)
    stuck_by = Counter(f"{jobs[i].status} {jobs[i].type}" for i in stuck)
    # Every failed job is refunded once (in full, or a timed-out call all but the share its engine
    # reported done); a canceled one too, unless its inference had spent it all.
    wrong_refund = bad(lambda i, j: ledger.get(i, Counter())["refund"] != (1 if j.credits_refund else 0)
                       or j.credits_refunded != bool(j.credits_refund)
                       or (j.status == "failed" and j.credits_refund != failure_refund(job=j, code=j.error_code))
                       or (j.status not in ("failed", "canceled", "aborted") and j.credits_refund))
    wrong_charge = bad(lambda i, j: ledger.get(i, Counter())["usage"] != 1)
    wrong_outputs = bad(lambda i, j: outputs[i] != (OUTPUTS[j.type] if j.status == "completed" else 0)
                        or len(j.output_data.get("output_media_ids", [])) != (outputs[i] if j.status == "completed"
                                                                              else 0))
    terminal_events = bad(lambda i, j: sum(events.get(i, Counter())[t]
                                           for t in ("completed", "failed", "canceled", "aborted")) != 1)
    # A call out of GPU memory runs again on the next class of its type's ladder, never past its top.
    climbs = Counter(str(job_id) for job_id in JobEvent.objects.filter(type="inference_retry", data__gpu__isnull=False)
                     .values_list("job_id", flat=True))
    over_ladder = bad(lambda i, j: climbs[i] > len(job_spec(j.type).engine.gpu_ladder)
                      or (climbs[i] > 0) != bool(j.gpu_class))
    problems = ledger_check()
    team_spend, misattributed, spenders = team_pools()
    budgeted, overruns = member_budgets()
    at_budget = outcomes.refused["spend_cap_reached"]

    # A job whose outputs were flagged failed output_moderated with its hold recorded, and only it.
    holds = {str(job_id): keys for job_id, keys in JobModeration.objects.values_list("job_id", "quarantine")}
    wrong_holds = bad(lambda i, j: (j.status == "failed" and j.error_code == "output_moderated") != (i in holds)
                      or (i in holds and len(holds[i]) != OUTPUTS[j.type]))
    wrong_outputs = [f"{i} ({jobs[i].type}, {jobs[i].status}: {outputs[i]} stored, "
                     f"{len(jobs[i].output_data.get('output_media_ids', []))} listed)" for i in wrong_outputs]

    held, wrong_holds_review, held_texts = review_holds(outcomes)

    def result(failures: list[Any], what: str) -> tuple[bool, str]:
        return (not failures, what if not failures else f"{what}: {len(failures)} off, e.g. {failures[:3]}")

    invariants = {
        "no job lost": result(lost, "every accepted job exists, and no other"),
        "the batch's counts are its items'": batch_check(outcomes, jobs),
        "no job stuck": result(stuck, "every job completed, failed or canceled" + (
            f" (left: {dict(stuck_by)})" if stuck else "")),
        "refunded exactly once": result(wrong_refund, "failed/canceled: 1 refund, as the rules give; none else"),
        "charged exactly once": result(wrong_charge + ([] if amounts_ok else ["amounts"]), "1 usage row per job"),
        "ledger_check": result([str(p) for p in problems], "every balance equals the sum of its ledger"),
        "never negative": (lowest >= 0, f"lowest balance ever recorded: {lowest}"),
        "member sums equal the pool's spend": result(
            misattributed, f"{len(team_spend)} team pools: each charge and refund names a member of the team, "
                           f"and by member they add up to the pool's spend"),
        "no member budget is overrun": result(
            overruns + ([] if at_budget else ["no submission met a budget"]),
            f"{budgeted} budgeted members: their spend of the month, entry by entry, never passed their budget "
            f"({at_budget} submissions refused at it)"),
        "one output set per completed job": result(wrong_outputs, "outputs of completed jobs only, once"),
        "one terminal event per job": result(terminal_events, "exactly one completed/failed/canceled event"),
        "out of memory climbs its ladder": result(over_ladder, "each climb one class up, within the type's ladder"),
        "flagged outputs withheld": result(wrong_holds, f"{len(holds)} jobs failed output_moderated, each with "
                                                        "its hold and its outputs in quarantine"),
        "refused texts made no job": (
            outcomes.policy_refused + held_texts == planned_refusals(len(outcomes.answers)),
            f"{outcomes.policy_refused} submissions answered 422 content_policy_violation, {held_texts} 403 "
            "account_under_review (their account held by then)"),
        "held accounts generate nothing": result(
            wrong_holds_review, f"{len(held)} accounts held for review; after their hold, their generative "
                                f"submissions answered only 403 account_under_review ({outcomes.under_review}), "
                                "their other work ran"),
        "no unexpected answers": result(outcomes.unexpected, "only 202, 200 (replay), 402, 422 for a refused text, "
                                                             "or 403 for a held account"),
    }
    all_events = Counter()
    for counter in events.values():
        all_events.update(counter)
    figures = {
        "jobs_submitted": len(outcomes.answers),
        "batch_items": sum(1 for j in jobs.values() if str(j.batch_id) == outcomes.batch_id),
        "accepted": len(ids),
        "refused_402": dict(outcomes.refused),
        "refused_policy": outcomes.policy_refused,
        "held_for_review": {"accounts": len(held), "answered_403": outcomes.under_review},
        "outputs_withheld": len(holds),
        "completed": statuses["completed"],
        "failed": statuses["failed"],
        "canceled": statuses["canceled"],
        "refunded": sum(c["refund"] for c in ledger.values()),
        "team_pools": {"pools": len(team_spend), "spend": team_spend, "members_charged": spenders},
        "retries": all_events["step_retry"] + all_events["inference_retry"],
        "on_a_larger_gpu": dict(Counter(f"{j.status} on {j.gpu_class}" for j in jobs.values() if j.gpu_class)),
        "redeliveries": all_events["step_redelivered"],
        "reaper_republished": all_events["republished"],
        "client_http_retries": outcomes.http_retries,
        "cancel_answers": dict(outcomes.cancels),
        "failure_codes": dict(Counter(j.error_code for j in jobs.values() if j.status == "failed")),
        # Who ended each hung call: its own poll, or the reaper's backstop.
        "timed_out_by": dict(Counter("reaper" if j.error_detail.startswith("reaper:") else "poll"
                                     for j in jobs.values() if j.status == "failed" and j.error_code == "timeout")),
        "reaper_repolls": all_events["repolled"],
        "stuck_jobs": explain(stuck),
    }
    return figures, invariants


def batch_check(outcomes: Outcomes, jobs: dict[str, Any]) -> tuple[bool, str]:
    """The drill's batch: its counts (as GET /batches/{id} reads them) equal its items' states, it
    charged and refunded what its items record, its bulk cancel was answered, and its end was
    announced (once: `ended_at`, set by one conditional UPDATE)."""
    from jobs.models import Batch
    from jobs.selectors.batches import batch_counts

    if outcomes.batch_id is None:
        return False, "no batch was accepted"
    batch = Batch.objects.get(pk=outcomes.batch_id)
    items = [j for j in jobs.values() if str(j.batch_id) == outcomes.batch_id]
    read = batch_counts(batch=batch)
    counted = Counter(j.status for j in items)
    problems = []
    if len(items) != batch.item_count:
        problems.append(f"{len(items)} items of {batch.item_count}")
    if {k: v for k, v in read["counts"].items() if v} != dict(counted):
        problems.append(f"counts {read['counts']} against its items' {dict(counted)}")
    if batch.credits_cost != sum(j.credits_cost for j in items):
        problems.append("its cost is not its items'")
    if read["credits_refunded"] != sum(j.credits_refund for j in items):
        problems.append("its refunds are not its items'")
    if outcomes.batch_cancel.get("status") != 200:
        problems.append(f"its bulk cancel answered {outcomes.batch_cancel}")
    if batch.ended_at is None:
        problems.append("its end was not announced")
    canceled = outcomes.batch_cancel.get("canceled")
    return (not problems, f"{batch.item_count} items: {dict(counted)}; bulk cancel of its waiting "
                          f"transcriptions: {canceled}; end announced" if not problems else "; ".join(problems))


def review_holds(outcomes: Outcomes) -> tuple[set[str], list[str], int]:
    """The accounts held for review, what went against the holds, and how many refused texts were
    answered 403 (their account held by then). An account is held in the transaction that records
    the refusal that crosses the threshold, before that 422 is answered: so once an account's
    AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY-th 422 is answered, no generative submission it sends is
    accepted (a 403 account_under_review; a 402, checked first; or a 200 replay of a job accepted
    before). And a 403 goes only to a held account, for a generative type."""
    from django.conf import settings

    from jobs.models import AccountStanding
    from jobs.specs import job_spec

    held = {str(a) for a in AccountStanding.objects.filter(held_since__isnull=False).values_list("user_id", flat=True)}
    threshold = settings.AUTEUR_REVIEW_HOLD_REFUSALS_PER_DAY
    wrong: list[str] = []
    held_texts = 0
    for account in sorted({a[0] for a in outcomes.by_account}):
        answers = sorted((a for a in outcomes.by_account if a[0] == account), key=lambda a: a[3])
        refusals = [a[3] for a in answers if a[4] == 422 and a[5] == "content_policy_violation"]
        crossed = refusals[threshold - 1] if len(refusals) >= threshold else None
        if crossed is not None and account not in held:
            wrong.append(f"{account}: {len(refusals)} refusals answered, not held")
        for _, job_type, sent, _, status, code, refused_text in answers:
            generative = job_spec(job_type).generative
            if status == 403 and code == "account_under_review":
                held_texts += refused_text
                if account not in held or not generative:
                    wrong.append(f"{account}: {job_type} answered 403 account_under_review, held "
                                 f"{account in held}, generative {generative}")
            elif crossed is not None and sent > crossed and generative and status == 202:
                wrong.append(f"{account}: {job_type} accepted after its hold")
    return held, wrong, held_texts


def member_budgets() -> tuple[int, list[str]]:
    """How many members have a budget, and each moment one's spend passed it: their entries replayed
    in the ledger's order (the order the budget counted them in, under the pool's lock), a refund
    giving back what it refunds of a charge of the same month."""
    from credits.models import CreditTransaction, SpendCap
    from credits.selectors import month_of

    caps = {(c.user_id, c.subject_id): c.monthly_limit for c in SpendCap.objects.filter(monthly_limit__isnull=False)}
    charged_in: dict[Any, Any] = {}  # job -> the month its charge counted in
    counting: dict[Any, Any] = {}  # member -> the month their counter counts (their latest charge's)
    spent: Counter[Any] = Counter()
    overruns = []
    entries = (CreditTransaction.objects.filter(type__in=("usage", "refund"), user_id__in={a for a, _ in caps})
               .order_by("created_at", "id"))
    for entry in entries:
        key = (entry.user_id, entry.member_id)
        if key not in caps:
            continue
        if entry.type == "usage":
            month = counting[key] = charged_in[entry.job_id] = month_of(entry.created_at)
            spent[key, month] -= entry.amount
            if spent[key, month] > caps[key]:
                overruns.append(f"member {entry.member_id}: {spent[key, month]} of {caps[key]} after {entry.pk}")
        elif charged_in.get(entry.job_id) == counting.get(key):
            spent[key, counting[key]] -= entry.amount
    return len(caps), overruns


def team_pools() -> tuple[dict[str, int], list[str], dict[str, int]]:
    """Each team workspace's spend (its usage and refunds), the entries or sums that are not its
    members', and how many members its charges name."""
    from django.db.models import Sum

    from auteur.users.models import Membership, Workspace
    from credits.models import CreditTransaction

    teams = {str(pk) for pk in Workspace.objects.filter(personal=False).values_list("pk", flat=True)}
    members: dict[str, set[str]] = {team: set() for team in teams}
    for team, member in Membership.objects.filter(workspace_id__in=teams).values_list("workspace_id", "user_id"):
        members[str(team)].add(str(member))
    entries = CreditTransaction.objects.filter(user_id__in=teams, type__in=("usage", "refund"))
    spend = {str(u): -t for u, t in entries.values("user_id").annotate(t=Sum("amount")).values_list("user_id", "t")}
    by_member: dict[str, int] = {}
    charged: dict[str, set[str]] = {team: set() for team in teams}
    wrong = []
    for account, member_id, total in (entries.values("user_id", "member_id").annotate(t=Sum("amount"))
                                      .values_list("user_id", "member_id", "t")):
        team, member = str(account), str(member_id) if member_id else ""
        if member not in members[team]:
            wrong.append(f"{team}: {-total} credits named {member or 'no member'}, not one of its members")
            continue
        by_member[team] = by_member.get(team, 0) - total
        charged[team].add(member)
    wrong += [f"{team}: members add up to {by_member.get(team, 0)}, the pool spent {total}"
              for team, total in spend.items() if by_member.get(team, 0) != total]
    # Not vacuous: every team's pool was spent, by more than one of its members at once.
    wrong += [f"{team}: its pool was spent by {len(charged[team])} members" for team in teams
              if spend.get(team, 0) <= 0 or len(charged[team]) < 2]
    return spend, wrong, {team: len(names) for team, names in charged.items()}


# ----------------------------------------------------------------------------- setup and main


def _project_with_media(owner: Any, name: str, rng: random.Random) -> tuple[Any, dict[str, str]]:
    """A project of `owner`'s with an audio and a video file: ready rows, as a probe leaves them (the
    noop backend never reads the bytes); and the video whose face lip syncs use, with its SHA-256 and
    a verified likeness consent covering it, as a passed likeness-consent job records it (a lip sync
    needs one; the noop backend, which never verifies anyone, could not make it). Only that file has
    a hash: the others' jobs stay out of the result cache, as before."""
    import uuid

    from jobs.intake.media_screening import screener_version
    from jobs.models import MediaVerdict
    from media.models import MediaFile
    from media.services.likeness import likeness_record_verification
    from projects.models import Project

    # Rows, not uploads: no automatic transcription, so each transcription is a client's own request,
    # charged to whoever asks.
    project = Project.objects.create(user=owner, name=name, auto_transcribe=False)
    media = {}
    # The audio is lip sync's too, which takes at most 60 s (more is refused at submission).
    for kind, mime, longest in (("audio", "audio/wav", 60), ("video", "video/mp4", 300)):
        m = MediaFile.objects.create(project=project, user=owner, name=f"{kind}.bin", type=kind, mime_type=mime,
                                     status="ready", file_size_bytes=1000, duration_ms=rng.randint(5, longest) * 1000,
                                     storage_key=f"chaos/{project.pk}/{kind}")
        media[kind] = str(m.pk)
    face = MediaFile.objects.create(project=project, user=owner, name="face.bin", type="video", mime_type="video/mp4",
                                    status="ready", file_size_bytes=1000, duration_ms=60_000,
                                    storage_key=f"chaos/{project.pk}/face", content_sha256=uuid.uuid4().hex * 2)
    likeness_record_verification(
        job_id=uuid.uuid4(), user_id=owner.pk, member_id=None, challenge_id=uuid.uuid4(), recording_media_id=None,
        subject_media_id=face.pk, subject_sha256=face.content_sha256, checks={"phrase": True, "face": True},
        figures={"challenge_wer": 0.0, "phrase_wer": 0.0, "similarity": 0.9, "threshold": 0.363, "max_wer": 0.25})
    # Its pictures screened and passed, as the first lip sync naming it records it (no bytes of it are
    # stored here to decode: jobs.intake.media_screening).
    MediaVerdict.objects.create(user=owner, content_sha256=face.content_sha256, screener=screener_version(),
                                top_score=0.0, frames=1)
    media["face"] = str(face.pk)
    return project, media


def make_users(count: int, jobs: int, rng: random.Random, member_budget: int = MEMBER_BUDGET) -> list[User]:
    from auteur.users.models import Membership
    from auteur.users.models import User as UserModel
    from auteur.users.services import user_issue_token
    from auteur.users.workspace_services import workspace_create
    from credits.services.budgets import member_budget_set
    from credits.services.ledger import credit_grant
    from credits.services.subscriptions import subscription_create

    users = []
    teams = max(1, count // (10 * TEAM_SIZE))
    alone = max(0, count - teams * TEAM_SIZE)
    for i in range(alone):
        owner = UserModel.objects.create_user(email=f"chaos{i}@bench.invalid")
        plan = PLANS[i % len(PLANS)]
        if plan:
            subscription_create(user=owner, plan=plan)
        budget = 12 if i % TIGHT_BUDGET_EVERY == TIGHT_BUDGET_EVERY - 1 else 200 * (jobs // count + 1)
        credit_grant(user=owner, amount=budget, type="bonus", description="chaos drill")
        project, media = _project_with_media(owner, f"chaos {i}", rng)
        users.append(User(user_issue_token(user=owner), str(project.pk), plan, media, account=str(owner.pk)))
    for t in range(teams):
        people = [UserModel.objects.create_user(email=f"chaos-team{t}-{n}@bench.invalid") for n in range(TEAM_SIZE)]
        seat = workspace_create(user=people[0], name=f"chaos team {t}")
        for person in people[1:]:
            Membership.objects.create(workspace=seat.workspace, user=person, role="editor")
        member_budget_set(membership=seat, user_id=people[-1].pk, monthly_limit=member_budget)
        account = UserModel.objects.get(pk=seat.workspace.pk)
        subscription_create(user=account, plan="pro")
        credit_grant(user=account, amount=200 * (jobs // count + 1) * TEAM_SIZE, type="bonus",
                     description="chaos drill: the team's pool")
        project, media = _project_with_media(account, f"chaos team {t}", rng)
        users += [User(user_issue_token(user=person), str(project.pk), "pro", media, workspace=str(account.pk),
                       account=str(account.pk)) for person in people]
    return users


def answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def timing_in_force() -> dict[str, Any]:
    """The time limits and reaper thresholds the stack runs, as its processes read them."""
    from django.conf import settings

    from jobs.life.reaper import REAP_MARGIN_SECONDS
    from jobs.specs import job_spec, time_scale

    scale = time_scale()
    timing = {
        "scale": scale,
        "tts_limit_s": job_spec("tts").time_limit_seconds,
        "grace_s": settings.AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS,
        "reaper_every_s": settings.AUTEUR_REAPER_INTERVAL_SECONDS,
        "reaper_pending_after_s": settings.AUTEUR_REAPER_PENDING_AFTER_SECONDS,
        "reaper_repoll_after_s": settings.AUTEUR_REAPER_REPOLL_AFTER_SECONDS,
        "reaper_margin_s": REAP_MARGIN_SECONDS * scale,
    }
    what = "unscaled" if scale == 1 else f"scaled x {scale:g}"
    timing["summary"] = (f"{what}: TTS limit {timing['tts_limit_s']:g} s + grace {timing['grace_s']} s; reaper every "
                         f"{timing['reaper_every_s']:g} s, republish after {timing['reaper_pending_after_s']} s, "
                         f"repoll after {timing['reaper_repoll_after_s']} s, time-out margin "
                         f"{timing['reaper_margin_s']:g} s")
    return timing


def print_table(figures: dict[str, Any], invariants: dict[str, tuple[bool, str]]) -> None:
    stuck = figures.get("stuck_jobs") or []
    print("\n| figure | value |\n| --- | --- |")
    for key, value in figures.items():
        if key != "stuck_jobs":
            print(f"| {key.replace('_', ' ')} | {value} |")
    if stuck:
        print(f"\nJobs left running (the first {len(stuck)}, those holding a call first):")
        for story in stuck:
            events = story.pop("last_events")
            print("  " + ", ".join(f"{k}={v}" for k, v in story.items()))
            story["last_events"] = events
            for line in events:
                print(f"      {line}")
    print("\n| invariant | result | detail |\n| --- | --- | --- |")
    for name, (ok, detail) in invariants.items():
        print(f"| {name} | {'PASS' if ok else '**FAIL**'} | {detail} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--time-scale", type=float, default=None,
                        help="production's timing scaled as a whole (default 1; 0.05 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_JOBS} jobs, every disruption, hung calls, production's timing x 0.05")
    parser.add_argument("--batch", type=int, default=200, help=f"items of the drill's batch (--quick: {QUICK_BATCH})")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    faults, member_budget = FAULTS, MEMBER_BUDGET
    if args.quick:
        args.jobs, args.users, args.clients = min(args.jobs, QUICK_JOBS), min(args.users, 10), min(args.clients, 4)
        args.batch = min(args.batch, QUICK_BATCH)
        member_budget = QUICK_MEMBER_BUDGET
        args.drain_timeout = min(args.drain_timeout, 300)
        faults = QUICK_FAULTS
    scale = args.time_scale if args.time_scale is not None else (0.05 if args.quick else 1.0)
    out = args.out or RESULTS_DIR / ("chaos_quick.json" if args.quick else "chaos.json")
    rng = random.Random(args.seed)  # noqa: S311 - a drill

    with django_stack(
        durable_redis=True,
        AUTEUR_GPU_BACKEND="noop",
        AUTEUR_FAULT_INJECTION=faults,
        AUTEUR_FAULT_SEED=str(args.seed),
        AUTEUR_SCREENING_INJECT=OUTPUT_FLAGS,
        AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000",  # the drill attacks delivery, not the limiter
        AUTEUR_DRILL_TIME_SCALE=str(scale),
    ) as stack:
        timing = timing_in_force()
        users = make_users(args.users, args.jobs, rng, member_budget)
        plan = plan_submissions(users, args.jobs, rng)
        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=2))
        stack.spawn("beat", beat_argv(stack.tmp / "beat-schedule"))
        workers = Workers(stack, concurrency=2)
        deadline = time.monotonic() + 60
        while not answers(port):
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.1)
        time.sleep(2)  # the workers connect

        outcomes, done, stop = Outcomes(), [], threading.Event()
        planned = disruptions(stack, workers)
        chaos = threading.Thread(target=disrupt, args=(planned, outcomes, args.jobs, done, stop))
        chaos.start()
        broker = "rabbitmq" if "rabbitmq" in stack.servers else "redis"
        print(f"chaos: {args.jobs} jobs from {args.users} users over {args.clients} clients; broker {broker}; "
              f"faults {faults}", flush=True)
        print(f"timing: {timing['summary']}", flush=True)
        batch = threading.Thread(target=submit_batch, args=(port, users[0], args.batch, outcomes, rng, args.jobs // 2))
        batch.start()
        submit_all(port, users, plan, args.clients, outcomes, args.seed)
        batch.join()
        stop.set()
        chaos.join()
        drained, drained_at = wait_for_drain(set(outcomes.accepted), args.drain_timeout)
        time.sleep(1)  # a step that lost the race to a terminal state finishes its transaction
        wait_for_batch_end(outcomes.batch_id, 90)
        figures, invariants = db(lambda: check(outcomes))
        figures["time_to_drain_s"] = round(drained_at - outcomes.first_submit, 1)
        figures["submission_s"] = round(outcomes.last_submit - outcomes.first_submit, 1)
        figures["disruptions"] = len(done)
        invariants["every planned disruption ran"] = (len(done) == len(planned), f"{len(done)} of {len(planned)}")
        if not drained:
            invariants["drained in time"] = (False, f"jobs still running after {args.drain_timeout:.0f} s")

    print_table(figures, invariants)
    report = {"quick": args.quick, "broker": broker, "jobs": args.jobs, "users": args.users, "clients": args.clients,
              "seed": args.seed,
              "faults": faults, "timing": timing, "figures": figures, "disruptions": done,
              "invariants": {k: {"pass": ok, "detail": d} for k, (ok, d) in invariants.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    failed = [name for name, (ok, _) in invariants.items() if not ok]
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'every invariant holds'} ({out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
