"""The API's /metrics: django-prometheus' request metrics, for a bearer token only."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token-0123456789"


def test_metrics_are_not_served_without_a_configured_token(client, settings):
    settings.AUTEUR_METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert b"django_http" not in response.content


def test_metrics_refuse_a_missing_or_wrong_token(client, settings):
    settings.AUTEUR_METRICS_TOKEN = TOKEN
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_count_requests_by_view_and_status(client, settings):
    settings.AUTEUR_METRICS_TOKEN = TOKEN
    assert client.get("/healthz").status_code == 200
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = [s for f in text_string_to_metric_families(response.content.decode()) for s in f.samples]
    assert any(s.name == "django_http_responses_total_by_status_view_method_total" and s.labels["status"] == "200"
               and s.labels["view"] == "healthz" and s.value >= 1 for s in samples)
    assert any(s.name == "django_http_requests_latency_seconds_by_view_method_bucket"
               and s.labels["view"] == "healthz" for s in samples)
