"""The user's voice clones, included under /api/v1/ by auteur/urls.py (media/voice_urls.py)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_member_id,
    request_user,
)
from auteur.core.schema import raises
from media.models import VoiceClone
from media.selectors import media_get_for_user, voice_get, voice_list
from media.services.voices import voice_create, voice_delete, voice_sample_url


class VoiceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    sample_duration_ms = serializers.IntegerField()
    source_media_id = serializers.UUIDField(allow_null=True)
    sample_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_sample_url(self, obj: VoiceClone) -> str:
        return voice_sample_url(voice=obj).url


class VoiceListCreateApi(ApiView):
    """GET: the caller's voices (paginated). POST: clone a voice from a ready audio file of at least 3 s.

    The voice keeps the sample's first 30 s (by default) as a mono 24 kHz WAV;
    403 `quota_exceeded` past the user's voice quota.
    """

    workspace_actions = {"GET": "voices.view", "POST": "voices.edit"}

    class InputSerializer(StrictSerializer):
        media_id = serializers.UUIDField()
        name = serializers.CharField(max_length=255)

        class Meta:
            ref_name = "VoiceCreateRequest"

    FilterSerializer = PageQuerySerializer
    pagination_class = KeyedPagination.of("voices")

    class OutputSerializer(VoiceSerializer):
        class Meta:
            ref_name = "Voice"

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        summary="List voices",
        tags=["voices"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        voices = voice_list(user=request_user(request))
        return paginated_response(request, self, voices, self.OutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={201: inline_serializer("VoiceCreated", {"voice": OutputSerializer()})},
        summary="Create a voice clone",
        tags=["voices"],
    )
    @raises("media_not_found", "invalid_voice_sample", "quota_exceeded")
    def post(self, request: Request) -> Response:
        user = request_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        media = media_get_for_user(user=user, media_id=data.validated_data["media_id"])
        voice = voice_create(user=user, media=media, name=data.validated_data["name"],
                             member_id=request_member_id(request))
        return Response({"voice": self.OutputSerializer(voice).data}, status=status.HTTP_201_CREATED)


class VoiceDetailApi(ApiView):
    """GET one of the caller's voices; DELETE it (and its sample in storage, after commit)."""

    workspace_actions = {"GET": "voices.view", "DELETE": "voices.edit"}

    class OutputSerializer(VoiceSerializer):
        class Meta:
            ref_name = "VoiceDetail"

    @extend_schema(responses={200: inline_serializer("VoiceResponse", {"voice": OutputSerializer()})},
                   summary="Get a voice", tags=["voices"])
    def get(self, request: Request, voice_id: uuid.UUID) -> Response:
        voice = voice_get(user=request_user(request), voice_id=voice_id)
        return Response({"voice": self.OutputSerializer(voice).data})

    @extend_schema(responses={204: OpenApiResponse(description="Deleted")}, summary="Delete a voice",
                   tags=["voices"])
    def delete(self, request: Request, voice_id: uuid.UUID) -> Response:
        voice_delete(voice=voice_get(user=request_user(request), voice_id=voice_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
