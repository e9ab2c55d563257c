"""Quotes: what a job would cost, and where it would stand, promised for a stated time.

`POST /jobs/{type}/quote` takes the body a submission would and checks it as a submission does
(the plan, this server's backend, the languages, the media or timeline it names), then stores
the price for AUTEUR_QUOTE_TTL_SECONDS. A submission whose body names the quote (`quote_id`)
within that time is charged the quoted price, whatever the price table says by then, provided
it is the same request: the same type and body (less `quote_id`) and the same work, the
quantities the price is computed from (a render's timeline that grew since is another job). A
quote pays for one job; its owner alone can use it.

A quote is refused as a submission would be (402) when the balance or a cap does not cover even
the type's least price: no submission of it could pass, and the request is not resolved (a
render's timeline is not read) for a price nobody can pay. A balance that covers the least price
but not the request's is told (`balance_after` below zero), not refused.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from auteur.users.models import User
from auteur.users.workspace_context import balances_shown
from credits.selectors import credit_balance_get, spend_cap_refusal
from jobs.errors import QuoteExpired, QuoteMismatch, QuoteNotFound, QuoteUsed
from jobs.inputs import Scheduling
from jobs.intake.admission import can_pay, job_submit_checks, require_runnable
from jobs.intake.result_cache import cache_key, cache_lookup, cache_price
from jobs.models import JobStatus, Quote
from jobs.selectors.queue import job_queue_estimate
from jobs.selectors.requests import JobRequest
from jobs.specs import JobSpec


def _work(quantities: dict[str, Any]) -> Any:
    """The quantities as stored in JSON: what a quote and a submission compare."""
    return json.loads(json.dumps(quantities, sort_keys=True, default=str))


def quote_precheck(*, user: User, spec: JobSpec, member_id: uuid.UUID | None = None) -> None:
    """A quote's cheap checks, before its request is resolved: the plan, this server's backend, and
    a balance and caps that cover the type's least price (402 otherwise, as a submission's), and the
    account's review hold (403 for a generative type, as a submission's)."""
    require_runnable(user, spec)
    can_pay(user, member_id, spec.price.minimum, specs=[spec])


def quote_create(*, user: User, spec: JobSpec, request: JobRequest, body_hash: str,
                 scheduling: Scheduling, use_cache: bool = True, member_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Price the request as a submission would, and promise that price for the quote's time.

    It says too whether the result cache would serve it now (`cache`), and for what: a
    submission served from the cache is charged the cache price of the quoted one; and which
    spend cap, if any, would refuse it if submitted now by `member_id` (a person or an API key)."""
    job_submit_checks(user=user, spec=spec, request=request)
    cost = spec.price.cost(request.quantities)
    hit = cache_lookup(user_id=user.pk, key=cache_key(spec=spec, request=request)) if use_cache else None
    now = timezone.now()
    quote = Quote.objects.create(
        user=user, type=spec.type, request_hash=body_hash, quantities=_work(request.quantities), credits_cost=cost,
        expires_at=now + timedelta(seconds=settings.AUTEUR_QUOTE_TTL_SECONDS),
    )
    balance = credit_balance_get(user=user)
    capped = spend_cap_refusal(user=user, member_id=member_id, cost=cost)
    # Where it would stand if submitted now: among the user's waiting jobs, by its priority.
    estimate = job_queue_estimate(user_id=user.pk, job_type=spec.type, status=JobStatus.PENDING, created_at=now,
                                  priority=scheduling.priority)
    return {
        "quote_id": quote.pk, "type": spec.type.value, "credits_cost": cost,
        # Only to whom may see the workspace's balance (an API key needs credits:read).
        "balance": balance if balances_shown() else None,
        "balance_after": balance - cost if balances_shown() else None, "queue_position": estimate.queue_position,
        "lane_position": estimate.lane_position, "eta_seconds": estimate.eta_seconds,
        "expires_at": quote.expires_at,
        "cache": {"hit": hit is not None, "source_job_id": hit.source.pk if hit else None,
                  "credits_cost": cache_price(cost) if hit else None},
        # As the 402 would tell the caller: the cap's figures only to whom may see the credits.
        "spend_cap": None if capped is None else {**capped.public()[1], "message": capped.public()[0]},
    }


def quote_take(*, user: User, spec: JobSpec, quote_id: uuid.UUID, body_hash: str,
               quantities: dict[str, Any]) -> Quote:
    """The quote a submission names, locked until its transaction ends, if it may pay for it."""
    quote = Quote.objects.select_for_update().filter(pk=quote_id, user=user).first()
    if quote is None:
        raise QuoteNotFound("No such quote.")
    if quote.job_id is not None:
        raise QuoteUsed("This quote was used for another job.", details={"job_id": str(quote.job_id)})
    if quote.expires_at <= timezone.now():
        raise QuoteExpired("This quote has expired; ask for another.",
                           details={"expired_at": quote.expires_at.isoformat()})
    if quote.type != spec.type or quote.request_hash != body_hash:
        raise QuoteMismatch("The request differs from the one quoted.", details={"quoted_type": quote.type})
    if quote.quantities != _work(quantities):
        raise QuoteMismatch("The work differs from the one quoted (its media or timeline changed).",
                            details={"quoted": quote.quantities, "now": _work(quantities)})
    return quote
