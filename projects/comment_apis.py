"""Comments on a project's timeline: `GET/POST projects/{id}/comments`, `PATCH/DELETE .../{comment_id}`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
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
from auteur.users.workspace_context import seat_of
from projects.comments import comment_create, comment_delete, comment_get, comment_list, comment_update
from projects.models import COMMENT_MAX_CHARS, Comment
from projects.selectors import project_get

MAX_TIME_MS = 48 * 3600 * 1000  # a timeline is at most a couple of days long


class CommentSerializer(serializers.ModelSerializer[Comment]):
    class Meta:
        model = Comment
        fields = ("id", "parent_id", "member_id", "text", "start_ms", "end_ms", "edl_version", "resolved_at",
                  "resolved_by", "created_at", "updated_at")


RANGE = ("start_ms", "end_ms", "edl_version")


class CommentThreadInputSerializer(StrictSerializer):
    """A new thread at a time range of the timeline, as of the timeline's version it was made on."""

    text = serializers.CharField(max_length=COMMENT_MAX_CHARS)
    start_ms = serializers.IntegerField(min_value=0, max_value=MAX_TIME_MS)
    end_ms = serializers.IntegerField(min_value=0, max_value=MAX_TIME_MS)
    edl_version = serializers.IntegerField(min_value=1, help_text="The timeline's version the comment was made on.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end_ms"] < attrs["start_ms"]:
            raise serializers.ValidationError({"end_ms": ["end_ms is before start_ms."]})
        return attrs


class CommentReplyInputSerializer(StrictSerializer):
    """A reply to a thread (a reply to a reply joins its thread): no range of its own."""

    text = serializers.CharField(max_length=COMMENT_MAX_CHARS)
    parent_id = serializers.UUIDField(help_text="A reply to this comment's thread.")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and (ranged := [name for name in RANGE if name in data]):
            raise serializers.ValidationError({name: ["A reply has no range of its own."] for name in ranged})
        return super().to_internal_value(data)


def comment_input(data: Any) -> dict[str, Any]:
    """A new comment's fields: a reply's if the body names `parent_id`, else a thread's (which needs
    all of start_ms, end_ms and edl_version); 400 `validation_error` otherwise."""
    reply = isinstance(data, dict) and "parent_id" in data
    serializer = (CommentReplyInputSerializer if reply else CommentThreadInputSerializer)(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


COMMENT_INPUT = PolymorphicProxySerializer(
    component_name="CommentInput", serializers=[CommentThreadInputSerializer, CommentReplyInputSerializer],
    resource_type_field_name=None)


class CommentUpdateSerializer(StrictSerializer):
    text = serializers.CharField(max_length=COMMENT_MAX_CHARS, required=False)
    resolved = serializers.BooleanField(required=False, help_text="Resolve (or reopen) the comment's thread.")


class CommentFilterSerializer(PageQuerySerializer):
    resolved = serializers.BooleanField(required=False, allow_null=True, default=None,
                                        help_text="Only resolved threads (true) or open ones (false), with their "
                                                  "replies.")


@raises("project_not_found")
class CommentListApi(ApiView):
    """The comments on a project's timeline, replies included, oldest first; POST adds a thread at a
    time range (`start_ms`, `end_ms`, and the `edl_version` it was made on) or a reply (`parent_id`)."""

    workspace_actions = {"GET": "comments.view", "POST": "comments.write"}
    pagination_class = KeyedPagination.of("comments")

    @extend_schema(summary="List a timeline's comments", parameters=[CommentFilterSerializer],
                   responses=CommentSerializer(many=True), tags=["projects"])
    def get(self, request: Request, project_id: str) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        filters = CommentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        comments = comment_list(project=project, resolved=filters.validated_data["resolved"])
        return paginated_response(request, self, comments, CommentSerializer)

    @extend_schema(summary="Comment on a timeline", request=COMMENT_INPUT,
                   responses={201: CommentSerializer}, tags=["projects"])
    @raises("comment_not_found", "quota_exceeded")
    def post(self, request: Request, project_id: str) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        comment = comment_create(project=project, member_id=request_member_id(request), **comment_input(request.data))
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)


@raises("project_not_found", "comment_not_found")
class CommentDetailApi(ApiView):
    """PATCH changes a comment's `text` (its author only) or resolves or reopens its thread
    (`resolved`); DELETE removes it, with its replies for a thread (its author, an owner or an admin)."""

    workspace_actions = {"PATCH": "comments.write", "DELETE": "comments.write"}

    @extend_schema(summary="Change or resolve a comment", request=CommentUpdateSerializer,
                   responses=CommentSerializer, tags=["projects"])
    def patch(self, request: Request, project_id: str, comment_id: str) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        comment = comment_get(project=project, comment_id=comment_id)
        data = CommentUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comment = comment_update(comment=comment, member_id=request_member_id(request), seat=seat_of(request._request),
                                 **data.validated_data)
        return Response(CommentSerializer(comment).data)

    @extend_schema(summary="Delete a comment", responses={204: None}, tags=["projects"])
    def delete(self, request: Request, project_id: str, comment_id: str) -> Response:
        project = project_get(user=request_user(request), project_id=project_id)
        comment_delete(comment=comment_get(project=project, comment_id=comment_id),
                       member_id=request_member_id(request), seat=seat_of(request._request))
        return Response(status=status.HTTP_204_NO_CONTENT)
