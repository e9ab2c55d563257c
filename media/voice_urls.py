"""The user's voices, included under /api/v1/ by auteur/urls.py."""

from django.urls import path

from media.voice_apis import VoiceDetailApi, VoiceListCreateApi

urlpatterns = [
    path("voices", VoiceListCreateApi.as_view(), name="voices"),
    path("voices/<uuid:voice_id>", VoiceDetailApi.as_view(), name="voice-detail"),
]
