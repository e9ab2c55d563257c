"""A workspace's API keys: made, listed and revoked by its owners and admins (`keys.manage`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auteur.core.api import ApiView, KeyedPagination, StrictSerializer, paginated_response, request_user
from auteur.core.schema import raises
from auteur.core.throttling import SlidingWindowThrottle, person_of
from auteur.users.key_services import api_key_create, api_key_get, api_key_list, api_key_revoke
from auteur.users.roles import SCOPES
from auteur.users.selectors import membership_get


class KeyOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True, help_text="Also the member id of what the key made and spent.")
    name = serializers.CharField(read_only=True)
    prefix = serializers.CharField(read_only=True, help_text="The key's first characters, to tell keys apart.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES), read_only=True)
    state = serializers.CharField(read_only=True, help_text="`active`, `expired` or `revoked`.")
    created_by = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_used_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Its last request, to the minute (null: never used).")
    last_used_ip = serializers.IPAddressField(read_only=True, allow_null=True,
                                              help_text="The address of its last request.")
    rate_limit_per_minute = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Its requests per minute (null: the service's default for keys).")



class KeyCreatedSerializer(KeyOutputSerializer):
    key = serializers.CharField(read_only=True, help_text="`auteur_sk_...`: shown in this answer only. Send it as "
                                                          "`Authorization: Bearer <key>`.")


class KeyCreateThrottle(SlidingWindowThrottle):
    """Keys made per person an hour, counted apart from (and as well as) the general limit: a key is
    never deleted, so a loop of making and revoking keys would otherwise grow their table without bound."""

    window_seconds = 3600

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method != "POST":
            return True
        return self._allow(f"rl:keys:u:{person_of(request)}", limit=settings.AUTEUR_RATE_LIMIT_KEY_CREATES_PER_HOUR)


class KeyListApi(ApiView):
    """The workspace's API keys, newest first, revoked and expired ones included (`?page=`, `?page_size=`).
    POST makes one (owners and admins), with the scopes it may use (`*:write` includes `*:read`; at
    most those the maker's role may do), an optional expiry and an optional rate limit of its own: the
    answer carries the key itself, which is never shown again. A key whose maker is removed, or given
    a role that may not do all its scopes allow, is revoked. Codes: `invalid_scopes`, `invalid_expiry`,
    `invalid_rate_limit` (above the service's limit for keys), `key_limit_reached` (keys in use: at
    most this server's number per workspace, and per account across the workspaces it pays for;
    `details.scope` says which), `rate_limited` (past this server's number of keys one person may
    make an hour, with `Retry-After`)."""

    acts_in_workspace = False  # the workspace is the path's
    throttle_classes = [SlidingWindowThrottle, KeyCreateThrottle]

    pagination_class = KeyedPagination.of("keys")

    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(child=serializers.CharField(max_length=40), max_length=len(SCOPES),
                                       help_text="Of: " + ", ".join(SCOPES) + ".")
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                               help_text="When it stops working (null: never).")
        rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True, default=None,
                                                         min_value=1, max_value=100_000)

    @extend_schema(summary="List API keys", responses=KeyOutputSerializer(many=True))
    @raises("workspace_not_found", "permission_denied")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return paginated_response(request, self, api_key_list(membership=membership), KeyOutputSerializer)

    @extend_schema(summary="Create an API key", request=InputSerializer, responses={201: KeyCreatedSerializer})
    @raises("workspace_not_found", "permission_denied", "invalid_scopes", "invalid_expiry", "invalid_rate_limit",
            "key_limit_reached")
    def post(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, text = api_key_create(membership=membership, **data.validated_data)
        body: dict[str, Any] = {**KeyOutputSerializer(key).data, "key": text}
        return Response(body, status=status.HTTP_201_CREATED)


class KeyDetailApi(ApiView):
    """One API key (never its secret). DELETE revokes it: its next request is refused (401) and its open
    event streams close; what it made and spent stays, attributed to it."""

    acts_in_workspace = False  # the workspace is the path's

    @extend_schema(summary="Get an API key", responses=KeyOutputSerializer)
    @raises("workspace_not_found", "permission_denied", "key_not_found")
    def get(self, request: Request, workspace_id: str, key_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return Response(KeyOutputSerializer(api_key_get(membership=membership, key_id=key_id)).data)

    @extend_schema(summary="Revoke an API key", responses={200: KeyOutputSerializer})
    @raises("workspace_not_found", "permission_denied", "key_not_found")
    def delete(self, request: Request, workspace_id: str, key_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return Response(KeyOutputSerializer(api_key_revoke(membership=membership, key_id=key_id)).data)
