"""Every write of the webhooks app: targets, deliveries, attempts, and disabling what fails.

A delivery's life: `deliveries_enqueue` (after a job event commits) inserts one pending row per
matching target, due now, and publishes `webhooks.deliver` after commit. `delivery_attempt`
claims a due row with a conditional UPDATE (its next attempt moved past the attempt's longest
duration: a worker that dies mid-send leaves a row the sweep re-sends), sends once, and records
the attempt. A failure is due again after an exponential, jittered back-off (at most
MAX_BACKOFF_SECONDS); a short wait is also published as a countdown message, a long one is left
to `deliveries_sweep` (beat), so no message waits for hours in the broker. Retries stop 24 hours
after the delivery was created: an attempt is never claimed past that window (the sweep gives
such rows up), so a delivery whose attempts never got recorded still ends. A target that has
failed every attempt for 24 hours is disabled, its pending deliveries given up, and its owner
gets an `AccountNotice`.

An attempt is bounded by its sender's wall-clock deadline (webhooks/sender.py), and whatever
interrupts it (the task's soft time limit included) is recorded as a failed attempt, so that the
retry schedule and the 24-hour rules go on as for any failure. The tasks (webhooks/tasks.py) sit
above these services: they are sent here by name.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from auteur.core import tracing
from auteur.core.publishing import send
from auteur.users.models import User
from auteur.users.selectors import member_sees_credits
from webhooks import keys, sender, task_names
from webhooks.errors import WebhookBacklogFull, WebhookLimitReached
from webhooks.models import (
    PAYLOAD_TYPES,
    TEST_EVENT,
    TEST_PAYLOAD_TYPE,
    AccountNotice,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    JobWebhook,
    NoticeKind,
    SigningSecret,
    Target,
    Webhook,
    WebhookEventType,
)
from webhooks.ssrf import target_check

logger = logging.getLogger(__name__)

MAX_WEBHOOKS_PER_ACCOUNT = 20
MAX_BACKOFF_SECONDS = 600
RETRY_WINDOW = timedelta(hours=24)
DISABLE_AFTER = timedelta(hours=24)
# A wait up to this long is also published as a countdown message; longer ones are the sweep's.
COUNTDOWN_HORIZON_SECONDS = 60
SWEEP_BATCH = 500
# A test message costs its sender nothing, so it is what a flood of slow receivers would be made
# of: a webhook has at most this many test messages waiting or in flight (each ends within one
# attempt's deadline), and none is accepted while this many deliveries of any kind are pending
# for it (its receiver is behind; a test would only add to the queue). Job events are not
# refused: each is paid for with a job, and the 24-hour window and disabling bound them.
MAX_PENDING_TESTS = 3
MAX_PENDING_FOR_TEST = 100


def _publish(delivery_id: int, countdown: float = 0, *, resend: bool = True) -> bool:
    """Queue an attempt (after commit); False when the broker cannot take it: the row stays due,
    and the sweep sends it (an attempt claims its row, so a second message for it does nothing)."""
    return send(task_names.DELIVER, (delivery_id,), countdown=countdown, what=f"webhook delivery {delivery_id}",
                resend=resend)


# ----------------------------------------------------------------------------- targets


@transaction.atomic
def webhook_create(*, owner: User, url: str, event_types: Iterable[str], description: str = "",
                   member_id: uuid.UUID | None = None) -> tuple[Webhook, str]:
    """A new account webhook and its secret, which is returned this once and never again."""
    target_check(url)
    # The owner's row is locked so that two concurrent creations cannot both pass the count.
    User.objects.select_for_update().filter(pk=owner.pk).first()
    if Webhook.objects.filter(owner=owner).count() >= MAX_WEBHOOKS_PER_ACCOUNT:
        raise WebhookLimitReached(f"An account has at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks.",
                                  details={"limit": MAX_WEBHOOKS_PER_ACCOUNT})
    secret = keys.secret_new()
    webhook = Webhook.objects.create(owner=owner, url=url, event_types=_event_types(event_types),
                                     description=description, secret_sealed=keys.secret_seal(secret),
                                     member_id=member_id)
    logger.info("webhook created", extra={"user_id": str(owner.pk), "webhook_id": str(webhook.pk)})
    return webhook, secret


def webhook_delete(*, webhook: Webhook) -> None:
    """The webhook and its delivery log; a delivery being sent now finds no row and stops."""
    webhook.delete()


def signing_secret_get(*, owner: User) -> str:
    """The secret that signs the owner's jobs' own webhooks (created on first use)."""
    row = SigningSecret.objects.filter(owner=owner).first()
    if row is None:
        sealed = keys.secret_seal(keys.secret_new())
        SigningSecret.objects.get_or_create(owner=owner, defaults={"secret_sealed": sealed})
        row = SigningSecret.objects.get(owner=owner)
    return keys.secret_open(row.secret_sealed)


# A rotated secret keeps signing beside the new one for at most this long (receivers move to the
# new one meanwhile); 0 ends it at once (a secret that leaked, or that a removed member knew).
ROTATION_KEEP_MAX_SECONDS = 7 * 24 * 3600


def _rotate(row: Webhook | SigningSecret, keep_previous_seconds: int) -> tuple[str, Any]:
    """Give the locked row a new secret, the old one signing beside it for `keep_previous_seconds`;
    the new secret (shown once), and until when the old one signs (None: it no longer does)."""
    secret = keys.secret_new()
    keeps = keep_previous_seconds > 0
    row.previous_secret_sealed = row.secret_sealed if keeps else ""
    row.previous_expires_at = timezone.now() + timedelta(seconds=keep_previous_seconds) if keeps else None
    row.secret_sealed = keys.secret_seal(secret)
    row.save(update_fields=["secret_sealed", "previous_secret_sealed", "previous_expires_at"])
    return secret, row.previous_expires_at


def webhook_secret_rotate(*, webhook: Webhook, keep_previous_seconds: int) -> tuple[str, Any]:
    """A new secret for the webhook (returned this once): every attempt from now on is signed with
    it, and with the old one too for `keep_previous_seconds` (0: the old one is dead at once)."""
    with transaction.atomic():
        row = Webhook.objects.select_for_update().get(pk=webhook.pk)
        rotated = _rotate(row, keep_previous_seconds)
    logger.info("webhook secret rotated", extra={"user_id": str(webhook.owner_id), "webhook_id": str(webhook.pk)})
    return rotated


def signing_secret_rotate(*, owner: User, keep_previous_seconds: int) -> tuple[str, Any]:
    """As webhook_secret_rotate, for the secret that signs the owner's jobs' own webhooks."""
    signing_secret_get(owner=owner)
    with transaction.atomic():
        row = SigningSecret.objects.select_for_update().get(owner=owner)
        rotated = _rotate(row, keep_previous_seconds)
    logger.info("jobs' webhook signing secret rotated", extra={"user_id": str(owner.pk)})
    return rotated


def job_webhook_create(*, job_id: uuid.UUID, owner: User, url: str, event_types: Iterable[str]) -> JobWebhook:
    """A job's own webhook, inserted in the submission's transaction (its URL already checked)."""
    signing_secret_get(owner=owner)
    return JobWebhook.objects.create(job_id=job_id, owner=owner, url=url, event_types=_event_types(event_types))


def _event_types(event_types: Iterable[str]) -> list[str]:
    chosen = set(event_types)
    return [t.value for t in WebhookEventType if t.value in chosen]


def _secrets_of(target: Webhook | JobWebhook) -> tuple[str, str | None]:
    """The secret that signs the target's messages, and the one a rotation replaced while it still
    signs beside it."""
    row: Webhook | SigningSecret | None = target if isinstance(target, Webhook) else (
        SigningSecret.objects.filter(owner_id=target.owner_id).first())
    if row is None:
        return signing_secret_get(owner=target.owner), None
    previous = None
    if row.previous_secret_sealed and row.previous_expires_at and row.previous_expires_at > timezone.now():
        previous = keys.secret_open(row.previous_secret_sealed)
    return keys.secret_open(row.secret_sealed), previous


# ----------------------------------------------------------------------------- deliveries


def _payload(type: str, data: dict[str, Any]) -> dict[str, Any]:
    # Through JSON once: UUIDs and datetimes become the strings the receiver will see.
    body = {"type": type, "timestamp": timezone.now().isoformat(), "data": data}
    loaded: dict[str, Any] = json.loads(json.dumps(body, cls=DjangoJSONEncoder))
    return loaded


# What a job event's payload is, given whether its reader may see the workspace's credits.
JobData = Callable[[bool], dict[str, Any]]


@transaction.atomic
def deliveries_enqueue(*, owner_id: Any, job_id: uuid.UUID, event_type: WebhookEventType,
                       data: dict[str, Any] | JobData, traceparent: str = "") -> list[Delivery]:
    """One pending delivery of a job event per enabled target subscribed to its type: the job's
    own webhook and the owner's account webhooks. `traceparent`: the job's (Job.traceparent).

    `data`: the event's data, or what it is for a reader who may (True) or may not (False) see the
    workspace's credits. Each target is a reader: a job's own webhook is its submitter's, an
    account webhook its maker's, each as their seat stands now (a key's scopes, a member's role),
    so the balance reaches only a target whose person or key may read credits."""
    now = timezone.now()
    targets: list[tuple[type[Target], Any, uuid.UUID | None]] = [(Webhook, w, maker) for w, maker in
               Webhook.objects.filter(owner_id=owner_id, enabled=True, event_types__contains=[event_type])
               .values_list("pk", "member_id")]
    targets += [(JobWebhook, t, maker) for t, maker in
                JobWebhook.objects.filter(job_id=job_id, enabled=True, event_types__contains=[event_type])
                .values_list("pk", "job__member_id")]
    payloads: dict[bool, dict[str, Any]] = {}
    sees: dict[uuid.UUID | None, bool] = {}
    rows = []
    for kind, target_id, maker in targets:
        shown = False
        if callable(data):
            if maker not in sees:
                sees[maker] = member_sees_credits(workspace_id=owner_id, member_id=maker)
            shown = sees[maker]
        if shown not in payloads:
            payloads[shown] = _payload(PAYLOAD_TYPES[event_type], data(shown) if callable(data) else data)
        target = {"webhook_id": target_id} if kind is Webhook else {"job_webhook_id": target_id}
        rows.append(Delivery(owner_id=owner_id, job_id=job_id, event_type=event_type, payload=payloads[shown],
                             next_attempt_at=now, traceparent=traceparent, **target))
    created = Delivery.objects.bulk_create(rows)
    for delivery in created:
        transaction.on_commit(partial(_publish, delivery.pk), robust=True)
    return created


@transaction.atomic
def account_deliveries_enqueue(*, owner_id: Any, event_type: WebhookEventType, data: dict[str, Any],
                               credits: bool = False) -> list[Delivery]:
    """One pending delivery of an account's event (of no job) per enabled account webhook of the
    owner subscribed to its type. `credits`: the event tells the workspace's credit figures (a
    spend cap's limit and spending): only to the webhooks whose maker may see them now."""
    payload = _payload(PAYLOAD_TYPES[event_type], data)
    now = timezone.now()
    targets = Webhook.objects.filter(owner_id=owner_id, enabled=True, event_types__contains=[event_type])
    created = Delivery.objects.bulk_create([
        Delivery(owner_id=owner_id, webhook_id=w, event_type=event_type, payload=payload, next_attempt_at=now)
        for w, maker in targets.values_list("pk", "member_id")
        if not credits or member_sees_credits(workspace_id=owner_id, member_id=maker)
    ])
    for delivery in created:
        transaction.on_commit(partial(_publish, delivery.pk), robust=True)
    return created


@transaction.atomic
def webhook_test(*, webhook: Webhook) -> Delivery:
    """A `webhook.test` message to the webhook, whatever it subscribes to; WebhookBacklogFull
    while it has too many messages pending."""
    # The webhook's row is locked so that concurrent requests cannot all pass the count.
    Webhook.objects.select_for_update().filter(pk=webhook.pk).first()
    pending = Delivery.objects.filter(webhook=webhook, state=DeliveryState.PENDING)
    tests, total = pending.filter(event_type=TEST_EVENT).count(), pending.count()
    if tests >= MAX_PENDING_TESTS or total >= MAX_PENDING_FOR_TEST:
        # The pending test messages will have had their one attempt by then.
        attempt = settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS + settings.AUTEUR_WEBHOOK_RESOLVE_TIMEOUT_SECONDS
        raise WebhookBacklogFull(
            "This webhook has too many messages waiting to be sent; try again once they are done.",
            details={"pending_tests": tests, "max_pending_tests": MAX_PENDING_TESTS, "pending": total,
                     "max_pending": MAX_PENDING_FOR_TEST, "retry_after_seconds": math.ceil(attempt)},
        )
    payload = _payload(TEST_PAYLOAD_TYPE, {"webhook_id": str(webhook.pk)})
    delivery = Delivery.objects.create(owner_id=webhook.owner_id, webhook=webhook, event_type=TEST_EVENT,
                                       payload=payload, next_attempt_at=timezone.now())
    transaction.on_commit(lambda: _publish(delivery.pk), robust=True)
    return delivery


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again (staff): due now, with the same `webhook-id` and payload; its
    retry window starts over. A disabled target stays disabled (a test message still goes)."""
    Delivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.PENDING, next_attempt_at=timezone.now(),
                                                   created_at=timezone.now(), finished_at=None)
    transaction.on_commit(lambda: _publish(delivery.pk), robust=True)
    delivery.refresh_from_db()
    return delivery


def backoff_seconds(attempts: int) -> float:
    """Exponential from AUTEUR_WEBHOOK_RETRY_BASE_SECONDS, at most MAX_BACKOFF_SECONDS, with
    jitter (a random point in its upper half) so that retries of one outage spread out."""
    ceiling = min(MAX_BACKOFF_SECONDS, settings.AUTEUR_WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return float(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - spreading, not secrecy


def _expired(now: Any) -> QuerySet[Delivery]:
    """Pending deliveries past their retry window, due or not."""
    return Delivery.objects.filter(state=DeliveryState.PENDING, created_at__lte=now - RETRY_WINDOW)


def delivery_attempt(*, delivery_id: int) -> DeliveryAttempt | None:
    """Try a due delivery once; None when it is not due, another worker holds it, or its retry
    window is over (it is then given up, unsent)."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.AUTEUR_WEBHOOK_TIMEOUT_SECONDS + 60)
    claimed = Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now,
                                      created_at__gt=now - RETRY_WINDOW).update(next_attempt_at=lease)
    if not claimed:
        # Past its window, it is given up here: the claim above is what enforces the window,
        # even for a delivery whose every attempt died before it could be recorded.
        _expired(now).filter(pk=delivery_id).update(state=DeliveryState.FAILED, finished_at=now,
                                                    next_attempt_at=None)
        return None
    delivery = Delivery.objects.select_related("webhook", "job_webhook", "job_webhook__owner").filter(
        pk=delivery_id).first()
    if delivery is None:  # its webhook was deleted meanwhile
        return None
    target = delivery.target
    if not target.enabled and delivery.event_type != TEST_EVENT:
        Delivery.objects.filter(pk=delivery_id).update(state=DeliveryState.FAILED, finished_at=now,
                                                       next_attempt_at=None)
        return None
    body = json.dumps(delivery.payload, separators=(",", ":"))
    try:
        secret, previous = _secrets_of(target)
    except InvalidToken:
        # Sealed under another DJANGO_SECRET_KEY: a failed attempt like any other, so that the
        # delivery ends and the target is disabled in time, rather than a task error for ever.
        # The owner reads the attempt's error; the cause is for operators, in the log.
        logger.error("webhook %s: its signing secret was sealed under another DJANGO_SECRET_KEY", target.pk)
        outcome = sender.Outcome(None, "the signing secret could not be read; create the webhook again", 0, "")
    else:
        with tracing.span_in("webhook.attempt", delivery.traceparent, kind=tracing.SpanKind.CLIENT, attributes={
            "auteur.job.id": str(delivery.job_id or ""), "auteur.user.id": str(delivery.owner_id),
            "auteur.webhook.event": delivery.event_type, "auteur.webhook.message_id": delivery.message_id,
            "auteur.webhook.attempt": delivery.attempts + 1,
        }) as span:
            outcome = _send(delivery, target, secret, previous, body)
            if outcome.status_code is not None:
                span.set_attribute("http.response.status_code", outcome.status_code)
            if not outcome.succeeded:
                tracing.mark_error(span, "webhook_attempt_failed")
    attempt = _attempt_record(delivery, outcome)
    logger.info(
        "webhook attempt %s #%d: %s in %d ms", delivery.message_id, attempt.number,
        outcome.status_code if outcome.succeeded else (outcome.error or outcome.status_code), outcome.latency_ms,
        extra={"user_id": str(delivery.owner_id), "job_id": str(delivery.job_id or "")},
    )
    return attempt


def _send(delivery: Delivery, target: Webhook | JobWebhook, secret: str, previous: str | None,
          body: str) -> sender.Outcome:
    """One attempt; whatever interrupts it is a failed attempt (recorded by the caller) rather
    than a task error that leaves the delivery leased, unrecorded, to be sent again for ever."""
    started = time.monotonic()
    try:
        return sender.send(url=target.url, secret=secret, previous=previous, message_id=delivery.message_id,
                           body=body, traceparent=tracing.current_traceparent())
    except Exception as exc:  # SoftTimeLimitExceeded, or a fault of ours
        logger.exception("webhook attempt %s interrupted", delivery.message_id,
                         extra={"user_id": str(delivery.owner_id), "job_id": str(delivery.job_id or "")})
        latency = int((time.monotonic() - started) * 1000)
        return sender.Outcome(None, f"attempt interrupted: {type(exc).__name__}", latency, "")


@transaction.atomic
def _attempt_record(delivery: Delivery, outcome: sender.Outcome) -> DeliveryAttempt:
    now = timezone.now()
    target = delivery.target
    same_target = _same_target(target)
    number = delivery.attempts + 1
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, number=number, status_code=outcome.status_code, error=outcome.error,
        latency_ms=outcome.latency_ms, response_body=outcome.response_body,
    )
    fields: dict[str, Any] = {"attempts": F("attempts") + 1, "last_status_code": outcome.status_code}
    if outcome.succeeded:
        fields.update(state=DeliveryState.SUCCEEDED, finished_at=now, next_attempt_at=None)
        same_target.update(failing_since=None)
    else:
        same_target.filter(failing_since__isnull=True).update(failing_since=now)
        target.refresh_from_db(fields=["failing_since", "enabled"])
        assert target.failing_since is not None
        if delivery.event_type != TEST_EVENT and target.enabled and now - target.failing_since >= DISABLE_AFTER:
            _target_disable(target, now)
        if delivery.created_at <= now - RETRY_WINDOW or not target.enabled or delivery.event_type == TEST_EVENT:
            # A test message is tried once: its answer is what the caller wanted to see.
            fields.update(state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None)
        else:
            wait = backoff_seconds(number)
            fields.update(next_attempt_at=now + timedelta(seconds=wait))
            if wait <= COUNTDOWN_HORIZON_SECONDS:
                transaction.on_commit(lambda: _publish(delivery.pk, countdown=wait), robust=True)
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    return attempt


def _same_target(target: Webhook | JobWebhook) -> QuerySet[Any]:
    if isinstance(target, Webhook):
        return Webhook.objects.filter(pk=target.pk)
    return JobWebhook.objects.filter(pk=target.pk)


def _target_disable(target: Webhook | JobWebhook, now: Any) -> None:
    reason = "Every delivery failed for 24 hours."
    # Conditional: of two attempts failing at once, one disables it and tells the account.
    changed = _same_target(target).filter(enabled=True).update(enabled=False, disabled_at=now, disabled_reason=reason)
    target.enabled = False
    if not changed:
        return
    Delivery.objects.filter(**{"webhook" if isinstance(target, Webhook) else "job_webhook": target},
                            state=DeliveryState.PENDING).update(state=DeliveryState.FAILED, finished_at=now,
                                                                next_attempt_at=None)
    if isinstance(target, Webhook):
        message = f"Webhook {target.pk} was disabled: every delivery failed for 24 hours."
        AccountNotice.objects.create(owner_id=target.owner_id, kind=NoticeKind.WEBHOOK_DISABLED, message=message,
                                     webhook=target)
    else:
        message = f"The webhook of job {target.job_id} was disabled: every delivery failed for 24 hours."
        AccountNotice.objects.create(owner_id=target.owner_id, kind=NoticeKind.WEBHOOK_DISABLED, message=message,
                                     job_id=target.job_id)
    logger.warning("webhook target disabled after 24 hours of failures", extra={"user_id": str(target.owner_id)})


def deliveries_sweep(*, limit: int = SWEEP_BATCH) -> int:
    """Give up the deliveries past their retry window, and publish the ones that are due (their
    retry time came, or their message was lost)."""
    now = timezone.now()
    _expired(now).update(state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None)
    due = list(
        Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for pk in due:
        if not _publish(pk, resend=False):
            break  # the broker is out of reach: the rest stay due for the next sweep
        sent += 1
    return sent
