"""A single user's requests, without the Auteur-Workspace header, answer byte for byte as they did
before workspaces existed.

The golden file was written by this very test run on the code before workspaces (46e0369, with
AUTEUR_WRITE_GOLDEN=1); here the same requests must answer the same statuses, headers and bodies.
Only what differs from run to run is replaced before comparing: ids (UUIDs, and the numbers of
events and entries), times, and the token. Fields added to answers since, each listed in ADDED with
the value a single user gets, are taken out first: an answer may gain a field, never change one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from auteur.users.models import User
from auteur.users.services import user_issue_token
from credits.services.ledger import credit_grant

pytestmark = pytest.mark.django_db

GOLDEN = Path(__file__).parent / "golden" / "single_user_requests.txt"
# Headers that say something about the answer (not the server's clock or the request's id).
HEADERS = ("Content-Type", "Vary", "Allow", "Location", "Idempotent-Replayed", "Retry-After", "Cache-Control")
# UUIDs, and the timelines' document ids (24 hex digits).
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{24}\b")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
NUMBERED = re.compile(r'"(id|record_id|event_id)":\s?\d+')
# Fields added to answers since the golden file, as a single user's answer carries them.
ADDED = (
    ',"spend_cap":null',  # a quote: the spend cap that would refuse it (none for a user who set none)
    ',"deduplicated":false',  # an accepted job: not another's work it was answered with
)


def normalized(text: str, names: dict[str, str]) -> str:
    """`text` with each id named by its first appearance, and times and row numbers blanked."""

    def name(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"<id{len(names) + 1}>")

    text = UUID.sub(name, text)
    text = TIME.sub("<time>", text)
    return NUMBERED.sub(lambda m: f'"{m.group(1)}": <n>', text)


def scenario() -> list[tuple[str, str, Any]]:
    """What a single user does with the API: (method, path, body) in order; `{project}` and `{job}`
    stand for the ids the answers gave."""
    return [
        ("GET", "/api/v1/users/me", None),
        ("GET", "/api/v1/credits", None),
        ("POST", "/api/v1/projects", {"name": "Golden"}),
        ("GET", "/api/v1/projects", None),
        ("GET", "/api/v1/projects/{project}", None),
        ("PATCH", "/api/v1/projects/{project}", {"name": "Golden cut"}),
        ("GET", "/api/v1/projects/{project}/media", None),
        ("POST", "/api/v1/jobs/tts", {"project_id": "{project}", "text": "Hello, golden world"}),
        ("GET", "/api/v1/jobs/{job}", None),
        ("GET", "/api/v1/jobs/{job}/events", None),
        ("GET", "/api/v1/jobs", None),
        ("POST", "/api/v1/jobs/tts/quote", {"project_id": "{project}", "text": "Quoted"}),
        ("GET", "/api/v1/credits", None),
        ("GET", "/api/v1/credits/history", None),
        ("GET", "/api/v1/voices", None),
        ("GET", "/api/v1/webhooks", None),
        ("GET", "/api/v1/projects/00000000-0000-4000-8000-000000000000", None),
        ("POST", "/api/v1/jobs/tts", {"project_id": "{project}"}),
        ("POST", "/api/v1/jobs/tts", {"project_id": "{project}", "text": "x" * 40000}),
        ("POST", "/api/v1/jobs/{job}/cancel", {}),
        ("GET", "/api/v1/jobs/{job}", None),
        ("GET", "/api/v1/credits/history", None),
        ("DELETE", "/api/v1/projects/{project}", None),
        ("GET", "/api/v1/projects", None),
    ]


def transcript(client: APIClient) -> str:
    ids: dict[str, str] = {}
    names: dict[str, str] = {}
    out = []
    for method, path, body in scenario():
        path = path.format(**ids)
        data = json.loads(json.dumps(body).replace("{project}", ids.get("project", ""))) if body else body
        answer = getattr(client, method.lower())(path, data, format="json") if data is not None else \
            getattr(client, method.lower())(path)
        if answer.status_code in (200, 201, 202) and answer.get("Content-Type", "").startswith("application/json"):
            content = answer.json()
            if method == "POST" and path == "/api/v1/projects":
                ids["project"] = content["id"]
            if method == "POST" and path == "/api/v1/jobs/tts" and "job_id" in content:
                ids["job"] = content["job_id"]
        headers = "".join(f"{h}: {answer[h]}\n" for h in HEADERS if answer.has_header(h))
        body = answer.content.decode()
        for added in ADDED:
            body = body.replace(added, "")
        out.append(normalized(f"{method} {path}\n{answer.status_code}\n{headers}{body}\n", names))
    return "\n".join(out)


def test_a_single_users_requests_answer_as_before_workspaces(make_user: Any) -> None:
    user: User = make_user(email="golden@example.com")
    credit_grant(user=user, amount=500, type="bonus", description="golden")
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")

    answered = transcript(client)

    if os.environ.get("AUTEUR_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(answered)
    assert answered == GOLDEN.read_text()
