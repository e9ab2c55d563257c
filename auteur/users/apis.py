from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, KeyedPagination, StrictSerializer, paginated_response, request_user
from auteur.core.schema import raises
from auteur.users.models import WORKSPACE_NAME_MAX_LENGTH
from auteur.users.roles import Role
from auteur.users.selectors import membership_get, membership_list
from auteur.users.workspace_services import workspace_create, workspace_rename


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


class WorkspaceOutputSerializer(serializers.Serializer):
    """A workspace as one of its members sees it: with that member's own role."""

    id = serializers.UUIDField(source="workspace.id", read_only=True)
    name = serializers.CharField(source="workspace.name", read_only=True)
    personal = serializers.BooleanField(
        source="workspace.personal", read_only=True,
        help_text="The account's own workspace: its id is the account's, and it has no other member.")
    role = serializers.ChoiceField(choices=Role.choices, read_only=True, help_text="The caller's role here.")
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)
    created_at = serializers.DateTimeField(source="workspace.created_at", read_only=True)
    updated_at = serializers.DateTimeField(source="workspace.updated_at", read_only=True)


class WorkspaceInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=WORKSPACE_NAME_MAX_LENGTH)


class WorkspaceListApi(ApiView):
    """The workspaces the caller is a member of, personal first; `?page=`, `?page_size=` (max 100).

    POST creates a team workspace with the caller as its owner; 403 `quota_exceeded` once the
    caller has created as many as this server allows.
    """

    pagination_class = KeyedPagination.of("workspaces")

    @extend_schema(summary="List your workspaces", responses=WorkspaceOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(request, self, membership_list(user=request_user(request)),
                                  WorkspaceOutputSerializer)

    @extend_schema(summary="Create a team workspace", request=WorkspaceInputSerializer,
                   responses={201: WorkspaceOutputSerializer})
    @raises("quota_exceeded")
    def post(self, request: Request) -> Response:
        serializer = WorkspaceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = workspace_create(user=request_user(request), name=serializer.validated_data["name"])
        return Response(WorkspaceOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class WorkspaceDetailApi(ApiView):
    """One workspace the caller is a member of; 404 `workspace_not_found` for any other."""

    @extend_schema(summary="Get a workspace", responses=WorkspaceOutputSerializer)
    @raises("workspace_not_found")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return Response(WorkspaceOutputSerializer(membership).data)

    @extend_schema(summary="Rename a workspace", request=WorkspaceInputSerializer, responses=WorkspaceOutputSerializer)
    @raises("workspace_not_found", "permission_denied")
    def patch(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = WorkspaceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workspace_rename(membership=membership, name=serializer.validated_data["name"])
        return Response(WorkspaceOutputSerializer(membership).data)
