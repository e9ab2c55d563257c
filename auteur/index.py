"""GET /api/v1/: where everything is, for whoever starts at the API's address (`make run`'s banner
names it first). Static: no account, no query."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

INDEX = {
    "name": "Auteur API",
    "version": "v1",
    "docs": "/api/docs/",
    "schema": "/api/schema/",
    "events_schema": "/api/schema/events/",
    "outputs_schema": "/api/schema/outputs/",
    "job_types": "/api/v1/jobs/types",
    "authentication": "Authorization: Bearer <token>: a token of your identity provider (running it yourself: "
                      "`.venv/bin/python manage.py issue_token you@example.com`)",
    "health": "/healthz",
}


@require_GET
def api_index(request: HttpRequest) -> JsonResponse:
    return JsonResponse(INDEX)
