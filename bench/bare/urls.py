"""The real URLs plus the baseline: the minimum the job detail answer needs, without DRF.

The same indexed SELECT of the job by id and owner, the same fields, `JsonResponse`; no token
check (the owner comes in the query string), no throttling, no serializer, and no row-level
security (it runs as the database login's own role, auteur/core/rls.py): what the API's per-request
session scope costs shows in the ratio.
"""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from jobs.models import Job

FIELDS = ("id", "type", "status", "project_id", "credits_cost", "credits_refunded", "progress", "error_code",
          "error_message", "retryable", "attempts", "output_data", "created_at", "started_at", "completed_at",
          "processing_time_ms", "gpu_seconds")


def bare_job(request: HttpRequest, job_id: str) -> JsonResponse:
    row = Job.objects.filter(pk=job_id, user_id=request.GET["user"]).values(*FIELDS).first()
    if row is None:
        return JsonResponse({"error": {"code": "job_not_found"}}, status=404)
    return JsonResponse(row)


bare_job.reads_across_users = True  # type: ignore[attr-defined]


urlpatterns = [
    path("bare/jobs/<str:job_id>", bare_job),
    path("", include("auteur.urls")),
]
