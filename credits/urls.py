from django.urls import path

from credits.apis import CreditBalanceApi, CreditTransactionListApi, UserMeApi

urlpatterns = [
    path("credits", CreditBalanceApi.as_view(), name="credits-balance"),
    path("credits/history", CreditTransactionListApi.as_view(), name="credits-history"),
    path("users/me", UserMeApi.as_view(), name="users-me"),
]
