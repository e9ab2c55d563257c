"""Reads of the webhooks app, scoped to their owner (another user's webhook is a 404)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from auteur.users.models import User
from webhooks.errors import WebhookNotFound
from webhooks.models import AccountNotice, Delivery, JobWebhook, Webhook


def webhook_list(*, owner: User) -> QuerySet[Webhook]:
    return Webhook.objects.filter(owner=owner).order_by("-created_at", "-id")


# A message's credit figures: a job's balance after each ledger entry, a spend cap's limit and
# spending. The message went to a reader who may see them; its log shows them only to such a reader.
_CAP_FIGURES = ("monthly_limit", "spent")


def payload_as_seen(payload: dict[str, Any], *, credits: bool) -> dict[str, Any]:
    """A delivery's payload as a reader of the webhook's log sees it: without the workspace's
    credit figures unless `credits` (the reader may see the workspace's credits)."""
    data = payload.get("data")
    if credits or not isinstance(data, dict):
        return payload
    shown = {**data, **{name: None for name in _CAP_FIGURES if name in data}}
    charge = data.get("charge")
    if isinstance(charge, dict) and isinstance(charge.get("entries"), list):
        entries = [{**e, "balance_after": None} if isinstance(e, dict) else e for e in charge["entries"]]
        shown["charge"] = {**charge, "entries": entries}
    return {**payload, "data": shown}


def webhook_get(*, owner: User, webhook_id: uuid.UUID | str) -> Webhook:
    try:
        pk = uuid.UUID(str(webhook_id))
    except ValueError:
        raise WebhookNotFound("No such webhook.") from None
    webhook = Webhook.objects.filter(owner=owner, pk=pk).first()
    if webhook is None:
        raise WebhookNotFound("No such webhook.")
    return webhook


def delivery_list(*, webhook: Webhook) -> QuerySet[Delivery]:
    """Newest first, each with its attempts."""
    return Delivery.objects.filter(webhook=webhook).prefetch_related("attempt_log").order_by("-id")


def notice_list(*, owner: User) -> QuerySet[AccountNotice]:
    return AccountNotice.objects.filter(owner=owner).order_by("-id")


def webhook_subscribers(*, job_id: uuid.UUID | str, event_type: str) -> Any | None:
    """The job owner's id when the job's own webhook or one of the owner's account webhooks
    wants `event_type`, else None.

    Every job event of every user asks this (most as part of recording the event:
    jobs.events.record), so it is one indexed query written in SQL: the ORM spent 2 ms building
    the same statement with its two EXISTS, against 0.3 ms for the whole round trip in SQL
    (bench/webhooks.py, `record_us`).
    """
    with connection.cursor() as cursor:
        cursor.execute(subscriber_sql(), [str(job_id), event_type, event_type])
        row = cursor.fetchone()
    return None if row is None else row[0]


@functools.cache
def subscriber_sql(owner_given: bool = False) -> str:
    """A query of one row, the owner's id of job %s, when its own webhook or one of its owner's
    account webhooks wants event type %s (given twice); of no row otherwise. The jobs table is
    read through the foreign key's model, so this app still imports nothing of jobs.

    `owner_given`: the caller knows the job's owner, given first (owner %s, job %s, then the
    event type twice): the jobs table is not read, which saves most of the statement's planning
    (the table has many indexes to consider, and every event of every job asks)."""
    job_field = JobWebhook._meta.get_field("job")
    job_model = job_field.related_model
    assert job_model is not None and not isinstance(job_model, str)
    owner_column = job_model._meta.get_field("user").column  # type: ignore[union-attr]
    table = job_model._meta.db_table
    source = "(SELECT %s::uuid AS owner, %s::uuid AS id) j" if owner_given else \
        f"(SELECT {owner_column} AS owner, id FROM {table} WHERE id = %s) j"  # noqa: S608 - names from the model
    return f"""
        SELECT j.owner FROM {source}
        WHERE EXISTS (SELECT 1 FROM {Webhook._meta.db_table} w
                      WHERE w.owner_id = j.owner AND w.enabled AND w.event_types @> ARRAY[%s]::varchar[])
           OR EXISTS (SELECT 1 FROM {JobWebhook._meta.db_table} t
                      WHERE t.job_id = j.id AND t.enabled AND t.event_types @> ARRAY[%s]::varchar[])
    """  # noqa: S608 - table and column names from the models, values as parameters


def job_webhook_of(*, job_id: uuid.UUID | str) -> tuple[str, list[str]] | None:
    """(url, event types) of a job's own webhook, if it has one."""
    row = JobWebhook.objects.filter(job_id=job_id).values_list("url", "event_types").first()
    return None if row is None else (row[0], list(row[1]))
