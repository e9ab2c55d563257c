"""Soak: an hour of steady load against `make run`'s own processes, sampled every minute, to show
what grows.

    .venv/bin/python bench/soak.py [--duration 3600] [--interval 60] [--rate 2] [--users 10]
                                   [--sse 4] [--ws 4] [--warmup SECONDS] [--seed 7]
    make soak                                          # the hour
    make soak SOAK_ARGS="--duration 300 --interval 20"  # five minutes

What runs: `python -m devstack run`, the command `make run` execs, in a throwaway AUTEUR_VAR_DIR
with ports of its own (its servers' ports follow the var dir, the API's, Flower's and the
exporter's are chosen free), so it runs beside a developer's `make run`. Its settings are the
benchmarks' (bench/settings.py: the `noop` GPU backend, so GPU work is instant and no model is
measured) with DJANGO_DEBUG off as in production: debug keeps every query of a connection in
memory, which would read as growth. Loopback webhook targets are allowed for the receiver.

The load, on loopback through the stack's proxy (Caddy):
- `--rate` job submissions a second on a fixed schedule (open loop: a slow answer does not slow
  the schedule), the chaos drill's mix of types and users (bench/chaos.py: every tenth user's
  budget runs out, so some submissions get 402), each with an Idempotency-Key;
- per user, one SSE client on /api/v1/events/stream for the whole run: it sees each job's
  terminal event (completion latency: submission sent to terminal event received) and resumes
  with Last-Event-ID after a cut;
- `--sse` SSE and `--ws` WebSocket clients that connect (the user-wide stream, or one of the
  user's recent jobs), read for 5 to 30 s, leave, and come back;
- one webhook per user to a receiver in this process, which checks every signature.

Every `--interval` seconds it samples RSS, open descriptors and CPU (the share of one core used
since the last sample) of each group of processes the devstack started (api, storage, asgi,
proxy, worker with its pool, beat, gpu-events, exporter, flower, postgres with its backends,
redis, mongodb, and devstack itself with its output readers; the CPU of this process, the load,
too), PostgreSQL client connections and the rows it read by sequential scans (per second, and
the table read most: a query scanning a table that grows with the load shows here), the disk's
time to fsync 8 KiB (every commit waits for one flush, so latency follows the disk), Redis
used_memory, the job event streams (entries, longest, count: each is capped by
AUTEUR_EVENT_STREAM_MAXLEN and a 24 h age, so within an hour they grow by design), Celery
queue depths and messages held unacknowledged, jobs in flight, pending webhook deliveries, and
the interval's submissions, completions and deliveries per second with request and completion
latency p50/p95.

Growth: a least-squares slope over the samples after `--warmup` (default: a fifth of the run, at
most 10 minutes: the processes open connections lazily, as each job type first runs, and in the
hour runs the worker's descriptors settled only by minute 10), per hour and as a % of the value
after warm-up (the median of its first three samples). Flagged
(exit 1, FLAG_RULE): a series whose end (the median of its last three samples) is above its value
after warm-up by more than its limit. Writes bench/results/soak.json (the summary; bench/report.py makes it the Soak
section of bench/RESULTS.md), bench/results/soak/samples.json, one PNG per series and the stack's
log in bench/results/soak/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import logging
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench._stack import RESULTS_DIR, free_port, load_average, percentile, wait_until
from bench.chaos import User, make_users, plan_submissions, request
from bench.push import postgres_connections
from bench.report import soak_table
from devstack import REPO_ROOT
from devstack.stack import URL_VARS, load_recorded_urls

OUT_DIR = RESULTS_DIR / "soak"
UP_BANNER = "Auteur is up"
# What a series may grow by from its value after warm-up to its end: a fraction, and more than
# an amount (less is noise: one allocator arena in a process of a few MiB, one connection's sockets).
RSS_LIMIT = (0.10, 8.0)  # MiB
FDS_LIMIT = (0.10, 16.0)
# Rows read by sequential scans per second: small tables (a user's webhooks, the fair-share
# clocks) are scanned at a steady rate; a rate that grows with the load is a query reading a
# table that grows, whole.
SEQ_ROWS_LIMIT = (0.50, 100.0)
# Groups whose RSS follows what they hold by design, judged by another series instead: each
# Postgres process counts the pages of shared_buffers it has touched (bounded by that setting),
# so its private memory (USS) is judged; Redis holds the event streams (24 h, capped per user),
# so what it holds beyond its data is.
LOAD_GROUP = "soak"  # this process: the clients, the webhook receiver, the sampling
RSS_JUDGED_BY = {"postgres": "uss_mib.postgres", "redis": "redis_beyond_data_mib"}
FLAG_RULE = ("a process group's RSS (Postgres: its private memory, shared_buffers left out; Redis: its RSS beyond "
             "its data, the event streams growing by design) ending more than 10 % and 8 MiB above its value after "
             "warm-up, its open descriptors more than 10 % and 16, or the rows PostgreSQL reads by sequential scans "
             "more than 50 % and 100/s")
WARMUP_MAX_S = 600.0
EDGE_SAMPLES = 3  # samples whose median is a series' value after warm-up, and at the end
SUBMIT_THREADS = 8  # open loop: answers slower than 1/rate overlap instead of delaying the schedule
VISIT_SECONDS = (5.0, 30.0)  # how long a churning stream client stays
PAUSE_SECONDS = (0.0, 5.0)  # and how long it is away before the next visit


# ----------------------------------------------------------------------------- the stack


def stack_env(var_dir: Path) -> dict[str, str]:
    """The environment of the devstack under test; this process's Django reads it too."""
    # Its own servers: no URL (or _FILE) of another stack leaks in.
    base = {k: v for k, v in os.environ.items() if k.removesuffix("_FILE") not in (*URL_VARS, "DATABASE_API_URL")}
    return {
        **base,
        "AUTEUR_VAR_DIR": str(var_dir),
        "AUTEUR_ENV_FILE": "",  # a developer's .env must not change what is measured
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "AUTEUR_GPU_BACKEND": "noop",
        "DJANGO_DEBUG": "0",
        # Throwaway secrets: they live as long as the stack.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTEUR_JWT_SECRET": secrets.token_urlsafe(48),
        "AUTEUR_JWT_ISSUER": "https://auth.soak.invalid/auth/v1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUTEUR_WEBHOOK_ALLOW_LOOPBACK": "1",
        "AUTEUR_API_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "AUTEUR_METRICS_EXPORTER_PORT": str(free_port()),
    }


@dataclass
class Devstack:
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.env["AUTEUR_API_PORT"])

    def start(self, timeout: float = 300) -> dict[str, str]:
        """Start it, wait for its banner (every port listens) and /readyz; the URLs it recorded."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devstack", "run"], env=self.env, cwd=REPO_ROOT, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"devstack exited with {proc.returncode}:\n{self.log_tail()}")
            return UP_BANNER in self.log_path.read_text(errors="replace") and http_status(self.port, "/readyz") == 200

        wait_until(up, timeout, "the devstack to come up", every=0.5)
        urls = load_recorded_urls(Path(self.env["AUTEUR_VAR_DIR"]), environ={})
        if not urls:
            raise SystemExit("the devstack recorded no URLs")
        return urls

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 120) -> None:
        """SIGTERM, as Ctrl-C: it stops its processes, then its servers. What is left after
        `timeout` (the processes it started, by pid) is killed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        started: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            started = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for child in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def http_status(port: int, path: str) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0


# ----------------------------------------------------------------------------- what the clients saw


@dataclass
class Seen:
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (sent at, seconds to the answer, HTTP status; 0: no answer)
    submissions: list[tuple[float, float, int]] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # job id -> submission sent
    ended: dict[str, tuple[float, str]] = field(default_factory=dict)  # job id -> terminal event received, type
    recent: dict[int, deque[str]] = field(default_factory=dict)  # user -> their latest job ids
    answers: Counter[str] = field(default_factory=Counter)
    streams: Counter[str] = field(default_factory=Counter)  # visits, events and failures of the stream clients
    stream_errors: Counter[str] = field(default_factory=Counter)
    late_s: float = 0.0  # how far the schedule ran behind at worst

    def submitted(self, user: int, sent: float, seconds: float, status: int, data: dict[str, Any]) -> None:
        with self.lock:
            self.submissions.append((sent, seconds, status))
            if status in (200, 202):
                self.answers["accepted"] += 1
                self.sent_at[data["job_id"]] = sent
                self.recent.setdefault(user, deque(maxlen=20)).append(data["job_id"])
            elif status == 402:
                self.answers["refused_402"] += 1
            else:
                self.answers[f"unexpected_{status}"] += 1

    def stream(self, what: str, error: str | None = None) -> None:
        with self.lock:
            self.streams[what] += 1
            if error:
                self.stream_errors[error[:120]] += 1


class Receiver(ThreadingHTTPServer):
    """The users' webhook endpoint: counts each delivery and checks its signature."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.secrets: dict[str, str] = {}  # path -> its webhook's signing secret
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.ids: set[str] = set()
        self.bad_signatures = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def note(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        from standardwebhooks import Webhook

        try:
            Webhook(self.secrets[path]).verify(body, headers, json_parse=False)
            good = True
        except Exception:  # noqa: BLE001 - a bad signature, an unknown path: counted, not fatal
            good = False
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.ids.add(headers.get("webhook-id", ""))
            self.bad_signatures += not good


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.note(self.path, body, {k.lower(): v for k, v in self.headers.items()})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ----------------------------------------------------------------------------- load


def submit_on_schedule(port: int, users: list[User], plan: list[tuple[int, str, dict[str, Any]]], rate: float,
                       seen: Seen, stop: threading.Event, run_id: str) -> None:
    def one(i: int, user_index: int, job_type: str, body: dict[str, Any]) -> None:
        sent = time.monotonic()
        try:
            status, data = request(port, "POST", f"/api/v1/jobs/{job_type}", users[user_index].token, body,
                                   headers={"Idempotency-Key": f"soak-{run_id}-{i}"})
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            status, data = 0, {}
        seen.submitted(user_index, sent, time.monotonic() - sent, status, data)

    started = time.monotonic()
    with ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="submit") as pool:
        for i, (user_index, job_type, body) in enumerate(plan):
            due = started + i / rate
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            seen.late_s = max(seen.late_s, time.monotonic() - due)
            pool.submit(one, i, user_index, job_type, body)


async def sse_events(response: Any) -> AsyncIterator[tuple[str | None, str, dict[str, Any]]]:
    """(id, event type, data) of each event of an SSE response; comments (heartbeats) skipped."""
    event_id: str | None = None
    kind, data = "message", list[str]()
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


async def observe(session: Any, base: str, user: User, seen: Seen, terminal: frozenset[str]) -> None:
    """One user's stream for the whole run: the terminal event of each of their jobs, resumed
    after a cut from the last id it saw (so a reconnect loses nothing)."""
    import aiohttp

    last_id: str | None = None
    while True:
        headers = {"Authorization": f"Bearer {user.token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            async with session.get(f"{base}/api/v1/events/stream", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as response:
                if response.status != 200:
                    raise RuntimeError(f"observer: HTTP {response.status}")
                async for event_id, kind, data in sse_events(response):
                    last_id = event_id or last_id
                    if kind in terminal and "job_id" in data:
                        with seen.lock:
                            seen.ended.setdefault(data["job_id"], (time.monotonic(), kind))
            seen.stream("observer_reconnects", "observer: stream ended by the server")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted, then reconnect
            seen.stream("observer_reconnects", f"observer: {type(exc).__name__}: {exc}")
        await asyncio.sleep(1)


async def sse_visit(session: Any, base: str, user: User, job_id: str | None, seconds: float, seen: Seen) -> None:
    path = f"/api/v1/jobs/{job_id}/stream" if job_id else "/api/v1/events/stream"
    headers = {"Authorization": f"Bearer {user.token}", "Accept": "text/event-stream"}
    # Leaving at the deadline is the visit's normal end; a per-job stream also ends by itself
    # after the job's terminal event.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds), session.get(base + path, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"sse: HTTP {response.status}")
            seen.stream("sse_connected")
            async for _ in sse_events(response):
                seen.stream("sse_events")


async def ws_visit(url: str, user: User, job_id: str | None, seconds: float, seen: Seen) -> None:
    import websockets

    async with websockets.connect(url, open_timeout=30, ping_interval=None, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": user.token}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ready.get("type") != "ready":
            raise RuntimeError(f"ws: answered {ready}")
        seen.stream("ws_connected")
        if job_id:
            await ws.send(json.dumps({"type": "subscribe", "job_id": job_id}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for raw in ws:
                    if json.loads(raw).get("type") == "job.event":
                        seen.stream("ws_events")


async def churn(kind: str, n: int, visit: Callable[[User, str | None, float], Any], users: list[User], seen: Seen,
                seed: int) -> None:
    """A client that comes and goes: a visit (half of them to one recent job), then a pause."""
    rng = random.Random(seed * 1000 + n)  # noqa: S311 - a load generator
    while True:
        user_index = rng.randrange(len(users))
        with seen.lock:
            recent = list(seen.recent.get(user_index, ()))
        job_id = rng.choice(recent) if recent and rng.random() < 0.5 else None
        try:
            await visit(users[user_index], job_id, rng.uniform(*VISIT_SECONDS))
            seen.stream(f"{kind}_visits")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted; the client comes back
            seen.stream(f"{kind}_failures", f"{kind}: {type(exc).__name__}: {exc}")
        await asyncio.sleep(rng.uniform(*PAUSE_SECONDS))


class StreamClients:
    """The observers and the churning SSE and WebSocket clients, on one event loop in a thread."""

    def __init__(self, port: int, users: list[User], seen: Seen, args: argparse.Namespace) -> None:
        self.port, self.users, self.seen, self.args = port, users, seen, args
        self.loop = asyncio.new_event_loop()
        self.observers: list[asyncio.Task[None]] = []
        self.churners: list[asyncio.Task[None]] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="streams", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import aiohttp

        from realtime.hub import TERMINAL_EVENT_TYPES

        base, ws_url = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}/ws/v1/events"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            self.observers = [asyncio.create_task(observe(session, base, u, self.seen, TERMINAL_EVENT_TYPES))
                              for u in self.users]

            def sse(user: User, job_id: str | None, seconds: float) -> Any:
                return sse_visit(session, base, user, job_id, seconds, self.seen)

            def ws(user: User, job_id: str | None, seconds: float) -> Any:
                return ws_visit(ws_url, user, job_id, seconds, self.seen)

            self.churners = [asyncio.create_task(churn("sse", n, sse, self.users, self.seen, self.args.seed))
                             for n in range(self.args.sse)]
            self.churners += [asyncio.create_task(churn("ws", n, ws, self.users, self.seen, self.args.seed))
                              for n in range(self.args.ws)]
            self.ready.set()
            await asyncio.gather(*self.observers, *self.churners, return_exceptions=True)

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(30)

    def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            self.loop.call_soon_threadsafe(task.cancel)

    def stop_churn(self) -> None:
        self._cancel(self.churners)

    def stop(self) -> None:
        self._cancel(self.observers + self.churners)
        self.thread.join(30)


# ----------------------------------------------------------------------------- samples

# What each process of the stack is, by its command line; a process that matches none (a pool
# child, a Postgres backend, an ffmpeg a worker runs) belongs to its parent's group.
GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("postgres", lambda c: "/bin/postgres " in c),
    ("redis", lambda c: "redis-server" in c),
    ("mongodb", lambda c: "nx_27017" in c or "nx_server.py" in c),
    ("proxy", lambda c: "/caddy " in c),
    ("storage", lambda c: "gunicorn " in c and "gthread" in c),
    ("api", lambda c: "gunicorn " in c),
    ("asgi", lambda c: "uvicorn " in c),
    ("worker", lambda c: "celery " in c and " worker " in c),
    ("beat", lambda c: "celery " in c and " beat " in c),
    ("flower", lambda c: "celery " in c and " flower " in c),
    ("gpu-events", lambda c: "manage.py gpu_events" in c),
    ("exporter", lambda c: "manage.py metrics_exporter" in c),
)


def process_tree(root_pid: int) -> Iterator[tuple[str, psutil.Process]]:
    """(group, process) of the devstack and every descendant; the devstack and its output readers
    (honcho's forks) are the group "devstack"."""
    todo = [(psutil.Process(root_pid), "devstack")]
    while todo:
        proc, inherited = todo.pop()
        try:
            command = " ".join(proc.cmdline())
            children = proc.children()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        group = next((name for name, match in GROUPS if match(command)), inherited)
        yield group, proc
        todo.extend((child, group) for child in children)


class CpuMeter:
    """CPU seconds each process used since the last look. A pid and its birth time name a process
    (a pid can be reused): one born since the last look counts from its birth; one that ended
    since is not counted (a recycled pool child's last moments)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (birth time, user + system seconds)
        self.at: float | None = None

    def look(self) -> float:
        """Starts a look: the seconds since the last one (0 at the first, which has no baseline)."""
        now = time.monotonic()
        seconds, self.at = (0.0 if self.at is None else now - self.at), now
        return seconds

    def used(self, proc: psutil.Process) -> float:
        times, born = proc.cpu_times(), proc.create_time()
        total = times.user + times.system
        before = self.seen.get(proc.pid)
        self.seen[proc.pid] = (born, total)
        return total - before[1] if before and before[0] == born else total


def process_figures(root_pid: int, cpu: CpuMeter | None = None) -> dict[str, dict[str, float]]:
    """Memory, descriptors and (with `cpu`) the share of one core each group used since the last
    look, per group; the soak's own process (its clients and receiver) is the group LOAD_GROUP."""
    groups: dict[str, dict[str, float]] = {}
    seconds = cpu.look() if cpu else 0.0
    for group, proc in [*process_tree(root_pid), (LOAD_GROUP, psutil.Process())]:
        try:
            memory = proc.memory_full_info()
            fds = proc.num_fds()
            used = cpu.used(proc) if cpu else 0.0
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        g = groups.setdefault(group, {"rss_mib": 0.0, "pss_mib": 0.0, "uss_mib": 0.0, "fds": 0, "processes": 0,
                                      "cpu_pct": 0.0})
        g["cpu_pct"] += used / seconds * 100 if seconds else 0.0
        g["rss_mib"] += memory.rss / 2**20
        g["pss_mib"] += memory.pss / 2**20  # shared pages split between the processes that map them
        g["uss_mib"] += memory.uss / 2**20  # the pages no other process maps
        g["fds"] += fds
        g["processes"] += 1
    return {name: {k: round(v, 1) for k, v in g.items()} for name, g in sorted(groups.items())}


def fsync_ms(folder: Path, tries: int = 5) -> float:
    """The median time to write and fsync 8 KiB in `folder` (on the disk PostgreSQL's WAL is on):
    every commit waits for one such flush, so request and completion latency follow it."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "wb") as out:
        for _ in range(tries):
            began = time.perf_counter()
            out.write(b"\0" * 8192)
            out.flush()
            os.fsync(out.fileno())
            times.append((time.perf_counter() - began) * 1000)
    path.unlink()
    return round(statistics.median(times), 2)


class SeqScans:
    """Rows PostgreSQL read by sequential scans since the last look, per table
    (pg_stat_user_tables): a query that scans a table growing with the load shows here first."""

    def __init__(self) -> None:
        self.before: dict[str, int] | None = None

    def look(self, connection: Any, seconds: float) -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT relname, seq_tup_read FROM pg_stat_user_tables")
            now = {name: int(rows or 0) for name, rows in cursor.fetchall()}
        before, self.before = self.before, now
        if before is None or not seconds:
            return {}
        read = {name: rows - before.get(name, 0) for name, rows in now.items()}
        top = max(read, key=read.__getitem__, default=None)
        return {"pg_seq_rows_per_s": round(sum(read.values()) / seconds, 1),
                "pg_seq_top": f"{top} {read[top] / seconds:.1f}/s" if top and read[top] else None}


def server_figures(redis_client: Any) -> dict[str, Any]:
    from django.db import connection

    from auteur.core.queues import queue_depths
    from jobs.events.stream import KEY_PREFIX, stream_key
    from jobs.models import ACTIVE_STATUSES, Job
    from webhooks.models import Delivery, DeliveryState

    hub_keys = stream_key("hub")  # the ASGI hubs' wake-up streams, capped at a few entries
    lengths = [redis_client.xlen(key) for key in redis_client.scan_iter(match=f"{KEY_PREFIX}*", count=1000)
               if not key.decode().startswith(hub_keys)]
    depths = queue_depths()
    memory = redis_client.info("memory")
    return {
        "pg_connections": postgres_connections(connection),
        "redis_used_memory_mib": round(int(memory["used_memory"]) / 2**20, 2),
        "redis_beyond_data_mib": round((int(memory["used_memory_rss"]) - int(memory["used_memory"])) / 2**20, 2),
        "stream_entries": sum(lengths),
        "stream_longest": max(lengths, default=0),
        "streams": len(lengths),
        "queues": depths,
        "queued": sum(depths.values()),
        "unacked": int(redis_client.hlen("unacked")),  # kombu's messages delivered to a worker, not yet acked
        "jobs_in_flight": Job.objects.filter(status__in=ACTIVE_STATUSES).count(),  # by index: no scan of its own
        "webhooks_pending": Delivery.objects.filter(state=DeliveryState.PENDING).count(),
    }


def interval_figures(seen: Seen, receiver: Receiver, since: float, until: float) -> dict[str, Any]:
    seconds = until - since
    with seen.lock:
        answered = [s for s in seen.submissions if since < s[0] + s[1] <= until]
        ended = [(at, seen.sent_at[job_id]) for job_id, (at, _) in seen.ended.items()
                 if since < at <= until and job_id in seen.sent_at]
    with receiver.lock:
        deliveries = sum(since < at <= until for at in receiver.arrivals)
    request_ms = [s[1] * 1000 for s in answered if s[2]]
    completion_ms = [(at - sent) * 1000 for at, sent in ended]

    def p(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 1) if values else None

    return {
        "submitted_per_s": round(len(answered) / seconds, 2),
        "completed_per_s": round(len(ended) / seconds, 2),
        "webhooks_per_s": round(deliveries / seconds, 2),
        "request_p50_ms": p(request_ms, 50), "request_p95_ms": p(request_ms, 95),
        "completion_p50_ms": p(completion_ms, 50), "completion_p95_ms": p(completion_ms, 95),
    }


# ----------------------------------------------------------------------------- growth


@dataclass(frozen=True)
class SeriesSpec:
    key: str  # its field in a sample ("rss_mib.api": a process group's)
    label: str
    unit: str
    limit: tuple[float, float] | None = None  # flagged past (fraction, and more than this much) of its start


STACK_SERIES = (
    SeriesSpec("uss_mib.postgres", "Postgres private memory (USS, shared_buffers left out)", "MiB", RSS_LIMIT),
    SeriesSpec("redis_beyond_data_mib", "Redis RSS beyond its data (used_memory_rss - used_memory)", "MiB",
               RSS_LIMIT),
    SeriesSpec("pg_connections", "PostgreSQL client connections", "connections"),
    SeriesSpec("redis_used_memory_mib", "Redis used_memory", "MiB"),
    SeriesSpec("stream_entries", "event stream entries (all users)", "entries"),
    SeriesSpec("stream_longest", "longest event stream", "entries"),
    SeriesSpec("streams", "event streams", "streams"),
    SeriesSpec("queued", "Celery messages queued (all queues)", "messages"),
    SeriesSpec("unacked", "Celery messages held unacknowledged", "messages"),
    SeriesSpec("jobs_in_flight", "jobs not yet terminal", "jobs"),
    SeriesSpec("webhooks_pending", "webhook deliveries pending", "deliveries"),
    SeriesSpec("submitted_per_s", "submissions answered", "per s"),
    SeriesSpec("completed_per_s", "terminal events received", "per s"),
    SeriesSpec("webhooks_per_s", "webhooks delivered", "per s"),
    SeriesSpec("pg_seq_rows_per_s", "rows PostgreSQL read by sequential scans", "per s", SEQ_ROWS_LIMIT),
    SeriesSpec("fsync_ms", "disk: write and fsync 8 KiB (median of 5)", "ms"),
    SeriesSpec("request_p50_ms", "submission latency p50", "ms"),
    SeriesSpec("request_p95_ms", "submission latency p95", "ms"),
    SeriesSpec("completion_p50_ms", "completion latency p50 (submission to terminal event)", "ms"),
    SeriesSpec("completion_p95_ms", "completion latency p95", "ms"),
)


def series_specs(samples: list[dict[str, Any]]) -> list[SeriesSpec]:
    groups = sorted({g for s in samples for g in s["processes"]})
    stack = [g for g in groups if g != LOAD_GROUP]  # the load generator keeps every answer: not judged
    judged_by = {spec.key: spec.label for spec in STACK_SERIES}
    return ([SeriesSpec(f"rss_mib.{g}", f"RSS {g}" + (f" (judged by: {judged_by[RSS_JUDGED_BY[g]]})"
                                                      if g in RSS_JUDGED_BY else ""),
                        "MiB", None if g in RSS_JUDGED_BY else RSS_LIMIT) for g in stack]
            + [SeriesSpec(f"fds.{g}", f"open fds {g}", "fds", FDS_LIMIT) for g in stack]
            + [SeriesSpec(f"cpu_pct.{g}", f"CPU {g}", "% of a core") for g in groups]
            + list(STACK_SERIES))


def value_of(sample: dict[str, Any], key: str) -> float | None:
    if "." in key:
        figure, group = key.split(".", 1)
        value = sample["processes"].get(group, {}).get(figure)
    else:
        value = sample.get(key)
    return None if value is None else float(value)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return None if var == 0 else sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 3600


def summarize(spec: SeriesSpec, samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    points = [(s["t_s"], v) for s in samples if (v := value_of(s, spec.key)) is not None]
    after = [(t, v) for t, v in points if t >= warmup_s]
    row: dict[str, Any] = {"key": spec.key, "label": spec.label, "unit": spec.unit, "samples": len(points)}
    if not after:
        return {**row, "flag": None}
    # The median of the first (last) few samples: one sample taken while a burst of connections
    # (each a Postgres backend with its own memory and descriptors) was open neither sets the
    # baseline nor trips the flag.
    start = statistics.median(v for _, v in after[:EDGE_SAMPLES])
    end = statistics.median(v for _, v in after[-EDGE_SAMPLES:])
    slope = slope_per_hour(after)
    row.update(after_warmup=start, end=end, min=min(v for _, v in points), max=max(v for _, v in points),
               per_hour=None if slope is None else round(slope, 2),
               pct_per_hour=None if slope is None or not start else round(slope / start * 100, 1), flag=None)
    if spec.limit is not None:
        fraction, slack = spec.limit
        if end > start * (1 + fraction) and end - start > slack:
            row["flag"] = f"ends {end:g} {spec.unit}, {(end / start - 1) * 100:.0f} % above {start:g} after warm-up"
    return row


def plot(spec: SeriesSpec, row: dict[str, Any], samples: list[dict[str, Any]], warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    # The stack's settings route every logger's INFO to stdout; matplotlib's font cache notes are noise.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    points = [(s["t_s"] / 60, v) for s in samples if (v := value_of(s, spec.key)) is not None]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    try:
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], marker="o", markersize=3, linewidth=1.2)
        ax.axvspan(0, warmup_s / 60, color="0.9", label="warm-up")
        if row.get("per_hour") is not None:
            after = [(t, v) for t, v in points if t * 60 >= warmup_s]
            n = len(after)
            mean_t, mean_v = sum(t for t, _ in after) / n, sum(v for _, v in after) / n
            slope = row["per_hour"] / 60  # per minute, the axis' unit
            ends = [after[0][0], after[-1][0]]
            ax.plot(ends, [mean_v + slope * (t - mean_t) for t in ends], linestyle="--", color="tab:red",
                    label=f"{row['per_hour']:+g} {spec.unit}/h")
        ax.set_title(spec.label + ("  [FLAGGED]" if row.get("flag") else ""), fontsize=10)
        ax.set_xlabel("minutes into the load")
        ax.set_ylabel(spec.unit)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- main


def register_webhooks(port: int, users: list[User], receiver: Receiver) -> None:
    for i, user in enumerate(users):
        path = f"/hook/{i}"
        status, data = request(port, "POST", "/api/v1/webhooks", user.token, {"url": receiver.url(path)})
        if status != 201:
            raise SystemExit(f"webhook registration answered {status}: {data}")
        receiver.secrets[path] = data["secret"]


def setup_django(env: dict[str, str], urls: dict[str, str]) -> None:
    """This process's Django on the stack's servers, with the stack's settings and secrets."""
    os.environ.update({**env, **urls})
    import django

    django.setup()


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import redis

    env = stack_env(tmp / "var")
    stack = Devstack(env, OUT_DIR / "devstack.log")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    load_start = load_average()
    try:
        began = time.monotonic()
        urls = stack.start()
        startup_s = round(time.monotonic() - began, 1)
        assert stack.proc is not None
        setup_django(env, urls)
        rng = random.Random(args.seed)  # noqa: S311 - a load generator
        jobs = max(1, round(args.rate * args.duration))
        users = make_users(args.users, jobs, rng)
        plan = plan_submissions(users, jobs, rng)
        register_webhooks(stack.port, users, receiver)
        redis_client = redis.Redis.from_url(urls["REDIS_URL"], socket_timeout=10)
        print(f"soak: devstack up in {startup_s} s (API on 127.0.0.1:{stack.port}); {args.duration:g} s of "
              f"{args.rate:g} jobs/s from {args.users} users, {args.sse} SSE + {args.ws} WebSocket clients coming "
              f"and going, sampled every {args.interval:g} s", flush=True)

        seen, stop = Seen(), threading.Event()
        clients = StreamClients(stack.port, users, seen, args)
        clients.start()
        from django.db import connection

        cpu, scans = CpuMeter(), SeqScans()
        scans.look(connection, 0)
        samples = [{"t_s": 0.0, "processes": process_figures(stack.proc.pid, cpu), **server_figures(redis_client)}]
        submitter = threading.Thread(target=submit_on_schedule, name="schedule",
                                     args=(stack.port, users, plan, args.rate, seen, stop, secrets.token_hex(4)))
        t0 = time.monotonic()
        submitter.start()
        previous = t0
        try:
            for k in range(1, int(args.duration // args.interval) + 1):
                time.sleep(max(0.0, t0 + k * args.interval - time.monotonic()))
                if stack.proc.poll() is not None:
                    raise SystemExit(f"the devstack exited with {stack.proc.returncode}:\n{stack.log_tail()}")
                now = time.monotonic()
                sample = {"t_s": round(now - t0, 1), "processes": process_figures(stack.proc.pid, cpu),
                          **server_figures(redis_client), **interval_figures(seen, receiver, previous, now),
                          **scans.look(connection, now - previous), "fsync_ms": fsync_ms(tmp / "var")}
                previous = now
                samples.append(sample)
                rss = sum(g["rss_mib"] for g in sample["processes"].values())
                busiest = sorted(sample["processes"].items(), key=lambda kv: -kv[1]["cpu_pct"])[:3]
                busy = " ".join(f"{g} {v['cpu_pct']:.0f}%" for g, v in busiest)
                print(f"  {sample['t_s'] / 60:5.1f} min: RSS {rss:.0f} MiB, pg {sample['pg_connections']}, "
                      f"CPU {busy}, pg seq rows "
                      f"{sample.get('pg_seq_rows_per_s')}/s ({sample.get('pg_seq_top')}), "
                      f"redis {sample['redis_used_memory_mib']} MiB, queued {sample['queued']}, in flight "
                      f"{sample['jobs_in_flight']}, submit p95 {sample['request_p95_ms']} ms, completion p95 "
                      f"{sample['completion_p95_ms']} ms", flush=True)
        finally:
            stop.set()
            submitter.join()
            clients.stop_churn()

        # The jobs submitted last end before the count is taken.
        def drained() -> bool:
            with seen.lock:
                return set(seen.sent_at) <= set(seen.ended)

        with contextlib.suppress(SystemExit):
            wait_until(drained, args.drain_timeout, "the last jobs' terminal events", every=1)
        clients.stop()
        totals = totals_of(seen, receiver, server_figures(redis_client))
    finally:
        receiver.shutdown()
        stack.stop()
    return {"samples": samples, "totals": totals, "startup_s": startup_s,
            "load_average": {"start": load_start, "end": load_average()}}


def totals_of(seen: Seen, receiver: Receiver, after: dict[str, Any]) -> dict[str, Any]:
    with seen.lock:
        never_seen_ending = len(set(seen.sent_at) - set(seen.ended))
        ended = Counter(kind for _, kind in seen.ended.values())
        totals: dict[str, Any] = {
            "submissions": len(seen.submissions), **seen.answers, "terminal_events": dict(ended),
            "terminal_event_not_received": never_seen_ending,
            "schedule_late_max_s": round(seen.late_s, 2), **seen.streams,
            "stream_errors": dict(seen.stream_errors.most_common(5)),
        }
    with receiver.lock:
        totals.update(webhooks_received=len(receiver.arrivals),
                      webhook_redeliveries=len(receiver.arrivals) - len(receiver.ids),
                      webhook_bad_signatures=receiver.bad_signatures)
    totals.update(jobs_in_flight_after_drain=after["jobs_in_flight"],
                  webhooks_pending_after_drain=after["webhooks_pending"])
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600, help="seconds of load (default: an hour)")
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help=f"seconds left out of the growth (default a fifth of the run, at most {WARMUP_MAX_S:g})")
    parser.add_argument("--rate", type=float, default=2.0, help="job submissions per second")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--sse", type=int, default=4, help="SSE clients coming and going")
    parser.add_argument("--ws", type=int, default=4, help="WebSocket clients coming and going")
    parser.add_argument("--drain-timeout", type=float, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.duration < 2 * args.interval:
        parser.error("--duration must be at least two --interval")
    warmup_s = min(WARMUP_MAX_S, args.duration / 5) if args.warmup is None else args.warmup

    # Stopped with SIGTERM, it still stops the stack it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    OUT_DIR.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="auteur-soak-"))
    try:
        measured = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    samples = measured.pop("samples")
    rows = []
    for spec in series_specs(samples):
        row = summarize(spec, samples, warmup_s)
        row["plot"] = f"{spec.key.replace('.', '_')}.png"
        plot(spec, row, samples, warmup_s, OUT_DIR / row["plot"])
        rows.append(row)
    report = {"duration_s": args.duration, "interval_s": args.interval, "warmup_s": warmup_s, "rate": args.rate,
              "users": args.users, "sse_clients": args.sse, "ws_clients": args.ws, "seed": args.seed,
              "worker_concurrency": os.environ.get("CELERY_WORKER_CONCURRENCY") or max(2, os.cpu_count() or 1),
              **measured, "flag_rule": FLAG_RULE, "series": rows, "flagged": [r["key"] for r in rows if r["flag"]]}
    (OUT_DIR / "samples.json").write_text(json.dumps(samples, indent=1))
    (RESULTS_DIR / "soak.json").write_text(json.dumps(report, indent=2))
    print("\n" + soak_table(report))
    print(f"\ntotals: {json.dumps(measured['totals'])}")
    flagged = report["flagged"]
    print(f"\n{'FLAGGED: ' + ', '.join(flagged) if flagged else 'no series flagged'} "
          f"({RESULTS_DIR / 'soak.json'}, plots in {OUT_DIR})")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
