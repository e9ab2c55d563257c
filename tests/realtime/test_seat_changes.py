"""What a team workspace's streams carry follows the member's seat as the database says now: a role
change closes the member's open SSE streams and WebSockets (within a second), a WebSocket reads
the role again at every subscribe, and a `Prefer: wait` answer shows the balance only to a
submitter who may see the workspace's credits. Real clients against a real uvicorn."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from auteur.users.key_services import api_key_create
from auteur.users.models import Membership, User, Workspace
from auteur.users.services import user_disable, user_issue_token
from auteur.users.workspace_services import member_set_role
from credits.services.ledger import credit_grant
from jobs.events.record import job_event_record
from jobs.models import JobEventType
from tests.factories import MediaFileFactory, ProjectFactory, team_workspace
from tests.jobs.conftest import Worker, subprocess_env
from tests.jobs.support import valid_body
from tests.realtime.test_realtime import WORKER_ENV, Sse, make_job, post_waiting, ws_connect
from tests.servers import AsgiServer, asgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]


@pytest.fixture(scope="module")
def asgi(django_db_setup: None) -> Iterator[AsgiServer]:
    with asgi_server(AUTEUR_STREAM_HEARTBEAT_SECONDS="1") as server:
        yield server


@pytest.fixture
def worker(django_db_setup: None, gpu_backend: Any) -> Iterator[Worker]:
    gpu_backend("noop")
    # No announcements' consumer, as test_realtime.py's worker: the noop backend holds no call here, so
    # each has ended when its step first looks at it.
    started = Worker(subprocess_env(**WORKER_ENV), consumer=False)
    yield started
    started.stop()


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=60)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def socket_of(server: AsgiServer, user: User, team: Workspace) -> ClientConnection:
    ws = ws_connect(server)
    ws.send(json.dumps({"type": "auth", "token": user_issue_token(user=user), "workspace": str(team.pk)}))
    assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
    return ws


def subscribe_account(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "subscribe", "account": True}))


@pytest.fixture
def team_with_editor(make_user: Any) -> tuple[Workspace, User, User]:
    owner, editor = make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=editor, role="editor")
    return team, owner, editor


def test_a_demoted_members_streams_and_sockets_end_within_a_second(asgi: AsgiServer, team_with_editor: Any):
    team, owner, editor = team_with_editor
    token = user_issue_token(user=editor)
    spend_caps = Sse(asgi, "/api/v1/events/stream?account=true", token, workspace=str(team.pk))
    jobs = Sse(asgi, "/api/v1/events/stream", token, workspace=str(team.pk))
    assert spend_caps.response.status == jobs.response.status == 200
    ws = socket_of(asgi, editor, team)
    subscribe_account(ws)
    assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "account": True}
    # The owner's own stream is not the member's: it goes on.
    owners = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=owner), workspace=str(team.pk))

    demoted_at = time.monotonic()
    member_set_role(membership=Membership.objects.get(workspace=team, user=owner), user_id=editor.pk, role="viewer")
    ended = [spend_caps.next(), jobs.next()]
    code = closed_with(ws)
    assert time.monotonic() - demoted_at < 1.0
    for event in ended:
        assert event is not None and event["event"] == "error"
        assert json.loads(event["data"])["error"]["code"] == "seat_changed"
    assert spend_caps.next() is None and jobs.next() is None
    assert code == (4409, "seat_changed")
    with transaction.atomic():
        job_event_record(make_job(User.objects.get(pk=team.pk)).pk, JobEventType.PROGRESS, progress=1)
    assert owners.next() is not None

    # Reconnecting, the viewer reads the jobs, never the spend caps.
    again = Sse(asgi, "/api/v1/events/stream?account=true", token, workspace=str(team.pk))
    assert again.response.status == 403
    assert json.loads(again.response.read())["error"]["details"]["action"] == "credits.view"
    assert Sse(asgi, "/api/v1/events/stream", token, workspace=str(team.pk)).response.status == 200
    ws = socket_of(asgi, editor, team)
    subscribe_account(ws)
    assert closed_with(ws) == (4403, "permission_denied")


def test_a_websocket_reads_the_role_again_at_every_subscribe(asgi: AsgiServer, team_with_editor: Any):
    team, _, editor = team_with_editor
    allowed = socket_of(asgi, editor, team)
    subscribe_account(allowed)
    assert json.loads(allowed.recv(timeout=30)) == {"type": "subscribed", "account": True}
    opened = socket_of(asgi, editor, team)
    # The role changes without the streams being told (the change's announcement lost): the socket
    # opened as an editor asks for the spend caps as a viewer, and is refused.
    Membership.objects.filter(workspace=team, user=editor).update(role="viewer")
    subscribe_account(opened)
    assert closed_with(opened) == (4403, "permission_denied")
    # A socket that already carries them is closed at its next subscribe of anything.
    allowed.send(json.dumps({"type": "subscribe", "job_id": str(make_job(User.objects.get(pk=team.pk)).pk)}))
    assert closed_with(allowed) == (4403, "permission_denied")
    # Removed without a word: the next subscribe is a 4404.
    demoted = socket_of(asgi, editor, team)
    Membership.objects.filter(workspace=team, user=editor).delete()
    demoted.send(json.dumps({"type": "subscribe", "comments": True}))
    assert closed_with(demoted) == (4404, "workspace_not_found")


def test_a_promotion_closes_the_members_streams_too_and_a_reconnect_gets_what_the_new_role_sees(
        asgi: AsgiServer, make_user: Any):
    owner, viewer = make_user(), make_user()
    team = team_workspace(owner)
    Membership.objects.create(workspace=team, user=viewer, role="viewer")
    token = user_issue_token(user=viewer)
    assert Sse(asgi, "/api/v1/events/stream?account=true", token, workspace=str(team.pk)).response.status == 403
    reading = Sse(asgi, "/api/v1/events/stream", token, workspace=str(team.pk))
    member_set_role(membership=Membership.objects.get(workspace=team, user=owner), user_id=viewer.pk, role="editor")
    ended = reading.next()
    assert ended is not None and json.loads(ended["data"])["error"]["code"] == "seat_changed"
    assert Sse(asgi, "/api/v1/events/stream?account=true", token, workspace=str(team.pk)).response.status == 200


def test_a_disabled_members_streams_and_their_keys_streams_end_within_a_second(asgi: AsgiServer,
                                                                               team_with_editor: Any):
    team, _, editor = team_with_editor
    Membership.objects.filter(workspace=team, user=editor).update(role="admin")  # an admin makes keys
    reading = Sse(asgi, "/api/v1/events/stream", user_issue_token(user=editor), workspace=str(team.pk))
    _, text = api_key_create(membership=Membership.objects.get(workspace=team, user=editor), name="ci",
                             scopes=["jobs:read"])
    keys = Sse(asgi, "/api/v1/events/stream", text)
    assert reading.response.status == keys.response.status == 200
    disabled_at = time.monotonic()
    user_disable(user=editor, staff_id=None)
    ended = [reading.next(), keys.next()]
    assert time.monotonic() - disabled_at < 1.0
    for event in ended:
        assert event is not None and json.loads(event["data"])["error"]["code"] == "workspace_not_found"
    assert Sse(asgi, "/api/v1/events/stream", text).response.status == 401


def test_a_prefer_wait_answer_shows_the_balance_only_to_a_key_with_credits_read(asgi: AsgiServer, worker: Any,
                                                                                make_user: Any):
    team = team_workspace(make_user())
    account = User.objects.get(pk=team.pk)
    credit_grant(user=account, amount=1000, type="bonus", description="pool")
    seat = Membership.objects.get(workspace=team, role="owner")
    project = ProjectFactory.create(user=account, name="Film")
    media = {kind: MediaFileFactory.create(project=project, type=kind) for kind in ("video", "audio", "image")}
    _, blind = api_key_create(membership=seat, name="jobs", scopes=["jobs:write"])
    _, finance = api_key_create(membership=seat, name="finance", scopes=["jobs:write", "credits:read"])

    hidden = post_waiting(asgi, blind, "tts", valid_body("tts", project, media), "wait=30")
    shown = post_waiting(asgi, finance, "tts", valid_body("tts", project, media), "wait=30")
    assert hidden.status_code == shown.status_code == 201, (hidden.text, shown.text)
    assert hidden.json()["status"] == shown.json()["status"] == "completed"
    [usage] = hidden.json()["charge"]["entries"]
    assert usage["type"] == "usage" and usage["amount"] < 0 and usage["balance_after"] is None
    [usage] = shown.json()["charge"]["entries"]
    assert isinstance(usage["balance_after"], int) and usage["balance_after"] < 1000
    # The same key's GET says the same as its waited answer.
    assert requests_get_job(asgi, blind, hidden.json()["id"])["charge"] == hidden.json()["charge"]


def requests_get_job(server: AsgiServer, token: str, job_id: str) -> dict[str, Any]:
    import requests

    answer = requests.get(f"{server.http}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"},
                          timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
