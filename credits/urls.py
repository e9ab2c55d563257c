from django.urls import path

from credits.apis import (
    CreditBalanceApi,
    CreditTransactionListApi,
    MemberBudgetDetailApi,
    MemberBudgetListApi,
    UserMeApi,
)

urlpatterns = [
    path("credits", CreditBalanceApi.as_view(), name="credits-balance"),
    path("credits/history", CreditTransactionListApi.as_view(), name="credits-history"),
    path("users/me", UserMeApi.as_view(), name="users-me"),
    path("workspaces/<str:workspace_id>/budgets", MemberBudgetListApi.as_view(), name="budget-list"),
    path("workspaces/<str:workspace_id>/budgets/<str:user_id>", MemberBudgetDetailApi.as_view(), name="budget-detail"),
]
