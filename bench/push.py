"""Push: job events to 1,000 WebSocket and 200 SSE clients at once, against the same clients polling.

    .venv/bin/python bench/push.py [--ws 1000] [--sse 200] [--users 100] [--jobs-per-second 50]
                                   [--events-per-job 5] [--seconds 20] [--poll-interval 1] [--drivers 2]

A throwaway stack with the ASGI server (uvicorn, one process, as `make run` starts it) and the
sync gunicorn (cores + 1 workers). Each user runs one job after another; `--jobs-per-second`
jobs start every second across the users, each living one second and recording
`--events-per-job` events (started, progress..., completed) at even intervals, so the events
come at jobs/s x events/job a second. Driver processes (`--drivers`, users split between them)
record them through `jobs.events.record.job_event_record` in a transaction each, as a pipeline
step does (with the job's status and progress), and note the moment each commit returns, before
the after-commit hooks run; each event carries a sequence number in its data. Clients note when they receive it:
event committed -> client received, joined by that number (one machine, one clock).

Two phases in the same run, on the same stack:
- push: `--ws` WebSocket clients on /ws/v1/events (authenticated by their first message) and
  `--sse` SSE clients on /api/v1/events/stream, spread evenly over the users, all connected
  before the first event. Each event reaches every client of its user. Figures: latency p50 /
  p99 / max, events delivered of those expected, the ASGI server's RSS per connection (after
  connecting, less before) and its CPU.
- poll (the baseline): the same number of clients, each polling `GET /api/v1/jobs/{id}/events`
  every `--poll-interval` s for each of its user's jobs from the job's start (it submitted it)
  until it sees the job's last event. Latency counts from the commit to the first poll answer
  that holds the event; events not seen by the end of the phase are counted as not delivered.
  Figures: latency, requests/s, gunicorn's CPU.
Target: push p99 < 100 ms. The defaults are the target's sizes and take about two minutes on a
2-core machine, where the clients, the servers and the driver share the cores. Writes
bench/results/push.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, cpu_seconds, django_stack, free_port, gunicorn_argv, percentile

JOB_SECONDS = 1.0  # each job's events are spread over this long
CONNECT_BATCH = 100  # connections opened at once (a burst of thousands only tests the listen backlog)
SETTLE_SECONDS = 2.0  # after the last client connected, before the first event


# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Event:
    seq: int
    at: float  # seconds after the start
    user: int
    job: int  # index into the user's jobs
    kind: str  # started, progress, completed
    progress: int


def schedule(*, users: int, jobs_per_second: float, events_per_job: int, seconds: float) -> list[Event]:
    """Every event of the phase, in time order: job j starts at j / jobs_per_second, on user j % users."""
    events: list[Event] = []
    per_user: dict[int, int] = {}
    starts = int(jobs_per_second * seconds)
    for j in range(starts):
        user = j % users
        index = per_user.get(user, 0)
        per_user[user] = index + 1
        t0 = j / jobs_per_second
        for k in range(events_per_job):
            kind = "started" if k == 0 else "completed" if k == events_per_job - 1 else "progress"
            progress = 100 if kind == "completed" else round(100 * k / max(1, events_per_job - 1))
            at = t0 + JOB_SECONDS * k / max(1, events_per_job - 1)
            events.append(Event(0, at, user, index, kind, progress))
    events.sort(key=lambda e: e.at)
    return [Event(i, e.at, e.user, e.job, e.kind, e.progress) for i, e in enumerate(events)]


def drive(job_ids: list[list[str]], events: list[Event], start: Any, out: Any) -> None:
    """Record the events on time (a child process, spawned: a fork would share the parent's
    connections and event loop), then send back {seq: commit time}."""
    import django

    django.setup()
    from django.db import connection, transaction

    from jobs.events.record import job_event_record
    from jobs.models import Job, JobEventType, JobStatus

    Job.objects.exists()  # connected before the clock starts
    out.put("ready")
    start_at = start.get()
    committed: dict[int, float] = {}
    late = 0.0
    record_ms: list[float] = []
    kinds = {"started": JobEventType.STARTED, "progress": JobEventType.PROGRESS, "completed": JobEventType.COMPLETED}
    for event in events:
        wait = start_at + event.at - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            late = max(late, -wait)
        job_id = job_ids[event.user][event.job]
        began = time.perf_counter()
        with transaction.atomic():
            # Registered first, so it runs first: the commit has returned, no other hook has run.
            transaction.on_commit(functools.partial(_stamp, committed, event.seq))
            status = {"started": JobStatus.PROCESSING, "completed": JobStatus.COMPLETED}.get(
                event.kind, JobStatus.PROCESSING)
            Job.objects.filter(pk=job_id).update(status=status, progress=event.progress)
            data: dict[str, Any] = {"bench_seq": event.seq}
            if event.kind == "progress":
                data["progress"] = event.progress
            job_event_record(job_id, kinds[event.kind], **data)
        record_ms.append((time.perf_counter() - began) * 1000)
    connection.close()
    out.put({"committed": committed, "late_s": late, "record_ms": record_ms})


def _stamp(committed: dict[int, float], seq: int) -> None:
    committed[seq] = time.time()


@dataclass
class Driver:
    """`n` driver processes, each recording the events of the users `user % n` picks (a job's
    events stay in order in one process)."""

    procs: list[Any]
    starts: list[Any]
    outs: list[Any]

    @classmethod
    async def ready(cls, job_ids: list[list[str]], events: list[Event], n: int) -> Driver:
        """Spawn the drivers and wait until each holds its database connection (taken before the
        clients connect, so a server that runs the database out of connections fails its clients,
        not the measuring)."""
        context = mp.get_context("spawn")
        driver = cls([], [], [])
        for i in range(n):
            start, out = context.Queue(), context.Queue()
            mine = [e for e in events if e.user % n == i]
            proc = context.Process(target=drive, args=(job_ids, mine, start, out), daemon=True)
            proc.start()
            driver.procs.append(proc)
            driver.starts.append(start)
            driver.outs.append(out)
        for out in driver.outs:
            if await asyncio.to_thread(out.get, True, 120) != "ready":
                raise SystemExit("a driver did not start")
        return driver

    async def run(self, clock: dict[str, float] | None = None) -> dict[str, Any]:
        """Start their clock (noted in `clock["start"]`); the merged result once every event is
        recorded: {committed: {seq: time}, late_s, events_per_second, record_ms}."""
        start_at = time.time() + 0.2
        if clock is not None:
            clock["start"] = start_at
        for start in self.starts:
            start.put(start_at)
        results = [await asyncio.to_thread(out.get) for out in self.outs]
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 10)
        committed = {seq: t for r in results for seq, t in r["committed"].items()}
        record_ms = [ms for r in results for ms in r["record_ms"]]
        elapsed = max(committed.values()) - start_at if committed else 0.0
        return {
            "committed": committed, "late_s": max(r["late_s"] for r in results),
            "events_per_second": len(committed) / max(elapsed, 1e-9),
            "record_ms": {"p50": round(percentile(record_ms, 50), 2) if record_ms else None,
                          "p99": round(percentile(record_ms, 99), 2) if record_ms else None},
        }


# ----------------------------------------------------------------------------- the clients


@dataclass
class Received:
    """When each client first received each event: {seq: [receive times]}."""

    times: dict[int, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    connected: int = 0

    def note(self, data: Any) -> None:
        seq = _seq_of(data)
        if seq is not None:
            self.times.setdefault(seq, []).append(time.time())


def _seq_of(data: Any) -> int | None:
    """The bench's sequence number wherever the event's JSON carries its data."""
    if isinstance(data, dict):
        if isinstance(data.get("bench_seq"), int):
            return int(data["bench_seq"])
        for key in ("event", "data"):
            if key in data:
                found = _seq_of(data[key])
                if found is not None:
                    return found
    return None


async def ws_client(url: str, token: str, origin: str | None, got: Received) -> None:
    """Runs until canceled (the end of the phase)."""
    import websockets

    try:
        async with websockets.connect(url, origin=origin, open_timeout=60,  # type: ignore[arg-type]
                                      max_queue=None, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            counted = False
            async for raw in ws:
                message = json.loads(raw)
                if not counted:  # the server's answer to the auth ({"type": "ready"}): subscribed
                    got.connected, counted = got.connected + 1, True
                if message.get("type") == "job.event":
                    got.note(message)
        got.errors.append("ws: closed by the server")
    except Exception as exc:  # noqa: BLE001 - a bench counts failures, it does not stop on one
        got.errors.append(f"ws: {type(exc).__name__}: {exc}")


async def sse_client(session: Any, url: str, token: str, got: Received) -> None:
    """Runs until canceled (the end of the phase)."""
    import aiohttp

    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
                               timeout=aiohttp.ClientTimeout(total=None, sock_connect=60)) as response:
            if response.status != 200:
                got.errors.append(f"sse: HTTP {response.status}")
                return
            got.connected += 1
            data: list[str] = []
            async for line in response.content:
                text = line.decode().rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].lstrip())
                elif not text and data:
                    got.note(json.loads("\n".join(data)))
                    data = []
        got.errors.append("sse: closed by the server")
    except Exception as exc:  # noqa: BLE001
        got.errors.append(f"sse: {type(exc).__name__}: {exc}")


async def poll_client(session: Any, base: str, token: str, jobs: list[tuple[str, float]], last: set[int],
                      interval: float, clock: dict[str, float], got: Received, stats: dict[str, int],
                      stop: asyncio.Event) -> None:
    """Poll the events of each of the user's jobs from its start (the client submitted it, so it
    knows) until its last event is seen: one request per job in progress every `interval`."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: set[int] = set()
    done: set[str] = set()
    while "start" not in clock:
        await asyncio.sleep(0.05)
    while not stop.is_set() and len(done) < len(jobs):
        began = time.monotonic()
        for job_id, offset in jobs:
            if job_id in done or clock["start"] + offset > time.time():
                continue
            stats["requests"] += 1
            try:
                async with session.get(f"{base}/api/v1/jobs/{job_id}/events?page_size=100",
                                       headers=headers) as response:
                    body = await response.json() if response.status == 200 else None
            except Exception:  # noqa: BLE001 - counted
                body = None
            if body is None:
                stats["errors"] += 1
                continue
            now = time.time()
            items: list[Any] = body.get("events") or [] if isinstance(body, dict) else []
            for item in items:
                seq = _seq_of(item)
                if seq is not None and seq not in seen:
                    seen.add(seq)
                    got.times.setdefault(seq, []).append(now)
                    if seq in last:
                        done.add(job_id)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))


# ----------------------------------------------------------------------------- phases


def latency_figures(committed: dict[int, float], got: Received, expected: int) -> dict[str, Any]:
    latencies = [(t - committed[seq]) * 1000 for seq, times in got.times.items() if seq in committed for t in times]
    delivered = sum(len(times) for seq, times in got.times.items() if seq in committed)
    if not latencies:
        return {"delivered": 0, "expected": expected, "errors": got.errors[:5], "error_count": len(got.errors)}
    return {
        "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1), "delivered": delivered, "expected": expected,
        "error_count": len(got.errors), "errors": got.errors[:5],
    }


def _driver_figures(result: dict[str, Any]) -> dict[str, Any]:
    """How well the driver kept the schedule: the rate it reached, how late it fell at worst, and
    how long recording one event took (its transaction, with the after-commit hooks)."""
    return {"events_per_second": round(result["events_per_second"], 1), "late_max_s": round(result["late_s"], 3),
            "record_ms": result["record_ms"]}


def own_cpu() -> float:
    """CPU seconds this process (the clients) has spent: on a small machine they compete with the
    servers they measure."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def database_monitor() -> Any:
    """A connection of its own (opened before the clients: they may take all the others)."""
    from django.db import connection

    return connection.get_new_connection(connection.get_connection_params())


def postgres_connections(monitor: Any) -> int:
    """Client connections the database holds now (its max_connections bounds them)."""
    with monitor.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        return int(cursor.fetchone()[0])


def rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (root, *root.children(recursive=True))) / 2**20


async def open_clients(args: argparse.Namespace, session: Any, asgi_port: int, tokens: list[str],
                       origin: str | None, ws: int, sse: int) -> tuple[Received, Received, list[asyncio.Task[None]]]:
    """Connect `ws` WebSocket and `sse` SSE clients, spread over the users, CONNECT_BATCH at a time."""
    ws_got, sse_got = Received(), Received()
    tasks: list[asyncio.Task[None]] = []
    for i in range(ws):
        tasks.append(asyncio.create_task(ws_client(f"ws://127.0.0.1:{asgi_port}/ws/v1/events",
                                                   tokens[i % args.users], origin, ws_got)))
        if (i + 1) % CONNECT_BATCH == 0 or i + 1 == ws:
            await _until(lambda n=i + 1: ws_got.connected + len(ws_got.errors) >= n, 60)
    for i in range(sse):
        tasks.append(asyncio.create_task(sse_client(session, f"http://127.0.0.1:{asgi_port}/api/v1/events/stream",
                                                    tokens[i % args.users], sse_got)))
        if (i + 1) % CONNECT_BATCH == 0 or i + 1 == sse:
            await _until(lambda n=i + 1: sse_got.connected + len(sse_got.errors) >= n, 60)
    return ws_got, sse_got, tasks


async def close_clients(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def expected(events: list[Event], users: int, clients: int) -> int:
    """Deliveries due: each event to every client of its user (clients spread round robin)."""
    per_user = [clients // users + (u < clients % users) for u in range(users)]
    return sum(per_user[e.user] for e in events)


async def push_phase(args: argparse.Namespace, asgi_port: int, asgi_pid: int, tokens: list[str],
                     job_ids: list[list[str]], events: list[Event], origin: str | None) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        # A few clients first, so that the server has imported and connected what a connection
        # needs before its idle memory is read.
        warm = await open_clients(args, session, asgi_port, tokens, origin, min(args.ws, 2), min(args.sse, 2))
        await asyncio.sleep(1.0)
        await close_clients(warm[2])
        await asyncio.sleep(1.0)
        driver = await Driver.ready(job_ids, events, args.drivers)
        monitor = await asyncio.to_thread(database_monitor)
        rss_before = rss_mb(asgi_pid)
        opened = time.monotonic()
        ws_got, sse_got, tasks = await open_clients(args, session, asgi_port, tokens, origin, args.ws, args.sse)
        connect_s = time.monotonic() - opened
        await asyncio.sleep(SETTLE_SECONDS)
        rss_connected = rss_mb(asgi_pid)
        db_connections = await asyncio.to_thread(postgres_connections, monitor)
        cpu_before, own_before, began = cpu_seconds(asgi_pid), own_cpu(), time.monotonic()
        result = await driver.run()
        await asyncio.sleep(1.0)  # the last events' way to the clients
        cpu, elapsed = cpu_seconds(asgi_pid) - cpu_before, time.monotonic() - began
        own = own_cpu() - own_before
        rss_end = rss_mb(asgi_pid)
        await close_clients(tasks)
        monitor.close()
    committed: dict[int, float] = result["committed"]
    connections = ws_got.connected + sse_got.connected
    return {
        "ws": latency_figures(committed, ws_got, expected(events, args.users, args.ws)),
        "sse": latency_figures(committed, sse_got, expected(events, args.users, args.sse)),
        "connected": {"ws": ws_got.connected, "sse": sse_got.connected, "seconds": round(connect_s, 1)},
        "driver": _driver_figures(result),
        "asgi_rss_mb": {"before": round(rss_before, 1), "connected": round(rss_connected, 1), "end": round(rss_end, 1)},
        "asgi_rss_kb_per_connection": round((rss_connected - rss_before) * 1024 / max(1, connections), 1),
        "postgres_connections_while_connected": db_connections,
        "asgi_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "clients_cpu_percent_of_one_core": round(100 * own / elapsed, 1),
    }


async def poll_phase(args: argparse.Namespace, api_port: int, api_pid: int, tokens: list[str],
                     job_ids: list[list[str]], events: list[Event]) -> dict[str, Any]:
    import aiohttp

    got = Received()
    stats = {"requests": 0, "errors": 0}
    stop = asyncio.Event()
    last = {e.seq for e in events if e.kind == "completed"}
    starts: list[list[tuple[str, float]]] = [[] for _ in job_ids]
    for e in events:
        if e.kind == "started":
            starts[e.user].append((job_ids[e.user][e.job], e.at))
    clock: dict[str, float] = {}
    clients = args.ws + args.sse
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # gunicorn's sync workers close them
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        driver = await Driver.ready(job_ids, events, args.drivers)
        tasks = [asyncio.create_task(poll_client(session, f"http://127.0.0.1:{api_port}", tokens[i % args.users],
                                                 starts[i % args.users], last, args.poll_interval, clock, got,
                                                 stats, stop))
                 for i in range(clients)]
        cpu_before, own_before, began = cpu_seconds(api_pid), own_cpu(), time.monotonic()
        result = await driver.run(clock)
        await asyncio.sleep(args.poll_interval + 1.0)  # a last round of polls
        stop.set()
        cpu, elapsed = cpu_seconds(api_pid) - cpu_before, time.monotonic() - began
        own = own_cpu() - own_before
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        **latency_figures(result["committed"], got, expected(events, args.users, clients)),
        "clients": clients,
        "requests_per_second": round(stats["requests"] / elapsed, 1),
        "request_errors": stats["errors"],
        "api_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "clients_cpu_percent_of_one_core": round(100 * own / elapsed, 1),
        "driver": _driver_figures(result),
    }


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- main


def wait_http(port: int, path: str = "/healthz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answered on port {port}") from None
            time.sleep(0.2)


def asgi_argv(port: int) -> list[str]:
    """The ASGI server as `make run` starts it, without its access log (a line per request)."""
    from devstack.front import uvicorn_argv

    return uvicorn_argv(port, "--no-access-log", "--log-level", "warning")


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws", type=int, default=1000)
    parser.add_argument("--sse", type=int, default=200)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--jobs-per-second", type=float, default=50)
    parser.add_argument("--events-per-job", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20, help="how long each phase drives events")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--only", choices=["push", "poll"], help="run one phase only")
    parser.add_argument("--drivers", type=int, default=2,
                        help="processes recording the events (one records about 250 a second on one core)")
    args = parser.parse_args()
    if args.users < 1 or args.events_per_job < 2 or args.jobs_per_second <= 0 or args.drivers < 1:
        parser.error("--users >= 1, --events-per-job >= 2, --jobs-per-second > 0, --drivers >= 1")
    # Each client holds a socket here and one in the server, a child of this process.
    fd_limit = raise_fd_limit(4 * (args.ws + args.sse) + 1024)
    os.environ["AUTEUR_RATE_LIMIT_USER_PER_MINUTE"] = "100000000"
    # Clients per user are the benchmark's choice (--ws, --sse, --users), not the per-user cap's.
    os.environ["AUTEUR_MAX_STREAMS_PER_USER"] = str(args.ws + args.sse + 10)

    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000") as stack:
        from django.conf import settings

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from jobs.models import Job

        users = [User.objects.create_user(email=f"push-{i}@bench.invalid") for i in range(args.users)]
        tokens = [user_issue_token(user=u) for u in users]
        events = schedule(users=args.users, jobs_per_second=args.jobs_per_second,
                          events_per_job=args.events_per_job, seconds=args.seconds)

        def make_jobs() -> list[list[str]]:
            counts = [0] * args.users
            for event in events:
                counts[event.user] = max(counts[event.user], event.job + 1)
            ids = [[str(uuid.uuid4()) for _ in range(n)] for n in counts]
            Job.objects.bulk_create([Job(id=i, user=users[u], type="tts", credits_cost=1, status="pending")
                                     for u, user_ids in enumerate(ids) for i in user_ids], batch_size=2000)
            return ids

        origins = list(getattr(settings, "CORS_ALLOWED_ORIGINS", []) or [])
        origin = origins[0] if origins else None
        asgi_port, api_port = free_port(), free_port()
        asgi = stack.spawn("asgi", asgi_argv(asgi_port))
        api = stack.spawn("api", gunicorn_argv(api_port, workers=min(4, (os.cpu_count() or 1) + 1)))
        wait_http(asgi_port)
        wait_http(api_port)

        report: dict[str, Any] = {
            "ws_clients": args.ws, "sse_clients": args.sse, "users": args.users,
            "jobs_per_second": args.jobs_per_second, "events_per_job": args.events_per_job,
            "events_per_second": round(args.jobs_per_second * args.events_per_job, 1), "seconds": args.seconds,
            "events": len(events), "poll_interval_s": args.poll_interval, "fd_limit": fd_limit,
            "cores": os.cpu_count(), "drivers": args.drivers,
        }
        if args.only != "poll":
            report["push"] = asyncio.run(push_phase(args, asgi_port, asgi.pid, tokens, make_jobs(), events, origin))
        if args.only != "push":
            report["poll"] = asyncio.run(poll_phase(args, api_port, api.pid, tokens, make_jobs(), events))
        report["targets"] = {"push_p99_ms": 100}
        with contextlib.suppress(KeyError):
            report["meets_target"] = max(report["push"]["ws"]["p99_ms"], report["push"]["sse"]["p99_ms"]) < 100
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "push.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
