"""Plans, credits and billing through Stripe."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from auteur.core.secret_values import env_value
from auteur.settings.environment import env

# ---- Plans and credits (credits/)
AUTEUR_PLAN_ALLOWANCES = {
    "starter": env.int("AUTEUR_PLAN_STARTER_MONTHLY_CREDITS", default=500),
    "pro": env.int("AUTEUR_PLAN_PRO_MONTHLY_CREDITS", default=3000),
}

# ---- Billing through Stripe (billing/). Without STRIPE_SECRET_KEY every billing endpoint
# answers 503 `billing_unavailable` and nothing else changes; there is no default for a secret.
STRIPE_SECRET_KEY = env_value("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_value("STRIPE_WEBHOOK_SECRET")
# A signed event older than this is refused (a replayed capture), as Stripe's libraries do.
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
# Another address for Stripe's API (stripe-mock, `http://localhost:12111`); empty: Stripe's own.
STRIPE_API_BASE: str = env.str("STRIPE_API_BASE", default="")
# The Stripe price of each plan (plan -> price id); a plan without one cannot be bought.
STRIPE_PLAN_PRICES: dict[str, str] = {
    plan: price for plan, price in (
        ("starter", env.str("STRIPE_PRICE_STARTER", default="")),
        ("pro", env.str("STRIPE_PRICE_PRO", default="")),
    ) if price
}


def _credit_packs(value: str) -> dict[str, tuple[str, int]]:
    """`pack_500:price_abc:500,pack_2000:price_def:2000` -> {pack id: (Stripe price id, credits)}."""
    packs: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            pack_id, price, credits = item.split(":")
            amount = int(credits)
        except ValueError:
            raise ImproperlyConfigured(f"AUTEUR_CREDIT_PACKS: {item!r} is not <id>:<price id>:<credits>") from None
        if amount <= 0:
            raise ImproperlyConfigured(f"AUTEUR_CREDIT_PACKS: {item!r} must grant a positive number of credits")
        packs[pack_id] = (price, amount)
    return packs


AUTEUR_CREDIT_PACKS = _credit_packs(env.str("AUTEUR_CREDIT_PACKS", default=""))
# Where Stripe's hosted pages send the user back to (the web app's pages).
STRIPE_CHECKOUT_SUCCESS_URL = env.str("STRIPE_CHECKOUT_SUCCESS_URL", default="http://localhost:3000/billing/success")
STRIPE_CHECKOUT_CANCEL_URL = env.str("STRIPE_CHECKOUT_CANCEL_URL", default="http://localhost:3000/billing")
STRIPE_PORTAL_RETURN_URL = env.str("STRIPE_PORTAL_RETURN_URL", default="http://localhost:3000/billing")
