"""POST /jobs/render with a transcript whose words, segments or pauses are deleted: the snapshot
holds the pieces that play, records what was cut, and is priced after the cuts."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Job
from media.models import MediaFile
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from projects.models import Project
from tests.jobs.support import error_code, ledger_state, submit
from tests.projects.test_edl_support import (
    clean_edl_store_fixture,  # noqa: F401 - fixture
    clip,
    segment,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]


def put(project: Project, media: MediaFile, segments: list[dict[str, Any]], *, deleted_clip: bool = False,
        pauses: list[dict[str, Any]] | None = None) -> None:
    """Three back-to-back 30 s clips of `media` (90 s), and the transcript."""
    doc = edl_get(project=project)
    video = doc["tracks"][0]
    video["clips"] = [clip(media, video, start=i * 30_000, out=30_000, id=f"c{i}") for i in range(3)]
    if deleted_clip:
        video["clips"].append(clip(media, video, start=90_000, out=30_000, id="gone", deleted=True))
    doc["transcript"]["segments"] = segments
    doc["transcript"]["pauses"] = pauses or []
    edl_replace(project=project, expected_version=doc["version"], data=doc)


def render(client: Any, project: Project, **options: Any) -> Any:
    return submit(client, "render", {"project_id": str(project.pk), **options})


def test_a_deleted_segment_is_cut_from_the_snapshot_recorded_and_not_charged(auth_client, funded, project, media):
    # 35 s of 90 s deleted: 55 s are rendered, one started minute (2 credits, not 4).
    put(project, media["video"], [segment(10_000, 45_000, words=[], deleted=True)], deleted_clip=True)
    before = ledger_state(funded)
    response = render(auth_client, project)
    assert response.status_code == 202, response.json()
    assert response.json()["credits_cost"] == 2
    assert ledger_state(funded)[0] == before[0] - 2
    params = Job.objects.get(pk=response.json()["job_id"]).input_params
    assert params["_quantities"] == {"duration_ms": 55_000, "output_weight": 1.0}
    assert params["cuts"] == {"padding_ms": 40, "spans": [[10_000, 45_000]], "duration_before_ms": 90_000,
                              "duration_after_ms": 55_000, "removed_ms": 35_000}  # fmt: skip
    assert params["crossfade_ms"] == 10 and params["cut_padding_ms"] == 40
    edl = params["edl"]
    assert "transcript" not in edl and edl["settings"]["duration_ms"] == 55_000
    pieces = [(c["id"], c["clip_id"], c["start_ms"], c["duration_ms"], c["in_point_ms"], c["cut_in"], c["cut_out"])
              for c in edl["tracks"][0]["clips"]]  # fmt: skip
    # The deleted clip is gone; c0 ends at the cut, c1 resumes after it, c2 moves up.
    assert pieces == [
        ("c0", "c0", 0, 10_000, 0, False, True),
        ("c1", "c1", 10_000, 15_000, 15_000, True, False),
        ("c2", "c2", 25_000, 30_000, 0, False, False),
    ]


def test_deleted_words_are_cut_with_the_padding_asked_for(auth_client, funded, project, media):
    words = [("keep", 1000, 1400), ("drop", 2000, 2400), ("this", 3000, 3400)]
    seg = segment(1000, 3400, words=words)
    seg["words"][1]["deleted"] = True
    put(project, media["video"], [seg], pauses=[{"start_ms": 40_000, "end_ms": 41_000, "deleted": True}])
    spans = {}
    for padding in (40, 0):
        response = render(auth_client, project, cut_padding_ms=padding, crossfade_ms=20)
        assert response.status_code == 202, response.json()
        params = Job.objects.get(pk=response.json()["job_id"]).input_params
        spans[padding] = params["cuts"]["spans"]
        assert params["crossfade_ms"] == 20
    # The silences around the deleted word go with it, down to the padding beside the kept words;
    # the deleted pause likewise.
    assert spans[40] == [[1440, 2960], [40_040, 40_960]]
    assert spans[0] == [[1400, 3000], [40_000, 41_000]]


def test_cuts_that_remove_everything_are_422_and_nothing_is_charged(auth_client, funded, project, media):
    put(project, media["video"], [segment(0, 90_000, words=[], deleted=True)])
    before = ledger_state(funded)
    response = render(auth_client, project)
    assert response.status_code == 422 and error_code(response) == "empty_timeline"
    assert response.json()["error"]["details"]["removed_ms"] == 90_000
    assert ledger_state(funded) == before


@pytest.mark.parametrize(("field", "value"), [
    ("cut_padding_ms", -1), ("cut_padding_ms", 1001), ("crossfade_ms", 201), ("crossfade_ms", "soft"),
])  # fmt: skip
def test_out_of_range_cut_options_are_400_naming_the_field(auth_client, funded, project, media, field, value):
    put(project, media["video"], [])
    before = ledger_state(funded)
    response = render(auth_client, project, **{field: value})
    assert response.status_code == 400 and field in response.json()["error"]["details"]["fields"]
    assert ledger_state(funded) == before


def test_another_users_project_is_404_whatever_its_cuts(auth_client, funded, make_user, make_media):
    from tests.factories import ProjectFactory

    other = ProjectFactory.create(user=make_user(), name="theirs")
    put(other, make_media(other, "video"), [segment(0, 1000, words=[], deleted=True)])
    before = ledger_state(funded)
    response = render(auth_client, other)
    assert response.status_code == 404 and error_code(response) == "project_not_found"
    assert ledger_state(funded) == before
