from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from credits.models import CreditAccount, CreditTransaction, Plan, Subscription, TransactionType
from credits.selectors import credit_balance_get, ledger_check
from credits.services.ledger import credit_deduct_for_job
from credits.services.subscriptions import subscription_create
from tests.credits.helpers import snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(make_user):
    return make_user(email="boss@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def customer(funded_user):
    user = funded_user(100)
    subscription_create(user=user, plan=Plan.STARTER)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=30, description="lip sync")
    return user


def nonce_of(html: str) -> str:
    match = re.search(r'name="nonce" value="([0-9a-f]+)"', html)
    assert match, html
    return match.group(1)


def test_admin_pages_load_for_a_superuser(staff_client, customer):
    account = CreditAccount.objects.get(user=customer)
    entry = CreditTransaction.objects.filter(user=customer).first()
    assert entry is not None
    urls = [
        reverse("admin:credits_credittransaction_changelist"),
        reverse("admin:credits_credittransaction_changelist") + "?type=usage",
        reverse("admin:credits_credittransaction_changelist") + f"?user__id__exact={customer.pk}",
        reverse("admin:credits_credittransaction_changelist") + f"?q={customer.email}",
        reverse("admin:credits_credittransaction_changelist") + f"?q={entry.job_id or uuid.uuid4()}",
        reverse("admin:credits_credittransaction_change", args=[entry.pk]),
        reverse("admin:credits_creditaccount_changelist"),
        reverse("admin:credits_creditaccount_change", args=[account.pk]),
        reverse("admin:credits_creditaccount_adjust", args=[account.pk]),
        reverse("admin:credits_subscription_changelist"),
        reverse("admin:credits_subscription_add"),
        reverse("admin:credits_subscription_change", args=[customer.subscription.pk]),
        reverse("admin:users_user_changelist"),
        reverse("admin:users_user_change", args=[customer.pk]),
        reverse("admin:users_user_add"),
    ]
    for url in urls:
        response = staff_client.get(url)
        assert response.status_code == 200, url


def test_user_list_shows_plan_and_balance(staff_client, customer):
    html = staff_client.get(reverse("admin:users_user_changelist")).content.decode()
    assert "starter (active)" in html
    assert f">{credit_balance_get(user=customer)}<" in html


def test_account_page_shows_the_ledger_inline_read_only(staff_client, customer):
    account = CreditAccount.objects.get(user=customer)
    html = staff_client.get(reverse("admin:credits_creditaccount_change", args=[account.pk])).content.decode()
    assert "lip sync" in html
    assert 'name="balance"' not in html  # shown, never an input
    assert 'name="transactions-0-amount"' not in html


def test_search_by_job_id_finds_the_jobs_entries(staff_client, customer):
    entry = CreditTransaction.objects.get(user=customer, type=TransactionType.USAGE)
    url = reverse("admin:credits_credittransaction_changelist") + f"?q={entry.job_id}"
    response = staff_client.get(url)
    assert response.status_code == 200
    assert [e.pk for e in response.context["cl"].result_list] == [entry.pk]


def test_nothing_in_the_admin_can_add_change_or_delete_a_ledger_entry(staff_client, customer):
    entry = CreditTransaction.objects.filter(user=customer).first()
    assert entry is not None
    before = snapshot(customer)
    assert staff_client.get(reverse("admin:credits_credittransaction_add")).status_code == 403
    assert staff_client.post(reverse("admin:credits_credittransaction_delete", args=[entry.pk]),
                             {"post": "yes"}).status_code == 403
    change_url = reverse("admin:credits_credittransaction_change", args=[entry.pk])
    staff_client.post(change_url, {"amount": "999", "balance_after": "999", "description": "x"})
    response = staff_client.post(reverse("admin:credits_credittransaction_changelist"),
                                 {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    assert response.status_code in (200, 302)
    account = CreditAccount.objects.get(user=customer)
    staff_client.post(reverse("admin:credits_creditaccount_change", args=[account.pk]), {"balance": "9999"})
    assert staff_client.post(reverse("admin:credits_creditaccount_delete", args=[account.pk]),
                             {"post": "yes"}).status_code == 403
    assert snapshot(customer) == before
    assert CreditTransaction.objects.get(pk=entry.pk).amount == entry.amount


def test_staff_adjustment_goes_through_the_service_and_records_who_and_why(staff_client, admin_user, customer):
    account = CreditAccount.objects.get(user=customer)
    url = reverse("admin:credits_creditaccount_adjust", args=[account.pk])
    nonce = nonce_of(staff_client.get(url).content.decode())
    balance = credit_balance_get(user=customer)

    response = staff_client.post(url, {"amount": "-25", "reason": "duplicate charge", "nonce": nonce})

    assert response.status_code == 302
    entry = CreditTransaction.objects.get(user=customer, type=TransactionType.ADJUSTMENT)
    assert (entry.amount, entry.created_by, entry.description) == (-25, admin_user, "duplicate charge")
    assert credit_balance_get(user=customer) == balance - 25
    # The same form submitted again (a double click, a reload) adjusts once.
    staff_client.post(url, {"amount": "-25", "reason": "duplicate charge", "nonce": nonce})
    assert credit_balance_get(user=customer) == balance - 25
    assert ledger_check() == []


def test_adjustment_below_zero_is_refused_with_a_message_and_moves_nothing(staff_client, customer):
    account = CreditAccount.objects.get(user=customer)
    url = reverse("admin:credits_creditaccount_adjust", args=[account.pk])
    before = snapshot(customer)
    response = staff_client.post(url, {"amount": "-100000", "reason": "x", "nonce": uuid.uuid4().hex})
    assert response.status_code == 200
    assert "the balance is" in response.content.decode()
    assert snapshot(customer) == before


def test_adjustment_needs_the_adjust_permission(make_user, customer):
    viewer = make_user(is_staff=True)
    client = Client()
    client.force_login(viewer)
    account = CreditAccount.objects.get(user=customer)
    before = snapshot(customer)
    response = client.post(reverse("admin:credits_creditaccount_adjust", args=[account.pk]),
                           {"amount": "50", "reason": "x", "nonce": "n"})
    assert response.status_code == 403
    assert snapshot(customer) == before


def test_adjust_action_redirects_to_the_form_for_one_account(staff_client, customer):
    account = CreditAccount.objects.get(user=customer)
    response = staff_client.post(reverse("admin:credits_creditaccount_changelist"),
                                 {"action": "adjust_selected", "_selected_action": [account.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:credits_creditaccount_adjust", args=[account.pk])


def test_subscription_added_in_the_admin_is_created_by_the_service(staff_client, make_user):
    user = make_user()
    response = staff_client.post(reverse("admin:credits_subscription_add"), {"user": user.pk, "plan": "pro"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Subscription.objects.get(user=user).plan == "pro"
    assert credit_balance_get(user=user) == 3000  # the first allowance, granted by the service


def test_cancel_action_cancels_through_the_service(staff_client, customer):
    response = staff_client.post(reverse("admin:credits_subscription_changelist"),
                                 {"action": "cancel_selected", "_selected_action": [customer.subscription.pk]})
    assert response.status_code == 302
    assert Subscription.objects.get(user=customer).status == "cancelled"
