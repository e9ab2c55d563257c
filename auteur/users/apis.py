from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, KeyedPagination, StrictSerializer, paginated_response, request_user
from auteur.core.schema import raises
from auteur.users.models import WORKSPACE_NAME_MAX_LENGTH, ContentPolicy, LikenessPolicy
from auteur.users.roles import Role
from auteur.users.selectors import invitation_list, member_list, membership_get, membership_list
from auteur.users.workspace_services import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_remove,
    member_set_role,
    workspace_content_policy_set,
    workspace_create,
    workspace_likeness_policy_set,
    workspace_rename,
)


class AuthVerifyApi(ApiView):
    """Is this bearer token valid? Answers 401 `invalid_token` when it is not."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

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
    likeness_policy = serializers.ChoiceField(
        source="workspace.likeness_policy", choices=LikenessPolicy.choices, read_only=True,
        help_text="What may stand for a person's consent to the use of their face: `verified` (a consent video the "
                  "server checked) or `attested` (also an owner's or admin's attestation). Always `verified` in a "
                  "personal workspace.")
    content_policy = serializers.ChoiceField(
        source="workspace.content_policy", choices=ContentPolicy.choices, read_only=True,
        help_text="How strictly the content policy screens the workspace's requests and outputs: `standard` (the "
                  "platform's) or `strict` (the same categories refused at lower scores; negative prompts screened "
                  "in every category).")
    created_at = serializers.DateTimeField(source="workspace.created_at", read_only=True)
    updated_at = serializers.DateTimeField(source="workspace.updated_at", read_only=True)


class WorkspaceInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=WORKSPACE_NAME_MAX_LENGTH)


class WorkspaceListApi(ApiView):
    """The workspaces the caller is a member of, personal first; `?page=`, `?page_size=` (max 100).

    POST creates a team workspace with the caller as its owner; 403 `quota_exceeded` once the
    caller has created as many as this server allows.
    """

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

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

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

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


class WorkspaceLikenessPolicyApi(ApiView):
    """PUT: an owner sets the workspace's likeness policy. `attested` lets owners and admins attest a person's
    consent (POST /consents/attestations) in place of a verified consent video; `verified` (the default, and
    always a personal workspace's: 409 `personal_workspace`) makes the attested consents unusable, kept."""

    acts_in_workspace = False  # about the workspace in the path: the Auteur-Workspace header is ignored

    class InputSerializer(StrictSerializer):
        likeness_policy = serializers.ChoiceField(choices=LikenessPolicy.choices)

        class Meta:
            ref_name = "WorkspaceLikenessPolicyRequest"

    @extend_schema(summary="Set a workspace's likeness policy", request=InputSerializer,
                   responses=WorkspaceOutputSerializer)
    @raises("workspace_not_found", "permission_denied", "personal_workspace")
    def put(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workspace_likeness_policy_set(membership=membership, policy=serializer.validated_data["likeness_policy"])
        return Response(WorkspaceOutputSerializer(membership).data)


class WorkspaceContentPolicyApi(ApiView):
    """PUT: an owner sets how strictly the content policy screens the workspace's requests and outputs.
    `strict` refuses the same categories at lower scores, and screens negative prompts in every
    category; `standard` is the platform's policy, which no workspace can go below."""

    acts_in_workspace = False  # about the workspace in the path: the Auteur-Workspace header is ignored

    class InputSerializer(StrictSerializer):
        content_policy = serializers.ChoiceField(choices=ContentPolicy.choices)

        class Meta:
            ref_name = "WorkspaceContentPolicyRequest"

    @extend_schema(summary="Set a workspace's content policy", request=InputSerializer,
                   responses=WorkspaceOutputSerializer)
    @raises("workspace_not_found", "permission_denied")
    def put(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workspace_content_policy_set(membership=membership, policy=serializer.validated_data["content_policy"])
        return Response(WorkspaceOutputSerializer(membership).data)


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.UUIDField(read_only=True)
    name = serializers.CharField(source="user.name", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)


class RoleInputSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberListApi(ApiView):
    """The workspace's members, owners first, with their names and emails (every member sees them)."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    pagination_class = KeyedPagination.of("members")

    @extend_schema(summary="List a workspace's members", responses=MemberOutputSerializer(many=True))
    @raises("workspace_not_found")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return paginated_response(request, self, member_list(membership=membership), MemberOutputSerializer)


class MemberDetailApi(ApiView):
    """A member's seat: PATCH changes its role, DELETE removes it (one's own: leaving). Only an owner
    makes, changes or removes an owner, and gives the billing role; the last owner can neither leave
    nor be demoted (409 `last_owner`). A seat an admin with a budget re-roles gets a budget of at most
    what remains of the admin's own. A removed member's next request about the workspace is a 404."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    @extend_schema(summary="Change a member's role", request=RoleInputSerializer, responses=MemberOutputSerializer)
    @raises("workspace_not_found", "member_not_found", "permission_denied", "last_owner")
    def patch(self, request: Request, workspace_id: str, user_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = RoleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        seat = member_set_role(membership=membership, user_id=user_id, role=serializer.validated_data["role"])
        return Response(MemberOutputSerializer(seat).data)

    @extend_schema(summary="Remove a member, or leave", responses={204: None})
    @raises("workspace_not_found", "member_not_found", "permission_denied", "last_owner")
    def delete(self, request: Request, workspace_id: str, user_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        member_remove(membership=membership, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    invited_by = serializers.UUIDField(source="invited_by_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)


class InvitationCreatedSerializer(InvitationOutputSerializer):
    token = serializers.CharField(
        read_only=True, help_text="Shown once: whoever presents it (POST /invitations/accept) first, signed in, "
                                  "takes the seat. Only the invitation's id is kept.")


class InvitationListApi(ApiView):
    """The workspace's pending invitations (owner, admin); POST makes one with a `role` and answers
    its token, once. Only an owner invites an owner or a billing member; the seat an admin with a budget
    invites starts with a budget of at most what remains of the admin's own when it is taken; a
    personal workspace invites nobody (409 `personal_workspace`)."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    pagination_class = KeyedPagination.of("invitations")

    @extend_schema(summary="List a workspace's pending invitations", responses=InvitationOutputSerializer(many=True))
    @raises("workspace_not_found", "permission_denied")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return paginated_response(request, self, invitation_list(membership=membership), InvitationOutputSerializer)

    @extend_schema(summary="Invite a member", request=RoleInputSerializer, responses={201: InvitationCreatedSerializer})
    @raises("workspace_not_found", "permission_denied", "personal_workspace", "quota_exceeded")
    def post(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = RoleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, token = invitation_create(membership=membership, role=serializer.validated_data["role"])
        return Response({**InvitationOutputSerializer(invitation).data, "token": token},
                        status=status.HTTP_201_CREATED)


class InvitationDetailApi(ApiView):
    """DELETE revokes a pending invitation: its token is refused from then on."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    @extend_schema(summary="Revoke an invitation", responses={204: None})
    @raises("workspace_not_found", "permission_denied", "invitation_not_found")
    def delete(self, request: Request, workspace_id: str, invitation_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        invitation_revoke(membership=membership, invitation_id=invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptApi(ApiView):
    """Take the seat an invitation's token offers, as the signed-in account, once."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    class InputSerializer(StrictSerializer):
        token = serializers.CharField(max_length=200)

    @extend_schema(summary="Accept an invitation", request=InputSerializer, responses=WorkspaceOutputSerializer)
    @raises("invitation_not_found", "invitation_expired", "invitation_used", "already_member", "quota_exceeded")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        seat = invitation_accept(user=request_user(request), token=serializer.validated_data["token"])
        return Response(WorkspaceOutputSerializer(seat).data)
