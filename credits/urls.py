from django.urls import path

from credits.apis import (
    CapListApi,
    CreditBalanceApi,
    CreditTransactionListApi,
    KeyCapApi,
    MemberBudgetDetailApi,
    MemberBudgetListApi,
    UserMeApi,
    WorkspaceCapApi,
)
from credits.usage_apis import UsageApi

urlpatterns = [
    path("credits", CreditBalanceApi.as_view(), name="credits-balance"),
    path("credits/history", CreditTransactionListApi.as_view(), name="credits-history"),
    path("usage", UsageApi.as_view(), name="usage"),
    path("users/me", UserMeApi.as_view(), name="users-me"),
    path("workspaces/<str:workspace_id>/caps", CapListApi.as_view(), name="cap-list"),
    path("workspaces/<str:workspace_id>/caps/workspace", WorkspaceCapApi.as_view(), name="cap-workspace"),
    path("workspaces/<str:workspace_id>/caps/keys/<str:key_id>", KeyCapApi.as_view(), name="cap-key"),
    path("workspaces/<str:workspace_id>/budgets", MemberBudgetListApi.as_view(), name="budget-list"),
    path("workspaces/<str:workspace_id>/budgets/<str:user_id>", MemberBudgetDetailApi.as_view(), name="budget-detail"),
]
