"""GET /api/v1/usage: every grouping and every format adds up to exactly what the ledger holds for
the range, and shows only the acting workspace's entries, to the roles that see its credits."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.users.models import ApiKey, Membership, User
from auteur.users.roles import Role
from credits.models import CreditAccount, CreditTransaction, TransactionType
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job
from credits.usage import FOCUS_COLUMNS, MAX_RANGE_DAYS, USAGE_CSV_HEADER
from jobs.models import Job
from tests.factories import acting_in, team_workspace

pytestmark = pytest.mark.django_db

URL = "/api/v1/usage"
GROUPINGS = ("day", "type", "member", "key")


def ledger(account: User, start: datetime | None = None, end: datetime | None = None) -> dict[str, int]:
    """The counters straight from the ledger: usage and refund entries created in [start, end)."""
    entries = CreditTransaction.objects.filter(user_id=account.pk)
    if start is not None:
        entries = entries.filter(created_at__gte=start)
    if end is not None:
        entries = entries.filter(created_at__lt=end)
    usage = entries.filter(type=TransactionType.USAGE)
    charged = -(usage.aggregate(s=Sum("amount"))["s"] or 0)
    refunded = entries.filter(type=TransactionType.REFUND).aggregate(s=Sum("amount"))["s"] or 0
    return {"charged": charged, "refunded": refunded, "net": charged - refunded, "jobs": usage.count()}


def counters(item: dict[str, Any]) -> dict[str, int]:
    return {name: item[name] for name in ("charged", "refunded", "net", "jobs")}


def summed(groups: list[dict[str, Any]]) -> dict[str, int]:
    return {name: sum(g[name] for g in groups) for name in ("charged", "refunded", "net", "jobs")}


def charge(account: User, member_id: uuid.UUID | None, amount: int, type: str = "transcription") -> Job:
    job = Job.objects.create(user=account, member_id=member_id, type=type, credits_cost=amount)
    credit_deduct_for_job(user=account, job_id=job.pk, amount=amount, description="job", member_id=member_id)
    return job


def entry_at(account: User, when: datetime, type: str, amount: int, *, job_id: uuid.UUID | None = None,
             member_id: uuid.UUID | None = None) -> CreditTransaction:
    """An entry dated `when` (the services date entries by the database's clock, now)."""
    return CreditTransaction.objects.create(
        account=CreditAccount.objects.get(user=account), user=account, type=type, amount=amount, balance_after=0,
        job_id=job_id, member_id=member_id, description="dated", created_at=when)


def month_start() -> date:
    return timezone.now().date().replace(day=1)


def get(client: APIClient, **params: Any) -> Any:
    return client.get(URL, params)


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def personal(make_user: Callable[..., User], client_for: Callable[[User], APIClient]) -> tuple[User, APIClient]:
    """A personal workspace whose jobs of three types were charged, one refunded in part, and which
    was also granted and adjusted (neither of which is usage)."""
    user = make_user(email="solo@example.com", name="Solo")
    credit_grant(user=user, amount=1000, description="funds")
    charge(user, user.pk, 30, "transcription")
    charge(user, user.pk, 50, "tts")
    failed = charge(user, user.pk, 70, "render")
    credit_refund_job(job_id=failed.pk, reason="failed", amount=20)
    credit_grant(user=user, amount=5, description="bonus")
    return user, client_for(user)


@pytest.fixture
def team(make_user: Callable[..., User]) -> dict[str, Any]:
    """A team workspace's account with an owner, an editor and an API key that each spent from it."""
    owner = make_user(email="owner@example.com", name="Olive Owner")
    editor = make_user(email="editor@example.com", name="")
    workspace = team_workspace(owner)
    Membership.objects.create(workspace=workspace, user=editor, role=Role.EDITOR)
    account = User.objects.get(pk=workspace.pk)
    credit_grant(user=account, amount=10_000, description="pool")
    key = ApiKey.objects.create(user=account, name="ci", prefix="ak_12345", secret_hash=uuid.uuid4().hex * 2,
                                scopes=["jobs:write", "credits:read"], created_by=owner)
    charge(account, owner.pk, 100, "transcription")
    charge(account, owner.pk, 40, "tts")
    refunded = charge(account, editor.pk, 60, "render")
    credit_refund_job(job_id=refunded.pk, reason="failed")
    charge(account, editor.pk, 25, "transcription")
    charge(account, key.pk, 7, "tts")
    return {"owner": owner, "editor": editor, "workspace": workspace, "account": account, "key": key}


class TestEqualsTheLedger:
    @pytest.mark.parametrize("group_by", GROUPINGS)
    def test_every_grouping_adds_up_to_the_ledger(self, personal, group_by):
        user, client = personal
        response = get(client, group_by=group_by)
        assert response.status_code == 200, response.content
        data = response.json()
        assert counters(data["total"]) == ledger(user) == {"charged": 150, "refunded": 20, "net": 130, "jobs": 3}
        assert summed(data["groups"]) == counters(data["total"])
        assert data["group_by"] == group_by
        assert all(g["net"] == g["charged"] - g["refunded"] for g in data["groups"])

    def test_grants_purchases_and_adjustments_are_not_usage(self, personal):
        user, client = personal
        before = get(client).json()["total"]
        credit_grant(user=user, amount=500, type=TransactionType.SUBSCRIPTION, description="allowance")
        assert get(client).json()["total"] == before

    def test_groups_by_job_type(self, personal):
        _, client = personal
        groups = {g["key"]: counters(g) for g in get(client, group_by="type").json()["groups"]}
        assert groups == {
            "transcription": {"charged": 30, "refunded": 0, "net": 30, "jobs": 1},
            "tts": {"charged": 50, "refunded": 0, "net": 50, "jobs": 1},
            "render": {"charged": 70, "refunded": 20, "net": 50, "jobs": 1},
        }

    def test_an_entry_whose_job_is_gone_is_counted_under_null(self, personal):
        user, client = personal
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=9, description="no job row", member_id=user.pk)
        data = get(client, group_by="type").json()
        [orphan] = [g for g in data["groups"] if g["key"] is None]
        assert (orphan["charged"], orphan["label"]) == (9, "no job record")
        assert counters(data["total"]) == ledger(user)

    def test_an_entry_that_records_its_jobs_type_needs_no_job_row(self, personal):
        user, client = personal
        job_id = uuid.uuid4()
        credit_deduct_for_job(user=user, job_id=job_id, amount=4, description="x", member_id=user.pk,
                              job_type="compression")
        credit_refund_job(job_id=job_id, reason="failed")
        assert CreditTransaction.objects.filter(job_id=job_id).values_list("job_type", flat=True).distinct().get() \
            == "compression"
        groups = {g["key"]: counters(g) for g in get(client, group_by="type").json()["groups"]}
        assert groups["compression"] == {"charged": 4, "refunded": 4, "net": 0, "jobs": 1}

    def test_a_job_made_long_before_its_entry_still_gives_its_type(self, make_user, client_for):
        user = make_user()
        credit_grant(user=user, amount=1000, description="funds")
        job = Job.objects.create(user=user, member_id=user.pk, type="lip-sync", credits_cost=12)  # made now
        when = datetime(2025, 3, 10, tzinfo=UTC)
        entry_at(user, when, TransactionType.USAGE, -12, job_id=job.pk, member_id=user.pk)
        entry_at(user, when + timedelta(days=1), TransactionType.REFUND, 12, job_id=job.pk, member_id=user.pk)
        data = get(client_for(user), **{"from": "2025-03-01", "to": "2025-04-01", "group_by": "type"}).json()
        assert [(g["key"], g["charged"], g["refunded"]) for g in data["groups"]] == [("lip-sync", 12, 12)]

    def test_groups_by_utc_day(self, personal):
        _, client = personal
        today = timezone.now().astimezone(UTC).date()
        data = get(client, group_by="day").json()
        assert [g["key"] for g in data["groups"]] == [today.isoformat()]
        assert data["groups"][0]["label"] == today.isoformat()


class TestRange:
    def test_default_is_this_utc_month_so_far(self, personal):
        _, client = personal
        data = get(client).json()
        assert data["from"] == month_start().isoformat()
        assert data["to"] == (timezone.now().date() + timedelta(days=1)).isoformat()

    def test_only_entries_created_in_the_range_count_and_to_is_excluded(self, make_user, client_for):
        user = make_user()
        credit_grant(user=user, amount=1000, description="funds")
        start = datetime(2025, 3, 1, tzinfo=UTC)
        end = datetime(2025, 3, 31, tzinfo=UTC)
        tick = timedelta(microseconds=1)
        early = uuid.uuid4()
        entry_at(user, start - tick, TransactionType.USAGE, -1, job_id=early)  # the day before
        entry_at(user, start, TransactionType.USAGE, -10, job_id=uuid.uuid4())  # first moment counted
        entry_at(user, end - tick, TransactionType.USAGE, -100, job_id=uuid.uuid4())  # last moment counted
        entry_at(user, end, TransactionType.USAGE, -1000, job_id=uuid.uuid4())  # `to` itself: excluded
        entry_at(user, start + timedelta(days=3), TransactionType.REFUND, 1, job_id=early)  # refund of a job before
        response = get(client_for(user), **{"from": "2025-03-01", "to": "2025-03-31", "group_by": "day"})
        data = response.json()
        assert counters(data["total"]) == ledger(user, start, end) == {"charged": 110, "refunded": 1, "net": 109,
                                                                       "jobs": 2}
        assert [(g["key"], g["net"]) for g in data["groups"]] == [("2025-03-01", 10), ("2025-03-04", -1),
                                                                   ("2025-03-30", 100)]
        assert (data["from"], data["to"]) == ("2025-03-01", "2025-03-31")

    def test_the_longest_range_is_accepted_and_a_longer_one_refused(self, personal):
        _, client = personal
        start = date(2024, 1, 1)
        ok = get(client, **{"from": start.isoformat(), "to": (start + timedelta(days=MAX_RANGE_DAYS)).isoformat()})
        assert ok.status_code == 200
        refused = get(client, **{"from": start.isoformat(),
                                 "to": (start + timedelta(days=MAX_RANGE_DAYS + 1)).isoformat()})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_range"

    @pytest.mark.parametrize("params", [
        {"from": "2025-03-02", "to": "2025-03-01"},
        {"from": "2025-03-01", "to": "2025-03-01"},
        {"from": "9999-12-31"},
        {"to": "0001-01-01"},
        {"from": "2020-01-01"},  # to today: too long
        {"from": "2025-03-02", "to": "2025-03-01", "format": "csv"},  # refused as JSON, whatever format was asked
        {"from": "2025-03-02", "to": "2025-03-01", "format": "focus"},
    ])
    def test_a_range_that_is_empty_or_too_long_is_refused(self, personal, params):
        _, client = personal
        response = get(client, **params)
        assert response.status_code == 400
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"]["code"] == "invalid_range"

    @pytest.mark.parametrize(("params", "field"), [
        ({"group_by": "project"}, "group_by"),
        ({"format": "xlsx"}, "format"),
        ({"from": "2025-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
    ])
    def test_bad_parameters_are_refused_by_name(self, personal, params, field):
        _, client = personal
        response = get(client, **params)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in error["details"]["fields"]


class TestWorkspaces:
    def test_a_team_workspace_counts_each_member_and_key(self, team):
        client = acting_in(team["owner"], team["workspace"])
        owner, editor, key = team["owner"], team["editor"], team["key"]
        for group_by in GROUPINGS:
            data = get(client, group_by=group_by).json()
            assert counters(data["total"]) == ledger(team["account"]) == {"charged": 232, "refunded": 60,
                                                                          "net": 172, "jobs": 5}
            assert summed(data["groups"]) == counters(data["total"])
        members = {g["key"]: g for g in get(client, group_by="member").json()["groups"]}
        assert {k: (g["label"], g["net"]) for k, g in members.items()} == {
            str(owner.pk): ("Olive Owner <owner@example.com>", 140),
            str(editor.pk): ("editor@example.com", 25),
            str(key.pk): ("key: ci (ak_12345…)", 7),
        }
        assert members[str(editor.pk)]["refunded"] == 60

    def test_a_key_made_charge_is_grouped_under_its_key(self, team):
        client = acting_in(team["owner"], team["workspace"])
        groups = {g["key"]: g for g in get(client, group_by="key").json()["groups"]}
        assert set(groups) == {str(team["key"].pk), None}
        key = groups[str(team["key"].pk)]
        assert (key["label"], key["charged"]) == ("key: ci (ak_12345…)", 7)
        assert (groups[None]["label"], groups[None]["charged"]) == ("people", 225)

    def test_another_accounts_key_is_not_this_workspaces(self, team, personal):
        user, client = personal
        # The team's key id on this account's entry (as no charge would name it): not a key of this one.
        credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=3, description="x", member_id=team["key"].pk)
        groups = {g["key"]: g for g in get(client, group_by="key").json()["groups"]}
        assert set(groups) == {None}
        members = {g["key"]: g["label"] for g in get(client, group_by="member").json()["groups"]}
        assert members[str(team["key"].pk)] != "key: ci (ak_12345…)"

    def test_a_workspace_sees_only_its_own_usage(self, team, personal):
        user, client = personal
        assert counters(get(client).json()["total"]) == ledger(user)
        team_total = get(acting_in(team["owner"], team["workspace"])).json()["total"]
        assert counters(team_total) == ledger(team["account"])
        # A member's personal workspace holds none of the team's usage.
        own = get(acting_in(team["editor"], team["editor"])).json()
        assert own["groups"] == [] and own["total"]["charged"] == 0

    def test_a_workspace_the_caller_is_not_a_member_of_is_not_found(self, team, personal):
        user, _ = personal
        response = get(acting_in(user, team["workspace"]))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "workspace_not_found"

    @pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.BILLING, 200), (Role.ADMIN, 200)])
    def test_only_the_roles_that_see_credits_see_usage(self, team, make_user, role, status):
        member = make_user()
        Membership.objects.create(workspace=team["workspace"], user=member, role=role)
        response = get(acting_in(member, team["workspace"]), format="csv")
        assert response.status_code == status
        if status == 403:
            assert response.json()["error"]["code"] == "permission_denied"
            assert response.json()["error"]["details"]["action"] == "credits.view"


class TestFormats:
    @pytest.mark.parametrize("group_by", GROUPINGS)
    def test_csv_parses_back_to_the_ledger(self, team, group_by):
        response = get(acting_in(team["owner"], team["workspace"]), group_by=group_by, format="csv")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith("attachment;")
        rows = list(csv.DictReader(io.StringIO(body(response))))
        assert tuple(rows[0]) == USAGE_CSV_HEADER
        totals = {name: sum(int(r[name]) for r in rows) for name in ("charged", "refunded", "net", "jobs")}
        assert totals == ledger(team["account"])

    def test_focus_file_parses_back_to_the_ledger(self, team):
        response = get(acting_in(team["owner"], team["workspace"]), format="focus")
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        reader = csv.DictReader(io.StringIO(body(response)))
        rows = list(reader)
        assert tuple(reader.fieldnames or ()) == FOCUS_COLUMNS
        expected = ledger(team["account"])
        usage = [r for r in rows if r["ChargeCategory"] == "Usage"]
        credits = [r for r in rows if r["ChargeCategory"] == "Credit"]
        assert len(usage) + len(credits) == len(rows)
        assert sum(int(r["BilledCost"]) for r in usage) == expected["charged"]
        assert sum(int(r["BilledCost"]) for r in credits) == -expected["refunded"]
        assert sum(int(r["BilledCost"]) for r in rows) == expected["net"]
        for cost in ("EffectiveCost", "ListCost", "ContractedCost"):
            assert [r[cost] for r in rows] == [r["BilledCost"] for r in rows]
        assert sum(int(r["ConsumedQuantity"]) for r in usage) == expected["jobs"]
        today = timezone.now().astimezone(UTC).date()
        first = usage[0]
        assert first["BillingCurrency"] == "XXX" and first["x_CostUnit"] == "credits"
        assert first["ChargePeriodStart"] == f"{today}T00:00:00Z"
        assert first["ChargePeriodEnd"] == f"{today + timedelta(days=1)}T00:00:00Z"
        assert first["BillingPeriodStart"] == f"{today.replace(day=1)}T00:00:00Z"
        assert first["BillingAccountId"] == str(team["account"].pk)
        key_rows = [r for r in rows if r["SubAccountId"] == str(team["key"].pk)]
        assert [(r["SkuId"], r["SubAccountName"], r["BilledCost"]) for r in key_rows] == [
            ("tts", "key: ci (ak_12345…)", "7")]
        # One Usage row per day x type x member: the owner's and the editor's transcriptions apart.
        assert sorted((r["SkuId"], r["SubAccountId"]) for r in usage if r["SkuId"] == "transcription") == sorted(
            [("transcription", str(team["owner"].pk)), ("transcription", str(team["editor"].pk))])

    def test_an_empty_range_is_a_header_only(self, personal):
        _, client = personal
        for fmt, header in (("csv", USAGE_CSV_HEADER), ("focus", FOCUS_COLUMNS)):
            response = get(client, **{"from": "2020-01-01", "to": "2020-02-01", "format": fmt})
            assert list(csv.reader(io.StringIO(body(response)))) == [list(header)]

    def test_cells_that_a_spreadsheet_would_run_are_neutralised(self, team, make_user):
        team["key"].name = "=HYPERLINK(\"http://evil.example\",\"x\")"
        team["key"].save(update_fields=["name"])
        team["editor"].name = "@SUM(1+1)"
        team["editor"].save(update_fields=["name"])
        client = acting_in(team["owner"], team["workspace"])
        rows = list(csv.DictReader(io.StringIO(body(get(client, group_by="member", format="csv")))))
        labels = {r["key"]: r["label"] for r in rows}
        assert labels[str(team["key"].pk)] == "key: =HYPERLINK(\"http://evil.example\",\"x\") (ak_12345…)"
        assert labels[str(team["editor"].pk)] == "'@SUM(1+1) <editor@example.com>"
        focus = list(csv.DictReader(io.StringIO(body(get(client, format="focus")))))
        names = {r["SubAccountName"] for r in focus}
        assert "'@SUM(1+1) <editor@example.com>" in names
        # No text cell of either file starts with a formula character (a refund's negative cost is a number).
        for row in rows + focus:
            for column, value in row.items():
                if not value.lstrip("-").isdigit():
                    assert not value.startswith(("=", "+", "-", "@")), (column, value)



@pytest.mark.django_db
def test_a_key_sees_who_spent_by_id_not_by_name_or_email(make_user, client_for):
    from auteur.users.key_services import api_key_create
    from auteur.users.models import Membership
    from tests.factories import key_client

    owner = make_user(email="owner@example.com")
    credit_grant(user=owner, amount=100, description="funds")
    credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=3, description="x", member_id=owner.pk)
    key, text = api_key_create(membership=Membership.objects.get(workspace_id=owner.pk, user=owner), name="books",
                               scopes=["credits:read"])
    credit_deduct_for_job(user=owner, job_id=uuid.uuid4(), amount=2, description="x", member_id=key.pk)
    groups = {g["key"]: g["label"] for g in key_client(text).get("/api/v1/usage?group_by=member").json()["groups"]}
    assert groups[str(owner.pk)] == f"member {owner.pk}" and groups[str(key.pk)].startswith("key: books")
    named = {g["key"]: g["label"] for g in client_for(owner).get("/api/v1/usage?group_by=member").json()["groups"]}
    assert "owner@example.com" in named[str(owner.pk)]
