"""One trace per job (auteur/core/tracing.py), across real processes.

The API (gunicorn), a Celery worker and the GPU announcements' consumer run as subprocesses with
tracing configured by the standard variables only (OTEL_EXPORTER_OTLP_ENDPOINT and the batch
processor's delay): each exports its spans over OTLP/HTTP to a collector this test runs on
loopback, which keeps them in memory. The test then reads the job's trace: which spans, under
which parents, with which attributes; and scans every span exported for the secrets, signed URLs
and user text the run used.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from auteur.users.models import User
from auteur.users.services import user_issue_token
from bench.otlp_sink import Collector
from credits.models import CreditTransaction, TransactionType
from credits.services.ledger import credit_grant
from devstack.ports import free_port
from jobs.models import Job, JobStatus
from tests.factories import ProjectFactory
from tests.jobs.conftest import Worker, wait_for, wait_terminal
from tests.servers import gunicorn_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# What a user wrote: it must reach no span.
USER_TEXT = "Quorble fennimore zatch the velvet lighthouse"
HOOK_SECRET_PATH = "hook-path-secret-5f1c2e"
HOOK_SECRET_QUERY = "hook-query-secret-a9d03b"
CLIENT_TRACE, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class HookReceiver:
    """A webhook receiver on loopback: the headers of each POST it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(dict(self.headers.items()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{HOOK_SECRET_PATH}?token={HOOK_SECRET_QUERY}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.stop()


def traced_env(collector: Collector, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "50", "AUTEUR_WEBHOOK_ALLOW_LOOPBACK": "1",
        # Every instrumentation, the statement and command spans too: more to scan for secrets.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "none",
    }


def by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = by_name(spans, name)
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


def ancestors(spans: list[dict[str, Any]], span: dict[str, Any]) -> list[str]:
    """The names from `span`'s parent up to the trace's root."""
    by_id = {s["span_id"]: s for s in spans}
    names, parent = [], span["parent"]
    while parent:
        assert parent in by_id, f"{span['name']}: a parent missing from the trace"
        names.append(by_id[parent]["name"])
        parent = by_id[parent]["parent"]
    return names


def assert_one_tree(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Every span's parent is in the trace, but one root's: the submission's request. The root."""
    ids = {s["span_id"] for s in spans}
    roots = [s for s in spans if not s["parent"]]
    assert [r["kind"] for r in roots] == [2], [(s["name"], s["parent"]) for s in roots]  # SPAN_KIND_SERVER
    orphans = [s["name"] for s in spans if s["parent"] and s["parent"] not in ids]
    assert orphans == [], orphans
    return roots[0]


def assert_job_attributes(span: dict[str, Any], job: Job) -> None:
    attributes = span["attributes"]
    assert attributes["auteur.job.id"] == str(job.pk), span
    assert attributes["auteur.job.type"] == job.type
    assert attributes["auteur.user.id"] == str(job.user_id)
    assert attributes["auteur.job.credits"] == job.credits_cost
    assert "auteur.job.attempt" in attributes


def submit_tts(api: str, token: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = requests.post(f"{api}/api/v1/jobs/tts", json=body, timeout=60,
                             headers={"Authorization": f"Bearer {token}", **headers})
    assert response.status_code == 202, response.text
    return dict(response.json())


def funded(make_user: Callable[..., User]) -> tuple[User, Any, str]:
    """A user with credits, a project and a token."""
    user = make_user()
    credit_grant(user=user, amount=100, description="test funds")
    return user, ProjectFactory.create(user=user, name="Film"), user_issue_token(user=user)


def settled(collector: Collector, trace_id: str, names: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    """The trace once it holds every name in `names` and no new span came for half a second."""
    wait_for(lambda: names <= {s["name"] for s in collector.trace(trace_id)}, timeout=timeout)
    count = -1
    while count != len(collector.trace(trace_id)):
        count = len(collector.trace(trace_id))
        time.sleep(0.5)
    return collector.trace(trace_id)


def test_a_completed_job_is_one_trace_from_its_request_to_its_webhook(
    collector: Collector, start_worker: Callable[..., Worker], make_user: Callable[..., User],
) -> None:
    user, project, token = funded(make_user)
    hooks = HookReceiver()
    start_worker(**traced_env(collector, "auteur-worker"))
    with gunicorn_server(**traced_env(collector, "auteur-api")) as api:
        # The client traces too, and asks for nothing to be sampled (flags 00): its trace is linked,
        # not continued, so it neither hides the job from operators nor chooses its trace id.
        accepted = submit_tts(api.http, token, {"project_id": str(project.pk), "text": USER_TEXT,
                                                "webhook": hooks.url, "webhook_events_filter": ["completed"]},
                              traceparent=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00", baggage="user=someone")
        job = wait_terminal(accepted["job_id"])
        assert job.status == JobStatus.COMPLETED, (job.error_code, job.error_detail)
        shown = requests.get(f"{api.http}/api/v1/jobs/{job.pk}", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).json()
        wait_for(lambda: hooks.requests, timeout=60)
        spans = settled(collector, shown["trace_id"], {
            "job.submit", "gpu.spawn", "gpu.engine.load", "gpu.engine.run", "job.store", "job.complete",
            "webhook.attempt"})
        secrets = [token, USER_TEXT, HOOK_SECRET_PATH, HOOK_SECRET_QUERY, *user_secrets(user, token, api_url=api.http)]
        time.sleep(1)  # the API exports the spans of those reads too

    assert shown["trace_id"] == job.traceparent.split("-")[1] != CLIENT_TRACE
    root = assert_one_tree(spans)
    assert root["links"] == [(CLIENT_TRACE, CLIENT_SPAN)]
    assert root["service"] == "auteur-api" and root["attributes"].get("http.request.method",
                                                                       root["attributes"].get("http.method")) == "POST"
    submit = one(spans, "job.submit")
    assert submit["parent"] == root["span_id"] and submit["service"] == "auteur-api"
    assert_job_attributes(submit, job)
    assert job.traceparent.split("-")[2] == submit["span_id"]  # the job continues its submission's span

    prepare = one(spans, "run/jobs.audio.prepare")
    assert prepare["service"] == "auteur-worker" and prepare["attributes"]["auteur.job.id"] == str(job.pk)
    assert ancestors(spans, prepare)[:2] == ["apply_async/jobs.audio.prepare", "job.submit"]
    spawn = one(spans, "gpu.spawn")
    assert spawn["parent"] == prepare["span_id"] and spawn["kind"] == 3  # SPAN_KIND_CLIENT
    assert_job_attributes(spawn, job)
    assert spawn["attributes"]["auteur.gpu.call_id"] == job.gpu_call_id
    for phase in ("gpu.engine.load", "gpu.engine.run"):  # timed by the call itself, in its process
        assert one(spans, phase)["parent"] == spawn["span_id"]

    store = one(spans, "job.store")
    assert_job_attributes(store, job)
    # Stored by the step whose look found the call done: the prepare itself, or an infer step
    # that the completion consumer published on the call's announcement.
    assert ancestors(spans, store)[0] in ("run/jobs.audio.prepare", "run/jobs.audio.infer")
    if ancestors(spans, store)[0] == "run/jobs.audio.infer":  # the consumer continued the job's trace
        assert "gpu.announcement" in ancestors(spans, store) and "job.submit" in ancestors(spans, store)
    complete = one(spans, "job.complete")
    assert complete["parent"] == store["span_id"]
    assert_job_attributes(complete, job)

    attempt = one(spans, "webhook.attempt")
    assert attempt["attributes"]["auteur.job.id"] == str(job.pk)
    assert attempt["attributes"]["http.response.status_code"] == 204
    assert "job.submit" in ancestors(spans, attempt)
    # The receiver was told the attempt's span: W3C Trace Context.
    assert hooks.requests[0]["traceparent"].split("-")[1:3] == [shown["trace_id"], attempt["span_id"]]
    # Every span of the job's processes is in its trace but those of other work (the worker's
    # start, the beat's ticks): a step's database and Redis calls are its children.
    assert {s["service"] for s in spans} >= {"auteur-api", "auteur-worker"}
    assert any(s["scope"].endswith("psycopg") and s["parent"] == prepare["span_id"] for s in spans)
    assert_no_secrets(collector, secrets=secrets)


def test_a_failed_job_is_one_trace_that_ends_in_its_refund(
    collector: Collector, start_worker: Callable[..., Worker], make_user: Callable[..., User],
) -> None:
    _, project, token = funded(make_user)
    # Every TTS call is refused at its spawn (model_unavailable, permanent): the job fails, refunded.
    start_worker(**traced_env(collector, "auteur-worker"), AUTEUR_FAULT_INJECTION="tts:spawn_permanent=1.0",
                 DJANGO_SETTINGS_MODULE="bench.settings")
    with gunicorn_server(**traced_env(collector, "auteur-api")) as api:
        accepted = submit_tts(api.http, token, {"project_id": str(project.pk), "text": USER_TEXT})
        job = wait_terminal(accepted["job_id"])
        assert job.status == JobStatus.FAILED and job.credits_refunded, (job.status, job.error_code)
        spans = settled(collector, job.traceparent.split("-")[1], {"job.submit", "gpu.spawn", "job.fail"})

    root = assert_one_tree(spans)
    submit = one(spans, "job.submit")
    assert submit["parent"] == root["span_id"]
    prepare = one(spans, "run/jobs.audio.prepare")
    spawn = one(spans, "gpu.spawn")
    assert spawn["parent"] == prepare["span_id"]
    assert spawn["status"] == 2 and spawn["attributes"]["auteur.error.code"] == "model_unavailable"  # STATUS_CODE_ERROR
    failed = one(spans, "job.fail")
    assert_job_attributes(failed, job)
    assert "job.submit" in ancestors(spans, failed)
    assert failed["status"] == 2 and failed["status_message"] == "model_unavailable"
    assert failed["attributes"]["auteur.error.code"] == "model_unavailable"
    refunded = CreditTransaction.objects.get(job_id=job.pk, type=TransactionType.REFUND).amount
    assert failed["attributes"]["auteur.credits.refunded"] == refunded == job.credits_cost
    assert not by_name(spans, "job.store") and not by_name(spans, "job.complete")
    assert_no_secrets(collector, secrets=[token, USER_TEXT])


def user_secrets(user: User, token: str, *, api_url: str) -> list[str]:
    """The account's webhook signing secret, and the signature of the job's output's signed URL
    (read as a client would: the URL handed out, then the object fetched through it)."""
    headers = {"Authorization": f"Bearer {token}"}
    key = requests.get(f"{api_url}/api/v1/webhooks/default/secret", headers=headers, timeout=30).json()["key"]
    job = Job.objects.filter(user=user).latest("created_at")
    found = [key.split("_", 1)[-1]]
    for media_id in job.output_data.get("output_media_ids", []):
        shown = requests.get(f"{api_url}/api/v1/projects/{job.project_id}/media/{media_id}", headers=headers,
                             timeout=30).json()["media"]
        url = urlsplit(shown["download_url"])
        assert url.query, shown["download_url"]
        assert requests.get(f"{api_url}{url.path}?{url.query}", timeout=30).ok  # the signed URL, used
        found.append(url.query)
    assert len(found) > 1, job.output_data
    return found


def assert_no_secrets(collector: Collector, *, secrets: list[str]) -> None:
    """No exported byte (attribute, event, status, name, resource) holds any of `secrets`."""
    with collector.lock:
        raw = b"".join(collector.raw)
        spans = list(collector.spans)
    assert spans
    for secret in secrets:
        assert secret and secret.encode() not in raw, f"a secret in the exported spans: {secret[:12]}..."
    text = json.dumps(spans)
    assert "Bearer" not in text and "X-Amz-Signature" not in text and "sig=" not in text
