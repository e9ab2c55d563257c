"""A Python client generated from the served OpenAPI document (openapi-python-client, as a user of
the API would run it) holds every operation, and its calls work against the API.

The generator leaves out, with a warning, an operation none of whose answers it can read (a
response only in a content type it does not know, such as `application/x-ndjson`): any warning
fails here. Its calls go through Django's test client (an httpx transport over it), so they run
in the test's transaction, through the whole stack of middleware, authentication and views.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from auteur.users.services import user_issue_token
from tests.contract.support import operations, served_schema

pytestmark = pytest.mark.django_db

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "auteur_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The client generated from the document /api/schema/ serves, and what the generator said."""
    where = tmp_path_factory.mktemp("python-client")
    schema = where / "openapi.json"
    schema.write_text(json.dumps(served_schema()))
    config = where / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run over the output: only the generator speaks
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(schema), "--output-path", str(where / PACKAGE), "--meta", "none",
         "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(where))
    try:
        yield where / PACKAGE, result.stdout + result.stderr
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_the_generator_keeps_every_operation_and_warns_of_nothing(generated):
    package, said = generated
    assert "warning" not in said.lower(), said
    # One module per operation (under its tag's folder): none was left out.
    modules = [m for m in (package / "api").rglob("*.py") if m.name != "__init__.py"]
    assert len(modules) == len(operations(served_schema())), said
    assert (package / "api" / "batches" / "batches_manifest_retrieve.py").exists()


class DjangoTransport(httpx.BaseTransport):
    """httpx requests answered by Django's test client (streamed answers read whole)."""

    def __init__(self) -> None:
        self.client = APIClient(raise_request_exception=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        content_type = headers.pop("content-type", "application/octet-stream")
        body: Any = request.read()  # (the test client takes bytes as they are)
        answer: Any = self.client.generic(request.method, request.url.raw_path.decode(), data=body,
                                          content_type=content_type, headers=headers)
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        return httpx.Response(answer.status_code, headers=dict(answer.items()), content=body, request=request)


def client_module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generated_clients_manifest_reads_a_batch_as_json(generated, user, auth_client):
    """`Accept: application/json` on the client (every other operation answers JSON anyway) makes the
    manifest one JSON document, which the generated model reads."""
    from credits.services.ledger import credit_grant

    credit_grant(user=user, amount=100, type="bonus", description="test")
    items = [{"type": "tts", "input": {"text": text}} for text in ("one", "two")]
    batch = auth_client.post("/api/v1/jobs/batch", {"items": items}, format="json")
    assert batch.status_code == 202, batch.json()
    client = client_module("client").AuthenticatedClient(
        base_url="http://testserver", token=user_issue_token(user=user), headers={"Accept": "application/json"},
        httpx_args={"transport": DjangoTransport()},
    )
    manifest_api = client_module("api.batches.batches_manifest_retrieve")
    answer: Any = manifest_api.sync_detailed(batch.json()["id"], client=client)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    manifest = answer.parsed
    assert type(manifest).__name__ == "BatchManifest", manifest
    assert [(i.index, str(i.job_id), i.status.value) for i in manifest.items] == [
        (n, job_id, "queued") for n, job_id in enumerate(batch.json()["job_ids"])]
    # No batch of the caller's: the generated Error model, read from the JSON envelope.
    missing: Any = manifest_api.sync_detailed("00000000-0000-0000-0000-000000000000", client=client)
    assert missing.status_code == 404 and missing.parsed.error.code == "batch_not_found"
