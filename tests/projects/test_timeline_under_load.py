"""One user asking again and again for the captions of the largest timeline the limits accept does
not keep another user's requests from being served.

Against the API as production serves it: gunicorn (`auteur.gunicorn_conf`, sync workers) in a
subprocess on the test's database, Redis and EDL store, over real HTTP. The timeline is the
costliest shape (bench/timelines.py: every other word deleted, a deleted pause in every gap)
scaled to the document's byte limit. While more clients than there are workers ask for its
captions, another user lists their projects. Before the timeline code was linear, each captions
request took tens of seconds on such a timeline and the other user waited as long; the bound here
is a no-hang check, not a benchmark (bench/timeline_limits.py measures the wait).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from auteur.users.services import user_issue_token
from bench.timelines import Counts, largest_within
from devstack import REPO_ROOT
from devstack.ports import free_port, wait_for_port
from devstack.process_group import stop_group
from projects.edl.documents import edl_limits
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.factories import MediaFileFactory, ProjectFactory
from tests.servers import subprocess_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("clean_edl_store")]

WORKERS = 2
CAPTION_CLIENTS = 4  # more than the workers: every worker is kept busy with captions
# Each client asks again until the other user has been answered (at most this many times): the
# workers stay busy however fast a captions request is.
MAX_REQUESTS_PER_CLIENT = 50
BYSTANDER_REQUESTS = 3
# Generous for a shared, loaded machine; a bystander waited 16 s and more before.
ANSWER_WITHIN_S = 20.0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "REDIS_URL": settings.REDIS_URL,
           # Many requests of one user in a few seconds: the rate limit is not what is tested here.
           "AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "1000000"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "auteur.wsgi:application",
             "--config", "python:auteur.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
             "--workers", str(WORKERS), "--timeout", "300"],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        stop_group(proc, 30)


def largest_timeline(project: Any) -> Counts:
    """Save the costliest timeline the limits accept (through the service, validated as a PUT)."""
    media = {kind: [str(MediaFileFactory.create(project=project, type=kind, duration_ms=24 * 3600 * 1000).pk)]
             for kind in ("video", "audio")}
    limits = edl_limits()
    counts, doc = largest_within(
        Counts(limits.max_words, limits.max_pauses, limits.max_segments, limits.max_clips, limits.max_tracks),
        media, limits.max_bytes)
    edl_replace(project=project, expected_version=edl_get(project=project)["version"], data=doc)
    return counts


def test_another_users_requests_are_served_while_one_asks_for_captions_of_the_largest_timeline(api, make_user):
    attacker, bystander = make_user(), make_user()
    project = ProjectFactory.create(user=attacker, name="At the limits")
    ProjectFactory.create(user=bystander, name="Mine")
    counts = largest_timeline(project)
    assert counts.words > 5000  # the byte limit, not a small timeline, is what bounds it
    captions_url = f"{api}/projects/{project.pk}/captions?format=json"
    as_attacker = {"Authorization": f"Bearer {user_issue_token(user=attacker)}"}
    as_bystander = {"Authorization": f"Bearer {user_issue_token(user=bystander)}"}

    in_flight = threading.Semaphore(0)
    bystander_done = threading.Event()
    statuses: list[int | str] = []

    def ask_for_captions() -> None:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if bystander_done.is_set():
                return
            in_flight.release()
            try:
                statuses.append(requests.get(captions_url, headers=as_attacker, timeout=300).status_code)
            except requests.RequestException as exc:  # reported by the assertion below
                statuses.append(repr(exc))

    clients = [threading.Thread(target=ask_for_captions) for _ in range(CAPTION_CLIENTS)]
    for client in clients:
        client.start()
    for _ in range(CAPTION_CLIENTS):
        in_flight.acquire(timeout=60)  # every client has sent its first request
    time.sleep(0.2)
    answered = []
    for _ in range(BYSTANDER_REQUESTS):
        try:
            response = requests.get(f"{api}/projects", headers=as_bystander, timeout=ANSWER_WITHIN_S)
        except requests.Timeout:
            pytest.fail(f"another user's GET /projects took more than {ANSWER_WITHIN_S} s")
        assert response.status_code == 200
        answered.append([p["name"] for p in response.json()["projects"]])
    busy = sum(client.is_alive() for client in clients)
    bystander_done.set()
    for client in clients:
        client.join(300)

    assert answered == [["Mine"]] * BYSTANDER_REQUESTS
    assert busy > 0, "the captions requests ended before the bystander's: nothing was tested"
    assert len(statuses) >= CAPTION_CLIENTS and statuses == [200] * len(statuses)
