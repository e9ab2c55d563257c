"""The published event schema: served beside the OpenAPI document and linked from it, a valid JSON
Schema naming every event type, closed per type. That every event the server emits validates is
checked where they are emitted: every job event any test records in-process (tests/conftest.py),
every SSE and WebSocket message the realtime tests read (tests/realtime/test_realtime.py), every
webhook body the webhook tests receive (tests/webhooks/conftest.py)."""

from __future__ import annotations

import jsonschema
import pytest

from jobs.events.schema import EVENT_DATA, event_errors, event_schema
from jobs.models import JobEventType

pytestmark = pytest.mark.django_db


def test_the_schema_is_served_valid_and_names_every_event_type(api_client):
    response = api_client.get("/api/schema/events/")
    assert response.status_code == 200 and response.json() == event_schema()
    jsonschema.Draft202012Validator.check_schema(response.json())
    assert set(EVENT_DATA) == set(JobEventType.values)
    assert set(response.json()["$defs"]) >= {"JobEvent", "StreamGap", "Error", "WsServerMessage", "WebhookPayload"}


def test_the_openapi_document_has_the_streams_and_links_the_event_schema(api_client):
    document = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/schema/events/" in document["info"]["description"]
    for path in ("/api/v1/jobs/{job_id}/stream", "/api/v1/events/stream"):
        operation = document["paths"][path]["get"]
        assert set(operation["responses"]["200"]["content"]) == {"text/event-stream"}
        assert {"401", "429", "503"} <= set(operation["responses"])
        assert any(p["name"] == "Last-Event-ID" for p in operation["parameters"])
    assert document["components"]["schemas"]["StreamEvent"]["properties"]["type"]["enum"] == sorted(EVENT_DATA)


def _event(kind: str, data: dict) -> dict:
    return {"id": "1700000000000-0", "record_id": 1, "job_id": "00000000-0000-4000-8000-000000000001", "type": kind,
            "data": data, "status": "processing", "progress": 10, "created_at": "2026-11-26T00:00:00Z"}


def test_each_types_data_is_closed():
    charge = {"charged": 5, "refunded": 5, "net": 0}
    assert event_errors(_event("canceled", {"reason": "canceled by the user", "refunded": 5, "charge": charge})) == []
    assert event_errors(_event("canceled", {"reason": "x", "refunded": 5, "charge": charge, "extra": 1}))
    assert event_errors(_event("canceled", {"reason": "x", "charge": charge}))  # refunded missing
    assert event_errors(_event("progress", {"progress": 101}))
    assert event_errors(_event("teleported", {}))
    assert event_errors(_event("progress", {"progress": 10}) | {"id": "not-an-id"})
    assert event_errors({"type": "job.event", "job_id": "00000000-0000-4000-8000-000000000001",
                         "event": _event("started", {})}, "WsServerMessage") == []
    assert event_errors({"type": "hello"}, "WsServerMessage")


@pytest.mark.parametrize("kind", ["start", "progress", "completed"])
def test_a_webhook_body_as_the_server_builds_it_validates(kind, user):
    """The body every delivery sends (webhooks.services._payload), around the job as GET shows it."""
    from credits.services.ledger import credit_grant
    from jobs.selectors.jobs import job_detail_get
    from tests.factories import MediaFileFactory, ProjectFactory
    from tests.jobs.test_lifecycle import submit

    credit_grant(user=user, amount=100, type="bonus", description="test")
    project = ProjectFactory.create(user=user, name="p")
    media = MediaFileFactory.create(project=project, name="a.wav", type="audio", duration_ms=30_000)
    from webhooks.models import PAYLOAD_TYPES, WebhookEventType
    from webhooks.services import _payload

    job = submit(user, project, media)
    body = _payload(PAYLOAD_TYPES[WebhookEventType(kind)],
                    job_detail_get(user_id=user.pk, job_id=job.pk, balances=True))
    assert event_errors(body, "WebhookPayload") == []
    assert event_errors({**body, "type": "job.teleported"}, "WebhookPayload")
