"""Staff view of jobs: find them, read their history and ledger rows, and act through services.

Nothing here creates, edits or deletes a job: a job's state moves only through jobs.intake and jobs.life
(conditional UPDATEs that workers rely on), so a saved admin form could otherwise write back a
stale status over a worker's. The actions cancel (with refund), retry, or fail and refund a
stuck job, each through the same service the API and the reaper use.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from auteur.core.admin_tools import ActionsOnlyAdminMixin, ReadOnlyAdminMixin, breakable
from auteur.core.errors import ApplicationError
from credits.models import CreditTransaction, Plan
from jobs.errors import JobNotCancelable
from jobs.events.usage import usage_write_csv
from jobs.intake.submission import job_retry
from jobs.life.moderation import moderation_confirm, moderation_release
from jobs.life.standing import MONTH, standing_lift
from jobs.life.status import job_cancel, job_fail
from jobs.models import (
    ACTIVE_STATUSES,
    AccountStanding,
    Batch,
    FairShare,
    Job,
    JobEvent,
    JobModeration,
    ModerationState,
    ScreeningRefusal,
    TypeClock,
    UsageEvent,
)
from jobs.selectors.batches import batch_counts
from jobs.selectors.jobs import job_charge, job_ledger_entries, job_summary
from jobs.specs import JOB_SPECS

SUMMARY_WINDOW = timedelta(hours=24)


class PlanListFilter(admin.SimpleListFilter):
    """The plan of the job's owner (any subscription status), or none."""

    title = "user's plan"
    parameter_name = "plan"
    NONE = "none"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [*((p.value, p.label) for p in Plan), (self.NONE, "No subscription")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if value == self.NONE:
            return queryset.filter(user__subscription__isnull=True)
        if value in Plan.values:
            return queryset.filter(user__subscription__plan=value)
        return queryset


class JobTypeListFilter(admin.SimpleListFilter):
    """The job's type, offered from the specs as they are now (the model's field has no choices,
    so that a new type needs no migration); no distinct-values scan of the jobs table."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(str(t), str(t)) for t in sorted(JOB_SPECS)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        return queryset.filter(type=value) if value else queryset


class JobEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = JobEvent
    fields = ("at", "type", "data")
    readonly_fields = fields

    @admin.display(description="at (UTC)")
    def at(self, event: JobEvent) -> str:
        """To the millisecond: a job's events are often milliseconds apart (the admin's own date
        format showed them all at the same minute)."""
        return event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    ordering = ("id",)
    extra = 0
    can_delete = False


@admin.register(Job)
class JobAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    # Short headers and ids: the list fits a 1400 px screen beside its filters.
    list_display = ("short_id", "type", "status", "user_email", "cost", "refunded", "progress", "error",
                    "created_at", "ended")
    list_filter = ("status", JobTypeListFilter, "created_at", PlanListFilter, "credits_refunded", "priority",
                   "gpu_backend")
    search_fields = ("=id", "user__email")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "id", "user", "project", "batch", "batch_index", "type", "status", "progress", "credits_cost",
        "credits_refunded", "credits_refund",
        "charge", "ledger", "cache_source", "cache_key", "error_code", "error_message", "error_detail", "retryable",
        "attempts", "retry_of",
        "idempotency_key", "gpu_backend", "gpu_call_id", "gpu_seconds", "processing_time_ms", "priority",
        "start_within_seconds", "start_deadline", "run_within_seconds", "run_deadline",
        "created_at", "queued_at", "started_at", "inference_started_at", "inference_ended_at", "completed_at",
        "updated_at", "input_params", "output_data",
    )
    readonly_fields = fields
    inlines = (JobEventInline,)
    actions = ("cancel_selected", "retry_selected", "fail_selected")

    # ----------------------------------------------------------------- permissions

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        raise PermissionError("jobs change only through jobs.intake and jobs.life")  # unreachable: no change permission

    # ----------------------------------------------------------------- display

    @admin.display(description="user", ordering="user__email")
    def user_email(self, obj: Job) -> str:
        return breakable(obj.user.email)

    @admin.display(description="cost", ordering="credits_cost")
    def cost(self, obj: Job) -> int:
        return obj.credits_cost

    @admin.display(description="refunded", ordering="credits_refunded", boolean=True)
    def refunded(self, obj: Job) -> bool:
        return obj.credits_refunded

    @admin.display(description="error", ordering="error_code")
    def error(self, obj: Job) -> str:
        return breakable(obj.error_code) if obj.error_code else "-"

    @admin.display(description="ended", ordering="completed_at")
    def ended(self, obj: Job) -> Any:
        return obj.completed_at

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Job) -> str:
        # The id's first block keeps the list within the screen; the whole id shows on hover.
        return format_html('<span title="{}">{}</span>', obj.pk, str(obj.pk)[:8])

    @admin.display(description="charge")
    def charge(self, obj: Job) -> str:
        """What the API shows as `charge`: from the job's ledger entries alone."""
        c = job_charge(status=obj.status, error_code=obj.error_code, entries=job_ledger_entries(job_id=obj.pk),
                       balances=True)
        reason = f" ({c['refund_reason']})" if c["refund_reason"] else ""
        return f"charged {c['charged']}, refunded {c['refunded']}{reason}, net {c['net']}"

    @admin.display(description="ledger rows")
    def ledger(self, obj: Job) -> str:
        # No foreign key from the ledger to jobs (credits does not depend on jobs): by job_id.
        rows = CreditTransaction.objects.filter(job_id=obj.pk).order_by("created_at", "id")
        if not rows:
            return "-"
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (reverse("admin:credits_credittransaction_change", args=[t.pk]), t.created_at, t.type, f"{t.amount:+d}",
                 t.balance_after, t.description)
                for t in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>at</th><th>type</th><th>amount</th><th>balance after</th>"
            "<th>description</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {**(extra_context or {}), "job_summary": job_summary(since=timezone.now() - SUMMARY_WINDOW)}
        return super().changelist_view(request, extra_context=context)

    # ----------------------------------------------------------------- actions

    @admin.action(description="Cancel and refund the selected jobs", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = skipped = 0
        for job in queryset.filter(status__in=ACTIVE_STATUSES):
            try:
                job_cancel(job=job, reason="canceled by staff")
                done += 1
            except JobNotCancelable:
                skipped += 1
        skipped += queryset.exclude(status__in=ACTIVE_STATUSES).count()
        self._report(request, f"Canceled and refunded {done} job(s)", skipped, "already ended")

    @admin.action(description="Retry the selected failed jobs (charged as new)", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done, refused = 0, []
        for job in queryset.select_related("user", "project"):
            try:
                new = job_retry(job=job)
            except ApplicationError as exc:
                refused.append(f"{job.pk}: {exc.message}")
            else:
                done += 1
                self.message_user(request, f"Job {job.pk} retried as {new.pk}.", messages.INFO)
        self._report(request, f"Retried {done} job(s)", len(refused), "refused: " + "; ".join(refused[:5]))

    @admin.action(description="Fail and refund the selected stuck jobs", permissions=["change"])
    def fail_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = skipped = 0
        detail = f"failed by staff (user {request.user.pk})"
        for job_id in queryset.values_list("pk", flat=True):
            if job_fail(job_id=job_id, code="internal", detail=detail, retryable=True):
                done += 1
            else:
                skipped += 1
        self._report(request, f"Failed and refunded {done} job(s)", skipped, "already ended")

    def _report(self, request: HttpRequest, done: str, skipped: int, why: str) -> None:
        self.message_user(request, f"{done}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} job(s): {why}.", messages.WARNING)


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Batches (POST /jobs/batch): their items are jobs (filter the jobs by `batch`); read only, as
    a batch changes only through its items. Its counts are read from them."""

    list_display = ("id", "user", "item_count", "credits_cost", "priority", "created_at", "ended_at")
    list_filter = ("created_at", "priority")
    search_fields = ("=id", "user__email")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = ("id", "user", "member_id", "item_count", "credits_cost", "counts", "priority", "idempotency_key",
              "created_at", "ended_at")
    readonly_fields = fields

    @admin.display(description="items by status")
    def counts(self, obj: Batch) -> str:
        read = batch_counts(batch=obj)
        return ", ".join(f"{status} {n}" for status, n in read["counts"].items() if n) or "-"


@admin.register(FairShare)
class FairShareAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each user's virtual time per type (jobs.life.fairshare): while a type is full, its next free
    unit goes to the waiting user with the least. Read only: the claims alone move it."""

    list_display = ("type", "user", "virtual_time")
    list_filter = (JobTypeListFilter,)
    search_fields = ("user__email",)
    list_select_related = ("user",)
    ordering = ("type", "virtual_time")
    fields = ("type", "user", "virtual_time")
    readonly_fields = fields


@admin.register(TypeClock)
class TypeClockAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each type's virtual clock: the virtual time at which its last job started."""

    list_display = ("type", "virtual_time")
    fields = list_display
    readonly_fields = fields


@admin.register(ScreeningRefusal)
class ScreeningRefusalAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    """Requests the content policy refused (jobs.intake.screening), kept
    AUTEUR_SCREENING_REFUSAL_RETENTION_DAYS: the account, the member, the type, each flagged field
    and its categories, and the screener that decided. The refused text itself is never stored."""

    list_display = ("created_at", "type", "user", "member_id", "categories", "model_version")
    list_filter = ("type", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=user__id", "user__email", "=member_id")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    ordering = ("-created_at",)

    @admin.display(description="fields (categories)")
    def categories(self, refusal: ScreeningRefusal) -> str:
        return "; ".join(f"{f['field']} ({', '.join(f['categories'])})" for f in refusal.flagged)


@admin.register(JobModeration)
class JobModerationAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    """Outputs that output screening withheld (jobs.life.moderation): the job failed
    `output_moderated` and was refunded; its files wait in quarantine for
    AUTEUR_MODERATION_QUARANTINE_DAYS. Confirm the verdict, or release the output (the job is
    charged its cost again, and the files become media of its project)."""

    list_display = ("created_at", "job", "user", "categories_shown", "source", "state", "decided_by", "decided_at")
    list_filter = ("state", "source", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=job__id", "=user__id", "user__email")
    date_hierarchy = "created_at"
    list_select_related = ("job", "user", "decided_by")
    ordering = ("-created_at",)
    actions = ("confirm_selected", "release_selected")

    @admin.display(description="categories")
    def categories_shown(self, hold: JobModeration) -> str:
        return ", ".join(hold.categories)

    @admin.action(description="Confirm: keep the selected outputs withheld", permissions=["change"])
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet[JobModeration]) -> None:
        done = sum(moderation_confirm(job_id=job_id, staff_user=request.user)  # type: ignore[arg-type]
                   for job_id in queryset.values_list("job_id", flat=True))
        self.message_user(request, f"Confirmed {done} withheld output(s).", messages.SUCCESS)
        if done < queryset.count():
            self.message_user(request, f"Skipped {queryset.count() - done}: already decided.", messages.WARNING)

    @admin.action(description="Release the selected outputs to their users (charged then)", permissions=["change"])
    def release_selected(self, request: HttpRequest, queryset: QuerySet[JobModeration]) -> None:
        done, skipped, refused = 0, 0, []
        for job_id in queryset.values_list("job_id", flat=True):
            try:
                released = moderation_release(job_id=job_id, staff_user=request.user)  # type: ignore[arg-type]
            except ApplicationError as exc:
                refused.append(f"{job_id}: {exc.message}")
                continue
            if released is None:
                skipped += 1
            else:
                done += 1
        self.message_user(request, f"Released {done} output(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped}: released already.", messages.WARNING)
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused[:5]), messages.ERROR)


class HeldListFilter(admin.SimpleListFilter):
    """Held now (the default view's purpose), or lifted."""

    title = "standing"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("yes", "held"), ("no", "not held (lifted)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AccountStanding]) -> QuerySet[AccountStanding]:
        if self.value() in ("yes", "no"):
            return queryset.filter(held_since__isnull=self.value() == "no")
        return queryset


@admin.register(AccountStanding)
class AccountStandingAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    """Accounts held for review after repeated content policy refusals (jobs.life.standing): their
    generative requests are refused (403 `account_under_review`) until staff lift the hold. Each shows
    its refusals of the last 30 days by category (what the screener flagged, never the text) and its
    outputs confirmed withheld. Lifting a hold restarts the counting from then."""

    list_display = ("user", "held_since", "held_reason", "refusals_30_days", "confirmed_outputs_30_days",
                    "lifted_at", "lifted_by")
    list_filter = (HeldListFilter, "held_reason")
    search_fields = ("=user__id", "user__email")
    list_select_related = ("user", "lifted_by")
    ordering = ("-held_since", "-lifted_at")
    actions = ("lift_selected",)

    @admin.display(description="refusals in 30 days, by category")
    def refusals_30_days(self, standing: AccountStanding) -> str:
        since = timezone.now() - MONTH
        counts: dict[str, int] = {}
        for flagged in ScreeningRefusal.objects.filter(user_id=standing.user_id, created_at__gte=since) \
                .values_list("flagged", flat=True):
            # A refusal counts once for each category it names, whatever its number of fields.
            for category in sorted({c for f in flagged for c in f["categories"]}):
                counts[category] = counts.get(category, 0) + 1
        return ", ".join(f"{category} {n}" for category, n in sorted(counts.items())) or "none"

    @admin.display(description="outputs confirmed in 30 days")
    def confirmed_outputs_30_days(self, standing: AccountStanding) -> int:
        return JobModeration.objects.filter(user_id=standing.user_id, state=ModerationState.CONFIRMED,
                                            decided_at__gte=timezone.now() - MONTH).count()

    @admin.action(description="Lift the hold of the selected accounts", permissions=["change"])
    def lift_selected(self, request: HttpRequest, queryset: QuerySet[AccountStanding]) -> None:
        done = sum(standing_lift(user_id=user_id, staff_user=request.user)  # type: ignore[arg-type]
                   for user_id in queryset.values_list("user_id", flat=True))
        self.message_user(request, f"Lifted the hold of {done} account(s).", messages.SUCCESS)
        if done < queryset.count():
            self.message_user(request, f"Skipped {queryset.count() - done}: not held.", messages.WARNING)


@admin.register(UsageEvent)
class UsageEventAdmin(ActionsOnlyAdminMixin, admin.ModelAdmin):
    """Usage analytics (jobs.events.usage): one row per ended job, kept AUTEUR_USAGE_RETENTION_DAYS.
    Filter by feature, outcome, date or user, then export the selection as CSV."""

    list_display = ("created_at", "type", "outcome", "user", "credits_net", "credits_refunded", "processing_ms",
                    "gpu_seconds", "cached")
    list_filter = ("type", "outcome", "cached", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=user__id", "user__email", "=job_id", "=member_id")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    ordering = ("-created_at",)
    actions = ("export_csv",)

    @admin.action(description="Export the selected usage as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[UsageEvent]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="usage.csv"'
        usage_write_csv(queryset.order_by("created_at").iterator(chunk_size=2000), response)
        return response
