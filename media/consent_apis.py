"""Likeness consents and the consents' read endpoint, included under /api/v1/ by auteur/urls.py
(media/voice_urls.py). The revocation endpoints are the voices' (media/voice_apis.py): they revoke a
consent of either kind."""

from __future__ import annotations

import datetime
import uuid

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, StrictSerializer, request_member_id, request_user
from auteur.core.schema import raises
from media.models import Consent, ConsentKind, ConsentStatus
from media.selectors import media_get_for_user
from media.services.consents import consent_challenge_create, consent_get
from media.services.likeness import MAX_ATTESTED_SUBJECTS, consent_usable_now, likeness_attest
from media.voice_apis import ConsentChallengeSerializer


class LikenessChallengeApi(ApiView):
    """POST: a phrase for a person to read on camera in their likeness consent recording: fresh words
    and the statement that they agree to have their face used in this workspace. Valid 10 minutes (by
    default), for one recording, by the member it is issued to; the same limits as a voice's challenges
    (403 `quota_exceeded`, 429 `too_many_consent_attempts`). Upload the recording as any video, then
    submit a `likeness-consent` job naming it, the challenge and the file whose face is to be used."""

    workspace_actions = {"POST": "media.edit"}

    @extend_schema(request=None, responses={201: ConsentChallengeSerializer},
                   summary="Issue a likeness consent challenge", tags=["consents"])
    @raises("quota_exceeded", "too_many_consent_attempts")
    def post(self, request: Request) -> Response:
        challenge = consent_challenge_create(user=request_user(request), member_id=request_member_id(request),
                                             kind=ConsentKind.LIKENESS)
        return Response(ConsentChallengeSerializer(challenge).data, status=status.HTTP_201_CREATED)


class ConsentSubjectSerializer(serializers.Serializer):
    content_sha256 = serializers.CharField(help_text="The SHA-256 of the bytes whose face is covered.")
    media_id = serializers.UUIDField(allow_null=True, help_text="The file it was made for (it may be deleted since).")


class AttestationSerializer(serializers.Serializer):
    attested_by = serializers.UUIDField(help_text="The member (an owner or admin) who attested it.")
    person_name = serializers.CharField()
    consent_obtained_at = serializers.DateTimeField()
    evidence = serializers.CharField(help_text="What the workspace holds as the person's consent, as attested.")
    created_at = serializers.DateTimeField(help_text="When it was attested.")


class ConsentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=ConsentKind.choices)
    status = serializers.ChoiceField(
        choices=ConsentStatus.choices,
        help_text="`verified`: its checks passed. `attested`: an owner or admin attested it. `failed`: a check "
                  "failed. `revoked`: withdrawn, for good.")
    usable = serializers.SerializerMethodField(
        help_text="Whether jobs may use it now (an attested likeness only under the workspace's `attested` policy).")
    checks = serializers.DictField(child=serializers.CharField(),
                                   help_text="Each check of a verification, `passed` or `failed` ({} when attested).")
    job_id = serializers.UUIDField(allow_null=True, help_text="The verification job (none when attested).")
    subjects = serializers.SerializerMethodField(help_text="The files whose face a likeness consent covers.")
    attestation = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    revoked_by = serializers.CharField(help_text="`subject` (their link), `member` or `staff`; \"\" when not revoked.")

    def get_usable(self, obj: Consent) -> bool:
        return consent_usable_now(obj)

    @extend_schema_field(ConsentSubjectSerializer(many=True))
    def get_subjects(self, obj: Consent) -> list[dict[str, object]]:
        return list(ConsentSubjectSerializer(obj.subjects.order_by("id"), many=True).data)

    @extend_schema_field(AttestationSerializer(allow_null=True))
    def get_attestation(self, obj: Consent) -> dict[str, object] | None:
        attestation = getattr(obj, "attestation", None) if obj.kind == ConsentKind.LIKENESS else None
        return dict(AttestationSerializer(attestation).data) if attestation is not None else None


class ConsentDetailApi(ApiView):
    """GET one of the workspace's consents: its kind, status, whether it is usable now, which checks its
    verification passed (never the figures), the files a likeness consent covers, and who attested an
    attested one, when, and what they hold. 404 `consent_not_found` for another workspace's."""

    workspace_actions = {"GET": "consents.view"}

    @extend_schema(responses={200: ConsentSerializer}, summary="Get a consent", tags=["consents"])
    @raises("consent_not_found")
    def get(self, request: Request, consent_id: uuid.UUID) -> Response:
        consent = consent_get(user=request_user(request), consent_id=consent_id)
        return Response(ConsentSerializer(consent).data)


class ConsentAttestApi(ApiView):
    """POST: an owner or admin attests that the workspace holds a person's consent to the use of their face
    in the files `subject_media_ids` (at most 20; each covered by its bytes' SHA-256, as a verified consent
    is): the person's name, when they consented, and what the workspace holds as evidence. Only under the
    workspace's `attested` likeness policy (403 `permission_denied`, `details.reason` `policy_verified`,
    otherwise); never with an API key. The attestation is shown with the consent (GET /consents/{id}) and
    to staff; it is revoked as any consent is."""

    workspace_actions = {"POST": "consents.attest"}

    class InputSerializer(StrictSerializer):
        subject_media_ids = serializers.ListField(child=serializers.UUIDField(), min_length=1,
                                                  max_length=MAX_ATTESTED_SUBJECTS)
        person_name = serializers.CharField(max_length=200)
        consent_obtained_at = serializers.DateTimeField()
        evidence = serializers.CharField(max_length=2000, help_text="What the workspace holds: a signed release, "
                                                                   "its reference, where it is kept.")

        class Meta:
            ref_name = "ConsentAttestationRequest"

        def validate_consent_obtained_at(self, value: datetime.datetime) -> datetime.datetime:
            if value > timezone.now():
                raise serializers.ValidationError("Must not be in the future.")
            return value

    @extend_schema(request=InputSerializer, responses={201: ConsentSerializer}, summary="Attest a likeness consent",
                   tags=["consents"])
    @raises("permission_denied", "media_not_found", "media_not_ready")
    def post(self, request: Request) -> Response:
        user = request_user(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        media = [media_get_for_user(user=user, media_id=media_id)
                 for media_id in dict.fromkeys(data.validated_data["subject_media_ids"])]
        consent = likeness_attest(user=user, member_id=request_member_id(request), media=media,
                                  person_name=data.validated_data["person_name"],
                                  consent_obtained_at=data.validated_data["consent_obtained_at"],
                                  evidence=data.validated_data["evidence"])
        return Response(ConsentSerializer(consent).data, status=status.HTTP_201_CREATED)
