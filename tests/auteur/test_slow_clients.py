"""Slow clients cannot take the API down: the front of `make run` (Caddy, then gunicorn) under attack.

The front is started as `make run` starts it (devstack.front: the repository's Caddyfile,
the API's gunicorn with 3 sync workers, the storage server), against this test run's Postgres
and Redis, with short proxy timeouts so that the cut-offs show within seconds.

The attack: connections that send a request's headers with a large Content-Length, then the body
a byte at a time. Straight at gunicorn, a handful of them hold every sync worker; through Caddy,
which reads each body whole before gunicorn sees the request, they hold nothing of the API's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from auteur.users.models import User
from auteur.users.services import user_issue_token
from devstack import REPO_ROOT
from devstack.front import ACCESS_LOG_NAME, front_processes
from devstack.ports import free_port, wait_for_port
from devstack.process_group import stop_group
from tests.servers import subprocess_database_url

# The marker makes pytest-django create the test database that the front runs on.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SYNC_WORKERS = 3
TRICKLERS = 20
# Short proxy limits for this front (the Caddyfile's defaults are 10 s for both).
HEADER_TIMEOUT_S = 2
BODY_IDLE_TIMEOUT_S = 6
MAX_BODY_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024
MAX_IMPORT_BYTES = 200_000  # above the body cap: a timeline import has a cap of its own
# What the issue asks of a normal request while the attack runs.
ANSWER_WITHIN_S = 1.0
START_TIMEOUT_S = 90


@dataclass
class Front:
    port: int  # Caddy: the API's public address
    api_port: int  # gunicorn's sync workers, behind Caddy
    logs: Path
    procs: list[subprocess.Popen[bytes]]
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[dict[str, Any]]:
        path = self.logs / "var" / "log" / ACCESS_LOG_NAME
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.out"))


@pytest.fixture(scope="module")
def front(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    logs = tmp_path_factory.mktemp("front")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "WEB_CONCURRENCY": str(SYNC_WORKERS),
        "AUTEUR_PROXY_HEADER_TIMEOUT": f"{HEADER_TIMEOUT_S}s",
        "AUTEUR_PROXY_BODY_IDLE_TIMEOUT": f"{BODY_IDLE_TIMEOUT_S}s",
        "AUTEUR_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "AUTEUR_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "AUTEUR_INTERCHANGE_MAX_BYTES": str(MAX_IMPORT_BYTES),
    }
    plan = front_processes(env, logs / "var", host="127.0.0.1", port=port)
    with django_db_blocker.unblock():
        user = User.objects.create_user(email=f"slow-{port}@example.com")
    procs = []
    try:
        for process in plan.processes:
            with (logs / f"{process.name}.out").open("wb") as out:
                procs.append(subprocess.Popen(
                    process.argv, env={**env, **process.env}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
        front = Front(port, plan.ports[0], logs, procs, user_issue_token(user=user))
        for listening in plan.ports:
            wait_for_port(listening, START_TIMEOUT_S)
        _wait_healthy(front.url)
        yield front
    finally:
        for proc in reversed(procs):
            stop_group(proc, 20)
        with django_db_blocker.unblock():
            User.objects.filter(pk=user.pk).delete()


def _wait_healthy(base_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base_url}/healthz never answered")


# ----------------------------------------------------------------------------- the attacker


class Trickler:
    """One connection: a request's headers with a large Content-Length, then the body byte by byte."""

    def __init__(
        self, port: int, method: str, path: str, *, length: int, token: str = "", content_type: str = "application/json"
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n"
        )
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self.sock.sendall(f"{head}\r\n".encode())
        self.sent = 0

    def send_byte(self) -> None:
        try:
            self.sock.sendall(b" ")
            self.sent += 1
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class Attack:
    tricklers: list[Trickler]
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, interval: float = 0.5) -> None:
        while not self.stop.wait(interval):
            for trickler in self.tricklers:
                trickler.send_byte()


@pytest.fixture
def attack() -> Iterator[Callable[[list[Trickler]], Attack]]:
    started: list[Attack] = []

    def start(tricklers: list[Trickler]) -> Attack:
        attack = Attack(tricklers)
        threading.Thread(target=attack.run, daemon=True).start()
        started.append(attack)
        return attack

    yield start
    for attack in started:
        attack.stop.set()
        for trickler in attack.tricklers:
            trickler.close()


def _timed_get(url: str, token: str = "") -> tuple[int | None, float]:
    """(status, seconds) of a GET, with status None when no answer came within ANSWER_WITHIN_S."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    try:
        status: int | None = requests.get(url, headers=headers, timeout=ANSWER_WITHIN_S).status_code
    except requests.Timeout:
        status = None
    return status, time.monotonic() - started


def _api_tricklers(port: int, token: str, count: int, length: int = MAX_BODY_BYTES - 1) -> list[Trickler]:
    # Authenticated, so that the view reads the body: a sync worker waits for every byte.
    return [Trickler(port, "POST", "/api/v1/projects", length=length, token=token) for _ in range(count)]


def _storage_tricklers(front: Front, count: int) -> list[Trickler]:
    """Uploads to signed URLs the API issued: the storage server reads each body as it comes."""
    auth = {"Authorization": f"Bearer {front.token}"}
    project = requests.post(f"{front.url}/api/v1/projects", json={"name": "slow"}, headers=auth, timeout=10)
    assert project.status_code == 201, project.text
    tricklers = []
    for i in range(count):
        ticket = requests.post(
            f"{front.url}/api/v1/projects/{project.json()['id']}/media/upload-url", headers=auth, timeout=10,
            json={"filename": f"slow{i}.wav", "content_type": "audio/wav", "size_bytes": MAX_UPLOAD_BYTES},
        )
        assert ticket.status_code == 201, ticket.text
        url = urlsplit(ticket.json()["upload_url"])
        trickler = Trickler(front.port, "PUT", f"{url.path}?{url.query}", length=MAX_UPLOAD_BYTES,
                            content_type="audio/wav")
        tricklers.append(trickler)
    return tricklers


def _logged_with_length(front: Front, length: int) -> list[dict[str, Any]]:
    return [e for e in front.access_log() if e["request"]["headers"].get("Content-Length") == [str(length)]]


# ----------------------------------------------------------------------------- the tests


def test_twenty_trickled_bodies_leave_the_api_answering_within_a_second(front, attack):
    storage = _storage_tricklers(front, 4)
    running = attack(_api_tricklers(front.port, front.token, TRICKLERS - len(storage)) + storage)
    time.sleep(2)  # every connection has sent its headers and a few bytes of its body

    health = _timed_get(f"{front.url}/healthz")
    projects = _timed_get(f"{front.url}/api/v1/projects", front.token)

    assert health[0] == 200 and health[1] < ANSWER_WITHIN_S, health
    assert projects[0] == 200 and projects[1] < ANSWER_WITHIN_S, projects
    # The attack was still under way while they answered: no trickler had been cut yet.
    assert all(t.sent >= 3 for t in running.tricklers)
    assert _logged_with_length(front, MAX_BODY_BYTES - 1) == []
    assert _logged_with_length(front, MAX_UPLOAD_BYTES) == []


def test_the_same_attack_straight_at_gunicorn_holds_every_worker(front, attack):
    """Without Caddy in front (what `make run` served before), the API stops answering."""
    running = attack(_api_tricklers(front.api_port, front.token, TRICKLERS))
    time.sleep(2)
    try:
        status, _ = _timed_get(f"http://127.0.0.1:{front.api_port}/healthz")
        assert status is None, "bare gunicorn answered while its sync workers were held"
    finally:
        # Hung-up tricklers free the workers: the next tests get a working front.
        running.stop.set()
        for trickler in running.tricklers:
            trickler.close()
        _wait_healthy(front.url)


def test_a_trickled_body_is_given_up_once_it_falls_behind_the_minimum_rate(front, attack):
    length = MAX_BODY_BYTES - 2
    attack(_api_tricklers(front.port, front.token, 1, length))
    deadline = time.monotonic() + BODY_IDLE_TIMEOUT_S + 10
    ended: list[dict[str, Any]] = []
    while not ended and time.monotonic() < deadline:
        ended = _logged_with_length(front, length)
        time.sleep(0.2)
    assert ended, "the proxy never gave up on a body sent a byte every half second"
    # Cut once the body fell behind the minimum rate, well before Caddy's default of 10 s.
    assert BODY_IDLE_TIMEOUT_S - 1 < ended[0]["duration"] < BODY_IDLE_TIMEOUT_S + 3, ended[0]
    assert ended[0]["status"] != 201


def test_headers_that_never_finish_are_cut_off(front):
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=HEADER_TIMEOUT_S + 10)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        closed_after = time.monotonic() - started
    finally:
        sock.close()
    assert closed_after < HEADER_TIMEOUT_S + 3, f"still open after {closed_after:.1f}s"
    assert b"200 OK" not in answer


def test_a_body_over_the_cap_is_refused_by_the_proxy(front):
    # (On /storage/* the API itself refuses first: a signed URL's size limit is below the cap.)
    response = requests.post(
        f"{front.url}/api/v1/projects", data=b"x" * (MAX_BODY_BYTES + 1), timeout=30,
        headers={"Authorization": f"Bearer {front.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["Server"] == "Caddy"  # gunicorn never saw it
    assert response.json() == {"error": {
        "code": "body_too_large",
        "message": "The request body is larger than this server accepts.",
        "details": {"max_bytes": MAX_BODY_BYTES},
    }}


def _raw_post(port: int, url: str, length: str, token: str) -> bytes:
    """A POST that declares `length` (as written) and sends no body: the proxy's answer."""
    path = urlsplit(url).path
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def _otio_of_size(size: int) -> bytes:
    """An OTIO file of an empty timeline, padded with white space to `size` bytes."""
    text = json.dumps({"OTIO_SCHEMA": "Timeline.1", "name": "t", "global_start_time": None, "metadata": {},
                       "tracks": {"OTIO_SCHEMA": "Stack.1", "name": "tracks", "children": [], "effects": [],
                                  "markers": [], "metadata": {}, "source_range": None, "enabled": True}})
    return text.encode() + b" " * (size - len(text))


def test_a_timeline_file_of_the_import_limit_passes_the_proxy_and_one_byte_more_is_file_too_large(front):
    """The import's limit is the file's, whatever the body cap: a file of exactly the limit is
    imported through Caddy (its multipart body is larger), one byte more is the documented 413
    `file_too_large`, from the API; a body declared far larger is answered so by Caddy before it is
    read, and one that declares no length is refused."""
    auth = {"Authorization": f"Bearer {front.token}"}
    project = requests.post(f"{front.url}/api/v1/projects", json={"name": "import limit"}, headers=auth, timeout=10)
    assert project.status_code == 201, project.text
    url = f"{front.url}/api/v1/projects/{project.json()['id']}/timeline/import"

    at_limit = requests.post(url, files={"file": ("cut.otio", _otio_of_size(MAX_IMPORT_BYTES))}, headers=auth,
                             timeout=30)
    assert at_limit.status_code == 200, at_limit.text
    over = requests.post(url, files={"file": ("cut.otio", _otio_of_size(MAX_IMPORT_BYTES + 1))}, headers=auth,
                         timeout=30)
    assert over.status_code == 413 and over.json()["error"]["code"] == "file_too_large", over.text
    assert over.json()["error"]["details"]["max_bytes"] == MAX_IMPORT_BYTES

    declared = requests.post(url, data=b"x" * (MAX_IMPORT_BYTES + 65_537), headers=auth, timeout=30)
    assert declared.status_code == 413 and declared.headers["Server"] == "Caddy"  # gunicorn never saw it
    assert declared.json()["error"] == {"code": "file_too_large", "message": "The file is over the limit for an "
                                        "import.", "details": {"max_bytes": MAX_IMPORT_BYTES}}
    chunked = requests.post(url, data=iter([b"x" * 10]), headers=auth, timeout=30)
    assert chunked.status_code == 411 and chunked.json()["error"]["code"] == "length_required"
    # A length padded with zeros (Go reads it, a pattern of at most 18 digits did not) is the same length.
    padded = _raw_post(front.port, url, "0" * 20 + str(MAX_IMPORT_BYTES + 70_000), front.token)
    assert padded.startswith(b"HTTP/1.1 413") and b"file_too_large" in padded, padded[:300]


def test_the_access_log_holds_no_query_string(front):
    secret = "sig-0123456789abcdef"
    requests.get(f"{front.url}/healthz?X-Signature={secret}", timeout=10)
    requests.get(f"{front.url}/storage/download/nothing?token={secret}", timeout=10)
    requests.put(f"{front.url}/storage/upload/nothing?token={secret}", data=b"x", timeout=10,
                 headers={"Content-Type": "audio/wav"})
    logged = front.access_log()
    uris = [entry["request"]["uri"] for entry in logged]
    assert {"/healthz", "/storage/download/nothing", "/storage/upload/nothing"} <= set(uris)
    log_text = (front.logs / "var" / "log" / ACCESS_LOG_NAME).read_text()
    assert secret not in log_text
    assert secret not in front.output()
