"""What a timeline costs the server is bounded, and paid for only once the cheap checks passed.

- A render (with or without captions) from an account that cannot pay is a 402 before its
  timeline is read, cut or captioned: the builder is patched to fail, and nothing is charged,
  created or made (no job, no ledger row, no Library project).
- A render whose cuts would split the clips into more pieces than the engine takes is a 422
  `edl_limit_exceeded` once the pieces are counted, before any is built, and nothing is charged.
- A timeline saved before the limits were lowered, over them now, is refused by the captions, the
  render and remove-fillers before anything is computed from it.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from credits.services.ledger import credit_adjust
from jobs.models import Job
from media.models import MediaFile
from projects.edl.cuts import cut_tracks, removed_spans
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.models import Project
from tests.factories import ProjectFactory
from tests.jobs.support import error_code, ledger_state, submit
from tests.projects.test_edl_support import (
    clean_edl_store_fixture,  # noqa: F401 - fixture
    clip,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError("the timeline was read or computed before the cheap checks refused the request")


def put(project: Project, media: MediaFile, *, words: int = 0, pauses: int = 0) -> dict[str, Any]:
    """Three back-to-back 30 s clips of `media`, and a transcript of `words` words 100 ms apart
    (every other one deleted: a cut after each kept word) and `pauses` deleted pauses."""
    doc = edl_get(project=project)
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=i * 30_000, out=30_000, id=f"c{i}") for i in range(3)]
    items = [{"word": "a", "start_ms": k * 100, "end_ms": k * 100 + 50, "confidence": 1.0, "deleted": k % 2 == 1}
             for k in range(words)]
    doc["transcript"]["segments"] = [{"id": "s", "start_ms": 0, "end_ms": max(1, words * 100), "words": items}]
    doc["transcript"]["pauses"] = [{"start_ms": 80_000 + k * 10, "end_ms": 80_000 + k * 10 + 5} for k in range(pauses)]
    return edl_replace(project=project, expected_version=doc["version"], data=doc)


@pytest.fixture
def broke(user, auth_client, make_media) -> tuple[Project, Any]:
    """A user without credits, whose project holds a timeline of 1,000 words (500 cuts)."""
    project = ProjectFactory.create(user=user, name="No credits")
    put(project, make_media(project, "video"), words=1000, pauses=200)
    return project, auth_client


@pytest.mark.parametrize("captions", ["none", "burn", "sidecar"])
def test_a_render_from_an_account_that_cannot_pay_is_402_before_its_timeline_is_read(
    broke, user, monkeypatch, captions
):
    project, client = broke
    monkeypatch.setattr("jobs.selectors.requests._timeline", boom)
    monkeypatch.setattr("jobs.selectors.requests.edl_snapshot", boom)
    monkeypatch.setattr("jobs.selectors.requests.transcript_cuts", boom)
    monkeypatch.setattr("jobs.selectors.requests.render_caption_files", boom)
    before = ledger_state(user)
    projects = Project.objects.filter(user=user).count()
    response = submit(client, "render", {"project_id": str(project.pk), "captions": captions})
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert response.json()["error"]["details"] == {"balance": 0, "cost": 2}  # a render's least price
    assert ledger_state(user) == before
    assert not Job.objects.exists()
    assert Project.objects.filter(user=user).count() == projects  # no Library made either


def test_an_idempotent_replay_is_answered_before_the_credit_check(funded, auth_client, project, media, make_user):
    put(project, media["video"])
    body = {"project_id": str(project.pk)}
    first = submit(auth_client, "render", body, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 202
    # The balance is spent meanwhile: the same request again still answers with its job.
    credit_adjust(user=funded, amount=-ledger_state(funded)[0], reason="spent", staff_user=make_user(is_staff=True))
    again = submit(auth_client, "render", body, HTTP_IDEMPOTENCY_KEY="k1")
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]
    assert Job.objects.count() == 1


def test_a_render_cut_into_more_pieces_than_the_engine_takes_is_422_before_any_piece_is_built(
    funded, auth_client, project, media, monkeypatch
):
    # 900 words 100 ms apart over the 90 s, every other one deleted: 450 cuts.
    saved = put(project, media["video"], words=900)
    pieces = sum(len(t["clips"]) for t in cut_tracks(saved["tracks"], removed_spans(saved["transcript"])))
    assert pieces > 450
    monkeypatch.setattr("jobs.selectors.requests.cut_tracks", boom)
    monkeypatch.setattr("jobs.selectors.requests.render_caption_files", boom)
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk), "captions": "burn"})
    assert response.status_code == 422 and error_code(response) == "edl_limit_exceeded"
    details = response.json()["error"]["details"]
    assert details["limit"] == "render_pieces" and details["max"] == 400  # the engine's (gpu_tasks/engines/timeline.py)
    assert details["count"] == pieces
    assert ledger_state(funded) == before


def test_the_piece_limit_is_a_setting_and_a_render_at_it_is_accepted(funded, auth_client, project, media, settings):
    put(project, media["video"], words=4)  # words 1 and 3 deleted: 2 cuts in c0, so c0 makes 3 pieces
    settings.AUTEUR_RENDER_MAX_PIECES = 5
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 202, response.json()
    edl = Job.objects.get(pk=response.json()["job_id"]).input_params["edl"]
    assert sum(len(t["clips"]) for t in edl["tracks"]) == 5
    settings.AUTEUR_RENDER_MAX_PIECES = 4
    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 422 and response.json()["error"]["details"]["count"] == 5
    assert ledger_state(funded) == before


def test_a_timeline_over_lowered_limits_is_refused_before_anything_is_computed_from_it(
    funded, auth_client, project, media, settings, monkeypatch
):
    saved = put(project, media["video"], words=10, pauses=5)
    settings.AUTEUR_EDL_MAX_PAUSES = 4  # lowered after the save
    monkeypatch.setattr("projects.caption_apis.timeline_caption_file", boom)
    monkeypatch.setattr("projects.edl.fillers.mark_fillers", boom)
    monkeypatch.setattr("jobs.selectors.requests.transcript_cuts", boom)
    expected = {"limit": "pauses", "max": 4, "count": 5, "path": "transcript.pauses"}

    response = auth_client.get(f"/api/v1/projects/{project.pk}/captions?format=json")
    assert response.status_code == 422 and response.json()["error"]["details"] == expected

    before = ledger_state(funded)
    response = submit(auth_client, "render", {"project_id": str(project.pk)})
    assert response.status_code == 422 and response.json()["error"]["details"] == expected
    assert ledger_state(funded) == before

    response = auth_client.post(f"/api/v1/projects/{project.pk}/edl/transcript/remove-fillers", {}, format="json")
    assert response.status_code == 422 and response.json()["error"]["details"] == expected
    assert edl_get(project=project)["version"] == saved["version"]  # nothing written
