"""Partition drill: jobs run while the links between machines fail; then proof that nothing was
lost, nothing paid twice, and no GPU call started twice for one attempt.

    sudo .venv/bin/python bench/partition.py [--jobs 1000] [--seed 7]
    sudo .venv/bin/python bench/partition.py --unprotected   # the same fault without the guard

Machines are network namespaces on one host (bench/netns.py), on three networks: `db`
(PostgreSQL, the MongoDB-protocol server), `bk` (Redis: broker, events, announcements) and `fr`
(the API's front, where the drill's clients come from):

    data    PostgreSQL, MongoDB (db) and Redis (bk)
    api     gunicorn and beat                     db, bk, fr
    w1, w2  a Celery worker each (every queue)    db, bk   (w1 through a fault relay)
    events  the GPU announcements' consumer       db, bk

The GPU backend is noop (calls held a few seconds, so that they are running when links fail;
each spawn takes 500 ms and each status call 200 ms, so that steps are running too), and every spawn is written to a
log, so the drill counts the GPU calls each job started. While the clients submit the jobs
(chaos.py's mix, users and budgets, with an Idempotency-Key each, retrying through outages), the
drill, at fixed fractions of the submissions:

    cuts w1 from the broker for longer than the visibility timeout, then heals the link;
    cuts w2 from PostgreSQL mid-step;
    cuts the API from Redis (submissions are still accepted, within about a second: a job and
        its charge commit in PostgreSQL before its publish, which gives up within a second
        across a partition and is made once Redis answers; the reaper is the backstop);
    cuts the completion consumer off while calls end;
    makes w1's links slow and unreliable (200 ms each way, connections reset) through its relay;
    removes w2 for good (its links down, its processes killed).

Each fault's recovery time is the time from its end until every job that was running (started,
not ended) when it ended has finished. What each fault touched is reported too: the submissions
sent while it held (their answers, and how long each took to answer, retries included), and how
the jobs running when it began and those accepted while it held ended (status, attempts).

Then, from the database and the spawn log, the chaos drill's invariants (chaos.check: no job
lost or stuck, charged once, refunded at most once, ledger exact, ...) plus one GPU call per
attempt: no job's spawns exceed its recorded attempts. It prints a table, writes
bench/results/partition.json (partition_unprotected.json), and exits 1 if an invariant fails.
`--unprotected` runs the workers on bench/unprotected.py's app, whose first step does not check
for a recorded call, with only the broker cut: there the same fault starts two calls.

It needs root (network namespaces) and iproute2; elsewhere it says why and exits 0 without
running. Timing: production's, except the broker's visibility timeout (30 s, so that the cut
outlasts it within the drill) and every time limit, the grace, the reaper's period and
thresholds, scaled x 0.25 together (AUTEUR_DRILL_TIME_SCALE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import netns
from bench._stack import (
    REPO_ROOT,
    RESULTS_DIR,
    BenchStack,
    beat_argv,
    celery_worker_argv,
    django_stack,
    free_port,
    gunicorn_argv,
    load_average,
    percentile,
    wait_until,
)
from bench.chaos import (
    Outcomes,
    answers,
    check,
    db,
    make_users,
    plan_submissions,
    print_table,
    submit_all,
    wait_for_drain,
)
from bench.report import TOUCHED_HEADER, touched_line
from devstack.servers import EmbeddedServer

NETWORKS = {"db": "10.77.1", "bk": "10.77.2", "fr": "10.77.3"}
MACHINES = {
    "data": {"db": 1, "bk": 1},
    "api": {"db": 2, "bk": 2, "fr": 2},
    "w1": {"db": 11, "bk": 11},
    "w2": {"db": 12, "bk": 12},
    "events": {"db": 21, "bk": 21},
}
VISIBILITY_TIMEOUT_S = 30
SPAWN_LATENCY_MS = 500  # a step that starts a call is running when its worker is cut off
TIME_SCALE = 0.25
API_PORT = 8000


@dataclass
class Fault:
    at: float  # fraction of the submissions
    name: str
    start: Callable[[], None]
    end: Callable[[], None]
    hold_s: float


class Drill:
    def __init__(self, stack: BenchStack, net: netns.Topology, tmp: Path, unprotected: bool) -> None:
        self.stack, self.net, self.tmp, self.unprotected = stack, net, tmp, unprotected
        self.procs: dict[str, list[Any]] = {}
        self.relay_control = tmp / "w1-faults.json"

    # ------------------------------------------------------------------ machines and processes

    def run_on(self, machine: str, name: str, argv: list[str], **env: str) -> None:
        proc = self.stack.spawn(name, self.net.argv(machine, argv), **env)
        self.procs.setdefault(machine, []).append(proc)

    def start(self) -> int:
        """Every process on its machine; returns the loopback port the drill's clients use."""
        urls = self.stack.servers
        pg, redis, mongo = urls["postgres"], urls["redis"], urls["mongodb"]
        direct = {"DATABASE_URL": pg.url(), "REDIS_URL": redis.url(), "MONGODB_URI": mongo.url()}
        # w1 reaches PostgreSQL and Redis through relays on its own machine: its link can be made
        # slow and unreliable without touching the others'.
        pg_relay, redis_relay = free_port(), free_port()
        for port, server in ((pg_relay, pg), (redis_relay, redis)):
            self.run_on("w1", f"relay-{server.name}", [sys.executable, str(REPO_ROOT / "bench" / "fault_relay.py"),
                                                      "--listen", f"127.0.0.1:{port}",
                                                      "--to", f"{server.host}:{server.port}",
                                                      "--control", str(self.relay_control)])
        through_relays = {**direct, "DATABASE_URL": pg.url().replace(f"{pg.host}:{pg.port}", f"127.0.0.1:{pg_relay}"),
                          "REDIS_URL": redis.url().replace(f"{redis.host}:{redis.port}", f"127.0.0.1:{redis_relay}")}
        api_host = self.net.address("api", "fr")
        self.run_on("api", "api", gunicorn_argv(API_PORT, workers=2, host=api_host), **direct)
        self.run_on("api", "beat", beat_argv(self.tmp / "beat-schedule"), **direct)
        worker = celery_worker_argv(concurrency=2, name="w")
        if self.unprotected:
            worker[worker.index("auteur")] = "bench.unprotected"
        for machine, env in (("w1", through_relays), ("w2", direct)):
            argv = [*worker]
            argv[argv.index("-n") + 1] = f"{machine}@%h"
            self.run_on(machine, f"worker-{machine}", argv, **env)
        self.run_on("events", "gpu-events", [sys.executable, str(REPO_ROOT / "manage.py"), "gpu_events"],
                    **direct)
        # The clients run on the host: a plain relay from its loopback to the API's front address.
        front = free_port()
        self.stack.spawn("front-relay", [sys.executable, str(REPO_ROOT / "bench" / "fault_relay.py"),
                                         "--listen", f"127.0.0.1:{front}", "--to", f"{api_host}:{API_PORT}"])
        wait_until(lambda: answers(front), 90, "the API on its machine")
        time.sleep(3)  # the workers and the consumer connect
        return front

    # ------------------------------------------------------------------ faults

    def relay_faults(self, **faults: float) -> None:
        self.relay_control.write_text(json.dumps(faults))

    def remove_w2(self) -> None:
        self.net.isolate("w2")
        for proc in self.procs.get("w2", []):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    def faults(self) -> list[Fault]:
        net = self.net
        broker_cut = Fault(0.10, f"w1 cut from the broker for {VISIBILITY_TIMEOUT_S + 15} s (visibility timeout "
                                 f"{VISIBILITY_TIMEOUT_S} s)", lambda: net.cut("w1", "bk"),
                           lambda: net.heal("w1", "bk"), VISIBILITY_TIMEOUT_S + 15)
        if self.unprotected:
            return [broker_cut]
        return [
            broker_cut,
            Fault(0.25, "w2 cut from PostgreSQL for 20 s", lambda: net.cut("w2", "db"), lambda: net.heal("w2", "db"),
                  20),
            Fault(0.40, "the API cut from Redis for 15 s", lambda: net.cut("api", "bk"), lambda: net.heal("api", "bk"),
                  15),
            Fault(0.55, "the completion consumer cut off for 20 s", lambda: net.isolate("events"),
                  lambda: net.rejoin("events"), 20),
            Fault(0.70, "w1's links: 200 ms each way, connections reset (0.1/s) for 30 s",
                  lambda: self.relay_faults(delay_ms=200, drop_per_s=0.1), lambda: self.relay_faults(), 30),
            Fault(0.85, "w2 removed for good", self.remove_w2, lambda: None, 0),
        ]


def unfinished_ids(*, processing: bool = False) -> set[str]:
    """The jobs not yet ended (`processing`: only those past their start, holding a slot)."""
    from jobs.models import TERMINAL_STATUSES, Job, JobStatus

    jobs = Job.objects.filter(status=JobStatus.PROCESSING) if processing else \
        Job.objects.exclude(status__in=TERMINAL_STATUSES)
    return {str(pk) for pk in db(lambda: list(jobs.values_list("pk", flat=True)))}


class Recovery:
    """For each fault that ended: the jobs it left running (started, unfinished), and how long
    after its end the last of them finished (its recovery time), looked at every half second while
    the drill goes on. Jobs still waiting for a slot are not counted: they wait for their user's
    earlier jobs, whatever the fault."""

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, Any], set[str], float]] = []

    def ended(self, entry: dict[str, Any]) -> None:
        self.pending.append((entry, unfinished_ids(processing=True), time.monotonic()))

    def look(self) -> None:
        if not self.pending:
            return
        still = unfinished_ids()
        for item in list(self.pending):
            entry, ids, ended = item
            if not ids & still:
                entry["recovered_after_s"] = round(time.monotonic() - ended, 1)
                entry["jobs_waited_for"] = len(ids)
                self.pending.remove(item)


@dataclass
class Window:
    """A fault's span (monotonic) and the jobs running (started, not ended) when it began."""
    began: float
    ended: float
    running: set[str]


def inject(faults: list[Fault], outcomes: Outcomes, total: int, log: list[dict[str, Any]],
           windows: list[Window], stop: threading.Event) -> None:
    """Each fault at its fraction of the submissions, held, then ended; until `stop`, each ended
    fault's recovery is watched."""
    recovery = Recovery()

    def wait(until: Callable[[], bool]) -> bool:
        while not until():
            recovery.look()
            if stop.wait(0.5):
                return False
        return True

    for fault in faults:
        if not wait(lambda: outcomes.answered >= fault.at * total):  # noqa: B023 - used within the loop
            return
        running = unfinished_ids(processing=True)
        began = time.monotonic()
        fault.start()
        print(f"  [partition] after {outcomes.answered} submissions: {fault.name}", flush=True)
        wait(lambda: time.monotonic() - began >= fault.hold_s)  # noqa: B023
        fault.end()
        entry = {"fault": fault.name, "at_submission": outcomes.answered,
                 "held_s": round(time.monotonic() - began, 1)}
        log.append(entry)
        windows.append(Window(began, time.monotonic(), running))
        recovery.ended(entry)
    wait(lambda: not recovery.pending)


def what_it_touched(window: Window, outcomes: Outcomes) -> dict[str, Any]:
    """A fault's effect on the clients and the jobs, once every job has ended: the submissions sent
    while it held (their answers and how long each took, retries included), and how the jobs that
    were running when it began, and those accepted while it held, ended (status, attempts)."""
    from jobs.models import Job

    sent = [a for a in outcomes.answers if window.began <= a[0] < window.ended]
    accepted = {job_id for _, _, _, job_id in sent if job_id}

    def ends(ids: set[str]) -> dict[str, Any]:
        rows = db(lambda: list(Job.objects.filter(pk__in=ids).values_list("status", "attempts")))
        return {"jobs": len(ids), "ended": dict(Counter(status for status, _ in rows)),
                "attempts_over_1": sum(attempts > 1 for _, attempts in rows)}

    latencies = [(answered - began) * 1000 for began, answered, _, _ in sent]
    return {
        "submissions": len(sent),
        "answers": dict(Counter(str(status) for _, _, status, _ in sent)),
        "answer_ms": {q: round(percentile(latencies, n)) for q, n in (("p50", 50), ("p95", 95), ("max", 100))}
        if latencies else {},
        "running_at_start": ends(window.running),
        "accepted_during": ends(accepted),
    }


def spawns_per_attempt() -> tuple[dict[str, Any], tuple[bool, str]]:
    """Every job's GPU calls, from the spawn log, against the attempts the job records."""
    from jobs.models import Job

    spawned: Counter[str] = Counter()
    log = Path(os.environ["AUTEUR_NOOP_SPAWN_LOG"])
    if log.exists():
        for line in log.read_text().splitlines():
            job_id, _, _ = line.partition(" ")
            spawned[job_id] += 1
    attempts = {str(pk): n for pk, n in db(lambda: list(Job.objects.values_list("pk", "attempts")))}
    twice = sorted(f"{job_id} ({n} calls, {attempts.get(job_id, '?')} attempts)"
                   for job_id, n in spawned.items() if n > attempts.get(job_id, 0))
    figures = {"gpu_calls": sum(spawned.values()), "jobs_with_a_call": len(spawned),
               "jobs_with_more_calls_than_attempts": len(twice)}
    detail = "every job's calls equal its attempts" if not twice else f"{len(twice)} off, e.g. {twice[:3]}"
    return figures, (not twice, detail)


def run_once(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One drill on fresh machines and a fresh stack: its figures, faults and invariants."""
    rng = random.Random(seed)  # noqa: S311 - a drill
    tmp = Path(tempfile.mkdtemp(prefix="auteur-partition-"))  # the spawn log, the relay's faults, beat's schedule
    with netns.Topology("au") as net:
        for name, prefix in NETWORKS.items():
            net.network(name, prefix)
        for name, addresses in MACHINES.items():
            net.machine(name, addresses)

        def place(server: EmbeddedServer) -> None:
            server.netns = net.netns("data")
            server.host = net.address("data", "bk" if server.name == "redis" else "db")

        with django_stack(
            durable_redis=True, place=place,
            AUTEUR_GPU_BACKEND="noop",
            AUTEUR_NOOP_HOLD_SECONDS="2", AUTEUR_NOOP_HOLD_SPREAD_SECONDS="4", AUTEUR_NOOP_STATUS_LATENCY_MS="200",
            AUTEUR_NOOP_SPAWN_LATENCY_MS=str(SPAWN_LATENCY_MS),
            AUTEUR_NOOP_SPAWN_LOG=str(tmp / "spawns.log"),
            AUTEUR_DRILL_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_TIMEOUT_S),
            AUTEUR_DRILL_TIME_SCALE=str(TIME_SCALE),
            AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000",  # the drill attacks the links, not the limiter
            # The drill's machines are namespaces of one host; its servers speak plain TCP on their links.
            AUTEUR_ALLOW_PLAINTEXT_DATASTORES="1",
        ) as stack:
            drill = Drill(stack, net, tmp, args.unprotected)
            port = drill.start()
            users = make_users(args.users, args.jobs, rng)
            plan = plan_submissions(users, args.jobs, rng)
            outcomes, log, windows, stop = Outcomes(), [], [], threading.Event()
            faults = drill.faults()
            injector = threading.Thread(target=inject, args=(faults, outcomes, args.jobs, log, windows, stop))
            injector.start()
            mode = "unprotected (no check for a recorded call)" if args.unprotected else "protected"
            print(f"partition: {args.jobs} jobs from {args.users} users over {args.clients} clients at "
                  f"{args.rate:g}/s, {mode}; machines {', '.join(MACHINES)}; load {load_average()}", flush=True)
            submit_all(port, users, plan, args.clients, outcomes, seed, rate=args.rate)
            drain_deadline = time.monotonic() + args.drain_timeout
            while injector.is_alive() and time.monotonic() < drain_deadline:
                injector.join(1)
            stop.set()
            injector.join()
            drained, _ = wait_for_drain(set(outcomes.accepted), max(1.0, drain_deadline - time.monotonic()))
            time.sleep(1)  # a step that lost the race to a terminal state finishes its transaction
            figures, invariants = db(lambda: check(outcomes))
            if not drained:
                invariants["drained in time"] = (False, f"jobs still running {args.drain_timeout:.0f} s after the "
                                                        "last submission")
            for entry, window in zip(log, windows, strict=True):
                entry["touched"] = what_it_touched(window, outcomes)
            calls, once = spawns_per_attempt()
            figures.update(calls)
            figures["time_to_drain_s"] = round(time.monotonic() - outcomes.first_submit, 1)
            if args.unprotected:
                # The demonstration holds when the fault DID start a second call.
                invariants = {"the cut started a second GPU call for an attempt": (not once[0], once[1])}
            else:
                invariants["one GPU call per attempt"] = once
                invariants["every fault ran and recovered"] = (
                    len(log) == len(faults) and all("recovered_after_s" in e for e in log),
                    f"{sum('recovered_after_s' in e for e in log)} of {len(faults)} recovered")
    print_table(figures, invariants)
    print("\n| fault | at submission | held | recovered after | jobs waited for |\n| --- | --- | --- | --- | --- |")
    for entry in log:
        print(f"| {entry['fault']} | {entry['at_submission']} | {entry['held_s']} s | "
              f"{entry.get('recovered_after_s', 'never')} s | {entry.get('jobs_waited_for', '?')} |")
    print(f"\n{TOUCHED_HEADER}")
    for entry in log:
        print(touched_line(entry))
    return {"seed": seed, "load_average_end": load_average(), "figures": figures, "faults": log,
            "invariants": {k: {"pass": ok, "detail": d} for k, (ok, d) in invariants.items()},
            "passed": all(ok for ok, _ in invariants.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=3.0,
                        help="submissions per second, so that every fault meets traffic (default 3)")
    parser.add_argument("--repeat", type=int, default=1, help="drills in a row (seed, seed + 1, ...); all must pass")
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--unprotected", action="store_true",
                        help="workers without the check for a recorded call; only the broker cut (a demonstration)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    reason = netns.unavailable()
    if reason:
        print(f"partition drill: SKIPPED: {reason}")
        return 0
    if args.unprotected:
        args.jobs = min(args.jobs, 200)
    out = args.out or RESULTS_DIR / ("partition_unprotected.json" if args.unprotected else "partition.json")
    runs = []
    for n in range(args.repeat):
        if args.repeat == 1:
            runs.append(run_once(args, args.seed))
            break
        # Each drill in a process of its own: Django is set up once per process, on one stack.
        part = Path(tempfile.mkdtemp(prefix="auteur-partition-run-")) / "run.json"
        child = ["--jobs", str(args.jobs), "--users", str(args.users), "--clients", str(args.clients),
                 "--rate", str(args.rate), "--drain-timeout", str(args.drain_timeout),
                 "--seed", str(args.seed + n), "--out", str(part), *(["--unprotected"] if args.unprotected else [])]
        subprocess.run([sys.executable, __file__, *child], check=False)
        runs.extend(json.loads(part.read_text())["runs"] if part.exists() else
                    [{"seed": args.seed + n, "passed": False, "faults": [], "figures": {},
                      "invariants": {"the drill ran": {"pass": False, "detail": "it stopped before its report"}}}])
        verdict = "every invariant holds" if runs[-1]["passed"] else "FAIL"
        print(f"\nrun {n + 1} of {args.repeat}: {verdict}", flush=True)
    report = {"unprotected": args.unprotected, "jobs": args.jobs, "users": args.users, "clients": args.clients,
              "rate": args.rate, "machines": MACHINES, "visibility_timeout_s": VISIBILITY_TIMEOUT_S,
              "time_scale": TIME_SCALE, "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    passed = all(run["passed"] for run in runs)
    print(f"\n{'every invariant holds in every run' if passed else 'FAIL'} ({out})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
