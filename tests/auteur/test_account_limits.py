"""Limits per paying account: the keys and members of every workspace one account pays for (its
personal workspace and the team workspaces it created) share one request window and one bound on
keys in use, so that more keys or more workspaces do not multiply what one sign-up gets; and making
keys is itself limited per person and hour."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from auteur.users.errors import KeyLimitReached
from auteur.users.key_services import api_key_create
from auteur.users.models import ApiKey, Membership, User, Workspace
from auteur.users.payers import payer_of_workspace
from auteur.users.roles import Role
from tests.factories import acting_in, key_client, team_workspace

pytestmark = pytest.mark.django_db


def make_key(maker: User, workspace: Workspace, **extra: Any) -> str:
    _, text = api_key_create(membership=Membership.objects.get(workspace=workspace, user=maker), name="ci",
                             scopes=["jobs:read"], **extra)
    return text


def window(key: str) -> int:
    return int(redis.Redis.from_url(django_settings.REDIS_URL).zcard(key))


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def workspaces(owner: User) -> list[Workspace]:
    """The owner's three workspaces: their personal one and two team workspaces they created."""
    return [Workspace.objects.get(pk=owner.pk), team_workspace(owner, "A"), team_workspace(owner, "B")]


def test_ten_keys_in_three_workspaces_get_the_accounts_limit_not_ten_times_it(
    owner: User, workspaces: list[Workspace], make_user: Callable[..., User], settings: Any,
    client_for: Callable[[User], APIClient],
):
    settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE = 5
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 5
    settings.AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE = 12
    member = make_user()
    Membership.objects.create(workspace=workspaces[1], user=member, role=Role.EDITOR)
    clients = [key_client(make_key(owner, workspaces[i % 3])) for i in range(10)]

    # Each key stays within its own limit (5 requests each): alone, the ten would get 50.
    answers = [client.get("/api/v1/jobs") for _ in range(5) for client in clients]
    assert [a.status_code for a in answers] == [200] * 12 + [429] * 38
    refused = answers[12]
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 60
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"] == {"retry_after_seconds": wait}
    # Refused requests were recorded nowhere: the account's window holds the 12 it let in.
    assert window(f"rl:a:{owner.pk}") == 12

    # The owner themself, and a member acting in one of the owner's workspaces, share it too.
    assert client_for(owner).get("/api/v1/jobs").status_code == 429
    assert acting_in(member, workspaces[1]).get("/api/v1/jobs").status_code == 429
    # What the member does in their own workspace is paid by their own account; another account is untouched.
    assert client_for(member).get("/api/v1/jobs").status_code == 200
    stranger = make_user()
    assert client_for(stranger).get("/api/v1/jobs").status_code == 200
    assert key_client(make_key(stranger, Workspace.objects.get(pk=stranger.pk))).get("/api/v1/jobs").status_code == 200


def test_refused_requests_of_many_keys_count_against_their_account_too(
    owner: User, workspaces: list[Workspace], settings: Any, client_for: Callable[[User], APIClient],
):
    settings.AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE = 6
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 6
    settings.AUTEUR_RATE_LIMIT_KEY_PER_MINUTE = 6
    texts = [make_key(owner, workspaces[i % 3]) for i in range(6)]
    # A wrong workspace header (404) and a person's endpoint (403): each key's first is within its own limit.
    wrong = [key_client(text, workspace=workspaces[(i + 1) % 3].pk).get("/api/v1/jobs")
             for i, text in enumerate(texts[:3])]
    person_only = [key_client(text).get("/api/v1/users/me") for text in texts[3:]]
    assert [a.status_code for a in wrong] == [404] * 3 and [a.status_code for a in person_only] == [403] * 3
    assert key_client(texts[0]).get("/api/v1/jobs").status_code == 429
    assert client_for(owner).get("/api/v1/jobs").status_code == 429


def test_an_api_key_makes_no_team_workspace(owner: User, workspaces: list[Workspace]):
    answer = key_client(make_key(owner, workspaces[1])).post("/api/v1/workspaces", {"name": "More"}, format="json")
    assert answer.status_code == 403
    assert not Workspace.objects.filter(name="More").exists()


def test_a_keys_and_a_persons_own_limits_still_hold_below_the_accounts(
    owner: User, workspaces: list[Workspace], settings: Any, client_for: Callable[[User], APIClient],
):
    settings.AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE = 100
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 2
    client = key_client(make_key(owner, workspaces[2], rate_limit_per_minute=3))
    assert [client.get("/api/v1/jobs").status_code for _ in range(4)] == [200, 200, 200, 429]
    person = client_for(owner)
    assert [person.get("/api/v1/jobs").status_code for _ in range(3)] == [200, 200, 429]
    assert window(f"rl:a:{owner.pk}") == 5


def test_an_operator_who_raises_a_persons_limit_is_not_held_to_a_lower_account_limit(
    owner: User, settings: Any, client_for: Callable[[User], APIClient],
):
    settings.AUTEUR_RATE_LIMIT_ACCOUNT_PER_MINUTE = 2
    settings.AUTEUR_RATE_LIMIT_USER_PER_MINUTE = 4
    person = client_for(owner)
    assert [person.get("/api/v1/jobs").status_code for _ in range(5)] == [200] * 4 + [429]


def test_a_team_workspace_is_paid_by_its_creator_and_by_itself_once_the_creator_is_gone(
    owner: User, workspaces: list[Workspace],
):
    personal, team, _ = workspaces
    assert payer_of_workspace(personal.pk) == owner.pk
    assert payer_of_workspace(team.pk) == owner.pk
    orphan = team_workspace(owner, "C")
    Workspace.objects.filter(pk=orphan.pk).update(created_by=None)
    assert payer_of_workspace(orphan.pk) == orphan.pk


# ----------------------------------------------------------------------------- making keys


def test_keys_in_use_are_limited_per_account_across_its_workspaces(
    owner: User, workspaces: list[Workspace], make_user: Callable[..., User], settings: Any,
    client_for: Callable[[User], APIClient],
):
    settings.AUTEUR_MAX_KEYS_PER_WORKSPACE = 2
    settings.AUTEUR_MAX_KEYS_PER_ACCOUNT = 3
    admin = make_user()
    Membership.objects.create(workspace=workspaces[2], user=admin, role=Role.ADMIN)
    make_key(owner, workspaces[0])
    make_key(owner, workspaces[1])
    make_key(admin, workspaces[2])  # made by another person, in a workspace the owner pays for: counted

    answer = client_for(owner).post(f"/api/v1/workspaces/{workspaces[1].pk}/keys",
                                    {"name": "x", "scopes": ["jobs:read"]}, format="json")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "key_limit_reached"
    assert answer.json()["error"]["details"] == {"limit": 3, "scope": "account"}
    with pytest.raises(KeyLimitReached):
        make_key(admin, workspaces[2])
    assert ApiKey.objects.filter(user_id__in=[w.pk for w in workspaces]).count() == 3  # nothing was made

    # The admin's own workspace is paid by their own account.
    make_key(admin, Workspace.objects.get(pk=admin.pk))
    # A revoked key is not in use.
    ApiKey.objects.filter(user_id=workspaces[0].pk).update(revoked_at=timezone.now())
    make_key(owner, workspaces[2])


def test_keys_in_use_are_limited_per_workspace(owner: User, workspaces: list[Workspace], settings: Any,
                                               client_for: Callable[[User], APIClient]):
    settings.AUTEUR_MAX_KEYS_PER_WORKSPACE = 2
    make_key(owner, workspaces[1])
    make_key(owner, workspaces[1])
    answer = client_for(owner).post(f"/api/v1/workspaces/{workspaces[1].pk}/keys",
                                    {"name": "x", "scopes": ["jobs:read"]}, format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "key_limit_reached")
    assert answer.json()["error"]["details"] == {"limit": 2, "scope": "workspace"}
    assert ApiKey.objects.filter(user_id=workspaces[1].pk).count() == 2
    make_key(owner, workspaces[2])  # another workspace has its own bound


def test_making_keys_is_limited_per_person_and_hour(owner: User, workspaces: list[Workspace], settings: Any,
                                                    client_for: Callable[[User], APIClient]):
    settings.AUTEUR_RATE_LIMIT_KEY_CREATES_PER_HOUR = 2
    client = client_for(owner)
    made = []
    for workspace in (workspaces[0], workspaces[1], workspaces[2]):
        made.append(client.post(f"/api/v1/workspaces/{workspace.pk}/keys", {"name": "x", "scopes": ["jobs:read"]},
                                format="json"))
        # Revoking does not give the making back: a loop of both is bounded.
        if made[-1].status_code == 201:
            assert client.delete(f"/api/v1/workspaces/{workspace.pk}/keys/{made[-1].json()['id']}").status_code == 200
    assert [answer.status_code for answer in made] == [201, 201, 429]
    refused = made[2]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 3000 < int(refused["Retry-After"]) <= 3600
    assert ApiKey.objects.filter(user_id__in=[w.pk for w in workspaces]).count() == 2
    # Reading keys is not making them.
    assert client.get(f"/api/v1/workspaces/{workspaces[2].pk}/keys").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_keys_made_at_once_in_workspaces_of_one_account_cannot_pass_its_bound(
    make_user: Callable[..., User], settings: Any,
):
    settings.AUTEUR_MAX_KEYS_PER_ACCOUNT = 1
    for _ in range(3):  # a few rounds: each is one chance for the makers to overlap
        owner = make_user()
        teams = [team_workspace(owner, name) for name in "ABCD"]
        start = threading.Barrier(len(teams))
        outcomes: list[str] = []

        def make(workspace: Workspace, owner: User = owner, start: threading.Barrier = start,
                 outcomes: list[str] = outcomes) -> None:
            try:
                start.wait(10)
                make_key(owner, workspace)
                outcomes.append("made")
            except KeyLimitReached:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=make, args=(team,)) for team in teams]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == ["made"] + ["refused"] * (len(teams) - 1)
        assert ApiKey.objects.filter(user_id__in=[t.pk for t in teams]).count() == 1
