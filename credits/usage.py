"""A workspace's usage of its credits over a range of days, read from the ledger and nothing else.

What counts, and the whole rule (so that the answer always equals the ledger):
- charged: the sum of -amount of the account's `usage` entries created in the range;
- refunded: the sum of amount of its `refund` entries created in the range (a refund counts on the
  day it was made, even for a job charged before the range);
- net = charged - refunded; jobs = the number of `usage` entries (one per job) in the range.
Grants, purchases, subscriptions and adjustments move the balance but are not usage: not counted.

Each grouping is one aggregate query in the database over the range's entries, which the partial
covering index `credit_tx_usage_range` (migration 0008) serves by an index-only scan
(bench/usage_query.py). Every entry falls in exactly one group, so the groups add up to the total.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.apps import apps
from django.db import connection

from auteur.core import rls
from auteur.core.errors import ApplicationError
from auteur.users.models import ApiKey, User
from credits.models import CreditTransaction, TransactionType

GROUPINGS = ("day", "type", "member", "key")
MAX_RANGE_DAYS = 366  # UsageApi's description and docs/usage.md state it
# Rows fetched from the export's cursor at a time: what the stream holds in memory.
FETCH_ROWS = 2000


class InvalidRange(ApplicationError):
    code = "invalid_range"


@dataclass(frozen=True)
class UsageRange:
    """Whole UTC days: `start` included, `end` excluded."""

    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time.min, tzinfo=UTC)


def usage_range(*, start: date | None, end: date | None, today: date) -> UsageRange:
    """The range a request names. Without `to`, up to and including today; without `from`, from
    the first day of the month of the range's last day. So neither gives this month so far."""
    try:
        end = end or today + timedelta(days=1)
        start = start or (end - timedelta(days=1)).replace(day=1)
    except OverflowError:
        raise InvalidRange("The range must end after 0001-01-01 and before 9999-12-31.") from None
    if end <= start:
        raise InvalidRange("`to` must be after `from` (`to` is excluded).",
                           details={"from": start.isoformat(), "to": end.isoformat()})
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidRange(f"A range is at most {MAX_RANGE_DAYS} days.",
                           details={"from": start.isoformat(), "to": end.isoformat(), "max_days": MAX_RANGE_DAYS})
    return UsageRange(start, end)


@dataclass(frozen=True)
class UsageGroup:
    key: str | None
    label: str
    charged: int
    refunded: int
    jobs: int

    @property
    def net(self) -> int:
        return self.charged - self.refunded


@dataclass(frozen=True)
class UsageReport:
    range: UsageRange
    group_by: str
    groups: list[UsageGroup]

    @property
    def total(self) -> UsageGroup:
        return UsageGroup(None, "total", sum(g.charged for g in self.groups), sum(g.refunded for g in self.groups),
                          sum(g.jobs for g in self.groups))


# ----------------------------------------------------------------------------- the queries

# The job's type is read from the jobs table, found by its model's label as a foreign key would
# name it: the ledger keeps job_id without one, since jobs depend on credits and never the reverse.
def _jobs_table() -> str:
    return connection.ops.quote_name(apps.get_model("jobs", "Job")._meta.db_table)


def _keys_table() -> str:
    return connection.ops.quote_name(ApiKey._meta.db_table)


# (key expressions, joins) of each grouping. The account filter repeats the row-level security
# policy's, so the owner's login (management commands, the tests' setup) reads the same rows.
def _grouping(group_by: str) -> tuple[list[str], str]:
    day = "(t.created_at AT TIME ZONE 'UTC')::date"
    # An entry records its job's type (the index holds it); one written before entries did is
    # looked up in the jobs table by its job's id (COALESCE reads it only for those).
    job_type = (f"COALESCE(t.job_type, (SELECT o.type FROM {_jobs_table()} o "  # noqa: S608 - the model's table
                "WHERE o.id = t.job_id AND o.user_id = %(account)s))")
    if group_by == "day":
        return [day], ""
    if group_by == "type":
        return [job_type], ""
    if group_by == "member":
        return ["t.member_id"], ""
    if group_by == "key":
        return ["k.id"], f"LEFT JOIN {_keys_table()} k ON k.id = t.member_id AND k.user_id = t.user_id"
    if group_by == "focus":
        return [day, job_type, "t.member_id"], ""
    raise ValueError(group_by)


def _usage_sql(group_by: str) -> str:
    keys, join = _grouping(group_by)
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    return f"""
SELECT {", ".join(keys)},
       COALESCE(SUM(-t.amount) FILTER (WHERE t.type = %(usage)s), 0),
       COALESCE(SUM(t.amount) FILTER (WHERE t.type = %(refund)s), 0),
       COUNT(*) FILTER (WHERE t.type = %(usage)s)
FROM {connection.ops.quote_name(CreditTransaction._meta.db_table)} t {join}
WHERE t.user_id = %(account)s AND t.type IN (%(usage)s, %(refund)s)
  AND t.created_at >= %(start)s AND t.created_at < %(end)s
GROUP BY {positions}
ORDER BY {positions}
"""  # noqa: S608 - names from the models and this module's fragments, values as parameters


def _members_sql() -> str:
    return f"""
SELECT DISTINCT t.member_id FROM {connection.ops.quote_name(CreditTransaction._meta.db_table)} t
WHERE t.user_id = %(account)s AND t.type IN (%(usage)s, %(refund)s)
  AND t.created_at >= %(start)s AND t.created_at < %(end)s AND t.member_id IS NOT NULL
"""  # noqa: S608 - the table's name from its model, values as parameters


def _params(user: User, period: UsageRange) -> dict[str, Any]:
    return {"account": user.pk, "start": period.start_at, "end": period.end_at,
            "usage": TransactionType.USAGE.value, "refund": TransactionType.REFUND.value}


def _key_label(key: ApiKey) -> str:
    return f"key: {key.name} ({key.prefix}…)"


def member_labels(*, user: User, member_ids: Iterable[uuid.UUID], people_named: bool = True
                  ) -> dict[uuid.UUID, str]:
    """Who each member id is: one of the account's API keys, or a person (name and email; their id
    alone when not `people_named`: for a caller who may not see the members, an API key). A
    person's account is read on the owner's login (a session sees only its own account in `users`);
    the ids come from the account's own ledger, so only those who spent its credits are named."""
    ids = set(member_ids)
    labels = {key.pk: _key_label(key) for key in ApiKey.objects.filter(user_id=user.pk, pk__in=ids)}
    people = ids - set(labels)
    if people and not people_named:
        labels.update({pk: f"member {pk}" for pk in people})
    elif people:
        with rls.trusted():
            for pk, email, name in User.objects.filter(pk__in=people).values_list("pk", "email", "name"):
                labels[pk] = f"{name} <{email}>" if name and email else (name or email or str(pk))
    return labels


def _labels(user: User, group_by: str, keys: list[Any], people_named: bool) -> dict[Any, str]:
    if group_by == "day":
        return {key: key.isoformat() for key in keys}
    if group_by == "type":
        return {key: key or "no job record" for key in keys}
    if group_by == "key":
        found = {key.pk: _key_label(key) for key in ApiKey.objects.filter(user_id=user.pk, pk__in=keys)}
        return {key: found.get(key, "people") if key else "people" for key in keys}
    found = member_labels(user=user, member_ids=[key for key in keys if key], people_named=people_named)
    return {key: found.get(key, "former member") if key else "no member recorded" for key in keys}


def usage_report(*, user: User, period: UsageRange, group_by: str, people_named: bool = True) -> UsageReport:
    """The account's usage in the range, in groups (`day`, job `type`, `member`, API `key`);
    `people_named`: as member_labels'."""
    if group_by not in GROUPINGS:
        raise ValueError(group_by)
    with connection.cursor() as cursor:
        cursor.execute(_usage_sql(group_by), _params(user, period))
        rows = cursor.fetchall()
    labels = _labels(user, group_by, [row[0] for row in rows], people_named)
    groups = [UsageGroup(None if key is None else str(key), labels[key], int(charged), int(refunded), int(jobs))
              for key, charged, refunded, jobs in rows]
    if group_by != "day":
        groups.sort(key=lambda g: (-g.net, g.key is None, g.key or ""))
    return UsageReport(period, group_by, groups)


# ----------------------------------------------------------------------------- CSV

# A spreadsheet runs a cell that starts with one of these as a formula; names and labels are the
# workspace's members' own text, so a text cell that starts with one is prefixed with a quote.
# Numbers are written as numbers (a refund's negative cost stays a number).
_FORMULA_STARTS = frozenset("=+-@\t\r")


def _cell(value: Any, cache: dict[str, str]) -> str:
    """One CSV cell as the csv module's minimal quoting writes it (RFC 4180), a text cell that a
    spreadsheet would run neutralised; the text cells of an export repeat (days, ids, labels), so
    each is worked out once."""
    if value is None:
        return ""
    if value.__class__ is not str:
        return str(value)
    done = cache.get(value)
    if done is None:
        text = "'" + value if value[:1] in _FORMULA_STARTS else value
        if any(char in text for char in ',"\r\n'):
            text = '"' + text.replace('"', '""') + '"'
        done = cache[value] = text
    return done


def csv_lines(rows: Iterable[Iterable[Any]], *, batch: int = 500) -> Iterator[bytes]:
    """Rows as CSV (lines ending in CRLF), `batch` lines to a piece; None is an empty cell."""
    cache: dict[str, str] = {}
    lines: list[str] = []
    for row in rows:
        lines.append(",".join([_cell(value, cache) for value in row]))
        if len(lines) == batch:
            yield ("\r\n".join(lines) + "\r\n").encode()
            lines.clear()
    if lines:
        yield ("\r\n".join(lines) + "\r\n").encode()


USAGE_CSV_HEADER = ("key", "label", "charged", "refunded", "net", "jobs")


def usage_csv(report: UsageReport) -> Iterator[bytes]:
    """The report's groups as CSV, a header first."""
    header = [USAGE_CSV_HEADER]
    return csv_lines([*header, *((g.key, g.label, g.charged, g.refunded, g.net, g.jobs) for g in report.groups)])


# ----------------------------------------------------------------------------- FOCUS

# The FinOps Open Cost and Usage Specification 1.0 column set, in its order, then this export's own
# (x_-prefixed, as the specification requires of additions).
FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
    "x_CostUnit", "x_JobType", "x_MemberId",
)
# Costs are in credits, which no ISO 4217 code names: BillingCurrency is XXX, the code for "no
# currency", and x_CostUnit says what the amounts count.
FOCUS_CURRENCY = "XXX"
FOCUS_COST_UNIT = "credits"
PROVIDER = "Auteur"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_COLUMN = {name: i for i, name in enumerate(FOCUS_COLUMNS)}


def _cells(**values: Any) -> list[tuple[int, Any]]:
    return [(_COLUMN[name], value) for name, value in values.items()]


def _day_cells(day: date) -> list[tuple[int, Any]]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    period_end = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
    return _cells(BillingPeriodStart=_iso(start.replace(day=1)), BillingPeriodEnd=_iso(period_end),
                  ChargePeriodStart=_iso(start), ChargePeriodEnd=_iso(start + timedelta(days=1)))


def _subject_cells(job_type: str | None, member_id: uuid.UUID | None, labels: dict[uuid.UUID, str]) -> list[Any]:
    member = None if member_id is None else str(member_id)
    return _cells(
        SkuId=job_type, x_JobType=job_type, SubAccountId=member, x_MemberId=member,
        SubAccountName=labels.get(member_id, "former member") if member_id else "no member recorded",
        Tags=json.dumps({"job_type": job_type, "member_id": member}, sort_keys=True),
    )


def focus_rows(*, user: User, rows: Iterable[tuple[Any, ...]], labels: dict[uuid.UUID, str]) -> Iterator[list[Any]]:
    """FOCUS rows of (day, job type, member, charged, refunded, jobs) aggregates: a `Usage` row for
    what was charged and a `Credit` row (a negative cost) for what was refunded, so that
    BilledCost adds up to the net. What a day or a (type, member) pair fills in is worked out once."""
    account: list[Any] = [None] * len(FOCUS_COLUMNS)
    for i, value in _cells(
        BillingAccountId=str(user.pk), BillingAccountName=user.name or user.email or str(user.pk),
        BillingCurrency=FOCUS_CURRENCY, ChargeFrequency="Usage-Based", InvoiceIssuerName=PROVIDER,
        ProviderName=PROVIDER, PublisherName=PROVIDER, ServiceCategory="AI and Machine Learning",
        ServiceName=PROVIDER, x_CostUnit=FOCUS_COST_UNIT,
    ):
        account[i] = value
    costs = [_COLUMN[name] for name in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")]
    category, description = _COLUMN["ChargeCategory"], _COLUMN["ChargeDescription"]
    usage_only = [_COLUMN[name] for name in ("ConsumedQuantity", "PricingQuantity")]
    usage_fixed = _cells(ConsumedUnit="Jobs", PricingCategory="Standard", PricingUnit="Credits", ListUnitPrice=1,
                         ContractedUnitPrice=1)
    days: dict[date, list[tuple[int, Any]]] = {}
    subjects: dict[tuple[str | None, uuid.UUID | None], list[tuple[int, Any]]] = {}
    for day, job_type, member_id, charged, refunded, jobs in rows:
        base = account.copy()
        cells = days.get(day) or days.setdefault(day, _day_cells(day))
        cells = cells + (subjects.get((job_type, member_id))
                         or subjects.setdefault((job_type, member_id), _subject_cells(job_type, member_id, labels)))
        for i, value in cells:
            base[i] = value
        what = job_type or "no job record"
        if charged:
            row = base.copy()
            for i in costs:
                row[i] = charged
            for i, value in usage_fixed:
                row[i] = value
            row[usage_only[0]], row[usage_only[1]] = jobs, charged
            row[category], row[description] = "Usage", f"{jobs} {what} job{'s' if jobs != 1 else ''}"
            yield row
        if refunded:
            for i in costs:
                base[i] = -refunded
            base[category], base[description] = "Credit", f"Refund of {what} jobs"
            yield base


class FocusExport:
    """The range's FOCUS CSV, streamed: the aggregate query runs when this is made (in the
    request's row-level security scope), on a server-side cursor whose rows are then fetched
    FETCH_ROWS at a time as the answer is written, so memory stays bounded whatever the range.

    Outside a transaction the cursor is WITH HOLD: the query completes at once on the server,
    which keeps its result until the cursor is closed (by close(), which the response calls when
    it ends, read to the end or not), so a slow reader holds no snapshot open.
    """

    def __init__(self, *, user: User, period: UsageRange, people_named: bool = True) -> None:
        self.user = user
        params = _params(user, period)
        self.labels = member_labels(user=user, member_ids=self._members(params), people_named=people_named)
        self.cursor = connection.chunked_cursor()
        try:
            self.cursor.execute(_usage_sql("focus"), params)
        except BaseException:
            self.cursor.close()
            raise

    @staticmethod
    def _members(params: dict[str, Any]) -> list[uuid.UUID]:
        with connection.cursor() as cursor:
            cursor.execute(_members_sql(), params)
            return [row[0] for row in cursor.fetchall()]

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        while chunk := self.cursor.fetchmany(FETCH_ROWS):
            yield from chunk

    def __iter__(self) -> Iterator[bytes]:
        yield from csv_lines([FOCUS_COLUMNS])
        yield from csv_lines(focus_rows(user=self.user, rows=self._rows(), labels=self.labels))

    def close(self) -> None:
        self.cursor.close()
