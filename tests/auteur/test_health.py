from __future__ import annotations

import pytest

from auteur.devstack.ports import free_port


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["failed"] == []
    assert set(body["checks"]) == {"postgres", "redis", "mongodb", "storage"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db
def test_readyz_names_redis_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["postgres"]["ok"] is True


@pytest.mark.django_db
def test_readyz_names_mongodb_when_it_is_unreachable(client, settings):
    settings.MONGODB_URI = f"mongodb://127.0.0.1:{free_port()}/auteur"
    body = client.get("/readyz").json()
    assert body["failed"] == ["mongodb"]


@pytest.mark.django_db
def test_readyz_names_storage_when_the_bucket_is_unreachable(client, settings):
    # The storage the requests use (media.storage rebuilds its client when AWS_* settings change).
    settings.AWS_STORAGE_BUCKET_NAME = "nope"
    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "x"
    settings.AWS_SECRET_ACCESS_KEY = "y"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["storage"]


def test_api_docs_and_schema_render(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/auth/verify" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
