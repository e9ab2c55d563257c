"""The real URLs plus one view that crashes, to see what a client gets from an unhandled error."""

from django.urls import include, path
from rest_framework.decorators import api_view, authentication_classes, permission_classes


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def boom(request):  # type: ignore[no-untyped-def]
    raise RuntimeError("secret internal detail")


urlpatterns = [
    path("api/v1/boom", boom),
    path("", include("auteur.urls")),
]
