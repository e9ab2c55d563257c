"""Media of a project, and the user's voices.

Nested under projects, hence here rather than in media/ (media imports no other app). Every
view resolves the project through ``project_get`` first, scoped to the caller: another user's
project, media file or voice is a 404, never a 403, for reads and writes alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_user,
)
from auteur.schema import raises
from media.models import MediaFile, MediaStatus, MediaType, VoiceClone
from media.selectors import media_get, media_get_for_user, media_list, voice_get, voice_list
from media.services.deletion import media_delete
from media.services.downloads import media_urls
from media.services.uploads import media_confirm_upload, media_create_upload
from media.services.voices import voice_create, voice_delete, voice_sample_url
from projects.selectors import project_get


class MediaSerializer(serializers.Serializer):
    class Meta:
        ref_name = "Media"

    id = serializers.UUIDField()
    project_id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=MediaType.choices)
    mime_type = serializers.CharField()
    status = serializers.ChoiceField(choices=MediaStatus.choices)
    rejection_reason = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    file_size_bytes = serializers.IntegerField()
    content_sha256 = serializers.CharField(allow_blank=True, help_text=(
        "The SHA-256 of the file's bytes (hex), recorded once it is ready; empty before, and for files stored "
        "before it was recorded. The result cache knows an input file by it."))
    metadata = serializers.DictField()
    has_thumbnail = serializers.SerializerMethodField()
    source_job_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_has_thumbnail(self, obj: MediaFile) -> bool:
        return bool(obj.thumbnail_key)


@raises("invalid_size", "file_too_large", "unsupported_media_type", "invalid_filename", "extension_mismatch",
        "quota_exceeded")
class ProjectMediaUploadUrlApi(ApiView):
    """A signed PUT URL for a new file of the project (valid 15 minutes).

    PUT the file's bytes to `upload_url` with the `headers` given (Content-Type, exactly), then
    call `confirm`. The URL is bound to the content type and size declared here (without
    `size_bytes`, to at most the maximum upload size). 403 `quota_exceeded` if the declared size
    does not fit the user's storage quota (an undeclared size is checked at confirm).
    """

    class InputSerializer(StrictSerializer):
        filename = serializers.CharField(max_length=255, trim_whitespace=False)
        content_type = serializers.CharField(max_length=255)
        size_bytes = serializers.IntegerField(
            required=False,
            help_text="The file's size. Optional: without it the URL takes up to the maximum upload size, and "
                      "the size is checked at confirm (413 `file_too_large` there deletes the file).")

        class Meta:
            ref_name = "MediaUploadUrlRequest"

    class OutputSerializer(serializers.Serializer):
        upload_url = serializers.URLField()
        media_id = serializers.UUIDField()
        expires_at = serializers.DateTimeField()
        method = serializers.CharField()
        headers = serializers.DictField(child=serializers.CharField())

        class Meta:
            ref_name = "MediaUploadUrl"

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Get a signed upload URL",
        tags=["media"],
    )
    def post(self, request: Request, project_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        media, ticket = media_create_upload(user=user, project=project, **data.validated_data)
        body = {
            "upload_url": ticket.url,
            "media_id": media.pk,
            "expires_at": ticket.expires_at,
            "method": ticket.method,
            "headers": ticket.headers,
        }
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


@raises("upload_incomplete", "size_mismatch", "quota_exceeded", "file_too_large", "invalid_size")
class ProjectMediaConfirmApi(ApiView):
    """The upload is done: check it, then probe it in the background.

    202 while the file is being probed (`processing`), 200 once it is `ready` or `rejected`.
    Calling it again is harmless. 422 `upload_incomplete` / `size_mismatch` if the object is
    missing or not the declared size (the file stays `uploading`; PUT again and retry). For an
    upload whose size was not declared, 413 `file_too_large` (or 422 `invalid_size` when empty):
    the file and its object are deleted. 403
    `quota_exceeded` if the file no longer fits the user's storage quota: it is deleted. After
    confirm the upload URL can no longer change the file.
    """

    class InputSerializer(StrictSerializer):
        """No fields; a body, if any, must be `{}`."""

        class Meta:
            ref_name = "MediaConfirmRequest"

    class OutputSerializer(serializers.Serializer):
        media = MediaSerializer()

        class Meta:
            ref_name = "MediaConfirm"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, 202: OutputSerializer},
        summary="Confirm an upload",
        tags=["media"],
    )
    def post(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        self.InputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        media = media_get(user=user, project_id=project.pk, media_id=media_id)
        media = media_confirm_upload(media=media)
        code = status.HTTP_202_ACCEPTED if media.status == MediaStatus.PROCESSING else status.HTTP_200_OK
        return Response(self.OutputSerializer({"media": media}).data, status=code)


class ProjectMediaListApi(ApiView):
    """The project's media, newest first; `?status=` / `?type=` filter, `?page=` / `?page_size=` (max 100)."""

    pagination_class = KeyedPagination.of("media")

    class FilterSerializer(PageQuerySerializer):
        status = serializers.ChoiceField(choices=MediaStatus.choices, required=False)
        type = serializers.ChoiceField(choices=MediaType.choices, required=False)

    class OutputSerializer(MediaSerializer):
        class Meta:
            ref_name = "MediaFile"

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        summary="List a project's media",
        tags=["media"],
    )
    def get(self, request: Request, project_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = media_list(
            user=user,
            project_id=project.pk,
            status=filters.validated_data.get("status"),
            type=filters.validated_data.get("type"),
        )
        return paginated_response(request, self, qs, self.OutputSerializer)


class ProjectMediaDetailApi(ApiView):
    """GET: one media file with signed `download_url` / `thumbnail_url` (15 minutes).

    DELETE: removes the record now and its objects in storage after commit; 409 `media_in_use`
    while a running job uses it.
    """

    class OutputSerializer(MediaSerializer):
        """The file, with the signed URLs passed in the context (`urls`: media.services.downloads.MediaUrls)."""

        download_url = serializers.SerializerMethodField()
        thumbnail_url = serializers.SerializerMethodField()
        urls_expire_at = serializers.SerializerMethodField()

        class Meta:
            ref_name = "MediaFileDetail"

        def get_download_url(self, obj: MediaFile) -> str | None:
            return self.context["urls"].download_url

        def get_thumbnail_url(self, obj: MediaFile) -> str | None:
            return self.context["urls"].thumbnail_url

        def get_urls_expire_at(self, obj: MediaFile) -> datetime | None:
            return self.context["urls"].expires_at

    @extend_schema(responses={200: inline_serializer("ProjectMedia", {"media": OutputSerializer()})},
                   summary="Get a media file", tags=["media"])
    def get(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        media = media_get(user=user, project_id=project.pk, media_id=media_id)
        return Response({"media": self.OutputSerializer(media, context={"urls": media_urls(media=media)}).data})

    @extend_schema(responses={204: OpenApiResponse(description="Deleted")}, summary="Delete a media file",
                   tags=["media"])
    @raises("media_in_use")
    def delete(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        media = media_get(user=user, project_id=project.pk, media_id=media_id)
        media_delete(media=media)
        return Response(status=status.HTTP_204_NO_CONTENT)


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

    The voice keeps the first AUTEUR_VOICE_SAMPLE_MAX_SECONDS (30 s) as a mono 24 kHz WAV;
    403 `quota_exceeded` past the user's voice quota.
    """

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
        voice = voice_create(user=user, media=media, name=data.validated_data["name"])
        return Response({"voice": self.OutputSerializer(voice).data}, status=status.HTTP_201_CREATED)


class VoiceDetailApi(ApiView):
    """GET one of the caller's voices; DELETE it (and its sample in storage, after commit)."""

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
