"""The API answers what its OpenAPI schema says, for every operation: schemathesis fuzzes each one.

The schema is the document /api/schema/ serves (the last test checks they are the same), and the
generated requests go through the WSGI application in this process, against the test stack's
Postgres, Redis and Mongo, as a real user holding credits, a project, media files, a voice and a
job. Half of the requests name those objects in their paths and bodies (so the success answers
are checked too); the others keep the generated ids (unknown: the 404s).
DELETE gets fresh objects of its own, so it never removes what later operations use.

Any finding fails the test: a 5xx, a status the operation does not document, a body that does not
match the documented schema, or a content type it does not declare.

Everything happens inside the test's database transaction, which is rolled back: a job this test
submits is charged and recorded, but its pipeline (published after commit) is never queued, so no
Celery task outlives the test. Run it alone with `pytest tests/contract`.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from auteur.core.queues import ALL_QUEUES
from auteur.core.storage_settings import local_media_storage
from auteur.users.models import User
from auteur.users.services import user_issue_token
from credits.services.ledger import credit_grant
from media.storage import get_storage
from projects.models import Project
from tests.contract.support import served_schema
from tests.factories import MediaFileFactory, ProjectFactory, VoiceCloneFactory
from tests.jobs.support import put_timeline, submit, valid_body
from tests.media.conftest import Samples
from webhooks.models import Webhook
from webhooks.services import webhook_create

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 8
START_BALANCE = 100_000


class ContractWsgiApp:
    """Django's WSGI handler, keeping the test's database connection (and its transaction) open
    across requests, as Django's own test client does: the signals that close connections at the
    start and the end of a request are off while it is handled."""

    def __init__(self) -> None:
        self.handler = WSGIHandler()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = self.handler(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def webhook_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook URLs are checked by resolving their host: every name resolves to one public
    address here (nothing is sent: no delivery is committed), so no lookup leaves the machine."""

    def lookup(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr("webhooks.ssrf.lookup", lookup)


@pytest.fixture
def wsgi_app() -> ContractWsgiApp:
    return ContractWsgiApp()


def queued_messages() -> int:
    """Messages waiting on the Celery queues (kombu keeps each queue as Redis lists)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = [key for name in ALL_QUEUES for key in client.scan_iter(f"{name}*") if client.type(key) == b"list"]
        return sum(int(client.llen(key)) for key in keys)
    finally:
        client.close()


@pytest.fixture
def no_work_left() -> Iterator[None]:
    """Nothing the requests did reaches a queue: submissions publish only after a commit, which
    the test's transaction never makes."""
    before = queued_messages()
    yield
    assert queued_messages() == before


@pytest.fixture
def owner(settings: Any, user: User, gpu_backend: Callable[[str], None], stripe_fake: Any) -> User:
    # Hundreds of requests within a minute: the limits are raised for this test only.
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 1_000_000
    settings.AUTEUR_RATE_LIMIT_ANON_PER_MINUTE = 1_000_000
    # Billing is configured (`stripe_fake`: Stripe's API replaced at its client module, as in
    # tests/billing), so its endpoints answer as they do in production, not 503.
    # Every job type can be submitted (the local backend's 503 for a type it lacks the weights of
    # is tested in tests/jobs); nothing runs, as explained above.
    gpu_backend("noop")
    credit_grant(user=user, amount=START_BALANCE, type="bonus", description="contract test")
    return user


@pytest.fixture
def objects(owner: User, auth_client: Any, local_storage: Path, samples: Samples, settings: Any) -> dict[str, str]:
    """One object of each kind that paths and bodies name, owned by the caller: name -> id.
    The media files are real ones, stored where their rows say."""
    # Publishing is configured (the local backend's public folder), so it answers as in production, not 503.
    settings.STORAGES = {**settings.STORAGES,
                         settings.PUBLIC_STORAGE_ALIAS: local_media_storage(str(local_storage.parent / "public"))}
    settings.AUTEUR_CDN_BASE_URL = "http://testserver/public"
    project = ProjectFactory.create(user=owner)
    media = {kind: MediaFileFactory.create(project=project, type=kind) for kind in ("video", "audio", "image")}
    for kind, path in (("video", samples.video), ("audio", samples.wav), ("image", samples.png)):
        with path.open("rb") as file:
            get_storage().save(media[kind].storage_key, file, media[kind].mime_type)
    put_timeline(project, media["video"])
    voice = VoiceCloneFactory.create(user=owner)
    response = submit(auth_client, "tts", valid_body("tts", project, media))
    assert response.status_code == 202, response.json()
    return {
        "project_id": str(project.pk),
        "media_id": str(media["audio"].pk),
        **{f"{kind}_media_id": str(m.pk) for kind, m in media.items()},
        "voice_id": str(voice.pk),
        "job_id": response.json()["job_id"],
        "webhook_id": str(_webhook(owner).pk),
    }


def _webhook(owner: User) -> Webhook:
    webhook, _ = webhook_create(owner=owner, url="https://hooks.example.test/in", event_types=["completed"])
    return webhook


def fresh_objects(owner: User) -> dict[str, str]:
    """Objects for a DELETE to remove (a project with a media file, and a voice)."""
    project: Project = ProjectFactory.create(user=owner)
    return {
        "project_id": str(project.pk),
        "media_id": str(MediaFileFactory.create(project=project).pk),
        "voice_id": str(VoiceCloneFactory.create(user=owner).pk),
        "webhook_id": str(_webhook(owner).pk),
    }


def object_id(ids: dict[str, str], name: str, generated: Any) -> Any:
    """The caller's object for a parameter or body field named `name` (`source_image_media_id`
    gets the image...), or the generated value when no object fits."""
    if name in ids:
        return ids[name]
    kind = next((k for k in ("video", "audio", "image") if k in name), None)
    return ids.get(f"{kind}_media_id", generated) if name.endswith("media_id") else generated


def name_objects(case: Any, ids: dict[str, str]) -> None:
    case.path_parameters = {name: object_id(ids, name, v) for name, v in (case.path_parameters or {}).items()}
    if isinstance(case.body, dict):
        case.body = {name: object_id(ids, name, v) for name, v in case.body.items()}


schema = schemathesis.openapi.from_dict(
    served_schema(),
    config=schemathesis.Config.from_dict({
        "generation": {
            "max-examples": EXAMPLES_PER_OPERATION,
            "no-shrink": True,
            "deterministic": True,
            "database": "none",
            "with-security-parameters": False,
        },
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }),
# The event streams are ASGI views: under this WSGI app they answer 503 `stream_unavailable` by
# design; tests/realtime runs them on a real ASGI server and checks every event against its schema.
).exclude(path_regex=r"/stream$")
_alternate = itertools.count()


@schema.parametrize()
# The fixtures' objects are shared by the examples of one operation, on purpose.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_its_schema_says(
    case: Any, wsgi_app: Callable[..., Any], owner: User, objects: dict[str, str], no_work_left: None
) -> None:
    if next(_alternate) % 2 == 0:
        name_objects(case, fresh_objects(owner) if case.method == "DELETE" else objects)
    case.call_and_validate(
        app=wsgi_app, headers={"Authorization": f"Bearer {user_issue_token(user=owner)}"}, checks=CHECKS
    )


def test_the_served_schema_is_the_one_tested(api_client: Any) -> None:
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert json.loads(response.content) == served_schema()
