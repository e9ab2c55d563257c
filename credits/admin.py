"""Staff views of plans, balances and the ledger.

Nothing here can edit or delete a ledger entry or type a balance: accounts and entries are
read-only, and the one way staff move credits is the adjustment form, which calls
credits.services.ledger.credit_adjust and so records who did it and why.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from auteur.core.admin_tools import ReadOnlyAdminMixin
from auteur.core.errors import ApplicationError
from auteur.users.admin import UserAdmin as BaseUserAdmin
from auteur.users.admin import WorkspaceAdmin as BaseWorkspaceAdmin
from auteur.users.models import ApiKey, User, Workspace
from credits.models import (
    CapAlert,
    CapScope,
    CreditAccount,
    CreditTransaction,
    SpendCap,
    Subscription,
    SubscriptionStatus,
)
from credits.selectors import credit_balance_get, member_budgets_get
from credits.services.ledger import credit_adjust
from credits.services.subscriptions import subscription_cancel, subscription_change_plan, subscription_create

ADJUST_PERMISSION = "credits.adjust_credits"


class CreditTransactionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CreditTransaction
    fk_name = "account"
    fields = ("created_at", "type", "amount", "balance_after", "description", "job_id", "created_by")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    show_change_link = True
    extra = 0


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "user_link", "type", "amount", "balance_after", "job_id", "member_id",
                    "description", "created_by")
    list_filter = ("type", "created_at", ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__email", "=job_id", "=id", "=member_id", "=user__id")
    date_hierarchy = "created_at"
    list_select_related = ("user", "created_by")
    fields = ("id", "account", "user", "type", "amount", "balance_after", "description", "job_id", "member_id",
              "idempotency_key", "created_by", "created_at")
    readonly_fields = fields
    show_full_result_count = False  # a COUNT(*) over the whole ledger on every page is not needed

    @admin.display(description="user", ordering="user__email")
    def user_link(self, obj: CreditTransaction) -> str:
        # Filters the list to that user's entries.
        url = reverse("admin:credits_credittransaction_changelist")
        return format_html('<a href="{}?user__id__exact={}">{}</a>', url, obj.user_id, obj.user.email)


# ----------------------------------------------------------------------------- accounts


class CreditAdjustmentForm(forms.Form):
    amount = forms.IntegerField(help_text="Positive adds credits, negative takes them away.")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                             help_text="Recorded in the ledger entry, with your name.")
    # One per rendered form: a double submit, or a reload of the POST, adjusts once.
    nonce = forms.CharField(widget=forms.HiddenInput)

    def clean_amount(self) -> int:
        amount: int = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount cannot be zero.")
        return amount


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("user", "balance", "updated_at")
    search_fields = ("user__email", "=user__id", "=id")
    list_select_related = ("user",)
    fields = ("id", "user", "balance", "updated_at", "adjust_link", "transactions_link")
    readonly_fields = fields
    inlines = (CreditTransactionInline,)
    actions = ("adjust_selected",)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("<path:object_id>/adjust/", self.admin_site.admin_view(self.adjust_view),
                 name="credits_creditaccount_adjust"),
            *super().get_urls(),
        ]

    @admin.display(description="staff adjustment")
    def adjust_link(self, obj: CreditAccount) -> str:
        return format_html('<a class="button" href="{}">Adjust balance…</a>',
                           reverse("admin:credits_creditaccount_adjust", args=[obj.pk]))

    @admin.display(description="ledger")
    def transactions_link(self, obj: CreditAccount) -> str:
        url = reverse("admin:credits_credittransaction_changelist")
        return format_html('<a href="{}?account__id__exact={}">All entries of this account</a>', url, obj.pk)

    @admin.action(description="Adjust the balance of the selected account…")
    def adjust_selected(self, request: HttpRequest, queryset: QuerySet[CreditAccount]) -> HttpResponse | None:
        accounts = list(queryset[:2])
        if len(accounts) != 1:
            self.message_user(request, "Select exactly one account to adjust.", messages.WARNING)
            return None
        return redirect("admin:credits_creditaccount_adjust", accounts[0].pk)

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(ADJUST_PERMISSION):
            raise PermissionDenied
        account = self.get_object(request, unquote(object_id))
        if account is None:
            raise Http404("No such credit account.")
        assert isinstance(request.user, User)
        if request.method == "POST":
            form = CreditAdjustmentForm(request.POST)
            if form.is_valid():
                try:
                    entry = credit_adjust(
                        user=account.user,
                        amount=form.cleaned_data["amount"],
                        reason=form.cleaned_data["reason"],
                        staff_user=request.user,
                        idempotency_key=f"admin-adjust:{form.cleaned_data['nonce']}",
                    )
                except ApplicationError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(request, f"Adjusted {account.user.email} by {entry.amount:+d}: balance is "
                                               f"now {entry.balance_after}.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:credits_creditaccount_change", args=[account.pk]))
        else:
            form = CreditAdjustmentForm(initial={"nonce": uuid.uuid4().hex})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust the credits of {account.user.email}",
            "opts": self.opts,
            "account": account,
            "form": form,
        }
        return TemplateResponse(request, "admin/credits/creditaccount/adjust.html", context)


# ----------------------------------------------------------------------------- subscriptions


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("user", "plan", "status", "current_period_start", "current_period_end")
    list_filter = ("plan", "status")
    search_fields = ("user__email", "stripe_subscription_id")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    actions = ("cancel_selected",)

    def get_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "plan")
        return ("id", "user", "plan", "status", "stripe_subscription_id", "current_period_start",
                "current_period_end", "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        # Only the plan can be changed here (through the service), and only while active.
        fields = self.get_fields(request, obj)
        return tuple(f for f in fields if f != "plan" or obj.status != SubscriptionStatus.ACTIVE)

    def has_delete_permission(self, request: HttpRequest, obj: Subscription | None = None) -> bool:
        return False  # cancel instead: the ledger's allowance entries refer to it

    def save_model(self, request: HttpRequest, obj: Subscription, form: forms.ModelForm, change: bool) -> None:
        # Through the services: creating grants the first allowance, a plan change is checked.
        if not change:
            created = subscription_create(user=obj.user, plan=obj.plan)
            obj.pk = created.pk
            obj._state.adding = False
            obj.refresh_from_db()
        elif "plan" in form.changed_data:
            subscription_change_plan(user=obj.user, plan=obj.plan)

    @admin.action(description="Cancel the selected subscriptions")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = 0
        for subscription in queryset.select_related("user"):
            subscription_cancel(user=subscription.user)
            count += 1
        self.message_user(request, f"Cancelled {count} subscription(s).", messages.SUCCESS)


# ----------------------------------------------------------------------------- users


class SubscriptionInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = Subscription
    fields = ("plan", "status", "current_period_start", "current_period_end", "stripe_subscription_id")
    readonly_fields = fields
    show_change_link = True


class CreditAccountInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = CreditAccount
    fields = ("balance", "updated_at")
    readonly_fields = fields
    show_change_link = True  # the account page has the ledger and the adjustment form


# The users app is a foundation and knows nothing of credits; its User admin is extended here.
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return (*super().get_list_display(request), "plan", "balance")

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list[type[admin.options.InlineModelAdmin]]:
        return [] if obj is None else [SubscriptionInline, CreditAccountInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).select_related("subscription", "credit_account")

    @admin.display(description="plan", ordering="subscription__plan")
    def plan(self, obj: User) -> str:
        try:
            subscription = obj.subscription
        except ObjectDoesNotExist:
            return "-"
        return f"{subscription.plan} ({subscription.status})"

    @admin.display(description="credits", ordering="credit_account__balance")
    def balance(self, obj: User) -> int:
        try:
            return obj.credit_account.balance
        except ObjectDoesNotExist:
            return 0


# ----------------------------------------------------------------------------- team pools


@admin.register(SpendCap)
class SpendCapAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Spend counters and their caps: a workspace's own, each API key's, each team member's, this
    month. Counted by the ledger's statements only, so nothing here changes them (the workspace's
    owners, admins and billing set caps through the API)."""

    list_display = ("user", "scope", "member", "monthly_limit", "job_limit", "spent", "month", "updated_at")
    list_filter = ("scope", "month")
    search_fields = ("=user__id", "=subject_id")
    list_select_related = ("user",)
    fields = ("user", "scope", "subject_id", "monthly_limit", "job_limit", "spent", "month", "notified",
              "updated_at")
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[SpendCap]:
        # The member's email, or the key's name, in the list's one query, not a query per row.
        email = User.objects.filter(pk=OuterRef("subject_id")).values("email")[:1]
        key = ApiKey.objects.filter(pk=OuterRef("subject_id")).values("name")[:1]
        return super().get_queryset(request).annotate(member_email=Subquery(email), key_name=Subquery(key))

    @admin.display(description="whose")
    def member(self, obj: SpendCap) -> str:
        if obj.scope == CapScope.WORKSPACE:
            return "the workspace"
        if getattr(obj, "key_name", None):
            return f"key: {obj.key_name}"  # type: ignore[attr-defined]
        return getattr(obj, "member_email", None) or str(obj.subject_id)


@admin.register(CapAlert)
class CapAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The thresholds of spend caps crossed (50, 80, 100 %), each once a month, and when each was
    announced (an event and the `spend_cap` webhooks)."""

    list_display = ("created_at", "user", "scope", "subject_id", "threshold", "monthly_limit", "spent", "announced_at")
    list_filter = ("scope", "threshold", ("announced_at", admin.EmptyFieldListFilter))
    search_fields = ("=user__id", "=subject_id")
    list_select_related = ("user",)
    show_full_result_count = False


# The users app knows nothing of credits; its workspace page gets the pool here.
admin.site.unregister(Workspace)


@admin.register(Workspace)
class WorkspaceAdmin(BaseWorkspaceAdmin):
    fields = (*BaseWorkspaceAdmin.fields, "pool", "spent_this_month_by_member")
    readonly_fields = fields

    @admin.display(description="credit pool")
    def pool(self, obj: Workspace) -> str:
        ledger = reverse("admin:credits_credittransaction_changelist")
        return format_html('{} credits (<a href="{}?user__id__exact={}">ledger</a>)',
                           credit_balance_get(user=User(pk=obj.pk)), ledger, obj.pk)

    @admin.display(description="spent this month, by member")
    def spent_this_month_by_member(self, obj: Workspace) -> str:
        caps = SpendCap.objects.filter(user_id=obj.pk).order_by("-spent")
        budgets = member_budgets_get(account_id=obj.pk, member_ids=[cap.subject_id for cap in caps])
        emails = dict(User.objects.filter(pk__in=budgets).values_list("pk", "email"))
        lines = [(emails.get(b.user_id, str(b.user_id)), b.spent,
                  "none" if b.monthly_limit is None else b.monthly_limit) for b in budgets.values()]
        if not lines:
            return "-"
        template = "<br>".join(["{}: {} credits (budget {})"] * len(lines))
        return format_html(template, *[value for line in lines for value in line])
