"""`GET /api/schema/events/` and `GET /api/schema/outputs/`: the job events' and the job outputs'
JSON Schemas (jobs/events/schema.py, jobs/output_schema.py), public as the OpenAPI document is."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from jobs.events.schema import event_schema
from jobs.output_schema import output_schema


@require_GET
def events_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(event_schema(), json_dumps_params={"indent": 2})


@require_GET
def outputs_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(output_schema(), json_dumps_params={"indent": 2})
