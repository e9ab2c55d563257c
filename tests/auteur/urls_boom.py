"""The real URLs plus one view that crashes, to see what a client gets from an unhandled error."""

from __future__ import annotations

from typing import NoReturn

from django.urls import include, path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def boom(request: Request) -> NoReturn:
    raise RuntimeError("secret internal detail")


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def database_away(request: Request) -> NoReturn:
    from django.db import OperationalError

    raise OperationalError("server closed the connection unexpectedly (postgres://secret@db)")


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def server_side_failure(request: Request) -> NoReturn:
    from auteur.core.errors import ApplicationError

    raise ApplicationError(
        "the store at /srv/auteur/var/private is full (db.internal:5432); run manage.py cleanup",
        code=request.query_params.get("code", "feature_unavailable"),
        details={"type": "tts", "path": "/srv/auteur/var/private", "host": "db.internal"},
    )


urlpatterns = [
    path("api/v1/boom", boom),
    path("api/v1/server-side-failure", server_side_failure),
    path("api/v1/database-away", database_away),
    path("", include("auteur.urls")),
]
