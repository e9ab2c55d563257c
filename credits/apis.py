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
from auteur.core.schema import raises
from auteur.users.selectors import membership_get
from auteur.users.services import (
    AVATAR_MAX_LENGTH,
    NAME_MAX_LENGTH,
    clean_avatar_url,
    clean_name,
    user_profile_update,
)
from credits.models import Plan, SubscriptionStatus, TransactionType
from credits.selectors import (
    credit_balance_get,
    credit_transaction_list,
    member_budget_list,
    subscription_get,
    workspace_caps_get,
)
from credits.services.budgets import key_cap_set, member_budget_set, workspace_cap_set


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


class MemberBudgetOutputSerializer(serializers.Serializer):
    user_id = serializers.UUIDField(read_only=True)
    monthly_limit = serializers.IntegerField(
        read_only=True, allow_null=True,
        help_text="The most credits the member's jobs may be charged this month (null: no limit but the pool's).")
    spent = serializers.IntegerField(
        read_only=True, help_text="What the member's jobs were charged this month (UTC), less their refunds.")
    remaining = serializers.SerializerMethodField(
        help_text="What the member may still spend this month (null: no limit).")
    month = serializers.DateField(read_only=True, help_text="The first day of the month counted.")
    resets_at = serializers.DateTimeField(read_only=True, help_text="When the next month's counting starts.")

    def get_remaining(self, budget: Any) -> int | None:
        return None if budget.monthly_limit is None else max(budget.monthly_limit - budget.spent, 0)


class MemberBudgetListApi(ApiView):
    """Each member's monthly budget of the team workspace's credits and what they spent this month,
    owners first (a role that does not see the workspace's credits sees only its own);
    `?page=`, `?page_size=` (max 100). A personal workspace has none (409 `personal_workspace`)."""

    acts_in_workspace = False  # the workspace is the path's

    pagination_class = KeyedPagination.of("budgets")

    @extend_schema(summary="List members' budgets", responses=MemberBudgetOutputSerializer(many=True))
    @raises("workspace_not_found", "personal_workspace")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return paginated_response(request, self, member_budget_list(membership=membership),
                                  MemberBudgetOutputSerializer)


class MemberBudgetDetailApi(ApiView):
    """PUT sets a member's monthly budget (owner, admin): from then on a job whose charge would take
    what they spent this month past it is refused with 402 `spend_cap_reached`, and nothing is
    charged. `null` lifts it; a limit below what they already spent refuses their next charge. What
    was spent is never changed by this. Only an owner sets an owner's or an admin's (an admin's own:
    `own_budget`); an admin held to a budget gives at most what remains of it this month, or lowers
    one (`budget_above_own`, with `details.remaining`)."""

    acts_in_workspace = False  # the workspace is the path's

    class InputSerializer(StrictSerializer):
        monthly_limit = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True)

    @extend_schema(summary="Set a member's budget", request=InputSerializer, responses=MemberBudgetOutputSerializer)
    @raises("workspace_not_found", "member_not_found", "permission_denied", "personal_workspace", "own_budget",
            "budget_above_own")
    def put(self, request: Request, workspace_id: str, user_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = member_budget_set(membership=membership, user_id=user_id,
                                   monthly_limit=serializer.validated_data["monthly_limit"])
        return Response(MemberBudgetOutputSerializer(budget).data)


class CapOutputSerializer(serializers.Serializer):
    cap = serializers.ChoiceField(source="scope", choices=["workspace", "key"], read_only=True,
                                  help_text="The workspace's own cap, or an API key's.")
    key_id = serializers.SerializerMethodField(help_text="The API key's id (a key's cap); null for the workspace's.")
    monthly_limit = serializers.IntegerField(read_only=True, allow_null=True,
                                             help_text="The most its charges may add up to this month (null: none).")
    job_limit = serializers.IntegerField(read_only=True, allow_null=True,
                                         help_text="The most one job may be charged (an API key's; null: none).")
    spent = serializers.IntegerField(read_only=True,
                                     help_text="What its jobs were charged this month (UTC), less their refunds.")
    remaining = serializers.IntegerField(read_only=True, allow_null=True)
    month = serializers.DateField(read_only=True, help_text="The first day of the month counted.")
    resets_at = serializers.DateTimeField(read_only=True, help_text="When the next month's counting starts.")

    def get_key_id(self, cap: Any) -> str | None:
        return str(cap.subject_id) if cap.scope == "key" else None


class CapListApi(ApiView):
    """The workspace's spend caps and what each counted this month: the workspace's own (every charge
    to its credits counts), then each API key's in use. Members' budgets are at `/budgets`. A charge
    that would take one past its limit is refused with 402 `spend_cap_reached`, nothing charged; 50,
    80 and 100 % of a monthly limit are announced once a month each (`spend_cap.threshold`)."""

    acts_in_workspace = False  # the workspace is the path's

    pagination_class = KeyedPagination.of("caps")

    @extend_schema(summary="List spend caps", responses=CapOutputSerializer(many=True))
    @raises("workspace_not_found", "permission_denied")
    def get(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        return paginated_response(request, self, workspace_caps_get(membership=membership), CapOutputSerializer)


class LimitInputSerializer(StrictSerializer):
    monthly_limit = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True)


class WorkspaceCapApi(ApiView):
    """PUT sets the workspace's monthly spend cap (owners and the billing role): every charge to its
    credits, by any member or key, counts against it. `null` lifts it; what was spent is never
    changed by this."""

    acts_in_workspace = False  # the workspace is the path's

    @extend_schema(summary="Set the workspace's spend cap", request=LimitInputSerializer,
                   responses=CapOutputSerializer)
    @raises("workspace_not_found", "permission_denied")
    def put(self, request: Request, workspace_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        data = LimitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cap = workspace_cap_set(membership=membership, monthly_limit=data.validated_data["monthly_limit"])
        return Response(CapOutputSerializer(cap).data)


class KeyCapApi(ApiView):
    """PUT sets an API key's monthly spend cap and the most one of its jobs may be charged (owners,
    admins); `null` lifts either."""

    acts_in_workspace = False  # the workspace is the path's

    class InputSerializer(LimitInputSerializer):
        job_limit = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True, required=False,
                                             default=None)

    @extend_schema(summary="Set an API key's spend caps", request=InputSerializer, responses=CapOutputSerializer)
    @raises("workspace_not_found", "permission_denied", "key_not_found")
    def put(self, request: Request, workspace_id: str, key_id: str) -> Response:
        membership = membership_get(user=request_user(request), workspace_id=workspace_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cap = key_cap_set(membership=membership, key_id=key_id, **data.validated_data)
        return Response(CapOutputSerializer(cap).data)


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
