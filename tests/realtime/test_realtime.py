"""Job events pushed live: SSE and the WebSocket, read by real clients from a real uvicorn.

The jobs run through a real Celery worker (noop GPU backend, with a permanent fault injected for
compression so that one fails and is refunded); the test process's own commits append to the
users' Redis Streams just as the API's and the worker's do.

One uvicorn and one worker serve the module's tests: every test reads only its own users'
streams and jobs, and a test that needs no worker at all says so (`no_worker`).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection, transaction
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from auteur.users.key_services import api_key_create, api_key_revoke
from auteur.users.models import Membership, User
from auteur.users.services import user_issue_token
from auteur.users.workspace_services import member_remove, member_set_role
from credits.models import CapAlert
from credits.services.budgets import workspace_cap_set
from credits.services.ledger import credit_deduct_for_job, credit_grant
from devstack.ports import free_port
from devstack.servers import RedisServer
from jobs.events.account import cap_alerts_announce
from jobs.events.record import job_event_record
from jobs.events.schema import event_errors
from jobs.events.stream import event_payload, job_stream_append, stream_key
from jobs.models import Job, JobEvent, JobEventType, JobStatus
from jobs.prefer_header import prefer_wait
from projects.comments import comment_create, comment_delete, comment_update
from projects.models import Project
from tests.factories import team_workspace
from tests.jobs.conftest import Worker, subprocess_env, wait_terminal
from tests.jobs.support import submit, valid_body
from tests.servers import AsgiServer, asgi_server, running_front

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.slow,
    # websockets' sync client warns when not used as a context manager; these tests close it themselves.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]

ORIGIN = "https://app.auteur.test"
WORKER_ENV = {"DJANGO_SETTINGS_MODULE": "bench.settings", "AUTEUR_GPU_BACKEND": "noop",
              "AUTEUR_FAULT_INJECTION": "compression:permanent=1.0"}
SUCCEEDED = ["submitted", "started", "inference_started", "completed"]
FAILED = ["submitted", "started", "inference_started", "failed"]


@pytest.fixture(scope="module")
def asgi(django_db_setup: None) -> Iterator[AsgiServer]:
    # A 2 s wait for a socket's first message: ample for a client that sends it at once.
    with asgi_server(CORS_ALLOWED_ORIGINS=ORIGIN, AUTEUR_STREAM_HEARTBEAT_SECONDS="1",
                     AUTEUR_WS_AUTH_TIMEOUT_SECONDS="2") as server:
        yield server


class SharedWorker:
    """The module's worker, started when a test first needs it and stopped for one that must
    run without any."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def get(self) -> Worker:
        if self.worker is None:
            # No GPU announcements' consumer: the noop backend holds no call here (no AUTEUR_NOOP_HOLD_SECONDS),
            # so each call has ended when its step first looks at it, and no job waits for an announcement.
            self.worker = Worker(subprocess_env(**WORKER_ENV), consumer=False)
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


@pytest.fixture(scope="module")
def shared_worker(django_db_setup: None) -> Iterator[SharedWorker]:
    shared = SharedWorker()
    yield shared
    shared.stop()


@pytest.fixture
def worker(shared_worker: SharedWorker, gpu_backend: Any) -> Worker:
    gpu_backend("noop")
    return shared_worker.get()


@pytest.fixture
def no_worker(shared_worker: SharedWorker) -> None:
    shared_worker.stop()


# ----------------------------------------------------------------------------- clients


class Sse:
    """A plain HTTP client reading text/event-stream one event at a time."""

    def __init__(self, server: AsgiServer, path: str, token: str | None, last_event_id: str | None = None,
                 workspace: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if workspace is not None:
            headers["Auteur-Workspace"] = workspace
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.comments: list[str] = []

    def next(self) -> dict[str, str] | None:
        """The next event's fields (comments are kept aside); None once the stream ended."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode()
            if not line:
                return None
            line = line.rstrip("\n")
            if not line:
                if fields and set(fields) != {"retry"}:
                    return fields
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def events(self) -> list[dict[str, Any]]:
        """Every event until the stream ends, `data` decoded (and checked against the event schema)."""
        out = []
        while (fields := self.next()) is not None:
            if "data" in fields:
                out.append(sse_checked(fields))
        return out

    def until(self, count: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < count:
            fields = self.next()
            assert fields is not None, f"the stream ended after {out}"
            if "data" in fields:
                out.append(sse_checked(fields))
        return out

    def close(self) -> None:
        self.conn.close()


def ws_connect(server: AsgiServer, **kwargs: Any) -> ClientConnection:
    return connect(f"{server.ws}/ws/v1/events", open_timeout=30, **kwargs)


def ws_auth(server: AsgiServer, token: str) -> ClientConnection:
    ws = ws_connect(server)
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    return ws


def sse_checked(fields: dict[str, str]) -> dict[str, Any]:
    """An SSE event's fields with `data` decoded, its data checked against the published event
    schema: a `gap` is a StreamGap, an `error` an Error, anything else a JobEvent of that type."""
    from jobs.events.schema import event_errors

    data = json.loads(fields["data"])
    kind = fields.get("event")
    definition = {"gap": "StreamGap", "error": "Error"}.get(kind or "", "JobEvent")
    if (kind or "").startswith("comment."):
        definition = "CommentEvent"
    if (kind or "").startswith("batch."):
        definition = "BatchEvent"
    assert not event_errors(data, definition), (kind, data, event_errors(data, definition))
    if definition in ("JobEvent", "CommentEvent", "BatchEvent"):
        assert data["type"] == kind and data["id"] == fields.get("id"), fields
    return {**fields, "data": data}


def ws_events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    from jobs.events.schema import event_errors

    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = json.loads(ws.recv(timeout=60))
        assert not event_errors(message, "WsServerMessage"), (message, event_errors(message, "WsServerMessage"))
        if message["type"] == "job.event":
            out.append(message)
    return out


def ws_close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def token_for(user: Any, **claims: Any) -> str:
    return user_issue_token(user=user) if not claims else _token(user, **claims)


def _token(user: Any, **claims: Any) -> str:
    import jwt

    now = datetime.now(UTC)
    body = {"sub": str(user.pk), "email": user.email, "aud": "authenticated", "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=1)).timestamp()), "iss": settings.AUTEUR_JWT_ISSUER or None}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, settings.AUTEUR_JWT_SECRET, algorithm="HS256")


def make_job(user: Any) -> Job:
    return Job.objects.create(user=user, type="tts", credits_cost=1, status=JobStatus.PROCESSING)


def recorded(job_id: str) -> list[str]:
    """The job's events as GET /jobs/{id}/events lists them (the record the streams must match)."""
    return list(JobEvent.objects.filter(job_id=job_id).values_list("type", flat=True))


def until_terminal(read: Any, job_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Events (the SSE `data` / the WebSocket `event`) by job, read one at a time until every job ended."""
    by_job: dict[str, list[dict[str, Any]]] = {}
    ended: set[str] = set()
    while ended != job_ids:
        event = read()
        by_job.setdefault(event["job_id"], []).append(event)
        if event["type"] in ("completed", "failed", "canceled"):
            ended.add(event["job_id"])
    return by_job


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["type"] if "data" in e else e["event"]["type"] for e in events]


# ----------------------------------------------------------------------------- before the worker starts


def post_waiting(server: AsgiServer, token: str, job_type: str, body: dict[str, Any], prefer: str) -> Any:
    return requests.post(f"{server.http}/api/v1/jobs/{job_type}", json=body, timeout=120,
                         headers={"Authorization": f"Bearer {token}", "Prefer": prefer})


# The one test that needs no worker runs first, before the module's worker is started: placed after
# one, it would stop it, and the next test that asks for a worker would start another.
def test_prefer_wait_answers_202_when_the_job_is_not_done_in_time(asgi, no_worker, funded, project, media):
    # No worker: the job stays pending.
    slow = post_waiting(asgi, token_for(funded), "tts", valid_body("tts", project, media), "wait=1")
    assert slow.status_code == 202
    assert slow.headers["Preference-Applied"] == "wait=1"
    assert slow.headers["Location"] == f"/api/v1/jobs/{slow.json()['job_id']}/stream"
    assert Job.objects.get(pk=slow.json()["job_id"]).status == JobStatus.PENDING


# ----------------------------------------------------------------------------- SSE


def test_sse_follows_a_job_from_submission_to_completion_and_ends(asgi, worker, auth_client, funded, project, media):
    accepted = submit(auth_client, "tts", valid_body("tts", project, media)).json()
    stream = Sse(asgi, f"/api/v1/jobs/{accepted['job_id']}/stream", token_for(funded))
    assert stream.response.status == 200
    assert (stream.response.getheader("Content-Type") or "").startswith("text/event-stream")
    events = stream.events()  # the stream ends by itself after the terminal event
    assert types(events) == SUCCEEDED == recorded(accepted["job_id"])
    assert [e["event"] for e in events] == SUCCEEDED
    assert all(e["id"] == e["data"]["id"] and e["data"]["job_id"] == accepted["job_id"] for e in events)
    assert events[-1]["data"]["status"] == "completed" and events[-1]["data"]["progress"] == 100
    assert events[0]["data"]["data"] == {"credits_cost": accepted["credits_cost"]}
    records = list(JobEvent.objects.filter(job_id=accepted["job_id"]).values_list("id", "type"))
    assert [(e["data"]["record_id"], e["data"]["type"]) for e in events] == records


def test_sse_shows_a_failed_job_refunded(asgi, worker, auth_client, funded, project, media):
    accepted = submit(auth_client, "compression", valid_body("compression", project, media)).json()
    events = Sse(asgi, f"/api/v1/jobs/{accepted['job_id']}/stream", token_for(funded)).events()
    assert types(events) == FAILED == recorded(accepted["job_id"])
    last = events[-1]["data"]
    assert last["status"] == "failed" and last["data"]["code"] == "gpu_oom" and last["data"]["retryable"] is False
    assert wait_terminal(accepted["job_id"]).credits_refunded


def test_sse_resumes_after_last_event_id_and_a_finished_job_replays_and_ends(asgi, worker, auth_client, funded,
                                                                            project, media):
    token = token_for(funded)
    everything = Sse(asgi, "/api/v1/events/stream", token)
    assert everything.response.status == 200
    first = submit(auth_client, "tts", valid_body("tts", project, media)).json()
    seen = [e["data"] for e in everything.until(2)]  # then the client goes away
    everything.close()
    second = submit(auth_client, "compression", valid_body("compression", project, media)).json()
    wait_terminal(first["job_id"]), wait_terminal(second["job_id"])
    resumed = Sse(asgi, "/api/v1/events/stream", token, last_event_id=seen[-1]["id"])
    rest = until_terminal(lambda: resumed.until(1)[0]["data"], {first["job_id"], second["job_id"]})
    resumed.close()
    assert [e["type"] for e in seen + rest[first["job_id"]]] == recorded(first["job_id"])
    assert [e["type"] for e in rest[second["job_id"]]] == recorded(second["job_id"])
    assert recorded(second["job_id"])[-1] == "failed"
    ids = [e["id"] for e in seen + rest[first["job_id"]] + rest[second["job_id"]]]
    assert len(set(ids)) == len(ids)
    # A finished job's stream replays it and ends, from the start or after an id.
    assert types(Sse(asgi, f"/api/v1/jobs/{first['job_id']}/stream", token).events()) == recorded(first["job_id"])
    after_two = Sse(asgi, f"/api/v1/jobs/{first['job_id']}/stream", token, last_event_id=seen[1]["id"]).events()
    assert types(after_two) == recorded(first["job_id"])[2:]


def test_a_resume_from_before_the_window_is_told_of_the_gap(asgi, funded):
    job = make_job(funded)
    for n in (1, 2):
        with transaction.atomic():
            job_event_record(job.pk, JobEventType.PROGRESS, progress=n)
    entries: Any = redis.Redis.from_url(settings.REDIS_URL).xrange(stream_key(funded.pk), count=1)
    oldest = entries[0][0].decode()
    token = token_for(funded)
    old = Sse(asgi, "/api/v1/events/stream", token, last_event_id="1-0")  # trimmed long ago
    assert old.next() == {"event": "gap", "data": json.dumps({"after": "1-0", "message": GAP_MESSAGE})}
    assert [e["data"]["data"] for e in old.until(2)] == [{"progress": 1}, {"progress": 2}]
    fresh = Sse(asgi, "/api/v1/events/stream", token, last_event_id=oldest)
    [event] = fresh.until(1)
    assert event["event"] == "progress" and event["data"]["data"] == {"progress": 2}
    ws = ws_auth(asgi, token)
    ws.send(json.dumps({"type": "resume", "after": "1-0"}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "gap", "after": "1-0"}
    assert [m["event"]["data"] for m in ws_events(ws, 2)] == [{"progress": 1}, {"progress": 2}]
    ws.send(json.dumps({"type": "resume", "after": oldest}))  # nothing new: no gap, nothing resent
    ws.send(json.dumps({"type": "ping"}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "pong"}
    ws.close()


GAP_MESSAGE = ("Some events after this id (null: from the start) are no longer in the stream; "
               "GET /api/v1/jobs/{id}/events has them all.")


def test_a_jobs_replay_that_lost_its_start_to_the_window_says_so(asgi, funded, make_user):
    """Other events (other jobs', comments') can push a job's first ones out of the stream's window: its
    replay from the start then begins with a gap, and so does a finished job's that has none left."""
    job = make_job(funded)
    for kind, data in ((JobEventType.SUBMITTED, {"credits_cost": 1}), (JobEventType.PROGRESS, {"progress": 5}),
                       (JobEventType.COMPLETED, {"output_media_ids": [],
                                                 "charge": {"charged": 1, "refunded": 0, "net": 1}})):
        with transaction.atomic():
            job_event_record(job.pk, kind, **data)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)
    token = token_for(funded)
    assert types(Sse(asgi, f"/api/v1/jobs/{job.pk}/stream", token).events()) == ["submitted", "progress", "completed"]
    client: Any = redis.Redis.from_url(settings.REDIS_URL)
    key = stream_key(funded.pk)
    client.xdel(key, client.xrange(key, count=1)[0][0])  # the submitted event, trimmed

    replay = Sse(asgi, f"/api/v1/jobs/{job.pk}/stream", token)
    assert replay.next() == {"event": "gap", "data": json.dumps({"after": None, "message": GAP_MESSAGE})}
    assert types(replay.events()) == ["progress", "completed"]
    # A finished job none of whose events is left (here: its owner's stream has none at all; an
    # emptied stream would be one the retention sweep's own tests count).
    other = make_user()
    gone = Job.objects.create(user=other, type="tts", credits_cost=1, status=JobStatus.COMPLETED)
    nothing_left = Sse(asgi, f"/api/v1/jobs/{gone.pk}/stream", token_for(other)).events()
    assert [e["event"] for e in nothing_left] == ["gap"]


def test_a_malformed_entry_is_skipped_and_the_streams_go_on(asgi, funded):
    job = make_job(funded)
    token = token_for(funded)
    everything = Sse(asgi, "/api/v1/events/stream", token)
    one_job = ws_auth(asgi, token)
    one_job.send(json.dumps({"type": "subscribe", "job_id": str(job.pk)}))
    assert json.loads(one_job.recv(timeout=30))["type"] == "subscribed"
    client: Any = redis.Redis.from_url(settings.REDIS_URL)
    for bad in ("[1]", "not json", json.dumps({"type": "progress"}), json.dumps({"no": "type"})):
        client.xadd(stream_key(funded.pk), {"e": bad})
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=7)
    assert everything.until(1)[0]["data"]["data"] == {"progress": 7}
    assert ws_events(one_job, 1)[0]["event"]["data"] == {"progress": 7}
    one_job.close()


def test_sse_sends_heartbeats_while_nothing_happens(asgi, funded):
    stream = Sse(asgi, "/api/v1/events/stream", token_for(funded))
    line = ""
    while not line.startswith(":"):
        line = stream.response.readline().decode()
    assert line == ": heartbeat\n"


@pytest.mark.parametrize("header, code", [(None, "not_authenticated"), ("Bearer nope", "invalid_token"),
                                          ("Basic abc", "invalid_token")])
def test_sse_refuses_a_missing_or_bad_token_as_the_api_does(asgi, funded, header, code):
    conn = http.client.HTTPConnection("127.0.0.1", asgi.port, timeout=30)
    conn.request("GET", "/api/v1/events/stream", headers={"Authorization": header} if header else {})
    response = conn.getresponse()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="api"'
    assert json.loads(response.read())["error"]["code"] == code


def test_sse_of_an_unknown_or_another_users_job_is_404(asgi, funded, make_user):
    other_job = make_job(make_user())
    for job_id in (other_job.pk, uuid.uuid4(), "not-a-uuid"):
        stream = Sse(asgi, f"/api/v1/jobs/{job_id}/stream", token_for(funded))
        assert stream.response.status == 404
        assert json.loads(stream.response.read())["error"]["code"] == "job_not_found"


def test_sse_refuses_a_malformed_last_event_id(asgi, funded):
    stream = Sse(asgi, "/api/v1/events/stream", token_for(funded), last_event_id="1-2-3")
    assert stream.response.status == 400
    assert json.loads(stream.response.read())["error"]["code"] == "invalid_event_id"


def test_sse_ends_when_the_token_expires(asgi, funded):
    stream = Sse(asgi, "/api/v1/events/stream", _token(funded, exp=int(time.time()) + 2))
    assert stream.response.status == 200
    [error] = stream.events()
    assert error["event"] == "error" and error["data"]["error"]["code"] == "invalid_token"


def test_sse_is_not_served_by_the_sync_api(auth_client):
    response = auth_client.get("/api/v1/events/stream")
    assert response.status_code == 503 and response.json()["error"]["code"] == "stream_unavailable"


# ----------------------------------------------------------------------------- WebSocket


def test_websocket_follows_jobs_from_submission_to_their_end(asgi, worker, auth_client, funded, project, media):
    ws = ws_auth(asgi, token_for(funded))
    ok = submit(auth_client, "tts", valid_body("tts", project, media)).json()
    bad = submit(auth_client, "compression", valid_body("compression", project, media)).json()

    def read() -> dict[str, Any]:
        [message] = ws_events(ws, 1)
        assert message["job_id"] == message["event"]["job_id"]
        return message["event"]

    by_job = until_terminal(read, {ok["job_id"], bad["job_id"]})
    ws.close()
    assert [e["type"] for e in by_job[ok["job_id"]]] == recorded(ok["job_id"])
    assert [e["type"] for e in by_job[bad["job_id"]]] == recorded(bad["job_id"])
    assert by_job[ok["job_id"]][-1]["status"] == JobStatus.COMPLETED
    assert by_job[bad["job_id"]][-1]["status"] == JobStatus.FAILED
    assert by_job[bad["job_id"]][-1]["data"]["code"] == "gpu_oom"
    assert wait_terminal(bad["job_id"]).credits_refunded


def test_websocket_subprotocol_auth_subscribe_and_resume(asgi, worker, auth_client, funded, project, media):
    token = token_for(funded)
    ws = ws_connect(asgi, subprotocols=["bearer", token])
    assert ws.subprotocol == "bearer"
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    ok = submit(auth_client, "tts", valid_body("tts", project, media)).json()
    ws.send(json.dumps({"type": "subscribe", "job_id": ok["job_id"]}))
    first = ws_events(ws, 1)
    ws.close()  # gone after one event
    other = submit(auth_client, "compression", valid_body("compression", project, media)).json()
    wait_terminal(ok["job_id"]), wait_terminal(other["job_id"])
    again = ws_auth(asgi, token)
    again.send(json.dumps({"type": "subscribe", "job_id": ok["job_id"]}))
    assert json.loads(again.recv(timeout=30)) == {"type": "subscribed", "job_id": ok["job_id"]}
    again.send(json.dumps({"type": "resume", "after": first[0]["event"]["id"]}))
    rest = ws_events(again, len(recorded(ok["job_id"])) - 1)
    assert [m["event"]["type"] for m in first + rest] == recorded(ok["job_id"])  # the other job filtered out
    again.send(json.dumps({"type": "ping"}))
    assert json.loads(again.recv(timeout=30))["type"] in ("pong", "ping")
    again.close()


@pytest.mark.parametrize("message", [
    "not json", json.dumps([1]), json.dumps({"type": "dance"}), json.dumps({"type": "resume", "after": "x"}),
    json.dumps({"type": "subscribe"}), json.dumps({"type": "auth", "token": "again"}),
    "[" * 8000,  # nested deeper than the JSON reader's recursion: a refusal, not a crashed consumer
])
def test_websocket_closes_4400_on_a_bad_message(asgi, funded, message):
    ws = ws_auth(asgi, token_for(funded))
    ws.send(message)
    assert ws_close_code(ws) == 4400


def test_websocket_bad_tokens_and_unknown_jobs(asgi, funded, make_user):
    ws = ws_connect(asgi)
    ws.send(json.dumps({"type": "auth", "token": "nope"}))
    assert ws_close_code(ws) == 4401
    assert ws_close_code(ws_connect(asgi, subprotocols=["bearer", "nope"])) == 4401
    expired = _token(funded, exp=int(time.time()) - 3600)
    assert ws_close_code(ws_connect(asgi, subprotocols=["bearer", expired])) == 4401
    before_auth = ws_connect(asgi)
    before_auth.send(json.dumps({"type": "subscribe", "job_id": str(uuid.uuid4())}))
    assert ws_close_code(before_auth) == 4401
    for job_id in (str(make_job(make_user()).pk), str(uuid.uuid4()), "x"):
        ws = ws_auth(asgi, token_for(funded))
        ws.send(json.dumps({"type": "subscribe", "job_id": job_id}))
        assert ws_close_code(ws) == 4404


def test_websocket_closes_4401_when_the_token_expires(asgi, funded):
    ws = ws_auth(asgi, _token(funded, exp=int(time.time()) + 2))
    assert ws_close_code(ws) == 4401


def test_websocket_closes_4408_without_auth(asgi):
    assert ws_close_code(ws_connect(asgi)) == 4408


def test_websocket_refuses_a_foreign_origin(asgi, funded):
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(asgi, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    ws = ws_connect(asgi, origin=ORIGIN)
    ws.send(json.dumps({"type": "auth", "token": token_for(funded)}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    ws.close()


def test_one_redis_reader_serves_every_connection_of_a_process(asgi, make_user):
    users = [make_user() for _ in range(12)]
    sockets = [ws_auth(asgi, token_for(user)) for user in users]
    streams = [Sse(asgi, "/api/v1/events/stream", token_for(user)) for user in users[:6]]
    client = redis.Redis.from_url(settings.REDIS_URL)
    hub = [c for c in client.client_list() if c["name"] == "auteur-stream-hub"]
    assert [c["cmd"] for c in hub].count("xread") == 1
    assert len(hub) < 6  # the reader and a few for subscribing: not one per client (18 here)
    for n, user in enumerate(users):  # and it does reach everyone
        with transaction.atomic():
            job_event_record(make_job(user).pk, JobEventType.PROGRESS, progress=n)
    assert [ws_events(ws, 1)[0]["event"]["data"]["progress"] for ws in sockets] == list(range(12))
    assert [sse.until(1)[0]["data"]["data"]["progress"] for sse in streams] == list(range(6))
    for ws in sockets:
        ws.close()


def _database_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_open_streams_and_sockets_hold_no_database_connection(asgi, make_user):
    users = [make_user() for _ in range(8)]
    before = _database_backends()
    streams = [Sse(asgi, "/api/v1/events/stream", token_for(user)) for user in users]
    sockets = [ws_auth(asgi, token_for(user)) for user in users]
    for ws, user in zip(sockets, users, strict=True):  # a subscription reads the job too
        job_id = str(make_job(user).pk)
        ws.send(json.dumps({"type": "subscribe", "job_id": job_id}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "job_id": job_id}
    assert [stream.response.status for stream in streams] == [200] * 8
    # Every read is done; a backend whose connection was closed may take a moment to exit.
    deadline = time.monotonic() + 30
    while (held := _database_backends() - before) > 1:
        assert time.monotonic() < deadline, f"{held} database connections held by 16 open streams and sockets"
        time.sleep(0.1)
    for ws in sockets:
        ws.close()
    for stream in streams:
        stream.close()


# ----------------------------------------------------------------------------- faults


def _flood(user: Any, count: int) -> None:
    """`count` large events on the user's stream, as fast as Redis takes them."""
    job = make_job(user)
    # A step's retry with a 4 KB step name: large, and still an event of the published shape.
    event = JobEvent.objects.create(job=job, type=JobEventType.STEP_RETRY, data={"step": "x" * 4000, "code": "network"})
    body = json.dumps(event_payload(event, status="processing", progress=50))
    client = redis.Redis.from_url(settings.REDIS_URL)
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        pipe.xadd(stream_key(user.pk), {"e": body})
    pipe.execute()


def test_a_slow_client_is_disconnected_not_buffered(django_db_setup, funded):
    with asgi_server(AUTEUR_STREAM_CLIENT_BUFFER="8") as server:
        ws = ws_connect(server, max_queue=1)
        ws.send(json.dumps({"type": "auth", "token": token_for(funded)}))
        sse = socket.create_connection(("127.0.0.1", server.port))
        sse.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sse.sendall(f"GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token_for(funded)}"
                    "\r\n\r\n".encode())
        time.sleep(1)  # both subscribed before the flood (the WebSocket's ready is still unread)
        _flood(funded, 5000)  # 20 MB that neither client reads
        assert ws_close_code(ws) == 1013
        received = 0
        sse.settimeout(60)
        while chunk := sse.recv(65536):
            received += len(chunk)
        assert received < 5000 * 4000  # cut off, not buffered to the end


@pytest.fixture
def durable_redis(tmp_path: Any) -> Iterator[RedisServer]:
    server = RedisServer("redis", tmp_path / "redis", free_port(), tmp_path / "redis.log", persistent=True)
    server.start()
    yield server
    server.stop()


def test_clients_miss_nothing_when_redis_restarts(django_db_setup, funded, durable_redis, settings):
    settings.REDIS_URL = durable_redis.url()  # where this process appends
    job = make_job(funded)

    def record(n: int) -> None:
        with transaction.atomic():
            job_event_record(job.pk, JobEventType.PROGRESS, progress=n)

    with asgi_server(REDIS_URL=durable_redis.url()) as server:
        token = token_for(funded)
        ws = ws_auth(server, token)
        sse = Sse(server, "/api/v1/events/stream", token)
        record(10)
        assert [m["event"]["data"] for m in ws_events(ws, 1)] == [{"progress": 10}]
        assert [e["data"]["data"] for e in sse.until(1)] == [{"progress": 10}]
        durable_redis.stop()
        record(20)  # Redis is down: logged and held, the step goes on
        assert JobEvent.objects.filter(job=job, data={"progress": 20}).exists()
        durable_redis.start()
        for n in (30, 40, 50):
            record(n)  # behind the held one
        # Once Redis is back the held event is appended, then the ones after it, in order.
        assert [m["event"]["data"]["progress"] for m in ws_events(ws, 4)] == [20, 30, 40, 50]
        assert [e["data"]["data"]["progress"] for e in sse.until(4)] == [20, 30, 40, 50]
        ws.close()
        sse.close()


def test_without_redis_streams_refuse_to_open_and_say_so(django_db_setup, funded):
    with asgi_server(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as server:
        stream = Sse(server, "/api/v1/events/stream", token_for(funded))
        assert stream.response.status == 503 and stream.response.getheader("Retry-After") == "2"
        assert json.loads(stream.response.read())["error"]["code"] == "service_unavailable"
        ws = ws_connect(server)
        ws.send(json.dumps({"type": "auth", "token": token_for(funded)}))
        assert ws_close_code(ws) == 1011


def test_a_redis_outage_never_fails_the_step(funded, settings):
    job = make_job(funded)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=10)
    assert JobEvent.objects.filter(job=job, type="progress").count() == 1
    event = JobEvent.objects.get(job=job, type="progress")
    assert job_stream_append(event) is None


# ----------------------------------------------------------------------------- Prefer: wait


@pytest.mark.parametrize("header, expected", [
    ("wait=5", (5, False)), ("respond-async, wait=10", (10, False)), ("WAIT = 7", (7, False)),
    ('wait="8"', (8, False)), ("wait=100", (60, True)), ("wait=10; foo=bar", (10, False)),
    ("wait=abc", None), ("wait=-1", None), ("wait=", None), ("wait", None), ("", None), (None, None),
    ("handling=lenient", None), ("wait=1e3", None),
])
def test_prefer_wait_is_parsed_as_rfc_7240_says(header, expected):
    assert prefer_wait(header) == expected


def test_prefer_wait_answers_201_with_the_finished_job(asgi, worker, funded, project, media):
    token = token_for(funded)
    done = post_waiting(asgi, token, "tts", valid_body("tts", project, media), "wait=30")
    assert done.status_code == 201, done.text
    assert done.headers["Preference-Applied"] == "wait=30"
    job = done.json()
    assert job["status"] == "completed" and job["progress"] == 100 and job["type"] == "tts"
    assert done.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    failed = post_waiting(asgi, token, "compression", valid_body("compression", project, media), "wait=100")
    assert failed.status_code == 201
    assert failed.headers["Preference-Applied"] == "wait=60"  # lowered to the maximum, and said so
    assert failed.json()["status"] == "failed" and failed.json()["credits_refunded"] is True


def test_prefer_wait_leaves_refusals_and_malformed_preferences_alone(asgi, funded, project, media):
    token = token_for(funded)
    refused = post_waiting(asgi, token, "tts", {"project_id": str(project.pk)}, "wait=5")
    assert refused.status_code == 400 and "Preference-Applied" not in refused.headers
    assert not Job.objects.filter(user=funded).exists()
    ignored = post_waiting(asgi, token, "tts", valid_body("tts", project, media), "wait=soon")
    assert ignored.status_code == 202 and "Preference-Applied" not in ignored.headers
    assert "Location" not in ignored.headers


def test_prefer_wait_on_the_sync_api_answers_at_once_with_the_stream(auth_client, funded, project, media):
    accepted = submit(auth_client, "tts", valid_body("tts", project, media), HTTP_PREFER="wait=30")
    assert accepted.status_code == 202 and "Preference-Applied" not in accepted
    assert accepted["Location"] == f"/api/v1/jobs/{accepted.json()['job_id']}/stream"


def test_through_caddy_waiting_submissions_go_to_uvicorn_and_others_to_gunicorn(worker, funded, project, media,
                                                                                tmp_path):
    headers = {"Authorization": f"Bearer {token_for(funded)}"}
    with running_front(tmp_path) as base:
        done = requests.post(f"{base}/api/v1/jobs/tts", json=valid_body("tts", project, media), timeout=120,
                             headers={**headers, "Prefer": "respond-async, wait=30"})
        assert done.status_code == 201, done.text
        assert done.headers["Preference-Applied"] == "wait=30" and done.json()["status"] == "completed"
        assert done.headers["Via"] == "1.1 Caddy" and "gunicorn" not in done.headers.get("Server", "")
        plain = requests.post(f"{base}/api/v1/jobs/tts", json=valid_body("tts", project, media), timeout=60,
                              headers=headers)
        assert plain.status_code == 202 and plain.headers["Server"] == "gunicorn"
        with requests.get(f"{base}/api/v1/jobs/{plain.json()['job_id']}/stream", headers=headers, stream=True,
                          timeout=120) as stream:
            assert stream.status_code == 200
            lines = [line for line in stream.iter_lines() if line.startswith(b"event: ")]
        assert lines[-1] == b"event: completed"


# ----------------------------------------------------------------------------- team workspaces


def test_a_members_streams_of_a_team_workspace_close_within_a_second_of_their_removal(asgi, make_user):
    owner, editor, viewer = make_user(), make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=editor, role="editor")
    Membership.objects.create(workspace=team, user=viewer, role="viewer")
    editors = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=editor), workspace=str(team.pk))
    viewers = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=viewer), workspace=str(team.pk))
    assert editors.response.status == viewers.response.status == 200
    # A job event of the team reaches both: they read the workspace's stream.
    job = make_job(User.objects.get(pk=team.pk))
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)
    assert [s.next() for s in (editors, viewers)] == [{"id": ANY, "event": "progress", "data": ANY}] * 2

    removed_at = time.monotonic()
    member_remove(membership=Membership.objects.get(workspace=team, user=owner), user_id=editor.pk)
    ended = editors.next()
    closed_after = time.monotonic() - removed_at

    assert ended is not None and ended["event"] == "error"
    assert json.loads(ended["data"])["error"]["code"] == "workspace_not_found"
    assert editors.next() is None
    assert closed_after < 1.0, closed_after
    # Another member's stream of the workspace goes on.
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=2)
    assert viewers.next() == {"id": ANY, "event": "progress", "data": ANY}
    # And the removed member cannot open one again.
    again = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=editor), workspace=str(team.pk))
    assert again.response.status == 404


def test_an_api_keys_streams_close_within_a_second_of_its_revocation(asgi, make_user):
    owner = make_user()
    team = team_workspace(owner)
    seat = Membership.objects.get(workspace=team, user=owner)
    key, text = api_key_create(membership=seat, name="watcher", scopes=["jobs:read"])
    _, blind = api_key_create(membership=seat, name="blind", scopes=["media:read"])
    reading = Sse(asgi, "/api/v1/events/stream", text)
    assert reading.response.status == 200
    job = make_job(User.objects.get(pk=team.pk))
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)
    assert reading.next() == {"id": ANY, "event": "progress", "data": ANY}
    # A key without jobs:read reads no stream.
    assert Sse(asgi, "/api/v1/events/stream", blind).response.status == 403

    revoked_at = time.monotonic()
    api_key_revoke(membership=seat, key_id=key.pk)
    ended = reading.next()
    assert time.monotonic() - revoked_at < 1.0
    assert ended is not None and json.loads(ended["data"])["error"]["code"] == "workspace_not_found"
    assert Sse(asgi, "/api/v1/events/stream", text).response.status == 401

    ws_key, ws_text = api_key_create(membership=seat, name="socket", scopes=["jobs:read"])
    ws = ws_connect(asgi)
    ws.send(json.dumps({"type": "auth", "token": ws_text}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    revoked_at = time.monotonic()
    api_key_revoke(membership=seat, key_id=ws_key.pk)
    assert ws_close_code(ws) == 4404
    assert time.monotonic() - revoked_at < 1.0


def test_a_spend_caps_thresholds_reach_the_streams_that_ask_for_the_accounts_events(asgi, make_user):
    owner, viewer = make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=viewer, role="viewer")
    seat = Membership.objects.get(workspace=team, user=owner)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, description="pool")
    workspace_cap_set(membership=seat, monthly_limit=10)
    _, text = api_key_create(membership=seat, name="finance", scopes=["jobs:read", "credits:read"])
    _, jobs_only = api_key_create(membership=seat, name="jobs", scopes=["jobs:read"])
    assert Sse(asgi, "/api/v1/events/stream?account=true", jobs_only).response.status == 403
    asking = Sse(asgi, "/api/v1/events/stream?account=true", text)
    plain = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=owner), workspace=str(team.pk))
    assert asking.response.status == plain.response.status == 200
    refused = Sse(asgi, "/api/v1/events/stream?account=true", user_issue_token(user=viewer), workspace=str(team.pk))
    assert refused.response.status == 403

    charged_at = time.monotonic()
    job = make_job(account)
    credit_deduct_for_job(user=account, job_id=job.pk, amount=8, description="x", member_id=owner.pk)
    # Announced here, or by a worker on the shared broker's webhooks queue, asked by the commit: one
    # that holds the alerts' rows makes this call skip them, until it commits.
    deadline = time.monotonic() + 5
    while cap_alerts_announce() == 0 and time.monotonic() < deadline and CapAlert.objects.filter(
            user=account, announced_at__isnull=True).exists():
        time.sleep(0.02)
    assert CapAlert.objects.filter(user=account).count() == 2
    assert not CapAlert.objects.filter(user=account, announced_at__isnull=True).exists()
    first, second = asking.next(), asking.next()
    assert time.monotonic() - charged_at < 1.0
    assert first is not None and second is not None and first["event"] == "spend_cap.threshold"
    events = [json.loads(e["data"]) for e in (first, second)]
    assert [(e["threshold"], e["cap"], e["spent"]) for e in events] == [(50, "workspace", 8), (80, "workspace", 8)]
    for event in events:
        assert event_errors(event, "SpendCapEvent") == []
    # A job's event after them reaches both; the plain stream never saw the account's.
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)
    assert plain.next() == {"id": ANY, "event": "progress", "data": ANY}
    assert asking.next() is not None


def test_a_review_hold_and_its_lift_reach_the_streams_that_ask_for_the_accounts_events(asgi, make_user):
    from jobs.errors import ContentPolicyViolation
    from jobs.intake.screening import refusal_record
    from jobs.life.standing import standing_lift

    user, staff = make_user(), make_user(is_staff=True)
    token = user_issue_token(user=user)
    asking = Sse(asgi, "/api/v1/events/stream?account=true", token)
    plain = Sse(asgi, "/api/v1/events/stream", token)
    ws = ws_auth(asgi, token)
    ws.send(json.dumps({"type": "subscribe", "account": True}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "account": True}
    assert asking.response.status == plain.response.status == 200

    refusal = ContentPolicyViolation("refused", details={
        "flagged": [{"field": "text", "categories": ["sexual", "sexual_minors"]}], "policy_version": "test"})
    refusal.job_type, refusal.model_version = "tts", "test"
    refusal_record(user=user, member_id=user.pk, refusal=refusal)
    assert standing_lift(user_id=user.pk, staff_user=staff)
    events = [asking.next(), asking.next()]
    assert [e and e["event"] for e in events] == ["account.review_hold", "account.review_hold"]
    data = [json.loads(e["data"]) for e in events if e]
    assert [(d["state"], d["reason"]) for d in data] == [("held", "zero_tolerance"), ("lifted", "zero_tolerance")]
    for event in data:
        assert event_errors(event, "ReviewHoldEvent") == []
    messages = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
    assert [(m["type"], m["event"]["state"]) for m in messages] == [("account.event", "held"),
                                                                     ("account.event", "lifted")]
    for message in messages:
        assert event_errors(message, "WsServerMessage") == []
    ws.close()
    # A job's event after them reaches both; the plain stream never saw the account's.
    job = make_job(user)
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)
    assert plain.next() == {"id": ANY, "event": "progress", "data": ANY}


def test_a_team_workspaces_stream_is_for_the_roles_that_see_its_jobs(asgi, make_user):
    owner, payer, outsider = make_user(), make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=payer, role="billing")

    refused = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=payer), workspace=str(team.pk))
    assert refused.response.status == 403
    assert json.loads(refused.response.read())["error"]["code"] == "permission_denied"
    unknown = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=outsider), workspace=str(team.pk))
    assert unknown.response.status == 404
    assert json.loads(unknown.response.read())["error"]["code"] == "workspace_not_found"
    # Demoted to a role that does not see jobs, a member's open stream ends too.
    Membership.objects.filter(workspace=team, user=payer).update(role="viewer")
    reading = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=payer), workspace=str(team.pk))
    assert reading.response.status == 200
    member_set_role(membership=Membership.objects.get(workspace=team, user=owner), user_id=payer.pk, role="billing")
    ended = reading.next()
    assert ended is not None and json.loads(ended["data"])["error"]["code"] == "workspace_not_found"


def test_a_members_websocket_of_a_team_workspace_closes_within_a_second_of_their_removal(asgi, make_user):
    owner, editor, payer, outsider = make_user(), make_user(), make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=editor, role="editor")
    Membership.objects.create(workspace=team, user=payer, role="billing")

    ws = ws_connect(asgi)
    ws.send(json.dumps({"type": "auth", "token": user_issue_token(user=editor), "workspace": str(team.pk)}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    job = make_job(User.objects.get(pk=team.pk))
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)
    assert json.loads(ws.recv(timeout=30))["job_id"] == str(job.pk)

    removed_at = time.monotonic()
    member_remove(membership=Membership.objects.get(workspace=team, user=owner), user_id=editor.pk)
    assert ws_close_code(ws) == 4404
    assert time.monotonic() - removed_at < 1.0

    # A role that does not see jobs, an outsider and a removed member are refused at once; the
    # handshake's header names a workspace as the auth message does.
    for user, code in ((payer, 4403), (outsider, 4404), (editor, 4404)):
        refused = ws_connect(asgi)
        refused.send(json.dumps({"type": "auth", "token": user_issue_token(user=user), "workspace": str(team.pk)}))
        assert ws_close_code(refused) == code, user
    by_header = ws_connect(asgi, subprotocols=["bearer", user_issue_token(user=payer)],
                           additional_headers={"Auteur-Workspace": str(team.pk)})
    assert ws_close_code(by_header) == 4403


def test_the_members_who_ask_for_comments_see_each_change_of_one_live(asgi, make_user):
    owner, editor, viewer, payer = make_user(), make_user(), make_user(), make_user()
    team = team_workspace(owner)
    for user, role in ((editor, "editor"), (viewer, "viewer"), (payer, "billing")):
        Membership.objects.create(workspace=team, user=user, role=role)
    account = User.objects.get(pk=team.pk)
    project = Project.objects.create(user=account, name="Cut")
    watching = Sse(asgi, "/api/v1/events/stream?comments=true", user_issue_token(user=viewer), workspace=str(team.pk))
    jobs_only = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=owner), workspace=str(team.pk))
    ws = ws_connect(asgi)
    ws.send(json.dumps({"type": "auth", "token": user_issue_token(user=editor), "workspace": str(team.pk)}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    ws.send(json.dumps({"type": "subscribe", "comments": True}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "comments": True}
    assert watching.response.status == jobs_only.response.status == 200

    thread = comment_create(project=project, member_id=editor.pk, text="Tighten this cut", start_ms=1000,
                            end_ms=2500, edl_version=3)
    reply = comment_create(project=project, member_id=viewer.pk, text="Agreed", parent_id=thread.pk)
    comment_update(comment=reply, member_id=viewer.pk, resolved=True)
    comment_update(comment=reply, member_id=viewer.pk, text="Agreed!")
    comment_delete(comment=thread, member_id=editor.pk)
    job = make_job(account)
    with transaction.atomic():
        job_event_record(job.pk, JobEventType.PROGRESS, progress=1)

    seen = watching.until(6)
    assert [(e["event"], e["data"]["comment"]["id"] if "comment" in e["data"] else None) for e in seen] == [
        ("comment.created", str(thread.pk)), ("comment.created", str(reply.pk)),
        ("comment.resolved", str(thread.pk)), ("comment.edited", str(reply.pk)),
        ("comment.deleted", str(thread.pk)), ("progress", None)]
    created = seen[0]["data"]
    assert (created["project_id"], created["member_id"], created["comment"]["text"]) == (
        str(project.pk), str(editor.pk), "Tighten this cut")
    resolved = seen[2]["data"]
    assert resolved["member_id"] == resolved["comment"]["resolved_by"] == str(viewer.pk)
    # A stream that did not ask for comments sees the job's event only, as before.
    assert jobs_only.until(1)[0]["event"] == "progress"
    messages = [json.loads(ws.recv(timeout=30)) for _ in range(6)]
    from jobs.events.schema import event_errors

    assert all(not event_errors(m, "WsServerMessage") for m in messages), messages
    assert [m["type"] for m in messages] == ["comment.event"] * 5 + ["job.event"]
    assert {m["project_id"] for m in messages[:5]} == {str(project.pk)}
    ws.close()
    # The role that does not see the work cannot ask for its comments; a malformed ask is refused.
    refused = Sse(asgi, "/api/v1/events/stream?comments=true", user_issue_token(user=payer), workspace=str(team.pk))
    assert refused.response.status == 403
    malformed = Sse(asgi, "/api/v1/events/stream?comments=maybe", user_issue_token(user=owner))
    assert malformed.response.status == 400
    assert json.loads(malformed.response.read())["error"]["code"] == "validation_error"
    for message in ({"type": "subscribe", "comments": False}, {"type": "subscribe", "comments": "yes"},
                    {"type": "subscribe", "comments": True, "job_id": str(job.pk)}):
        bad = ws_auth(asgi, user_issue_token(user=owner))
        bad.send(json.dumps(message))
        assert ws_close_code(bad) == 4400, message


def test_the_streams_that_ask_for_batches_see_a_batchs_progress_and_end(asgi, make_user):
    from jobs.events.batches import batch_announce
    from jobs.models import Batch

    owner = make_user()
    credit_grant(user=owner, amount=100, description="test")
    token = user_issue_token(user=owner)
    asking = Sse(asgi, "/api/v1/events/stream?batches=true", token)
    jobs_only = Sse(asgi, "/api/v1/events/stream", token)
    ws = ws_auth(asgi, token)
    ws.send(json.dumps({"type": "subscribe", "batches": True}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "batches": True}
    assert asking.response.status == jobs_only.response.status == 200
    first, second = make_job(owner), make_job(owner)
    batch = Batch.objects.create(user=owner, item_count=2, credits_cost=first.credits_cost + second.credits_cost)
    Job.objects.filter(pk__in=[first.pk, second.pk]).update(batch=batch)
    Job.objects.filter(pk=first.pk).update(status="completed")
    assert batch_announce(batch.pk) == "batch.progress"
    Job.objects.filter(pk=second.pk).update(status="failed")
    assert batch_announce(batch.pk) == "batch.completed"
    with transaction.atomic():
        job_event_record(first.pk, JobEventType.PROGRESS, progress=1)

    from jobs.events.schema import event_errors

    seen = asking.until(3)
    assert [e["event"] for e in seen] == ["batch.progress", "batch.completed", "progress"]
    assert [e["data"]["ended"] for e in seen[:2]] == [1, 2]
    # A stream that did not ask for batches sees the job's event only, as before.
    assert [e["event"] for e in jobs_only.until(1)] == ["progress"]
    messages = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
    assert all(not event_errors(m, "WsServerMessage") for m in messages), messages
    assert [m["type"] for m in messages] == ["batch.event", "batch.event", "job.event"]
    assert messages[0]["batch_id"] == str(batch.pk)
    ws.close()
    assert Sse(asgi, "/api/v1/events/stream?batches=maybe", token).response.status == 400
