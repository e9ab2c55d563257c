"""Stripe customers and the hosted pages a user pays on (Checkout) and manages billing in (portal).

A user's Stripe customer is created once, under a lock on the user's row, and stored BEFORE any
Checkout Session is made for them: every event Stripe sends later (invoice, subscription)
names that customer, so it maps to the user whatever order the events arrive in.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from auteur.core.errors import ApplicationError
from auteur.users.models import User
from billing import stripe_client
from billing.errors import BillingUnavailable
from billing.models import StripeCustomer
from credits.models import SubscriptionStatus
from credits.selectors import subscription_get

PORTAL_PATH = "/api/v1/billing/portal"


def billing_require_configured() -> None:
    if not stripe_client.configured():
        raise BillingUnavailable()


def stripe_customer_get_or_create(*, user: User) -> StripeCustomer:
    """The user's Stripe customer, created at most once however many checkouts race."""
    existing = StripeCustomer.objects.filter(user_id=user.pk).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        # Serializes one user's concurrent first checkouts: the second finds the first's customer.
        # FOR NO KEY UPDATE: it does not block the KEY SHARE locks that the user's ledger and job
        # inserts take on this row (their foreign keys) while Stripe is called.
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk", flat=True).first()
        existing = StripeCustomer.objects.filter(user_id=user.pk).first()
        if existing is not None:
            return existing
        customer_id = stripe_client.customer_create(user_id=str(user.pk), email=user.email)
        return StripeCustomer.objects.create(user=user, stripe_customer_id=customer_id)


def _plan_line(*, user: User, plan: str) -> tuple[list[dict[str, object]], str]:
    price = settings.STRIPE_PLAN_PRICES.get(plan)
    if not price:
        raise ApplicationError(f"The {plan} plan is not for sale here.", code="plan_not_for_sale",
                               details={"plan": plan})
    subscription = subscription_get(user=user)
    if subscription is not None and subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        # A second Checkout would start a second subscription and bill twice: a running plan
        # is upgraded, downgraded or cancelled in the portal, which sends us its events.
        raise ApplicationError("You already have a plan; change or cancel it in the billing portal.",
                               code="plan_active",
                               details={"plan": subscription.plan, "status": subscription.status,
                                        "portal": PORTAL_PATH})
    return [{"price": price, "quantity": 1}], "subscription"


def _pack_line(credit_pack: str) -> tuple[list[dict[str, object]], int]:
    pack = settings.AUTEUR_CREDIT_PACKS.get(credit_pack)
    if pack is None:
        raise ApplicationError("There is no such credit pack.", code="unknown_credit_pack",
                               details={"credit_pack": credit_pack, "offered": sorted(settings.AUTEUR_CREDIT_PACKS)})
    price, credits = pack
    return [{"price": price, "quantity": 1}], credits


def billing_checkout_start(*, user: User, plan: str | None = None, credit_pack: str | None = None) -> str:
    """A Checkout Session for a plan or a credit pack (exactly one); its URL."""
    billing_require_configured()
    if (plan is None) == (credit_pack is None):
        raise ApplicationError("Name either a plan or a credit_pack.", code="checkout_choice_required")
    metadata: dict[str, str] = {"user_id": str(user.pk)}
    if plan is not None:
        line_items, mode = _plan_line(user=user, plan=plan)
        metadata["plan"] = plan
    else:
        assert credit_pack is not None
        line_items, credits = _pack_line(credit_pack)
        mode = "payment"
        # The credits are fixed when the user is shown the price: a later change of the pack's
        # settings does not change what this payment buys.
        metadata.update(credit_pack=credit_pack, credits=str(credits))
    customer = stripe_customer_get_or_create(user=user)
    params: dict[str, object] = {
        "mode": mode,
        "customer": customer.stripe_customer_id,
        "client_reference_id": str(user.pk),
        "line_items": line_items,
        "metadata": metadata,
        "success_url": settings.STRIPE_CHECKOUT_SUCCESS_URL,
        "cancel_url": settings.STRIPE_CHECKOUT_CANCEL_URL,
    }
    if mode == "subscription":
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    session = stripe_client.checkout_session_create(params)
    return str(session["url"])


def billing_portal_start(*, user: User) -> str:
    """A customer portal session for a user who has bought something before; its URL."""
    billing_require_configured()
    customer = StripeCustomer.objects.filter(user_id=user.pk).first()
    if customer is None:
        raise ApplicationError("There is no billing account yet: buy a plan or a credit pack first.",
                               code="no_billing_account")
    return stripe_client.portal_session_create(customer_id=customer.stripe_customer_id,
                                               return_url=settings.STRIPE_PORTAL_RETURN_URL)
