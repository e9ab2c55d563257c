from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, StrictSerializer


class AuthVerifyApi(ApiView):
    """Is this bearer token valid? Answers 401 `invalid_token` when it is not."""

    class InputSerializer(StrictSerializer):
        """No fields: the token is the Authorization header. A body, if any, must be `{}`."""

    @extend_schema(
        summary="Check a token",
        request=InputSerializer,
        responses=inline_serializer("AuthVerify", {"valid": serializers.BooleanField(),
                                                   "user_id": serializers.UUIDField()}),
    )
    def post(self, request: Request) -> Response:
        self.InputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        return Response({"valid": True, "user_id": str(request.user.pk)})
