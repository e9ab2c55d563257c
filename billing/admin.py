"""Staff views of billing: customers with their Stripe ids and dashboard links, the events Stripe
sent and their outcome (with a re-process action, through the same service), pack purchases
with any refund shortfall and the dispute that took them back, and the paid invoices with the
credits they granted. Nothing here moves
credits by hand; the ledger stays read-only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from auteur.users.admin import ReadOnlyAdmin
from billing.models import EventOutcome, PackPurchase, PaidInvoice, StripeCustomer, StripeEvent
from billing.services.events import stripe_event_reprocess


def dashboard_url(path: str) -> str:
    # Test-mode keys' objects live under /test/ in the dashboard.
    test = "/test" if settings.STRIPE_SECRET_KEY.startswith(("sk_test_", "rk_test_")) else ""
    return f"https://dashboard.stripe.com{test}/{path}"


def dashboard_link(label: str, path: str) -> str:
    return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', dashboard_url(path), label)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ("user", "stripe_customer_id", "subscription_id", "dashboard", "created_at")
    search_fields = ("user__email", "stripe_customer_id")
    list_select_related = ("user", "user__subscription")

    @admin.display(description="Stripe subscription")
    def subscription_id(self, obj: StripeCustomer) -> str:
        subscription = getattr(obj.user, "subscription", None)
        return subscription.stripe_subscription_id if subscription is not None else ""

    @admin.display(description="Dashboard")
    def dashboard(self, obj: StripeCustomer) -> str:
        return dashboard_link("customer", f"customers/{obj.stripe_customer_id}")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "created", "outcome", "error", "attempts", "processed_at")
    list_filter = ("outcome", "type")
    search_fields = ("event_id",)
    readonly_fields = ("event_id", "type", "created", "payload", "outcome", "error", "attempts", "received_at",
                       "processed_at")
    actions = ("reprocess",)

    @admin.action(description="Re-process the selected events")
    def reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        for event_id in queryset.order_by("created").values_list("event_id", flat=True):
            record = stripe_event_reprocess(event_id=event_id)
            level = messages.ERROR if record.outcome == EventOutcome.FAILED else messages.SUCCESS
            self.message_user(request, f"Event {record.event_id}: {record.outcome} {record.error}".strip(), level)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # The action re-runs handlers that move credits: only staff who may adjust credits.
        actions = super().get_actions(request)
        if not request.user.has_perm("credits.adjust_credits"):
            actions.pop("reprocess", None)
        return actions


@admin.register(PackPurchase)
class PackPurchaseAdmin(ReadOnlyAdmin):
    list_display = ("user", "pack_id", "credits", "purchased_at", "refunded_at", "refund_shortfall", "dispute_id",
                    "reinstated_at", "dashboard")
    list_filter = ("pack_id", ("refunded_at", admin.EmptyFieldListFilter))
    search_fields = ("user__email", "stripe_payment_intent_id")
    list_select_related = ("user",)

    @admin.display(description="Dashboard")
    def dashboard(self, obj: PackPurchase) -> str:
        return dashboard_link("payment", f"payments/{obj.stripe_payment_intent_id}")


@admin.register(PaidInvoice)
class PaidInvoiceAdmin(ReadOnlyAdmin):
    list_display = ("user", "stripe_invoice_id", "plan", "period_start", "credits", "allowance_key", "paid_at",
                    "dashboard")
    list_filter = ("plan",)
    search_fields = ("user__email", "stripe_invoice_id", "stripe_subscription_id")
    list_select_related = ("user",)

    @admin.display(description="Dashboard")
    def dashboard(self, obj: PaidInvoice) -> str:
        return dashboard_link("invoice", f"invoices/{obj.stripe_invoice_id}")
