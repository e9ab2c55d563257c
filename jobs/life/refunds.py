"""How much of its cost a job that did not complete gets back: functions of the job's row (and, for
a call out of GPU memory, of the ladder this server's backend gives its type)."""

from __future__ import annotations

import math
from datetime import datetime

from jobs import gpu_client
from jobs.models import Job
from jobs.specs import job_spec


def failure_refund(*, job: Job, code: str) -> int:
    """The credits a job that failed with `code` gets back.

    All of its cost, except for a GPU call that ended the job's inference before it was done (after
    it started, before it ended): one that ran past its time limit (`timeout`), or one that ran
    out of memory on the largest GPU class its type may use (`gpu_oom` at the top of its ladder,
    or of a type without one, once the ladder's every class was tried). It keeps the share of its
    cost that its engine reported done, rounded up to whole credits, and gets the rest back:

        refund = cost - ceil(cost * progress / 100)

    So an input that makes an engine grind up to its limit, or that is too large for every machine
    its type runs on, pays for the work it got done, and cannot burn GPU time (a whole ladder of
    calls) for free again and again, while a call that hung or failed without reporting any
    progress (a stuck container: the platform's fault) is refunded in full.
    """
    cut_short = job.inference_started_at is not None and job.inference_ended_at is None
    if not cut_short or not (code == "timeout" or (code == "gpu_oom" and _at_the_top(job))):
        return job.credits_cost
    return job.credits_cost - math.ceil(job.credits_cost * min(job.progress, 100) / 100)


def _at_the_top(job: Job) -> bool:
    """Whether the job's call ran on the last class of its type's GPU ladder: no larger one is left."""
    return gpu_client.gpu_ladder_next(job.type, job.gpu_class) is None


def cancel_refund(*, job: Job, at: datetime) -> int:
    """The credits a job canceled at `at` gets back.

    Before its inference started (or while the backend still keeps the call waiting for
    capacity), nothing was spent: the whole cost. After, the part not spent, where the spent
    share is the larger of the time the call has run against its type's time limit and the
    progress its engine reported, rounded up to whole credits:

        refund = cost - ceil(cost * min(1, max(seconds_run / time_limit, progress / 100)))

    So a cancel just before the end refunds little, and a call canceled soon after it started
    keeps at least one credit of its cost.
    """
    if job.inference_started_at is None:
        return job.credits_cost
    seconds_run = max(0.0, (at - job.inference_started_at).total_seconds())
    spent = min(1.0, max(seconds_run / job_spec(job.type).time_limit_seconds, job.progress / 100))
    return job.credits_cost - math.ceil(job.credits_cost * spent)
