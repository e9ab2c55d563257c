"""Staff view of webhooks and their delivery log, with a "redeliver" action (through the service).

Read-only: a target's URL, secret and state change only through services, and secrets are
never shown (the sealed column is not a field here).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from auteur.core.admin_tools import ActionsOnlyAdminMixin, ReadOnlyAdminMixin
from webhooks.models import AccountNotice, Delivery, DeliveryAttempt, JobWebhook, Webhook
from webhooks.services import delivery_redeliver


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "owner", "url", "enabled", "failing_since", "disabled_at", "created_at")
    list_filter = ("enabled",)
    search_fields = ("id", "owner__email", "url")
    fields = ("id", "owner", "url", "event_types", "description", "enabled", "disabled_at", "disabled_reason",
              "failing_since", "created_at")
    readonly_fields = fields


@admin.register(JobWebhook)
class JobWebhookAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("job_id", "owner", "url", "enabled", "failing_since", "disabled_at")
    list_filter = ("enabled",)
    search_fields = ("job__id", "owner__email", "url")
    fields = ("job", "owner", "url", "event_types", "enabled", "disabled_at", "disabled_reason", "failing_since",
              "created_at")
    readonly_fields = fields


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "created_at", "status_code", "error", "latency_ms", "response_body")
    readonly_fields = fields
    ordering = ("id",)
    extra = 0
    can_delete = False


@admin.register(Delivery)
class DeliveryAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("message_id", "event_type", "state", "attempts", "last_status_code", "next_attempt_at",
                    "created_at")
    list_filter = ("state", "event_type")
    search_fields = ("message_id", "job_id", "owner__email")
    fields = ("message_id", "owner", "webhook", "job_webhook", "job_id", "event_type", "state", "attempts",
              "last_status_code", "next_attempt_at", "created_at", "finished_at", "payload")
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver (same webhook-id, due now)", permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = 0
        for delivery in queryset:
            delivery_redeliver(delivery=delivery)
            count += 1
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)


@admin.register(AccountNotice)
class AccountNoticeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "owner", "kind", "message")
    list_filter = ("kind",)
    search_fields = ("owner__email",)
