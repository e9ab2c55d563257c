"""`GET /api/schema/events/`: the job events' JSON Schema (jobs/event_schema.py), public as the
OpenAPI document is."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from jobs.event_schema import event_schema


@require_GET
def events_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(event_schema(), json_dumps_params={"indent": 2})
