"""The API's own Prometheus metrics (django-prometheus: requests, latencies and responses by view,
method and status), at /metrics for a bearer token only.

Not public: without AUTEUR_METRICS_TOKEN the path answers 404; with it, anything but
`Authorization: Bearer <token>` answers 401. Under gunicorn each worker process counts its own
requests; with PROMETHEUS_MULTIPROC_DIR set (make run, the image) the answer sums them all.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from auteur.core.errors import error_response


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.AUTEUR_METRICS_TOKEN
    if not token:
        return error_response(404, "not_found", "Not found.")
    presented = request.headers.get("Authorization", "")
    if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        response = error_response(401, "not_authenticated", "A metrics bearer token is required.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
