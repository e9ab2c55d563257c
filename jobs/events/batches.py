"""A batch's progress and end, announced: `batch.progress` on its owner's stream as its items end
(at most about one a second per batch), and, once every item has ended, `batch.completed` on the
stream and to the owner's account webhooks subscribed to `batch`, once.

An item's end (jobs.life.scheduling.ended, a bulk cancel) asks for an announcement once its
transaction commits (`batch_item_ended`): the first of a second's ends schedules the announcing
task a second later (a Redis key marks it scheduled), the others ride on it. The task clears the
mark before it reads the counts, so an end committed after that read schedules the next one: the
last end of a batch is always announced. Its end is announced by a conditional UPDATE of
`ended_at`, so of two tasks reading it done, one sends the webhook. The beat's sweep
(`batches_sweep`) announces what a lost message or a Redis outage left unannounced.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid

import redis
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from auteur.core.publishing import send
from jobs.events.stream import batch_stream_append, stream_redis
from jobs.models import ACTIVE_STATUSES, Batch, Job
from jobs.selectors.batches import batch_counts
from webhooks.models import WebhookEventType
from webhooks.services import account_deliveries_enqueue

logger = logging.getLogger(__name__)

ANNOUNCE_TASK = "webhooks.batch_announce"
SWEEP_TASK = "webhooks.batches_sweep"
ANNOUNCE_AFTER_SECONDS = 1.0
_MARK = "batchannounce:"
SWEEP_LIMIT = 200


def batch_item_ended(batch_id: uuid.UUID) -> None:
    """An item of the batch ended in the transaction open now: announce its progress after commit."""
    transaction.on_commit(functools.partial(_schedule, batch_id), robust=True)


def _schedule(batch_id: uuid.UUID) -> None:
    try:
        if not stream_redis().set(f"{_MARK}{batch_id}", 1, nx=True, px=int(ANNOUNCE_AFTER_SECONDS * 10_000)):
            return  # one is scheduled within the second, and will read this end
    except redis.RedisError:
        pass  # unmarked: announce anyway (the sweep, too, would)
    send(ANNOUNCE_TASK, (str(batch_id),), countdown=ANNOUNCE_AFTER_SECONDS, what=f"progress of batch {batch_id}")


def batch_announce(batch_id: uuid.UUID | str) -> str | None:
    """Announce the batch's progress, or its end (once); what was announced."""
    with contextlib.suppress(redis.RedisError):
        stream_redis().delete(f"{_MARK}{batch_id}")  # before the read: an end after it schedules another
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or batch.ended_at is not None:
        return None
    counts = batch_counts(batch=batch)
    payload = {"batch_id": str(batch.pk), "item_count": batch.item_count, "counts": counts["counts"],
               "ended": counts["ended"], "done": counts["done"], "credits_cost": batch.credits_cost,
               "credits_refunded": counts["credits_refunded"]}
    if not counts["done"]:
        batch_stream_append(user_id=batch.user_id, payload={"type": "batch.progress", **payload})
        return "batch.progress"
    with transaction.atomic():
        if not Batch.objects.filter(pk=batch.pk, ended_at__isnull=True).update(ended_at=timezone.now()):
            return None  # another task announced it
        completed = {"type": "batch.completed", **payload}
        account_deliveries_enqueue(owner_id=batch.user_id, event_type=WebhookEventType.BATCH,
                                   data={**completed, "created_at": timezone.now()})
        transaction.on_commit(lambda: batch_stream_append(user_id=batch.user_id, payload=completed), robust=True)
    logger.info("batch ended: %d items", batch.item_count, extra={"batch_id": str(batch.pk)})
    return "batch.completed"


def batches_sweep(*, limit: int = SWEEP_LIMIT) -> int:
    """Announce the end of the batches whose items have all ended but whose end was not announced
    (a lost message); how many were."""
    active = Job.objects.filter(batch_id=OuterRef("pk"), status__in=ACTIVE_STATUSES)
    done = list(Batch.objects.filter(ended_at__isnull=True).filter(~Exists(active))
                .order_by("created_at").values_list("pk", flat=True)[:limit])
    return sum(1 for batch_id in done if batch_announce(batch_id) == "batch.completed")
