"""The user's voice clones and the consents they are made with, included under /api/v1/ by auteur/urls.py
(media/voice_urls.py)."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_member_id,
    request_user,
)
from auteur.core.schema import raises
from media.consent_phrases import phrase_text
from media.models import ConsentChallenge, ConsentRevoker, VoiceClone
from media.selectors import media_get_for_user, voice_get, voice_list
from media.services.consents import (
    consent_by_revoke_token,
    consent_challenge_create,
    consent_get,
    consent_revoke,
    consent_revoke_token,
    voice_consent_state,
)
from media.services.voices import voice_consent_attach, voice_create, voice_delete, voice_sample_url


class VoiceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    sample_duration_ms = serializers.IntegerField()
    source_media_id = serializers.UUIDField(allow_null=True)
    sample_url = serializers.SerializerMethodField()
    consent_id = serializers.UUIDField(allow_null=True, help_text="The speaker's verified consent.")
    consent_status = serializers.SerializerMethodField(
        help_text="`verified`: usable. `grace`: made before consents existed, usable until `consent_grace_until`. "
                  "`required`: refused (403 `consent_required`) until a consent is attached. `revoked`: its consent "
                  "was revoked; refused for good.")
    consent_grace_until = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_sample_url(self, obj: VoiceClone) -> str:
        return voice_sample_url(voice=obj).url

    def get_consent_status(self, obj: VoiceClone) -> str:
        return voice_consent_state(obj)


class VoiceListCreateApi(ApiView):
    """GET: the caller's voices (paginated). POST: clone a voice from a ready audio file of at least 3 s,
    naming the consent its speaker recorded for that file (a completed `voice-consent` job's
    `output_data.consent_id`).

    The voice keeps the sample's first 30 s (by default) as a mono 24 kHz WAV;
    403 `quota_exceeded` past the user's voice quota; 403 `consent_required` when the consent is not
    this workspace's, failed its verification, was verified against another file or already made a
    voice (`details.reason`: `missing`, `failed`, `other_sample`, `used`).
    """

    workspace_actions = {"GET": "voices.view", "POST": "voices.edit"}

    class InputSerializer(StrictSerializer):
        media_id = serializers.UUIDField()
        name = serializers.CharField(max_length=255)
        consent_id = serializers.UUIDField(help_text="The verified consent of the sample's speaker.")

        class Meta:
            ref_name = "VoiceCreateRequest"

    FilterSerializer = PageQuerySerializer
    pagination_class = KeyedPagination.of("voices")

    class OutputSerializer(VoiceSerializer):
        class Meta:
            ref_name = "Voice"

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer(many=True),
        summary="List voices",
        tags=["voices"],
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        voices = voice_list(user=request_user(request))
        return paginated_response(request, self, voices, self.OutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={201: inline_serializer("VoiceCreated", {"voice": OutputSerializer()})},
        summary="Create a voice clone",
        tags=["voices"],
    )
    @raises("media_not_found", "invalid_voice_sample", "quota_exceeded", "consent_required")
    def post(self, request: Request) -> Response:
        user = request_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        media = media_get_for_user(user=user, media_id=data.validated_data["media_id"])
        voice = voice_create(user=user, media=media, name=data.validated_data["name"],
                             consent_id=data.validated_data["consent_id"], member_id=request_member_id(request))
        return Response({"voice": self.OutputSerializer(voice).data}, status=status.HTTP_201_CREATED)


class VoiceDetailApi(ApiView):
    """GET one of the caller's voices; DELETE it (and its sample in storage, after commit)."""

    workspace_actions = {"GET": "voices.view", "DELETE": "voices.edit"}

    class OutputSerializer(VoiceSerializer):
        class Meta:
            ref_name = "VoiceDetail"

    @extend_schema(responses={200: inline_serializer("VoiceResponse", {"voice": OutputSerializer()})},
                   summary="Get a voice", tags=["voices"])
    def get(self, request: Request, voice_id: uuid.UUID) -> Response:
        voice = voice_get(user=request_user(request), voice_id=voice_id)
        return Response({"voice": self.OutputSerializer(voice).data})

    @extend_schema(responses={204: OpenApiResponse(description="Deleted")}, summary="Delete a voice",
                   tags=["voices"])
    def delete(self, request: Request, voice_id: uuid.UUID) -> Response:
        voice_delete(voice=voice_get(user=request_user(request), voice_id=voice_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VoiceConsentApi(ApiView):
    """POST: attach its speaker's verified consent to a voice made before consents existed (one in
    `grace` or `required`). The consent must have been verified against the file the voice was made
    from (`source_media_id`): 403 `consent_required` otherwise, as at creation."""

    workspace_actions = {"POST": "voices.edit"}

    class InputSerializer(StrictSerializer):
        consent_id = serializers.UUIDField()

        class Meta:
            ref_name = "VoiceConsentRequest"

    @extend_schema(request=InputSerializer,
                   responses={200: inline_serializer("VoiceConsentAttached", {"voice": VoiceSerializer()})},
                   summary="Attach a consent to a voice", tags=["voices"])
    @raises("voice_not_found", "consent_required")
    def post(self, request: Request, voice_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        voice = voice_get(user=request_user(request), voice_id=voice_id)
        voice = voice_consent_attach(voice=voice, consent_id=data.validated_data["consent_id"])
        return Response({"voice": VoiceSerializer(voice).data})


class ConsentChallengeSerializer(serializers.Serializer):
    challenge_id = serializers.UUIDField(source="id")
    phrase = serializers.SerializerMethodField(help_text="What the speaker reads, whole, in one recording.")
    words = serializers.ListField(child=serializers.CharField(), help_text="The fresh words, in order.")
    statement = serializers.CharField()
    language = serializers.CharField()
    expires_at = serializers.DateTimeField()

    def get_phrase(self, obj: ConsentChallenge) -> str:
        return phrase_text(obj.words, obj.statement)


class ConsentChallengeApi(ApiView):
    """POST: a phrase for the speaker of a voice to read in their consent recording: fresh words and
    the statement that they agree to have their voice cloned in this workspace. Valid 10 minutes (by
    default), for one recording, by the member it is issued to. Upload the recording as any media
    file, then submit a `voice-consent` job naming it, the challenge and the voice's sample.
    403 `quota_exceeded` past the workspace's unused challenges; 429 `too_many_consent_attempts`
    after too many failed verifications in a day (`details.retry_after_seconds`)."""

    workspace_actions = {"POST": "voices.edit"}

    @extend_schema(request=None, responses={201: ConsentChallengeSerializer}, summary="Issue a consent challenge",
                   tags=["voices"])
    @raises("quota_exceeded", "too_many_consent_attempts")
    def post(self, request: Request) -> Response:
        challenge = consent_challenge_create(user=request_user(request), member_id=request_member_id(request))
        return Response(ConsentChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)


class ConsentRevokedSerializer(serializers.Serializer):
    consent_id = serializers.UUIDField(source="consent.id")
    status = serializers.CharField(source="consent.status")
    revoked_at = serializers.DateTimeField(source="consent.revoked_at")
    jobs_canceled = serializers.IntegerField(help_text="Waiting jobs that used its voice or face, canceled and "
                                                       "refunded now (0 when it was already revoked).")


class ConsentRevokeApi(ApiView):
    """POST: revoke one of the workspace's consents (a voice's or a likeness's), at once and for good. The
    voice made with it, or the faces it covers, are refused from now on (403 `consent_required`, reason
    `revoked`); the waiting jobs that use them are canceled and refunded in full; a running one
    finishes, but nothing it makes is kept (it fails `consent_revoked`, refunded). Revoking one already
    revoked changes nothing."""

    workspace_actions = {"POST": "voices.edit"}

    @extend_schema(request=None, responses={200: ConsentRevokedSerializer}, summary="Revoke a consent",
                   tags=["voices"])
    @raises("consent_not_found")
    def post(self, request: Request, consent_id: uuid.UUID) -> Response:
        consent, canceled = consent_revoke(consent_id=consent_id, by=ConsentRevoker.MEMBER, user=request_user(request),
                                           member_id=request_member_id(request))
        return Response(ConsentRevokedSerializer({"consent": consent, "jobs_canceled": canceled}).data)


class ConsentRevokeLinkApi(ApiView):
    """POST: the token of the link its speaker revokes one of the workspace's consents with (POST
    /consents/revoke), to hand to the speaker. For members who may edit voices, as revoking is: the
    token alone revokes."""

    workspace_actions = {"POST": "voices.edit"}

    class OutputSerializer(serializers.Serializer):
        consent_id = serializers.UUIDField()
        token = serializers.CharField(help_text="Sent as `{\"token\"}` to POST /consents/revoke, with no sign-in.")

    @extend_schema(request=None, responses={200: OutputSerializer}, summary="Get a consent's revocation link",
                   tags=["voices"])
    @raises("consent_not_found")
    def post(self, request: Request, consent_id: uuid.UUID) -> Response:
        consent = consent_get(user=request_user(request), consent_id=consent_id)
        return Response(self.OutputSerializer({"consent_id": consent.pk, "token": consent_revoke_token(consent)}).data)


class ConsentRevokeByTokenApi(ApiView):
    """POST: the speaker revokes their consent with the token of the link issued with it (POST
    /consents/{id}/revoke-link, which the workspace hands to the speaker). No
    sign-in: the token, signed by this server for that one consent, is the authority. The same
    effects as a member's revocation. 404 `consent_not_found` for a token not signed here or altered."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    # The token names a consent of any workspace: it is verified before any row is read, then the
    # owner's login revokes that consent alone (auteur/core/rls.py).
    reads_across_users = True

    class InputSerializer(StrictSerializer):
        token = serializers.CharField(max_length=500)

        class Meta:
            ref_name = "ConsentRevokeByTokenRequest"

    @extend_schema(request=InputSerializer, responses={200: ConsentRevokedSerializer}, auth=[],
                   summary="Revoke a consent with its link", tags=["voices"])
    @raises("consent_not_found")
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        consent = consent_by_revoke_token(data.validated_data["token"])
        consent, canceled = consent_revoke(consent_id=consent.pk, by=ConsentRevoker.SUBJECT)
        return Response(ConsentRevokedSerializer({"consent": consent, "jobs_canceled": canceled}).data)
