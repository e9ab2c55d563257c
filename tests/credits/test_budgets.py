"""Team members' monthly budgets: counted by the charge's own statement, never overrun, and never
left counting a charge that did not happen."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.users.models import Membership, User, Workspace
from auteur.users.roles import Role
from auteur.users.workspace_context import show_balances
from credits.errors import InsufficientCredits, SpendCapReached
from credits.models import CapScope, CreditTransaction, SpendCap, TransactionType
from credits.selectors import credit_balance_get, ledger_check, month_end, month_of
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job
from jobs.models import Job
from tests.credits.test_concurrency import race
from tests.factories import acting_in, team_workspace

THIS_MONTH = month_of(timezone.now())
LAST_MONTH = month_of(datetime.combine(THIS_MONTH, time(), UTC) - timedelta(days=1))


def budget_of(account: User, member: User) -> SpendCap:
    return SpendCap.objects.get(user=account, scope=CapScope.MEMBER, subject_id=member.pk)


def set_limit(account: User, member: User, limit: int | None) -> None:
    SpendCap.objects.update_or_create(
        user=account, scope=CapScope.MEMBER, subject_id=member.pk,
        defaults={"monthly_limit": limit}, create_defaults={"monthly_limit": limit, "month": THIS_MONTH,
                                                            "updated_at": "2026-01-01T00:00Z"})


def charge(account: User, member: User, amount: int, job_id: uuid.UUID | None = None) -> CreditTransaction:
    return credit_deduct_for_job(user=account, job_id=job_id or uuid.uuid4(), amount=amount, description="job",
                                 member_id=member.pk)


@pytest.fixture
def pool(make_user: Callable[..., User]) -> tuple[User, User, User]:
    """(a team's account holding 100 credits, its owner, an editor)."""
    owner, editor = make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=editor, role=Role.EDITOR)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, description="pool")
    return account, owner, editor


@pytest.mark.django_db
class TestTheCharge:
    def test_a_member_spends_up_to_their_budget_and_no_further(self, pool):
        account, _, editor = pool
        set_limit(account, editor, 10)
        charge(account, editor, 4)
        charge(account, editor, 6)

        with pytest.raises(SpendCapReached) as refused:
            charge(account, editor, 1)

        assert refused.value.details == {
            "cap": "member", "member_id": str(editor.pk), "limit": 10, "monthly_limit": 10, "spent": 10, "cost": 1,
            "resets_at": month_end(THIS_MONTH).isoformat()}
        assert credit_balance_get(user=account) == 90  # the refused charge moved nothing
        assert CreditTransaction.objects.filter(user=account, type=TransactionType.USAGE).count() == 2
        assert budget_of(account, editor).spent == 10
        assert ledger_check() == []

    def test_every_member_is_counted_but_only_a_limited_one_is_held(self, pool):
        account, owner, editor = pool
        set_limit(account, editor, 5)
        charge(account, owner, 30)
        charge(account, editor, 5)
        assert (budget_of(account, owner).spent, budget_of(account, owner).monthly_limit) == (30, None)
        with pytest.raises(SpendCapReached):
            charge(account, editor, 1)
        charge(account, owner, 1)
        assert budget_of(account, owner).spent == 31

    def test_a_refund_gives_the_budget_back(self, pool):
        account, _, editor = pool
        set_limit(account, editor, 10)
        job = uuid.uuid4()
        charge(account, editor, 8, job)
        credit_refund_job(job_id=job, reason="failed", amount=5)

        assert budget_of(account, editor).spent == 3
        charge(account, editor, 7)
        assert budget_of(account, editor).spent == 10
        assert ledger_check() == []

    def test_the_pool_refuses_before_a_budget_with_room_does(self, pool):
        account, _, editor = pool
        set_limit(account, editor, 1000)
        with pytest.raises(InsufficientCredits) as refused:
            charge(account, editor, 101)
        assert refused.value.details == {"balance": None, "cost": 101}  # outside a request: no seat sees it
        show_balances(True)  # as a request whose seat may read the credits sets it
        with pytest.raises(InsufficientCredits) as refused:
            charge(account, editor, 101)
        assert refused.value.details == {"balance": 100, "cost": 101}
        assert budget_of(account, editor).spent == 0

    def test_a_charge_refused_by_both_names_the_budget(self, pool):
        account, _, editor = pool
        set_limit(account, editor, 3)
        with pytest.raises(SpendCapReached):
            charge(account, editor, 500)

    def test_a_retried_charge_of_a_charged_job_is_the_first_charge_whatever_the_budget_says_now(self, pool):
        account, _, editor = pool
        job = uuid.uuid4()
        first = charge(account, editor, 6, job)
        set_limit(account, editor, 6)

        assert charge(account, editor, 6, job).pk == first.pk  # refused by the counter, then found
        set_limit(account, editor, None)
        assert charge(account, editor, 6, job).pk == first.pk  # counted, then undone with the duplicate

        assert credit_balance_get(user=account) == 94
        assert budget_of(account, editor).spent == 6
        assert ledger_check() == []

    def test_a_refused_new_job_leaves_nothing_of_its_charge(self, pool):
        from django.db import transaction

        account, _, editor = pool
        set_limit(account, editor, 2)
        with pytest.raises(SpendCapReached), transaction.atomic():
            credit_deduct_for_job(user=account, job_id=uuid.uuid4(), amount=3, description="x", new_job=True,
                                  member_id=editor.pk)
        assert credit_balance_get(user=account) == 100
        assert budget_of(account, editor).spent == 0

    def test_a_personal_workspace_without_a_cap_counts_nothing(self, make_user):
        person = make_user()
        credit_grant(user=person, amount=10, description="x")
        job = uuid.uuid4()
        charge(person, person, 4, job)
        credit_refund_job(job_id=job, reason="x")
        assert not SpendCap.objects.filter(user=person).exists()

    def test_a_new_month_counts_from_zero(self, pool):
        account, _, editor = pool
        set_limit(account, editor, 10)
        charge(account, editor, 10)
        SpendCap.objects.filter(user=account).update(month=LAST_MONTH)  # as if charged last month

        charge(account, editor, 7)

        cap = budget_of(account, editor)
        assert (cap.month, cap.spent) == (THIS_MONTH, 7)

    def test_a_refund_of_a_charge_of_a_month_no_longer_counted_gives_nothing_back(self, pool):
        account, _, editor = pool
        job = uuid.uuid4()
        charge(account, editor, 5, job)
        later = date(THIS_MONTH.year + 1, 1, 1)  # as if a charge of a later month had restarted it
        SpendCap.objects.filter(user=account).update(month=later, spent=2)

        credit_refund_job(job_id=job, reason="failed")

        assert (budget_of(account, editor).month, budget_of(account, editor).spent) == (later, 2)

    def test_ledger_check_finds_a_counter_that_disagrees_with_the_ledger(self, pool):
        account, _, editor = pool
        charge(account, editor, 5)
        SpendCap.objects.filter(user=account, scope="member").update(spent=4)
        assert [p.message for p in ledger_check()] == [
            f"the member counter of {editor.pk} counts 4 spent in {THIS_MONTH:%Y-%m}, but its entries of that month "
            f"add up to 5"]
        assert not SpendCap.objects.filter(user=account, scope="workspace").exists()  # no cap: no counter

    def test_the_migration_counts_what_members_spent_this_month(self, pool, make_user):
        from importlib import import_module

        account, owner, editor = pool
        job = uuid.uuid4()
        charge(account, editor, 9, job)
        credit_refund_job(job_id=job, reason="x", amount=4)
        charge(account, owner, 3)
        charge(account, editor, 2)
        person = make_user()
        credit_grant(user=person, amount=5, description="x")
        charge(person, person, 5)
        SpendCap.objects.all().delete()

        with connection.cursor() as cursor:
            cursor.execute(import_module("credits.migrations.0006_member_budgets").COUNT_THIS_MONTH)

        assert {(c.user_id, c.subject_id): c.spent for c in SpendCap.objects.all()} == {
            (account.pk, editor.pk): 7, (account.pk, owner.pk): 3}
        assert ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_members_racing_for_their_budgets_and_the_pool_overrun_neither(make_user):
    owner = make_user()
    team = team_workspace(owner)
    members = [make_user() for _ in range(4)]
    for member in members:
        Membership.objects.create(workspace=team, user=member, role=Role.EDITOR)
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=100, description="pool")
    jobs = [uuid.uuid4() for _ in range(48)]
    refunded = {i for i in range(48) if i % 6 == 5}  # refunds race the charges, of jobs charged before
    for i in refunded:
        charge(account, members[i % 4], 3, jobs[i])
    for member in members:
        set_limit(account, member, 20)

    def work(i: int) -> Any:
        if i in refunded:
            return credit_refund_job(job_id=jobs[i], reason="failed")
        return charge(account, members[i % 4], 3, jobs[i])

    results = race(48, work)

    # The pool always covers what the budgets allow: every refusal is a budget's, and says so.
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, SpendCapReached)]
    assert unexpected == []
    assert all(r.details["spent"] + 3 > 20 for r in results if isinstance(r, SpendCapReached))
    assert Counter(type(r).__name__ for r in results)["SpendCapReached"] > 0
    for member in members:
        cap = budget_of(account, member)
        assert cap.spent <= 20
    assert credit_balance_get(user=account) >= 0
    assert ledger_check() == []




@pytest.mark.django_db
class TestTheApi:
    @pytest.fixture
    def team(self, make_user) -> dict[str, Any]:
        owner, admin, editor, viewer = make_user(), make_user(), make_user(), make_user()
        team = team_workspace(owner)
        for user, role in ((admin, Role.ADMIN), (editor, Role.EDITOR), (viewer, Role.VIEWER)):
            Membership.objects.create(workspace=team, user=user, role=role)
        account = User.objects.get(pk=team.pk)
        credit_grant(user=account, amount=1000, description="pool")
        return {"team": team, "account": account, "owner": owner, "admin": admin, "editor": editor, "viewer": viewer}

    def put(self, client: APIClient, team: Workspace, member: User | str, body: Any) -> Any:
        return client.put(f"/api/v1/workspaces/{team.pk}/budgets/{getattr(member, 'pk', member)}", body,
                          format="json")

    def test_an_admin_sets_a_budget_and_the_members_next_job_past_it_is_refused_with_nothing_made(
        self, team, client_for
    ):
        t = team
        set_by_admin = self.put(client_for(t["admin"]), t["team"], t["editor"], {"monthly_limit": 1})
        assert set_by_admin.status_code == 200, set_by_admin.content
        assert set_by_admin.json() == {
            "user_id": str(t["editor"].pk), "monthly_limit": 1, "spent": 0, "remaining": 1,
            "month": THIS_MONTH.isoformat(), "resets_at": month_end(THIS_MONTH).isoformat().replace("+00:00", "Z")}
        editor = acting_in(t["editor"], t["team"])
        project = editor.post("/api/v1/projects", {"name": "p"}, format="json").json()

        refused = editor.post("/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hello"}, format="json")

        assert refused.status_code == 402, refused.content
        error = refused.json()["error"]
        assert error["code"] == "spend_cap_reached"
        assert error["details"]["cap"] == "member" and error["details"]["monthly_limit"] == 1
        assert Job.objects.filter(user=t["account"]).count() == 0
        assert credit_balance_get(user=t["account"]) == 1000
        assert budget_of(t["account"], t["editor"]).spent == 0
        # The owner, with no budget, spends from the same pool.
        owners = acting_in(t["owner"], t["team"])
        assert owners.post("/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hi"},
                           format="json").status_code == 202
        lifted = self.put(client_for(t["owner"]), t["team"], t["editor"], {"monthly_limit": None})
        assert lifted.json()["remaining"] is None
        assert editor.post("/api/v1/jobs/tts", {"project_id": project["id"], "text": "Hello"},
                           format="json").status_code == 202
        assert ledger_check() == []

    def test_who_may_set_a_budget(self, team, client_for, make_user):
        t = team
        for who in ("editor", "viewer"):
            answer = self.put(client_for(t[who]), t["team"], t["editor"], {"monthly_limit": 5})
            assert (answer.status_code, answer.json()["error"]["code"]) == (403, "permission_denied")
            assert answer.json()["error"]["details"] == {"action": "budgets.manage", "role": who}
        # Those who set budgets are held to theirs by an owner: an admin sets no owner's or admin's,
        # and its own is refused with a code of its own.
        other_admin = make_user()
        Membership.objects.create(workspace=t["team"], user=other_admin, role=Role.ADMIN)
        for member in (t["owner"], other_admin):
            refused = self.put(client_for(t["admin"]), t["team"], member, {"monthly_limit": None})
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
            assert refused.json()["error"]["details"] == {"action": "budgets.manage_admins", "role": "admin"}
        own = self.put(client_for(t["admin"]), t["team"], t["admin"], {"monthly_limit": None})
        assert (own.status_code, own.json()["error"]["code"]) == (403, "own_budget")
        assert own.json()["error"]["message"] == (
            "A workspace's admin may not set their own monthly budget: an owner sets it.")
        assert own.json()["error"]["details"] == {"action": "budgets.manage_admins", "role": "admin"}
        for member, limit in ((t["owner"], 5), (t["admin"], 50), (t["viewer"], 5)):
            assert self.put(client_for(t["owner"]), t["team"], member, {"monthly_limit": limit}).status_code == 200
        by_admin = self.put(client_for(t["admin"]), t["team"], t["viewer"], {"monthly_limit": 6})
        assert by_admin.json()["monthly_limit"] == 6
        assert not SpendCap.objects.filter(subject_id=t["editor"].pk).exists()

    def test_what_is_not_a_member_or_a_team_is_refused(self, team, client_for, make_user):
        t = team
        stranger = make_user()
        admin = client_for(t["admin"])
        for member in (stranger, str(uuid.uuid4()), "not-a-user"):
            answer = self.put(admin, t["team"], member, {"monthly_limit": 5})
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "member_not_found")
        for client in (client_for(stranger), admin):
            for workspace in (str(uuid.uuid4()), "nope") if client is admin else (t["team"].pk,):
                answer = client.put(f"/api/v1/workspaces/{workspace}/budgets/{t['editor'].pk}",
                                    {"monthly_limit": 5}, format="json")
                assert (answer.status_code, answer.json()["error"]["code"]) == (404, "workspace_not_found")
                listed = client.get(f"/api/v1/workspaces/{workspace}/budgets")
                assert (listed.status_code, listed.json()["error"]["code"]) == (404, "workspace_not_found")
        own = client_for(stranger)
        answer = own.put(f"/api/v1/workspaces/{stranger.pk}/budgets/{stranger.pk}", {"monthly_limit": 5}, format="json")
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "personal_workspace")
        answer = own.get(f"/api/v1/workspaces/{stranger.pk}/budgets")
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "personal_workspace")
        assert not SpendCap.objects.exists()

    @pytest.mark.parametrize("body", [{}, {"monthly_limit": -1}, {"monthly_limit": "ten"}, {"monthly_limit": 2**31},
                                      {"monthly_limit": 1.5}, {"monthly_limit": True}, {"monthly_limit": 5, "x": 1},
                                      [5]])
    def test_a_limit_is_a_whole_number_of_credits_or_null(self, team, client_for, body):
        t = team
        answer = self.put(client_for(t["owner"]), t["team"], t["editor"], body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "validation_error"), answer.content
        assert not SpendCap.objects.exists()

    def test_the_list_shows_each_member_what_their_role_sees(self, team, client_for):
        t = team
        charge(t["account"], t["editor"], 12)
        self.put(client_for(t["owner"]), t["team"], t["editor"], {"monthly_limit": 20})

        as_editor = client_for(t["editor"]).get(f"/api/v1/workspaces/{t['team'].pk}/budgets")
        assert as_editor.status_code == 200
        rows = {row["user_id"]: row for row in as_editor.json()["budgets"]}
        assert set(rows) == {str(t[w].pk) for w in ("owner", "admin", "editor", "viewer")}
        assert (rows[str(t["editor"].pk)]["spent"], rows[str(t["editor"].pk)]["remaining"]) == (12, 8)
        assert rows[str(t["owner"].pk)] | {"month": None, "resets_at": None} == {
            "user_id": str(t["owner"].pk), "monthly_limit": None, "spent": 0, "remaining": None, "month": None,
            "resets_at": None}
        as_viewer = client_for(t["viewer"]).get(f"/api/v1/workspaces/{t['team'].pk}/budgets").json()["budgets"]
        assert [row["user_id"] for row in as_viewer] == [str(t["viewer"].pk)]

    def test_a_budget_set_on_a_member_whose_spending_was_not_yet_counted_counts_it_from_the_ledger(
        self, team, client_for
    ):
        t = team
        job = uuid.uuid4()
        charge(t["account"], t["editor"], 9, job)
        credit_refund_job(job_id=job, reason="x", amount=2)
        charge(t["account"], t["editor"], 4)
        SpendCap.objects.all().delete()  # as before counters began

        answer = self.put(client_for(t["owner"]), t["team"], t["editor"], {"monthly_limit": 12})

        assert (answer.json()["spent"], answer.json()["remaining"]) == (11, 1)
        assert ledger_check() == []
        with pytest.raises(SpendCapReached):
            charge(t["account"], t["editor"], 2)


@pytest.mark.django_db
def test_staff_see_a_workspaces_pool_and_each_members_spending(pool, make_user):
    from django.test import Client
    from django.urls import reverse

    account, owner, editor = pool
    set_limit(account, editor, 50)
    charge(account, editor, 12)
    charge(account, owner, 5)
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))

    page = staff.get(reverse("admin:users_workspace_change", args=[account.pk]))

    assert page.status_code == 200
    text = page.content.decode()
    assert "83 credits" in text
    assert f"{editor.email}: 12 credits (budget 50)" in text and f"{owner.email}: 5 credits (budget none)" in text
    caps = reverse("admin:credits_spendcap_changelist")
    for url in (caps, f"{caps}?q={editor.pk}", f"{caps}?q=not-an-id",
                reverse("admin:credits_spendcap_change", args=[budget_of(account, editor).pk]),
                reverse("admin:credits_credittransaction_changelist") + f"?q={editor.pk}"):
        assert staff.get(url).status_code == 200, url
    assert staff.post(reverse("admin:credits_spendcap_change", args=[budget_of(account, editor).pk]),
                      {"spent": 0}).status_code == 403
