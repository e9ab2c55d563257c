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


urlpatterns = [
    path("api/v1/boom", boom),
    path("api/v1/database-away", database_away),
    path("", include("auteur.urls")),
]
