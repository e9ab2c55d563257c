"""The real URLs plus a view that forgot its owner filter, and one that runs whatever SQL it is sent
(a SQL injection's worst): what row-level security and the API role's grants must make harmless."""

from __future__ import annotations

from django.db import DatabaseError, connection, transaction
from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from credits.models import CreditAccount
from jobs.models import Job, JobEvent
from media.models import MediaFile, VoiceClone
from projects.models import Project


def everything() -> dict[str, list[str]]:
    """Every row of the user-owned tables a query without an owner filter returns."""
    return {
        "projects": sorted(str(p) for p in Project.objects.values_list("id", flat=True)),
        "media": sorted(str(m) for m in MediaFile.objects.values_list("id", flat=True)),
        "voices": sorted(str(v) for v in VoiceClone.objects.values_list("id", flat=True)),
        "jobs": sorted(str(j) for j in Job.objects.values_list("id", flat=True)),
        "job_events": sorted(str(e) for e in JobEvent.objects.values_list("job_id", flat=True)),
        "accounts": sorted(str(a) for a in CreditAccount.objects.values_list("user_id", flat=True)),
    }


@api_view(["GET"])
@permission_classes([AllowAny])
def forgetful(request: Request) -> Response:
    return Response(everything())


@api_view(["POST"])
def forgetful_rename(request: Request) -> Response:
    renamed = Project.objects.filter(pk=request.data["project_id"]).update(name="renamed by another")
    return Response({"renamed": renamed})


@api_view(["POST"])
@permission_classes([AllowAny])
def injected(request: Request) -> Response:
    """Runs `sql` on the request's own connection, in the request's scope: `rows` (as text) and
    `count`, or `refused` with the SQLSTATE of the error."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(request.data["sql"], request.data.get("params") or None)
            rows = cursor.fetchall() if cursor.description else []
            count = cursor.rowcount
    except DatabaseError as exc:
        return Response({"refused": getattr(exc.__cause__, "sqlstate", None)})
    return Response({"rows": [[str(value) for value in row] for row in rows], "count": count})


urlpatterns = [
    path("api/v1/forgetful", forgetful),
    path("api/v1/forgetful-rename", forgetful_rename),
    path("api/v1/injected", injected),
    path("", include("auteur.urls")),
]
