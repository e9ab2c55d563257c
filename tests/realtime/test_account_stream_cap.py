"""Open event streams and WebSockets are capped per paying account too: the keys and members of
every workspace one account pays for (its personal workspace and the team workspaces it created)
share one allowance, so that more keys or more workspaces do not multiply it.

Real uvicorn on the test's Redis, with a cap of 2 per person (or key) and 4 per account. The
attack: ten keys in three workspaces each open a stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from auteur.users.key_services import api_key_create
from auteur.users.models import Membership, User, Workspace
from auteur.users.roles import Role
from auteur.users.services import user_issue_token
from realtime.leases import account_lease_key
from tests.factories import team_workspace
from tests.realtime.test_stream_cap import Sse, wait_until, ws_open
from tests.servers import AsgiServer, asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]

PERSON_CAP = 2
ACCOUNT_CAP = 4
SERVER_ENV = {"AUTEUR_MAX_STREAMS_PER_USER": str(PERSON_CAP), "AUTEUR_MAX_STREAMS_PER_ACCOUNT": str(ACCOUNT_CAP),
              "AUTEUR_STREAM_LEASE_SECONDS": "30", "AUTEUR_STREAM_HEARTBEAT_SECONDS": "1"}


@pytest.fixture
def server(django_db_setup: None) -> Iterator[AsgiServer]:
    with asgi_server(**SERVER_ENV) as running:
        yield running


def key_text(maker: User, workspace: Workspace) -> str:
    _, text = api_key_create(membership=Membership.objects.get(workspace=workspace, user=maker), name="ci",
                             scopes=["jobs:read"])
    return text


def leases(key: str) -> int:
    return int(redis.Redis.from_url(settings.REDIS_URL).zcard(key))


def ws_open_in(server: AsgiServer, token: str, workspace: Workspace) -> tuple[ClientConnection, Any, Any]:
    """(socket, first message or None, close frame or None) after authenticating in the team workspace."""
    ws = connect(f"ws://127.0.0.1:{server.port}/ws/v1/events", open_timeout=30)
    ws.send(json.dumps({"type": "auth", "token": token, "workspace": str(workspace.pk)}))
    try:
        return ws, json.loads(ws.recv(timeout=30)), None
    except ConnectionClosed as closed:
        return ws, None, closed.rcvd


def test_ten_keys_in_three_workspaces_hold_the_accounts_streams_not_ten_times_them(server, make_user):
    owner, member, stranger = make_user(), make_user(), make_user()
    workspaces = [Workspace.objects.get(pk=owner.pk), team_workspace(owner, "A"), team_workspace(owner, "B")]
    Membership.objects.create(workspace=workspaces[1], user=member, role=Role.EDITOR)
    keys = [key_text(owner, workspaces[i % 3]) for i in range(10)]

    # One stream each: every key is far within its own cap, yet only the account's four open.
    streams = [Sse(server, text) for text in keys]
    assert [s.status for s in streams] == [200] * ACCOUNT_CAP + [429] * (10 - ACCOUNT_CAP)
    assert streams[ACCOUNT_CAP].json()["error"] == {
        "code": "too_many_streams", "details": {"limit": ACCOUNT_CAP, "scope": "account"},
        "message": f"At most {ACCOUNT_CAP} event streams and WebSockets may be open at once by the keys and members "
                   f"of the workspaces this account pays for; close one first.",
    }
    _, message, close = ws_open(server, keys[-1])
    assert message is None and (close.code, close.reason) == (4429, "too_many_streams")
    assert leases(account_lease_key(owner.pk)) == ACCOUNT_CAP  # the refused took no place

    # The owner themself, and a member reading one of the owner's workspaces, share it too.
    assert Sse(server, user_issue_token(user=owner)).status == 429
    _, message, close = ws_open_in(server, user_issue_token(user=member), workspaces[1])
    assert message is None and (close.code, close.reason) == (4429, "too_many_streams")
    # The member's own workspace is paid by their own account; another account is untouched.
    own = Sse(server, user_issue_token(user=member))
    assert own.status == 200
    assert Sse(server, user_issue_token(user=stranger)).status == 200

    # A closed stream frees the account's place.
    streams[0].close()
    wait_until(lambda: leases(account_lease_key(owner.pk)) == ACCOUNT_CAP - 1, 10, "a closed stream kept its lease")
    again = Sse(server, keys[9])
    assert again.status == 200
    for stream in (*streams, again, own):
        stream.close()


def test_a_persons_own_cap_still_holds_below_the_accounts(server, make_user):
    owner = make_user()
    text = key_text(owner, team_workspace(owner, "A"))
    held = [Sse(server, text) for _ in range(PERSON_CAP)]
    refused = Sse(server, text)
    assert [s.status for s in held] == [200] * PERSON_CAP and refused.status == 429
    assert refused.json()["error"]["details"] == {"limit": PERSON_CAP, "scope": "person"}
    assert leases(account_lease_key(owner.pk)) == PERSON_CAP
    for stream in held:
        stream.close()
