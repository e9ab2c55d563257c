from __future__ import annotations

from typing import Any

import pytest

from auteur.settings.billing import _credit_packs as credit_packs
from billing import stripe_client
from tests.billing.support import PACKS, PRICE_PRO, PRICE_STARTER, WEBHOOK_SECRET, FakeStripe
from tests.jobs.support import (  # noqa: F401 - fixtures
    funded_fixture,
    gpu_backend_fixture,
    make_media_fixture,
    media_fixture,
    project_fixture,
)
from tests.media.conftest import samples  # noqa: F401 - fixture


def configure(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_billing_tests"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
    settings.STRIPE_PLAN_PRICES = {"starter": PRICE_STARTER, "pro": PRICE_PRO}
    settings.AUTEUR_CREDIT_PACKS = credit_packs(PACKS)
    settings.AUTEUR_PLAN_ALLOWANCES = {"starter": 500, "pro": 3000}


@pytest.fixture
def stripe_fake(settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeStripe:
    """Billing configured, with Stripe's API replaced at billing/stripe_client.py."""
    configure(settings)
    fake = FakeStripe()
    for name in ("customer_create", "checkout_session_create", "portal_session_create", "subscription_retrieve",
                 "payment_intent_retrieve", "dispute_retrieve"):
        monkeypatch.setattr(stripe_client, name, getattr(fake, name))
    return fake
