"""Credits endpoints: balance, ledger history, and the profile that shows both.

Each one is scoped to request.user; authentication is required by the default permission.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import (
    ApiView,
    KeyedPagination,
    PageQuerySerializer,
    StrictSerializer,
    paginated_response,
    request_user,
)
from auteur.users.services import (
    AVATAR_MAX_LENGTH,
    NAME_MAX_LENGTH,
    clean_avatar_url,
    clean_name,
    user_profile_update,
)
from credits.models import Plan, SubscriptionStatus, TransactionType
from credits.selectors import credit_balance_get, credit_transaction_list, subscription_get


class CreditBalanceApi(ApiView):
    workspace_actions = {"GET": "credits.view"}

    class OutputSerializer(serializers.Serializer):
        balance = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer, summary="Credit balance")
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer({"balance": credit_balance_get(user=request_user(request))}).data)


class CreditTransactionListApi(ApiView):
    """The user's ledger, newest first, `?type=` to filter, `?page=` / `?page_size=` (max 100)."""

    workspace_actions = {"GET": "credits.view"}

    pagination_class = KeyedPagination.of("transactions")

    class FilterSerializer(PageQuerySerializer):
        type = serializers.ChoiceField(choices=TransactionType.choices, required=False)

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        amount = serializers.IntegerField()
        balance_after = serializers.IntegerField()
        type = serializers.ChoiceField(choices=TransactionType.choices)
        description = serializers.CharField()
        job_id = serializers.UUIDField(allow_null=True)
        created_at = serializers.DateTimeField()

    @extend_schema(
        parameters=[FilterSerializer],
        summary="Credit history",
        responses=OutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        transactions = credit_transaction_list(user=request_user(request), type=filters.validated_data.get("type"))
        return paginated_response(request, self, transactions, self.OutputSerializer)


class UserMeApi(ApiView):
    """The caller's profile with plan and balance. Here, not in auteur.users: it composes credits data."""

    acts_in_workspace = False  # about the caller themself: the Auteur-Workspace header is ignored

    class OutputSerializer(serializers.Serializer):
        class SubscriptionSerializer(serializers.Serializer):
            plan = serializers.ChoiceField(choices=Plan.choices)
            status = serializers.ChoiceField(choices=SubscriptionStatus.choices)

        class CreditsSerializer(serializers.Serializer):
            balance = serializers.IntegerField()

        id = serializers.UUIDField()
        email = serializers.EmailField(allow_null=True, help_text="As the identity provider gave it when the "
                                       "account was created; null for a sign-in without one (phone, anonymous)")
        email_verified = serializers.BooleanField(help_text="Whether the identity provider said it verified the email")
        name = serializers.CharField(help_text="The display name: the identity provider's (full_name or name of "
                                               "the token's user_metadata) until the user sets one; \"\" for none")
        avatar_url = serializers.URLField(
            allow_null=True, help_text="An https image address, as name: the provider's until the user sets one; "
                                       "null for none")
        subscription = SubscriptionSerializer(allow_null=True)
        credits = CreditsSerializer()

    class UpdateSerializer(StrictSerializer):
        name = serializers.CharField(max_length=NAME_MAX_LENGTH, allow_blank=True, required=False, trim_whitespace=True,
                                     help_text="\"\" clears it. Whitespace runs become single spaces.")
        avatar_url = serializers.URLField(max_length=AVATAR_MAX_LENGTH, allow_null=True, allow_blank=True,
                                          required=False, help_text="An https URL; null or \"\" clears it.")

        def validate_name(self, value: str) -> str:
            if value and not clean_name(value):
                raise serializers.ValidationError("Must have a printable character.")
            return clean_name(value)

        def validate_avatar_url(self, value: str | None) -> str:
            if value and not clean_avatar_url(value):
                raise serializers.ValidationError("Must be an https URL.")
            return value or ""

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not attrs:
                raise serializers.ValidationError("Name name, avatar_url or both.")
            return attrs

    @extend_schema(responses=OutputSerializer, summary="Current user")
    def get(self, request: Request) -> Response:
        return Response(self._profile(request_user(request)))

    @extend_schema(request=UpdateSerializer, responses=OutputSerializer,
                   summary="Set the current user's name or avatar")
    def patch(self, request: Request) -> Response:
        user = request_user(request)
        fields = self.UpdateSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        return Response(self._profile(user_profile_update(user=user, fields=dict(fields.validated_data))))

    def _profile(self, user: Any) -> dict[str, Any]:
        profile = {
            "id": user.pk,
            "email": user.email or None,
            "email_verified": user.email_verified,
            "name": user.name,
            "avatar_url": user.avatar_url or None,
            "subscription": subscription_get(user=user),
            "credits": {"balance": credit_balance_get(user=user)},
        }
        return dict(self.OutputSerializer(profile).data)
