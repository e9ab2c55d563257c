from django.urls import path

from auteur.users.apis import AuthVerifyApi

urlpatterns = [
    path("auth/verify", AuthVerifyApi.as_view(), name="auth-verify"),
]
