"""The real URLs plus a view that forgot its owner filter: what row-level security must make harmless."""

from __future__ import annotations

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


urlpatterns = [
    path("api/v1/forgetful", forgetful),
    path("api/v1/forgetful-rename", forgetful_rename),
    path("", include("auteur.urls")),
]
