from django.urls import path

from auteur.users.apis import (
    AuthVerifyApi,
    InvitationAcceptApi,
    InvitationDetailApi,
    InvitationListApi,
    MemberDetailApi,
    MemberListApi,
    WorkspaceContentPolicyApi,
    WorkspaceDetailApi,
    WorkspaceLikenessPolicyApi,
    WorkspaceListApi,
)
from auteur.users.key_apis import KeyDetailApi, KeyListApi

urlpatterns = [
    path("auth/verify", AuthVerifyApi.as_view(), name="auth-verify"),
    path("workspaces", WorkspaceListApi.as_view(), name="workspace-list"),
    path("workspaces/<str:workspace_id>", WorkspaceDetailApi.as_view(), name="workspace-detail"),
    path("workspaces/<str:workspace_id>/content-policy", WorkspaceContentPolicyApi.as_view(),
         name="workspace-content-policy"),
    path("workspaces/<str:workspace_id>/likeness-policy", WorkspaceLikenessPolicyApi.as_view(),
         name="workspace-likeness-policy"),
    path("workspaces/<str:workspace_id>/members", MemberListApi.as_view(), name="member-list"),
    path("workspaces/<str:workspace_id>/members/<str:user_id>", MemberDetailApi.as_view(), name="member-detail"),
    path("workspaces/<str:workspace_id>/invitations", InvitationListApi.as_view(), name="invitation-list"),
    path("workspaces/<str:workspace_id>/invitations/<str:invitation_id>", InvitationDetailApi.as_view(),
         name="invitation-detail"),
    path("workspaces/<str:workspace_id>/keys", KeyListApi.as_view(), name="key-list"),
    path("workspaces/<str:workspace_id>/keys/<str:key_id>", KeyDetailApi.as_view(), name="key-detail"),
    path("invitations/accept", InvitationAcceptApi.as_view(), name="invitation-accept"),
]
