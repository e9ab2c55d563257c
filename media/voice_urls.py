"""The user's voices and consents, included under /api/v1/ by auteur/urls.py."""

from django.urls import path

from media.consent_apis import ConsentAttestApi, ConsentDetailApi, LikenessChallengeApi
from media.voice_apis import (
    ConsentChallengeApi,
    ConsentRevokeApi,
    ConsentRevokeByTokenApi,
    ConsentRevokeLinkApi,
    VoiceConsentApi,
    VoiceDetailApi,
    VoiceListCreateApi,
)

urlpatterns = [
    path("voices", VoiceListCreateApi.as_view(), name="voices"),
    path("voices/consent-challenges", ConsentChallengeApi.as_view(), name="voice-consent-challenges"),
    path("voices/<uuid:voice_id>", VoiceDetailApi.as_view(), name="voice-detail"),
    path("voices/<uuid:voice_id>/consent", VoiceConsentApi.as_view(), name="voice-consent"),
    path("likeness/consent-challenges", LikenessChallengeApi.as_view(), name="likeness-consent-challenges"),
    path("consents/attestations", ConsentAttestApi.as_view(), name="consent-attestations"),
    path("consents/revoke", ConsentRevokeByTokenApi.as_view(), name="consent-revoke-by-token"),
    path("consents/<uuid:consent_id>", ConsentDetailApi.as_view(), name="consent-detail"),
    path("consents/<uuid:consent_id>/revoke", ConsentRevokeApi.as_view(), name="consent-revoke"),
    path("consents/<uuid:consent_id>/revoke-link", ConsentRevokeLinkApi.as_view(), name="consent-revoke-link"),
]
