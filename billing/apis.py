"""Billing endpoints: a user's plan and what is on offer, Checkout and portal sessions, and the
webhook Stripe calls. Every user endpoint is scoped to request.user."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from auteur.core.api import ApiView, StrictSerializer, request_user
from auteur.core.schema import raises
from auteur.users.permissions import WorkspacePermission
from billing.selectors import billing_overview
from billing.services.checkout import billing_checkout_start, billing_portal_start, billing_require_configured
from billing.services.events import stripe_event_handle, stripe_event_verify
from credits.models import Plan, SubscriptionStatus


class BillingConfigured(BasePermission):
    """Without STRIPE_SECRET_KEY every billing endpoint answers 503 `billing_unavailable`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        billing_require_configured()
        return True


@raises("billing_unavailable")
class BillingApi(ApiView):
    permission_classes = [WorkspacePermission, BillingConfigured]


class BillingOverviewApi(BillingApi):
    workspace_actions = {"GET": "billing.view"}

    class OutputSerializer(serializers.Serializer):
        class PlanSerializer(serializers.Serializer):
            id = serializers.ChoiceField(choices=Plan.choices)
            monthly_credits = serializers.IntegerField()

        class PackSerializer(serializers.Serializer):
            id = serializers.CharField()
            credits = serializers.IntegerField()

        plan = serializers.ChoiceField(choices=Plan.choices, allow_null=True)
        status = serializers.ChoiceField(choices=SubscriptionStatus.choices, allow_null=True)
        renews_at = serializers.DateTimeField(allow_null=True, help_text="End of the paid period, while active.")
        plans = PlanSerializer(many=True, help_text="Plans on offer.")
        credit_packs = PackSerializer(many=True, help_text="Credit packs on offer.")

    @extend_schema(responses=OutputSerializer, summary="Plan, renewal and what is on offer")
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(billing_overview(user=request_user(request))).data)


@raises("plan_active", "plan_not_for_sale", "unknown_credit_pack")
class BillingCheckoutApi(BillingApi):
    """A Stripe Checkout page for a plan or a credit pack (exactly one). A user with a plan
    changes or cancels it in the portal instead (409 `plan_active`)."""

    workspace_actions = {"POST": "billing.manage"}

    class InputSerializer(StrictSerializer):
        plan = serializers.ChoiceField(choices=Plan.choices, required=False)
        credit_pack = serializers.CharField(max_length=100, required=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("plan" in attrs) == ("credit_pack" in attrs):
                raise serializers.ValidationError("Name either a plan or a credit_pack.")
            return attrs

    class OutputSerializer(serializers.Serializer):
        checkout_url = serializers.URLField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer, summary="Start a checkout")
    def post(self, request: Request) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        url = billing_checkout_start(user=request_user(request), **body.validated_data)
        return Response(self.OutputSerializer({"checkout_url": url}).data)


@raises("no_billing_account")
class BillingPortalApi(BillingApi):
    """Stripe's customer portal: card, invoices, plan changes and cancellation."""

    workspace_actions = {"POST": "billing.manage"}

    class OutputSerializer(serializers.Serializer):
        portal_url = serializers.URLField()

    @extend_schema(request=None, responses=OutputSerializer, summary="Open the billing portal")
    def post(self, request: Request) -> Response:
        return Response(self.OutputSerializer({"portal_url": billing_portal_start(user=request_user(request))}).data)


class StripeWebhookApi(ApiView):
    """Stripe's deliveries. No token: the body's signature (Stripe-Signature) is the
    authentication, so no throttle either (a burst of retries must not be refused; a forged
    body is refused by an HMAC check before anything is read or written). Not in the public
    schema: no client of ours calls it."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    # An event moves any customer's subscription and credits: the owner's database login, with no
    # row-level restriction (auteur/core/rls.py). Its signature is checked before anything is read.
    reads_across_users = True

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        event = stripe_event_verify(payload=request.body, signature=request.headers.get("Stripe-Signature"))
        record = stripe_event_handle(event=event)
        return Response({"received": True, "outcome": record.outcome})
