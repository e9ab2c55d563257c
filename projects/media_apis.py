"""Media of a project, and the user's voices.

Nested under projects, hence here rather than in media/ (media imports no other app). Every
view resolves the project through ``project_get`` first, scoped to the caller: another user's
project, media file or voice is a 404, never a 403, for reads and writes alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

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
from auteur.core.throttling import SlidingWindowThrottle, person_of
from media.models import MediaFile, MediaStatus, MediaType
from media.selectors import (
    media_get,
    media_latest_version_id,
    media_list,
)
from media.services.deletion import media_delete
from media.services.downloads import media_urls
from media.services.publishing import (
    PUBLICATION_STATES,
    media_public_urls,
    media_publish,
    media_unpublish,
    public_url,
    publication_state,
)
from media.services.uploads import (
    MAX_PARTS_PER_REQUEST,
    MultipartUpload,
    media_confirm_upload,
    media_create_upload,
    media_sign_parts,
    media_upload_parts,
)
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
    derived_from_id = serializers.UUIDField(allow_null=True, help_text=(
        "The file this one is a version of (a compression's source); null otherwise, or once that file is deleted"))
    latest_version_id = serializers.SerializerMethodField(help_text=(
        "This file's newest ready version (its latest compression), which it stands for now; null when it has none. "
        "All of them: `GET .../media?derived_from=<this id>`."))
    publication = serializers.SerializerMethodField(help_text=(
        "`unpublished`, `publishing` (`POST .../publish` was accepted and its public copy is being made) or "
        "`published`"))
    public_url = serializers.SerializerMethodField(help_text=(
        "Where the CDN serves the file while it is published (`POST .../publish`): a public URL that does not "
        "expire; null while it is not published"))
    public_thumbnail_url = serializers.SerializerMethodField(help_text=(
        "The same for its thumbnail; null when it is not published or has none"))
    published_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_has_thumbnail(self, obj: MediaFile) -> bool:
        return bool(obj.thumbnail_key)

    @extend_schema_field(serializers.ChoiceField(choices=PUBLICATION_STATES))
    def get_publication(self, obj: MediaFile) -> str:
        return publication_state(obj)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_public_url(self, obj: MediaFile) -> str | None:
        return public_url(obj.public_key)

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_public_thumbnail_url(self, obj: MediaFile) -> str | None:
        return public_url(obj.public_thumbnail_key)

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_latest_version_id(self, obj: MediaFile) -> uuid.UUID | None:
        return media_latest_version_id(media=obj)


class MultipartSerializer(serializers.Serializer):
    part_size = serializers.IntegerField(help_text="Bytes of every part but the last")
    part_count = serializers.IntegerField(help_text="Parts 1 to part_count; the last holds the rest")
    parts_url = serializers.CharField(help_text=(
        "POST it {parts: [{number, sha256}]} for the parts' signed PUTs; GET it for the parts stored"))

    class Meta:
        ref_name = "MediaMultipartUpload"


@raises("invalid_size", "file_too_large", "unsupported_media_type", "invalid_filename", "extension_mismatch",
        "quota_exceeded")
class ProjectMediaUploadUrlApi(ApiView):
    """Where to upload a new file of the project.

    Below the multipart threshold (64 MiB by default), or with no `size_bytes`: a signed PUT URL
    (valid 15 minutes). PUT the file's bytes to `upload_url` with the `headers` given
    (Content-Type, exactly), then call `confirm`. The URL is bound to the content type and size
    declared here (without `size_bytes`, to at most 5 GiB).

    A declared `size_bytes` of at least the threshold (up to the largest upload, 50 GiB by default): a
    multipart upload (`multipart`, and `upload_url` null). Cut the file into `part_count` parts of
    `part_size` bytes (the last one shorter); ask `parts_url` (POST) for each part's signed PUT,
    naming its number and the SHA-256 of its bytes; PUT each part with its `headers`; then call
    `confirm`. Parts go in any order and at once. After a dropped connection or a restart, GET
    `parts_url` lists the parts stored: send only the others. The upload stays open until
    `expires_at` (a day), then it is deleted.

    403 `quota_exceeded` if the declared size does not fit the user's storage quota (an
    undeclared size is checked at confirm).
    """

    workspace_actions = {"POST": "media.edit"}

    class InputSerializer(StrictSerializer):
        filename = serializers.CharField(max_length=255, trim_whitespace=False)
        content_type = serializers.CharField(max_length=255)
        size_bytes = serializers.IntegerField(
            required=False,
            help_text="The file's size. Optional below 5 GiB: without it the URL takes up to 5 GiB, and the size "
                      "is checked at confirm (413 `file_too_large` there deletes the file). At least "
                      "the multipart threshold (64 MiB by default): a multipart upload.")

        class Meta:
            ref_name = "MediaUploadUrlRequest"

    class OutputSerializer(serializers.Serializer):
        upload_url = serializers.URLField(allow_null=True, help_text="The signed PUT; null for a multipart upload")
        media_id = serializers.UUIDField()
        expires_at = serializers.DateTimeField(help_text=(
            "When the URL expires; for a multipart upload, when the unconfirmed upload is deleted"))
        method = serializers.CharField()
        headers = serializers.DictField(child=serializers.CharField())
        multipart = MultipartSerializer(allow_null=True)

        class Meta:
            ref_name = "MediaUploadUrl"

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Start an upload",
        tags=["media"],
    )
    def post(self, request: Request, project_id: uuid.UUID) -> Response:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        media, ticket = media_create_upload(user=user, project=project, member_id=request_member_id(request),
                                            **data.validated_data)
        body: dict[str, Any]
        if isinstance(ticket, MultipartUpload):
            body = {
                "upload_url": None, "media_id": media.pk, "method": "PUT", "headers": {},
                "expires_at": media.created_at + timedelta(seconds=settings.AUTEUR_MEDIA_STALE_UPLOAD_SECONDS),
                "multipart": {"part_size": ticket.part_size, "part_count": ticket.part_count,
                              "parts_url": f"/api/v1/projects/{project.pk}/media/{media.pk}/parts"},
            }
        else:
            body = {"upload_url": ticket.url, "media_id": media.pk, "expires_at": ticket.expires_at,
                    "method": ticket.method, "headers": ticket.headers, "multipart": None}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


@raises("not_multipart", "upload_closed", "invalid_part", "invalid_checksum")
class ProjectMediaPartsApi(ApiView):
    """A multipart upload's parts: GET lists those stored (a resuming client sends only the
    others); POST signs a PUT for each part named, bound to its number, its exact size and the
    SHA-256 of its bytes (base64, as S3's `x-amz-checksum-sha256` carries it): a part whose bytes
    do not match is refused. 409 `not_multipart` for a file uploaded with one PUT, 409
    `upload_closed` once confirmed."""

    workspace_actions = {"GET": "media.edit", "POST": "media.edit"}

    class PartRequestSerializer(StrictSerializer):
        number = serializers.IntegerField(min_value=1, max_value=10_000)
        sha256 = serializers.CharField(max_length=64, help_text="The base64 of the part's SHA-256")

        class Meta:
            ref_name = "MediaPartRequest"

    class InputSerializer(StrictSerializer):
        parts = serializers.ListField(min_length=1, max_length=MAX_PARTS_PER_REQUEST,
                                      child=serializers.DictField())  # each checked by PartRequestSerializer

        class Meta:
            ref_name = "MediaPartsRequest"

    class SignedPartSerializer(serializers.Serializer):
        number = serializers.IntegerField()
        url = serializers.URLField()
        method = serializers.CharField()
        headers = serializers.DictField(child=serializers.CharField(), help_text="Send them with the PUT, exactly")
        expires_at = serializers.DateTimeField()

        class Meta:
            ref_name = "MediaSignedPart"

    class StoredPartSerializer(serializers.Serializer):
        number = serializers.IntegerField()
        size = serializers.IntegerField()
        sha256 = serializers.CharField(allow_blank=True)

        class Meta:
            ref_name = "MediaStoredPart"

    def _media(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> MediaFile:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        return media_get(user=user, project_id=project.pk, media_id=media_id)

    @extend_schema(
        responses={200: inline_serializer("MediaUploadParts", {
            "part_size": serializers.IntegerField(), "part_count": serializers.IntegerField(),
            "parts": StoredPartSerializer(many=True)})},
        summary="List the parts of a multipart upload stored so far",
        tags=["media"],
    )
    def get(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        plan, parts = media_upload_parts(media=self._media(request, project_id, media_id))
        return Response({"part_size": plan.part_size, "part_count": plan.part_count,
                         "parts": self.StoredPartSerializer(parts, many=True).data})

    @extend_schema(
        request=inline_serializer("MediaPartsRequestBody", {"parts": PartRequestSerializer(many=True)}),
        responses={200: inline_serializer("MediaSignedParts", {"parts": SignedPartSerializer(many=True)})},
        summary="Sign the PUTs of parts of a multipart upload",
        tags=["media"],
    )
    def post(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        media = self._media(request, project_id, media_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asked = []
        for index, raw in enumerate(data.validated_data["parts"]):
            part = self.PartRequestSerializer(data=raw)
            if not part.is_valid():
                raise serializers.ValidationError({"parts": {str(index): part.errors}})
            asked.append((part.validated_data["number"], part.validated_data["sha256"]))
        signed = media_sign_parts(media=media, parts=asked)
        return Response({"parts": [
            {"number": number, "url": ticket.url, "method": ticket.method, "headers": ticket.headers,
             "expires_at": ticket.expires_at} for number, ticket in signed]})


@raises("upload_incomplete", "size_mismatch", "quota_exceeded", "file_too_large", "invalid_size", "upload_changed")
class ProjectMediaConfirmApi(ApiView):
    """The upload is done: check it, then probe it in the background.

    202 while the file is being probed (`processing`), 200 once it is `ready` or `rejected`.
    Calling it again is harmless. 422 `upload_incomplete` / `size_mismatch` if the object is
    missing or not the declared size (the file stays `uploading`; PUT again and retry). For an
    upload whose size was not declared, 413 `file_too_large` (or 422 `invalid_size` when empty):
    the file and its object are deleted. 403
    `quota_exceeded` if the file no longer fits the user's storage quota: it is deleted. 409
    `upload_changed` if a PUT replaced the object while it was being confirmed (S3): nothing was
    moved, and confirming again checks the new object. After confirm the upload URL can no longer
    change the file; the size recorded is that of the object confirm moved, measured after the
    move (a PUT that landed just before it is what gets checked, counted and probed).
    """

    workspace_actions = {"POST": "media.edit"}

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
    """The project's media, newest first; `?status=` / `?type=` / `?derived_from=` (a file's versions: its
    compressions) filter, `?page=` / `?page_size=` (max 100)."""

    workspace_actions = {"GET": "media.view"}

    pagination_class = KeyedPagination.of("media")

    class FilterSerializer(PageQuerySerializer):
        status = serializers.ChoiceField(choices=MediaStatus.choices, required=False)
        type = serializers.ChoiceField(choices=MediaType.choices, required=False)
        derived_from = serializers.UUIDField(required=False, help_text="Only the versions of this file")

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
            derived_from=filters.validated_data.get("derived_from"),
        )
        return paginated_response(request, self, qs, self.OutputSerializer)


class ProjectMediaDetailApi(ApiView):
    """GET: one media file with signed `download_url` / `thumbnail_url` (15 minutes).

    DELETE: removes the record now and its objects in storage after commit; 409 `media_in_use`
    while a running job uses it.
    """

    workspace_actions = {"GET": "media.view", "DELETE": "media.edit"}

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


class PublishThrottle(SlidingWindowThrottle):
    """Publish requests per person, counted apart from (and as well as) the general per-user limit."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method != "POST":
            return True
        return self._allow(f"rl:publish:u:{person_of(request)}",
                           limit=settings.AUTEUR_RATE_LIMIT_PUBLISHES_PER_MINUTE)


class ProjectMediaPublishApi(ApiView):
    """A file's publication through the CDN (media/services/publishing.py): a public copy beside the
    private object, which keeps its signed URLs."""

    workspace_actions = {"POST": "media.edit", "DELETE": "media.edit"}

    throttle_classes = [SlidingWindowThrottle, PublishThrottle]

    class OutputSerializer(serializers.Serializer):
        publication = serializers.ChoiceField(choices=["publishing", "published"], help_text=(
            "`publishing` while the public copy is being made (the URLs are null until it is done), then `published`"))
        public_url = serializers.URLField(allow_null=True, help_text="Null until the file is published")
        public_thumbnail_url = serializers.URLField(allow_null=True, help_text=(
            "Null until the file is published, and when it has no thumbnail"))
        published_at = serializers.DateTimeField(allow_null=True)

        class Meta:
            ref_name = "MediaPublication"

    def _media(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> MediaFile:
        user = request_user(request)
        project = project_get(user=user, project_id=project_id)
        return media_get(user=user, project_id=project.pk, media_id=media_id)

    @extend_schema(request=None, responses={200: OutputSerializer, 202: OutputSerializer},
                   summary="Publish a media file through the CDN", tags=["media"])
    @raises("media_not_ready", "publishing_unavailable", "too_many_publications", "publication_ending")
    def post(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        """Publish a ready file: a public copy of it (and of its thumbnail) that anyone with its
        `public_url` may fetch from the CDN, served with `Cache-Control: public, max-age=...` (a day by
        default). The URL names a random folder and the file's name, nothing else, and does not expire.

        The copy is made by a worker: the answer is 202 with `publication: "publishing"`, and the
        file's `publication` turns `published`, with its `public_url`, once the copy is done (seconds
        for most files, minutes for a render of many GiB). Publishing a file that is published or
        publishing answers its state as it is (200 once published: the same URL). 422
        `media_not_ready` before the file is ready; 409 `publication_ending` when it was unpublished
        while its copy was being made (until that copy ends); 429 `too_many_publications` while the caller has
        as many files publishing as the server allows (3 by default), and `rate_limited` past its
        publish requests a minute; 503 `publishing_unavailable` where the server has no CDN configured."""
        media = media_publish(media=self._media(request, project_id, media_id))
        answer = self.OutputSerializer(media_public_urls(media=media)).data
        return Response(answer, status=status.HTTP_200_OK if media.public_key else status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Unpublished")},
                   summary="Unpublish a media file", tags=["media"])
    def delete(self, request: Request, project_id: uuid.UUID, media_id: uuid.UUID) -> Response:
        """Unpublish: the public copies are deleted and the file's `public_url` is null again; its
        signed `download_url` works as before. A CDN may keep serving a copy it cached until its
        max-age has passed, unless the CDN is purged. Unpublishing a file that is not published is
        not an error; deleting a file unpublishes it too."""
        media_unpublish(media=self._media(request, project_id, media_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
