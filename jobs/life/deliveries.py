"""A step whose message keeps coming back without finishing fails its job instead of running again.

Delivery is at-least-once: a message whose worker process dies before acknowledging it (the
kernel's OOM killer, a crash in C code, a SIGKILL) is delivered again, and its step runs again. A
step that kills its worker every time (a hostile file that exhausts memory, say) would otherwise go
round the workers, taking each down, until the job's deadline. So each message (its task id and
retry number: one step run, however often delivered) counts its starts in Redis, and its delivery
after AUTEUR_STEP_MAX_DELIVERIES starts fails the job `crash_loop`, refunded once through the
status module, and is acknowledged without running the step.

Only redelivered messages are counted, so a step that finishes at its first delivery costs
nothing here: the broker marks every later delivery `redelivered` (Redis as it restores an
unacknowledged message, RabbitMQ as it requeues one), and the count of a redelivered message
includes its first delivery. Redis out of reach counts nothing: the step runs, as before.
"""

from __future__ import annotations

import logging
import uuid

import redis
from django.conf import settings
from django.core.cache import cache

from jobs.life.status import job_fail

logger = logging.getLogger(__name__)

CRASH_LOOP = "crash_loop"
# Longer than any run of redeliveries of one message: after a whole worker dies, Redis gives its
# message out again a visibility timeout (under an hour) later, so a few of them take hours.
COUNT_TTL_SECONDS = 24 * 3600


def _key(message: str) -> str:
    return f"jobs:step-starts:{message}"


def step_redelivered(*, job_id: uuid.UUID | str, step: str, message: str) -> bool:
    """Count this start of a redelivered step message (`message`: its task id and retry number).
    True when it had been started AUTEUR_STEP_MAX_DELIVERIES times already: the job is failed
    (`crash_loop`, refunded once) and the step must not run."""
    key = _key(message)
    try:
        cache.add(key, 1, timeout=COUNT_TTL_SECONDS)  # its first delivery, which did not finish
        starts = int(cache.incr(key))
    except (redis.RedisError, ValueError) as exc:  # ValueError: the key expired between the two
        logger.warning("could not count the deliveries of step %s: %s", step, type(exc).__name__,
                       extra={"job_id": str(job_id)})
        return False
    limit = settings.AUTEUR_STEP_MAX_DELIVERIES
    if starts <= limit:
        return False
    job_fail(job_id=job_id, code=CRASH_LOOP, retryable=False,
             detail=f"step {step} was delivered {starts} times; the {limit} runs before did not finish "
                    "(each lost its worker process)")
    return True
