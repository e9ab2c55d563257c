"""Whether a request sees the workspace's balance is its own seat's word: nothing is shown outside
a request, and a thread's previous request (a sync worker serves many) lends the next none."""

from __future__ import annotations

import contextvars

from django.test import RequestFactory
from rest_framework.request import Request

from auteur.users.authentication import JWTAuthentication
from auteur.users.workspace_context import balances_shown, show_balances


def test_outside_any_request_no_balance_is_shown():
    assert contextvars.Context().run(balances_shown) is False


def test_a_request_without_a_credential_does_not_inherit_the_last_ones_balance():
    def run() -> bool:
        show_balances(True)  # what an owner's request left in this thread
        assert JWTAuthentication().authenticate(Request(RequestFactory().get("/api/v1/jobs"))) is None
        return balances_shown()

    assert contextvars.Context().run(run) is False
