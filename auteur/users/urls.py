from django.urls import path

from auteur.users.apis import AuthVerifyApi, WorkspaceDetailApi, WorkspaceListApi

urlpatterns = [
    path("auth/verify", AuthVerifyApi.as_view(), name="auth-verify"),
    path("workspaces", WorkspaceListApi.as_view(), name="workspace-list"),
    path("workspaces/<str:workspace_id>", WorkspaceDetailApi.as_view(), name="workspace-detail"),
]
