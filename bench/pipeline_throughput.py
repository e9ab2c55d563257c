"""Pipeline throughput over HTTP against a raw Celery chain, in the same run.

    .venv/bin/python bench/pipeline_throughput.py [--jobs 1000] [--rounds 3] [--clients 16] [--users 50]

On a throwaway stack: the API under gunicorn as `make run` serves it (sync workers), one Celery
worker (2 processes, every queue, events on) and the `noop` GPU backend, which returns at once.
16 client threads submit TTS jobs (an output to store, no input media) over HTTP from many users;
measured: jobs/s from the first submit to the last `completed`, submit latency p50/p99, and the
orchestration overhead per job (submit -> inference start, inference end -> completed) p50/p99.
Baseline: 3-task chains of no-op tasks (as many as the jobs, at most 2,000) on the same broker
and worker, alternating with the jobs: raw, jobs, raw, jobs, ..., raw (`--rounds` rounds of
`--jobs` jobs). Each round's ratio is against the mean of the raw rates just before and after
it; the report gives the median ratio, its range and spread (range / median), and each round.
Targets, what the orchestration must sustain on this machine: >= 100 jobs/s, >= 0.75 of the raw
chain rate, worker CPU <= 9 ms per job on a quiet machine, overhead p99 <= 50 ms.
With `--events-ab`, the same is measured again on the same stack with a worker whose task
events and queue-wait events are off (bench/worker_without_events.py): what the metrics' events
cost, as jobs/s and worker CPU per job, side by side in `events_ab`. The top-level figures stay
those of the worker as production runs it.
With `--tracing-ab`, the same again, right after on the same stack, with traces on in the API and
the worker (OTEL_EXPORTER_OTLP_ENDPOINT to bench/otlp_sink.py, a receiver that reads and drops
every batch): what tracing costs, as jobs/s on over off (target >= 0.9) in `tracing_ab`, with each
phase's ratio to the raw chains (which the drift between the phases does not move).

CPU per job against a baseline that load inflates the same way: the worker's CPU is also counted
over each round of raw chains, so beside the worker's milliseconds per job stands the raw chain's
worker CPU per chain and their ratio (`cpu_ratio_to_raw`: job CPU per job / raw CPU per chain),
per round (against the raw rounds just before and after it) and over the run. A loaded machine
inflates both (cache misses, context switches, a slower core), so the ratio moves less than the
milliseconds do: compare it between runs at different loads, and the milliseconds only between
quiet runs. What load cannot move at all is the work a job asks of the servers: the Redis commands
(every round trip to Redis, the worker's and the API's) and the PostgreSQL write transactions per
job, and the Redis commands per raw chain, counted over the same rounds (`redis_commands_per_job`,
`pg_write_transactions_per_job`, `redis_commands_per_raw_chain`).
With `--py-spy DIR`, py-spy samples the worker (main process, pool processes and their children,
100 Hz) during each round of jobs and of raw chains, and writes DIR/<phase>-jobs-<round>.txt and
DIR/<phase>-raw-<round>.txt in its raw (collapsed stacks) format: where the worker's CPU goes.
With `--load N`, N CPU-burning processes (one process group, stopped when the benchmark ends) run
beside the stack from before the worker starts: the same measurement on a busy machine, to check
that the ratio holds.
Writes bench/results/pipeline_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    RESULTS_DIR,
    api_answers,
    celery_worker_argv,
    cpu_seconds,
    django_stack,
    free_port,
    gunicorn_argv,
    load_average,
    percentile,
    wait_until,
)


def raw_chains(n: int) -> float:
    """Chains/s of n 3-task no-op chains published at once, first publish to last done."""
    import os

    import redis
    from celery import chain

    from bench.noop_chain import COUNTER, noop, noop_last

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(COUNTER)
    started = time.monotonic()
    for i in range(n):
        chain(noop.si(i), noop.si(i), noop_last.si(i)).apply_async(queue="default")
    wait_until(lambda: int(client.get(COUNTER) or 0) >= n, 600, "the raw chains", every=0.05)
    return n / (time.monotonic() - started)


def burn_cpu(n: int) -> subprocess.Popen[bytes] | None:
    """`n` busy-looping processes in one new process group (a session of their own), or None."""
    if n <= 0:
        return None
    code = (f"import os\nfor _ in range({n} - 1):\n    if os.fork() == 0:\n        break\n"
            "while True:\n    pass\n")
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def job_tasks_run() -> int:
    """How many job step tasks (`jobs.*`) the benchmark's worker has run so far (its stats)."""
    from auteur.celery import app

    stats = app.control.inspect(timeout=3).stats() or {}
    return sum(n for worker in stats.values() for name, n in (worker.get("total") or {}).items()
               if name.startswith("jobs."))


def work_counts() -> tuple[int, int]:
    """(Redis commands processed, PostgreSQL transaction ids handed out) so far on the stack: the
    work a round asks of the servers, in round trips and write transactions, which the machine's
    load does not change (the benchmark's own looks at the jobs and the counter are in them too)."""
    import redis
    from django.db import connection

    commands = int(redis.Redis.from_url(os.environ["REDIS_URL"]).info("stats")["total_commands_processed"])
    with connection.cursor() as cursor:  # the next id to be handed out: consumes none
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        xid = int(cursor.fetchone()[0])
    return commands, xid


def per(after: tuple[int, ...], before: tuple[int, ...], n: int) -> list[float]:
    return [(a - b) / n for a, b in zip(after, before, strict=True)]


@contextlib.contextmanager
def sampled(folder: Path | None, pid: int, name: str) -> Iterator[None]:
    """py-spy on `pid` and its children for the block, into folder/name.txt (when a folder is given)."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses", "--rate", "100",
                            "--format", "raw", "--output", str(folder / f"{name}.txt"), "--pid", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        spy.wait(60)


def submit_all(port: int, tokens: list[tuple[str, str]], jobs: int, clients: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    ids: list[str] = []
    lock = threading.Lock()
    counter = iter(range(jobs))

    def client() -> None:
        mine: list[float] = []
        mine_ids: list[str] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            token, project = tokens[i % len(tokens)]
            body = json.dumps({"project_id": project, "text": "Hello world.", "speed": 1.0})
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/api/v1/jobs/tts", body=body,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if response.status != 202:
                raise SystemExit(f"submission failed: {response.status} {data[:300]!r}")
            mine.append((time.perf_counter() - started) * 1000)
            mine_ids.append(json.loads(data)["job_id"])
        with lock:
            latencies.extend(mine)
            ids.extend(mine_ids)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw chains and jobs")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--api-workers", type=int, default=3)
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--events-ab", action="store_true",
                        help="then the same again with the worker's task and queue-wait events off")
    parser.add_argument("--tracing-ab", action="store_true",
                        help="then the same again with traces on (exported to a loopback OTLP receiver)")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="N CPU-burning processes beside the stack throughout (a loaded machine)")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="sample the worker with py-spy during each round, into DIR")
    args = parser.parse_args()
    burners = burn_cpu(args.load)
    try:
        run(args)
    finally:
        if burners is not None:
            os.killpg(burners.pid, signal.SIGKILL)
            burners.wait(30)


def run(args: argparse.Namespace) -> None:

    with django_stack(
        AUTEUR_GPU_BACKEND="noop",
        AUTEUR_JOB_CONCURRENCY_FREE="1000",  # the pipeline is measured, not the per-user slots
        AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000",
    ) as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.services.ledger import credit_grant
        from projects.models import Project

        tokens = []
        for i in range(args.users):
            user = User.objects.create_user(email=f"tp{i}@bench.invalid")
            credit_grant(user=user, amount=10 * args.jobs * args.rounds, type="bonus", description="bench")
            tokens.append((user_issue_token(user=user), str(Project.objects.create(user=user, name="b").pk)))
        port = free_port()
        api = stack.spawn("api", gunicorn_argv(port, workers=args.api_workers))
        wait_until(lambda: api_answers(port), 60, "the API", every=0.05)
        report = {"jobs": args.jobs, "rounds": args.rounds, "clients": args.clients, "users": args.users,
                  "api_workers": args.api_workers, "worker_processes": args.worker_processes,
                  "cpu_burners": args.load}
        on_argv = [*celery_worker_argv(concurrency=args.worker_processes), "--include", "bench.noop_chain", "-E"]
        report.update(run_phase(stack, "worker", api.pid, on_argv, port, tokens, args))
        if args.events_ab:
            # The same worker without the metrics' events (bench/worker_without_events.py), on the same
            # stack, measured the same way right after: what the events cost, within one run.
            off_argv = [sys.executable, "-m", "bench.worker_without_events",
                        *celery_worker_argv(concurrency=args.worker_processes, name="bench-off")[3:],
                        "--include", "bench.noop_chain"]
            off = run_phase(stack, "worker-without-events", api.pid, off_argv, port, tokens, args)
            on = {k: report[k] for k in ("jobs_per_second", "cpu_ms_per_job", "raw_chain_per_second", "ratio_to_raw",
                                          "raw_cpu_ms_per_chain", "cpu_ratio_to_raw",
                                          "submit_to_inference_start_ms", "inference_end_to_completed_ms",
                                          "load_average")}
            report["events_ab"] = {
                "on": on, "off": {k: off[k] for k in on},
                "jobs_per_second_off_over_on": round(off["jobs_per_second"] / on["jobs_per_second"], 3),
                "worker_cpu_ms_per_job_on_minus_off": round(
                    on["cpu_ms_per_job"]["worker"] - off["cpu_ms_per_job"]["worker"], 2),
            }
        if args.tracing_ab:
            report["tracing_ab"] = tracing_ab(stack, report, on_argv, tokens, args)
        report["targets"] = {"jobs_per_second": 100, "ratio_to_raw": 0.75, "worker_cpu_ms_per_job": 9,
                             "overhead_p99_ms": 50, "tracing_on_over_off": 0.9}
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "pipeline_throughput.json").write_text(json.dumps(report, indent=2))


def run_phase(stack: Any, name: str, api_pid: int, worker_argv: list[str], port: int, tokens: list[tuple[str, str]],
              args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a worker with `worker_argv`; alternate raw chains and jobs for `args.rounds` rounds
    (raw, ours, raw, ours, ..., raw); stop it.

    Each round's ratio is its jobs/s over the mean of the raw rates measured just before and just
    after it: on a machine whose speed drifts, a baseline taken a minute apart from the pipeline's
    moved the ratio by 0.35 -> 0.69 between identical runs. The ratios' spread says how far one
    figure can be trusted.
    """
    from jobs.models import TERMINAL_STATUSES, Job

    worker = stack.spawn(name, worker_argv, **(env or {}))
    load_start = load_average()
    pids = {"api": api_pid, "worker": worker.pid, "postgres": stack.servers["postgres"].proc.pid,
            "redis": stack.servers["redis"].proc.pid}
    cpu = dict.fromkeys([*pids, "clients"], 0.0)
    raws: list[float] = []
    raw_cpu: list[float] = []  # the worker's CPU ms per chain of each raw round
    raw_work: list[list[float]] = []  # each raw round's Redis commands and write transactions per chain
    job_work: list[list[float]] = []  # the same per job, each round of jobs
    rounds: list[dict[str, Any]] = []
    latencies: list[float] = []
    ids: list[str] = []
    try:
        time.sleep(3)  # the worker connects
        chains = min(args.jobs, 2000)

        def raw_round() -> None:
            before, counts_before = cpu_seconds(worker.pid), work_counts()
            with sampled(args.py_spy, worker.pid, f"{name}-raw-{len(raws)}"):
                raws.append(raw_chains(chains))
            raw_cpu.append((cpu_seconds(worker.pid) - before) * 1000 / chains)
            raw_work.append(per(work_counts(), counts_before, chains))

        raw_round()
        for _ in range(args.rounds):
            # Where the CPU goes, per job: robust to a machine that other work shares, unlike rates.
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu_before["clients"] = _own_cpu()
            tasks_before = job_tasks_run()
            counts_before = work_counts()
            with sampled(args.py_spy, worker.pid, f"{name}-jobs-{len(rounds)}"):
                started = time.monotonic()
                round_latencies, round_ids = submit_all(port, tokens, args.jobs, args.clients)
                submitted = time.monotonic()
                # Every job in this throwaway database is one of ours: one cheap indexed look every
                # 0.2 s (a look with 2,000 ids every 50 ms cost Postgres more than the jobs themselves).
                wait_until(lambda: not Job.objects.exclude(status__in=TERMINAL_STATUSES).exists(), 900,
                           "every job ending", every=0.2)
                finished = time.monotonic()
            cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu_after["clients"] = _own_cpu()  # this process alone: the stack is its children
            job_work.append(per(work_counts(), counts_before, args.jobs))
            for key in cpu:
                cpu[key] += cpu_after[key] - cpu_before[key]
            # Step tasks per job: 1 (prepare) on the noop backend; more is a step delivered again.
            tasks_per_job = (job_tasks_run() - tasks_before) / args.jobs
            raw_round()
            completed = Job.objects.filter(pk__in=round_ids, status="completed").count()
            rate = completed / (finished - started)
            raw_rate = (raws[-2] + raws[-1]) / 2
            worker_ms = (cpu_after["worker"] - cpu_before["worker"]) * 1000 / args.jobs
            raw_ms = (raw_cpu[-2] + raw_cpu[-1]) / 2
            rounds.append({"jobs_per_second": round(rate, 1), "raw_chain_per_second": round(raw_rate, 1),
                           "ratio_to_raw": round(rate / raw_rate, 3), "submit_seconds": round(submitted - started, 1),
                           "worker_cpu_ms_per_job": round(worker_ms, 2), "raw_cpu_ms_per_chain": round(raw_ms, 2),
                           "cpu_ratio_to_raw": round(worker_ms / raw_ms, 3),
                           "step_tasks_per_job": round(tasks_per_job, 3)})
            latencies += round_latencies
            ids += round_ids
    finally:
        os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: nothing of this phase runs into the next
        worker.wait(60)
    total_jobs = args.jobs * args.rounds
    cpu_ms = {name: round(seconds * 1000 / total_jobs, 2) for name, seconds in cpu.items()}
    jobs = list(Job.objects.filter(pk__in=ids))
    done = [j for j in jobs if j.status == "completed"]
    to_start = [(j.inference_started_at - j.created_at).total_seconds() * 1000 for j in done]
    to_end = [(j.completed_at - j.inference_ended_at).total_seconds() * 1000 for j in done]
    ratios = [r["ratio_to_raw"] for r in rounds]
    ratio = statistics.median(ratios)
    raw_cpu_ms = statistics.mean(raw_cpu)
    cpu_ratios = [r["cpu_ratio_to_raw"] for r in rounds]
    return {
        "completed": len(done), "failed": sum(j.status == "failed" for j in jobs),
        "each_round": rounds,
        "jobs_per_second": round(statistics.median(r["jobs_per_second"] for r in rounds), 1),
        "submit_seconds": round(statistics.median(r["submit_seconds"] for r in rounds), 1),
        "submit_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1)},
        "submit_to_inference_start_ms": {"p50": round(percentile(to_start, 50), 1),
                                         "p99": round(percentile(to_start, 99), 1)},
        "inference_end_to_completed_ms": {"p50": round(percentile(to_end, 50), 1),
                                          "p99": round(percentile(to_end, 99), 1)},
        "cpu_ms_per_job": {**cpu_ms, "total": round(sum(cpu_ms.values()), 2)},
        "raw_chain_per_second": round(statistics.median(raws), 1),
        "raw_chain_per_second_each": [round(r, 1) for r in raws],
        "ratio_to_raw": round(ratio, 3),
        "ratio_to_raw_min_max": [min(ratios), max(ratios)],
        # The ratios' range over their median: a figure whose spread is large says little alone.
        "ratio_spread": round((max(ratios) - min(ratios)) / ratio, 3) if ratio else None,
        # The worker's CPU per job over its CPU per raw chain measured between the rounds: load
        # inflates both, so this moves less with the machine's load than the milliseconds do.
        "raw_cpu_ms_per_chain": round(raw_cpu_ms, 2),
        "raw_cpu_ms_per_chain_each": [round(r, 2) for r in raw_cpu],
        "cpu_ratio_to_raw": round(cpu_ms["worker"] / raw_cpu_ms, 3),
        "cpu_ratio_to_raw_min_max": [min(cpu_ratios), max(cpu_ratios)],
        "step_tasks_per_job": round(statistics.mean(r["step_tasks_per_job"] for r in rounds), 3),
        # What a job and a raw chain ask of the servers, the same at any load: Redis commands
        # (round trips, the worker's own included) and PostgreSQL write transactions.
        "redis_commands_per_job": round(statistics.mean(w[0] for w in job_work), 2),
        "redis_commands_per_raw_chain": round(statistics.mean(w[0] for w in raw_work), 2),
        "pg_write_transactions_per_job": round(statistics.mean(w[1] for w in job_work), 2),
        "load_average": {"start": load_start, "end": load_average()},
    }


def tracing_ab(stack: Any, off: dict[str, Any], worker_argv: list[str], tokens: list[tuple[str, str]],
               args: argparse.Namespace) -> dict[str, Any]:
    """The phase again with traces on in a new API and worker, exporting to bench/otlp_sink.py."""
    sink_port, api_port = free_port(), free_port()
    stats = stack.tmp / "otlp_sink.json"
    sink = stack.spawn("otlp-sink", [sys.executable, "-m", "bench.otlp_sink", "--port", str(sink_port),
                                     "--stats", str(stats)])
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}", "OTEL_SERVICE_NAME": "bench"}
    api = stack.spawn("api-traced", gunicorn_argv(api_port, workers=args.api_workers), **traced)
    wait_until(lambda: api_answers(api_port), 60, "the traced API", every=0.05)
    traced_argv = [*worker_argv[:worker_argv.index("-n") + 1], "bench-traced@%h",
                   *worker_argv[worker_argv.index("-n") + 2:]]
    on = run_phase(stack, "worker-traced", api.pid, traced_argv, api_port, tokens, args, env=traced)
    os.killpg(sink.pid, signal.SIGTERM)
    sink.wait(30)
    keys = ("jobs_per_second", "cpu_ms_per_job", "raw_chain_per_second", "ratio_to_raw", "ratio_to_raw_min_max",
            "raw_cpu_ms_per_chain", "cpu_ratio_to_raw",
            "submit_ms", "submit_to_inference_start_ms", "inference_end_to_completed_ms", "load_average")
    return {
        "off": {k: off[k] for k in keys}, "on": {k: on[k] for k in keys},
        "jobs_per_second_on_over_off": round(on["jobs_per_second"] / off["jobs_per_second"], 3),
        "ratio_to_raw_on_over_off": round(on["ratio_to_raw"] / off["ratio_to_raw"], 3),
        "cpu_ms_per_job_on_minus_off": {k: round(on["cpu_ms_per_job"][k] - off["cpu_ms_per_job"][k], 2)
                                        for k in ("api", "worker", "total")},
        "exported": json.loads(stats.read_text()) if stats.exists() else None,
    }


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


if __name__ == "__main__":
    main()
