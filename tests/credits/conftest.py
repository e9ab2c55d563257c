from __future__ import annotations

from collections.abc import Callable

import pytest

from auteur.users.models import User
from credits.services.ledger import credit_grant


@pytest.fixture
def funded_user(make_user: Callable[..., User]) -> Callable[[int], User]:
    """A new user holding `balance` credits (one bonus entry)."""

    def make(balance: int) -> User:
        user = make_user()
        if balance:
            credit_grant(user=user, amount=balance, description="test funds")
        return user

    return make


@pytest.fixture
def staff(make_user: Callable[..., User]) -> User:
    return make_user(is_staff=True)

