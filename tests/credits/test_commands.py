from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from credits.models import CreditAccount
from credits.selectors import credit_balance_get
from credits.services.ledger import credit_deduct_for_job, credit_grant
from tests.credits.helpers import snapshot

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_grant_credits_grants_a_bonus_with_the_reason(user):
    output = run("grant_credits", user.email.upper(), "250", "--reason", "beta tester")
    assert credit_balance_get(user=user) == 250
    entry = user.credit_transactions.get()
    assert (entry.type, entry.amount, entry.description) == ("bonus", 250, "beta tester")
    assert "balance now 250" in output


def test_grant_credits_with_a_key_grants_once(user):
    run("grant_credits", user.email, "10", "--reason", "x", "--idempotency-key", "script-1")
    run("grant_credits", user.email, "10", "--reason", "x", "--idempotency-key", "script-1")
    assert snapshot(user) == (10, 1)


@pytest.mark.parametrize("amount", ["0", "-5"])
def test_grant_credits_refuses_a_non_positive_amount(user, amount):
    with pytest.raises(CommandError, match="positive"):
        run("grant_credits", user.email, amount, "--reason", "x")
    assert snapshot(user) == (0, 0)


def test_grant_credits_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user"):
        run("grant_credits", "nobody@example.com", "10", "--reason", "x")
    assert not CreditAccount.objects.exists()


def test_grant_credits_refuses_an_email_two_accounts_have_and_takes_an_id(make_user):
    """An email is no account key: two accounts may carry one, and a grant must not guess."""
    first, second = make_user(email="shared@example.com"), make_user(email="shared@example.com")
    with pytest.raises(CommandError, match="Several accounts"):
        run("grant_credits", "Shared@Example.com", "10", "--reason", "x")
    assert not CreditAccount.objects.exists()
    run("grant_credits", str(second.pk), "10", "--reason", "x")
    assert snapshot(second) == (10, 1) and snapshot(first) == (0, 0)


def test_grant_credits_requires_a_reason(user):
    with pytest.raises(CommandError):
        run("grant_credits", user.email, "10")
    with pytest.raises(CommandError):
        run("grant_credits", user.email, "10", "--reason", "  ")
    assert snapshot(user) == (0, 0)


def test_ledger_check_reports_a_consistent_ledger(funded_user):
    user = funded_user(50)
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=20, description="x")
    funded_user(7)
    assert run("ledger_check").strip() == "ledger consistent: 2 accounts"


def test_ledger_check_fails_and_names_an_account_whose_balance_was_tampered(funded_user):
    honest, tampered = funded_user(50), funded_user(50)
    CreditAccount.objects.filter(user=tampered).update(balance=70)  # a balance moved without an entry

    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("ledger_check", stdout=out)

    assert exc.value.returncode == 1
    assert "1 account" in str(exc.value)
    report = out.getvalue()
    assert tampered.email in report and "balance is 70 but its entries add up to 50" in report
    assert honest.email not in report


def test_ledger_check_finds_a_broken_balance_after_chain(funded_user):
    user = funded_user(50)
    credit_grant(user=user, amount=10, description="x")
    entry = user.credit_transactions.order_by("created_at").last()
    with connection.cursor() as cursor:
        # Bypass the append-only trigger for this one forgery, then restore it. (ALTER TABLE
        # needs the deferred foreign-key checks of this transaction to have run first.)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE credit_transactions DISABLE TRIGGER credit_transactions_append_only")
        try:
            cursor.execute("UPDATE credit_transactions SET balance_after = 61 WHERE id = %s", [entry.pk])
        finally:
            cursor.execute("ALTER TABLE credit_transactions ENABLE TRIGGER credit_transactions_append_only")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("ledger_check", stdout=out)
    assert exc.value.returncode == 1
    assert f"entry {entry.pk}" in out.getvalue() and "expected 60" in out.getvalue()


def test_ledger_check_finds_a_refund_larger_than_the_charge(funded_user):
    user = funded_user(50)
    job_id = uuid.uuid4()
    charge = credit_deduct_for_job(user=user, job_id=job_id, amount=10, description="x")
    with connection.cursor() as cursor:
        # A forged over-refund, inserted with a consistent chain and balance: only the refund rule catches it.
        cursor.execute(
            "INSERT INTO credit_transactions"
            " (id, account_id, user_id, amount, balance_after, type, description, job_id)"
            " VALUES (%s, %s, %s, 15, 55, 'refund', 'forged', %s)",
            [uuid.uuid4(), charge.account_id, user.pk, job_id],
        )
        cursor.execute("UPDATE credit_accounts SET balance = 55 WHERE id = %s", [charge.account_id])

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ledger_check", stdout=out)
    assert "gives back 15" in out.getvalue() and "charged 10" in out.getvalue()
