from __future__ import annotations

import uuid

import pytest

from credits.models import Plan
from credits.services.ledger import credit_deduct_for_job, credit_grant, credit_refund_job
from credits.services.subscriptions import subscription_create

pytestmark = pytest.mark.django_db


def test_every_endpoint_requires_authentication(api_client):
    for url in ("/api/v1/credits", "/api/v1/credits/history", "/api/v1/users/me"):
        response = api_client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]["code"] == "not_authenticated"


def test_balance_of_a_new_user_is_zero(auth_client):
    response = auth_client.get("/api/v1/credits")
    assert response.status_code == 200
    assert response.json() == {"balance": 0}


def test_balance_shows_the_callers_credits(user, auth_client):
    credit_grant(user=user, amount=1500, description="x")
    assert auth_client.get("/api/v1/credits").json() == {"balance": 1500}


def test_history_lists_the_callers_transactions_newest_first(user, auth_client):
    credit_grant(user=user, amount=100, description="welcome")
    job_id = uuid.uuid4()
    credit_deduct_for_job(user=user, job_id=job_id, amount=5, description="transcription")
    credit_refund_job(job_id=job_id, reason="failed")

    body = auth_client.get("/api/v1/credits/history").json()

    assert body["count"] == 3 and body["next"] is None and body["previous"] is None
    assert [t["type"] for t in body["transactions"]] == ["refund", "usage", "bonus"]
    assert body["transactions"][1] == {
        "id": body["transactions"][1]["id"], "amount": -5, "balance_after": 95, "type": "usage",
        "description": "transcription", "job_id": str(job_id), "created_at": body["transactions"][1]["created_at"],
    }


def test_history_paginates(user, auth_client):
    for i in range(7):
        credit_grant(user=user, amount=i + 1, description=f"grant {i}")

    first = auth_client.get("/api/v1/credits/history?page_size=3").json()
    assert first["count"] == 7
    assert [t["amount"] for t in first["transactions"]] == [7, 6, 5]
    assert first["previous"] is None and "page=2" in first["next"]
    last = auth_client.get("/api/v1/credits/history?page_size=3&page=3").json()
    assert [t["amount"] for t in last["transactions"]] == [1]
    assert last["next"] is None


def test_history_page_size_is_capped_at_one_hundred(user, auth_client):
    credit_grant(user=user, amount=1, description="x")
    body = auth_client.get("/api/v1/credits/history?page_size=1000").json()
    assert len(body["transactions"]) == 1


def test_history_filters_by_type(user, auth_client):
    credit_grant(user=user, amount=100, description="x")
    credit_deduct_for_job(user=user, job_id=uuid.uuid4(), amount=5, description="x")
    body = auth_client.get("/api/v1/credits/history?type=usage").json()
    assert body["count"] == 1
    assert body["transactions"][0]["type"] == "usage"


@pytest.mark.parametrize("query", ["type=gift", "page=0", "page=abc", "page_size=0"])
def test_history_with_a_bad_parameter_is_400_with_the_envelope(auth_client, query):
    response = auth_client.get(f"/api/v1/credits/history?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert query.split("=")[0] in error["details"]["fields"]


def test_history_never_shows_another_users_transactions(make_user, client_for):
    alice, bob = make_user(), make_user()
    credit_grant(user=alice, amount=10, description="alice's")
    credit_grant(user=bob, amount=20, description="bob's")
    body = client_for(alice).get("/api/v1/credits/history").json()
    assert [t["description"] for t in body["transactions"]] == ["alice's"]
    assert client_for(bob).get("/api/v1/credits").json() == {"balance": 20}


def test_users_me_has_the_seed_shape(make_user, client_for):
    user = make_user(name="John Doe")
    subscription_create(user=user, plan=Plan.PRO)

    body = client_for(user).get("/api/v1/users/me").json()

    assert body == {
        "id": str(user.id),
        "email": user.email,
        "email_verified": False,
        "name": "John Doe",
        "avatar_url": None,
        "subscription": {"plan": "pro", "status": "active"},
        "credits": {"balance": 3000},
    }


def test_users_me_without_subscription(user, auth_client):
    body = auth_client.get("/api/v1/users/me").json()
    assert body["subscription"] is None
    assert body["credits"] == {"balance": 0}


def test_insufficient_credits_renders_as_402_with_balance_and_cost():
    from rest_framework.test import APIRequestFactory

    from auteur.core.errors import api_exception_handler
    from auteur.users.workspace_context import show_balances
    from credits.errors import InsufficientCredits

    request = APIRequestFactory().get("/")
    response = api_exception_handler(InsufficientCredits(balance=3, cost=5), {"request": request})
    assert response is not None and response.status_code == 402
    assert response.data["error"]["code"] == "insufficient_credits"
    # A caller whose seat may not read the credits is told the cost, not the balance.
    assert response.data["error"]["details"] == {"balance": None, "cost": 5}
    show_balances(True)  # as a request whose seat may read them sets it
    response = api_exception_handler(InsufficientCredits(balance=3, cost=5), {"request": request})
    assert response is not None and response.data["error"]["details"] == {"balance": 3, "cost": 5}


def test_schema_documents_the_credit_endpoints(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/credits", "/api/v1/credits/history", "/api/v1/users/me"} <= set(paths)
    history = paths["/api/v1/credits/history"]["get"]
    assert {"type", "page", "page_size"} <= {p["name"] for p in history["parameters"]}


def test_users_me_sets_and_clears_the_name_and_avatar(user, auth_client):
    response = auth_client.patch("/api/v1/users/me", {"name": " Ada   Lovelace ",
                                                      "avatar_url": "https://cdn.example.com/a.png"}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["avatar_url"]) == ("Ada Lovelace", "https://cdn.example.com/a.png")
    assert auth_client.get("/api/v1/users/me").json()["name"] == "Ada Lovelace"
    response = auth_client.patch("/api/v1/users/me", {"avatar_url": None}, format="json")
    assert response.status_code == 200 and response.json()["avatar_url"] is None
    assert response.json()["name"] == "Ada Lovelace", "a field left out is kept"
    user.refresh_from_db()
    assert user.profile_edited_at is not None and user.avatar_url == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"avatar_url": "http://cdn.example.com/a.png"}, "avatar_url"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"avatar_url": "https://" + "a" * 2000 + ".com/x.png"}, "avatar_url"),
        ({"name": "x" * 256}, "name"),
        ({"name": "\u0007\u0008"}, "name"),
        ({"email": "someone@example.com"}, "email"),
    ],
)
def test_users_me_refuses_a_bad_profile_and_changes_nothing(user, auth_client, body, field):
    before = auth_client.get("/api/v1/users/me").json()
    response = auth_client.patch("/api/v1/users/me", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]["fields"], response.json()
    assert auth_client.get("/api/v1/users/me").json() == before


def test_users_me_refuses_an_empty_update(auth_client):
    response = auth_client.patch("/api/v1/users/me", {}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
