"""No request reads a user's document before the checks that cost nothing have passed: every path
into a job (each type's submission and quote, a batch and its quote) of an account that cannot pay
is refused without one read of a timeline (the EDL collections, counted at the MongoDB client)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo.collection import Collection

from auteur.users.models import User
from credits.services.ledger import credit_grant
from jobs.models import Batch, Job, Quote
from jobs.specs import JOB_SPECS, job_spec
from media.models import MediaFile
from projects.models import Project
from tests.factories import ProjectFactory
from tests.jobs.support import error_code, jobs_url, ledger_state, put_timeline, valid_body

pytestmark = pytest.mark.django_db

EDL_COLLECTIONS = {"edl", "edl_history"}
BATCH_URL, BATCH_QUOTE_URL = "/api/v1/jobs/batch", "/api/v1/jobs/batch/quote"


class Reads:
    """How many reads of the EDL collections the MongoDB client was asked for."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture(name="edl_reads")
def edl_reads_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    reads = Reads()
    # (find_one is a find: counted once, there.)
    for method in ("find", "aggregate", "count_documents", "distinct"):
        original = getattr(Collection, method)

        def counted(self: Collection[Any], *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if self.name in EDL_COLLECTIONS:
                reads.count += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Collection, method, counted)
    yield reads


@pytest.fixture(name="broke")
def broke_fixture(user: User, gpu_backend: Callable[[str], None]) -> User:
    gpu_backend("noop")  # every type runs here: what refuses is the balance, not the backend
    return user


@pytest.fixture(name="film")
def film_fixture(broke: User, make_media: Callable[..., MediaFile]) -> tuple[Project, dict[str, MediaFile]]:
    project = ProjectFactory.create(user=broke, name="Film")
    media = {kind: make_media(project, kind) for kind in ("video", "audio", "image")}
    put_timeline(project, media["video"])
    return project, media


def _refused_cheaply(response: Any, job_type: str) -> None:
    """402 for the balance, or 403 for a plan it lacks: both checked before anything is read."""
    plan = job_spec(job_type).plan
    expected = (403, "plan_required") if plan is not None else (402, "insufficient_credits")
    assert (response.status_code, error_code(response)) == expected, (job_type, response.json())


def test_every_submission_path_of_an_account_that_cannot_pay_reads_no_timeline(auth_client, broke, film, edl_reads):
    project, media = film
    before = ledger_state(broke)
    edl_reads.count = 0
    for spec in JOB_SPECS.values():
        body = valid_body(spec.type.value, project, media)
        _refused_cheaply(auth_client.post(jobs_url(f"/{spec.type}"), body, format="json"), spec.type.value)
        _refused_cheaply(auth_client.post(jobs_url(f"/{spec.type}/quote"), body, format="json"), spec.type.value)
    items = [{"type": spec.type.value, "input": valid_body(spec.type.value, project, media)}
             for spec in JOB_SPECS.values() if spec.plan is None and not spec.claims_challenge]
    for url in (BATCH_URL, BATCH_QUOTE_URL):
        response = auth_client.post(url, {"items": items}, format="json")
        assert response.status_code == 402 and error_code(response) == "insufficient_credits", response.json()
    assert edl_reads.count == 0
    assert ledger_state(broke) == before and not Quote.objects.exists() and not Batch.objects.exists()


def test_a_batch_quote_of_fifty_renders_for_no_credits_reads_no_timeline(auth_client, broke, film, edl_reads):
    project, _ = film
    renders = [{"type": "render", "input": {"project_id": str(project.pk)}}] * 50
    edl_reads.count = 0
    for url in (BATCH_QUOTE_URL, BATCH_URL):
        response = auth_client.post(url, {"items": renders}, format="json")
        assert response.status_code == 402 and error_code(response) == "insufficient_credits", response.json()
        details = response.json()["error"]["details"]
        # Refused on the items' least prices (a render's is one minute's), before any was resolved.
        assert details["least"] is True and details["cost"] == 50 * job_spec("render").price.minimum
        assert (details["item"], details["shortfall"]) == (0, details["cost"])
    assert edl_reads.count == 0
    assert not Job.objects.exists()


def test_fifty_identical_renders_are_resolved_with_one_read_of_their_timeline(auth_client, broke, film, edl_reads):
    """The control of the tests above (the count sees a read when there is one), and identical
    timeline items are resolved once per batch."""
    project, _ = film
    credit_grant(user=broke, amount=1000, type="bonus", description="test")
    renders = [{"type": "render", "input": {"project_id": str(project.pk)}}] * 50
    edl_reads.count = 0
    response = auth_client.post(BATCH_QUOTE_URL, {"items": renders}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["credits_cost"] == 50 * 2 and response.json()["refusal"] is None
    assert edl_reads.count == 1
    edl_reads.count = 0
    other = [{"type": "render", "input": {"project_id": str(project.pk), "resolution": "1280x720"}}]
    response = auth_client.post(BATCH_URL, {"items": renders[:3] + other}, format="json")
    assert response.status_code == 202, response.json()
    assert edl_reads.count == 2  # the three identical items once, the other once
    jobs = Job.objects.filter(batch_id=response.json()["id"]).order_by("batch_index")
    assert [j.input_params["edl"]["tracks"] == jobs[0].input_params["edl"]["tracks"] for j in jobs] == [True] * 4
    assert jobs[3].input_params["edl"]["settings"]["resolution"] == {"width": 1280, "height": 720}


def test_a_batch_the_least_prices_fit_but_the_items_do_not_is_still_refused_whole(auth_client, broke, film):
    """The least check is a floor: a balance above it is checked against the items' own prices."""
    project, _ = film
    credit_grant(user=broke, amount=3, type="bonus", description="test")
    before = ledger_state(broke)
    items = [{"type": "tts", "input": {"project_id": str(project.pk), "text": "x" * 1500}}]  # 4 credits, least 2
    response = auth_client.post(BATCH_URL, {"items": items}, format="json")
    assert response.status_code == 402 and response.json()["error"]["details"]["least"] is False
    assert response.json()["error"]["details"]["cost"] == 4
    assert ledger_state(broke) == before
