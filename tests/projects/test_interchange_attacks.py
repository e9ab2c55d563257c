"""A few kilobytes of timeline never stall or kill the API: each hostile shape of each interchange
format, sent to the real import endpoint, is refused with a clear 422 before any adapter builds what
it asks for (references counted over their graph, nesting and elements bounded), and the adapter
itself runs in a confined child under the parse budget. Nothing is saved, charged or left running,
and the API process builds none of it.

The shapes (bench/interchange_files.py): sequences, compound clips and composition mobs used ten
times by the one above them, level after level (10**5 and 10**6 clips in a few KB); a sequence that
contains itself; tracks named by id many times; nesting 60,000 levels deep (which crashed the API
worker with SIGSEGV in OTIO's C++ reader); flat files past the clip limit; a clip whose rate is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

import gpu_tasks.confined as confined
from bench import interchange_files as files
from credits.models import CreditAccount, CreditTransaction
from projects.edl.interchange.read import READ
from projects.edl.selectors import edl_get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

LIMIT, INVALID = "edl_limit_exceeded", "interchange_invalid"
EXTENSIONS = files.EXTENSIONS


def post(auth_client: Any, project: Any, fmt: str, data: bytes) -> Any:
    upload = SimpleUploadedFile(f"attack.{EXTENSIONS[fmt]}", data)
    return auth_client.post(f"/api/v1/projects/{project.pk}/timeline/import", {"file": upload}, format="multipart")


def expanded(details: dict[str, Any]) -> bool:
    return details.get("expanded") is True and details["count"] > details["max"] == 5000


ATTACKS: list[tuple[str, str, Callable[[], bytes], str, Callable[[dict[str, Any]], bool]]] = [
    ("fcp7xml sequences used 10x, 5 levels (10**5 clips, 8 KB)", "fcp7xml",
     lambda: files.fcp7_nested(5).encode(), LIMIT, expanded),
    ("fcp7xml a track named by its id 1,000 times", "fcp7xml",
     lambda: files.fcp7_track_references(1000, 100).encode(), LIMIT, expanded),
    ("fcp7xml a sequence that contains itself", "fcp7xml",
     lambda: files.fcp7_cycle().encode(), INVALID, lambda d: d == {"format": "fcp7xml"}),
    ("fcp7xml elements 60,000 deep", "fcp7xml",
     lambda: files.fcp7_deep(60_000).encode(), INVALID, lambda d: (d["bound"], d["max"]) == ("depth", 128)),
    ("fcpxml compound clips used 10x, 6 levels (10**6 clips, 5 KB)", "fcpxml",
     lambda: files.fcpx_nested(6).encode(), LIMIT, expanded),
    ("fcpxml a compound clip that contains itself", "fcpxml",
     lambda: files.fcpx_cycle().encode(), INVALID, lambda d: d == {"format": "fcpxml"}),
    ("fcpxml 6,000 clips flat", "fcpxml",
     lambda: files.fcpx_flat(6000).encode(), LIMIT, lambda d: d["expanded"] is False and d["count"] == 6000),
    ("otio brackets 60,000 deep (120 KB)", "otio",
     lambda: files.otio_deep(60_000).encode(), INVALID, lambda d: (d["bound"], d["max"]) == ("depth", 128)),
    ("otio stacks 5,000 deep", "otio",
     lambda: files.otio_deep_stacks(5000).encode(), INVALID, lambda d: d["bound"] == "depth"),
    ("otio 6,000 clips", "otio",
     lambda: files.otio_clips(6000).encode(), LIMIT, lambda d: d["count"] == 5001),
    ("otio a clip whose rate is 0", "otio",
     lambda: files.otio_flat(3, rate=0).encode(), INVALID, lambda d: d == {"clip": 1}),
    ("aaf composition mobs used 10x, 5 levels (10**5 clips)", "aaf",
     lambda: files.aaf_nested(5), LIMIT, expanded),
    ("aaf a composition mob that plays itself", "aaf",
     lambda: files.aaf_cycle(), INVALID, lambda d: d == {"format": "aaf"}),
    ("edl 20,000 events", "edl",
     lambda: files.cmx_events(20_000).encode(), LIMIT, lambda d: d["count"] == 10_000),
    ("fcpxml compound clips holding no clip, each used twice, 20 levels (10**6 built)", "fcpxml",
     lambda: files.fcpx_empty_compounds(20).encode(), LIMIT, expanded),
    ("otio a clip 7e24 frames long at 1.095x (an endless loop in the API's arithmetic)", "otio",
     lambda: files.otio_clip(frames=7e24, speed=1.095).encode(), INVALID, lambda d: d == {"clip": 1}),
    ("edl white space that backtracking patterns crossed (cubic on a speed line)", "edl",
     lambda: files.cmx_padded(5000).encode(), INVALID, lambda d: d == {"format": "edl"}),
]


@pytest.mark.parametrize(("fmt", "make", "code", "check"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_a_hostile_timeline_is_refused_before_it_is_built_and_nothing_is_saved(
    auth_client, user, project, fmt, make, code, check
):
    data = make()
    before = edl_get(project=project)
    balance = list(CreditAccount.objects.filter(user=user).values_list("balance", flat=True))
    entries = CreditTransaction.objects.filter(account__user=user).count()
    api = psutil.Process()
    rss = api.memory_info().rss

    response = post(auth_client, project, fmt, data)

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert check(error["details"]), error
    # Nothing saved or charged; the API process built none of it; no child is left running.
    after = edl_get(project=project)
    assert (after["version"], after["tracks"]) == (before["version"], before["tracks"])
    assert list(CreditAccount.objects.filter(user=user).values_list("balance", flat=True)) == balance
    assert CreditTransaction.objects.filter(account__user=user).count() == entries
    assert api.memory_info().rss - rss < 64 * 1024**2
    server = confined.server_pid(confined.server_key(READ, confined.Limits()))
    assert server is not None and psutil.Process(server).children() == []


def test_a_reader_past_the_parse_budget_is_a_422_naming_what_ran_out(auth_client, project):
    before = edl_get(project=project)["version"]
    # A file within every bound, whose reading takes about 60 MB of address space: more than this test allows.
    data = files.fcpx_flat(5000).encode()
    with override_settings(AUTEUR_PARSE_MEMORY_MB=40):
        confined.stop_servers()  # the next server starts under this test's settings
        response = post(auth_client, project, "fcpxml", data)
    confined.stop_servers()
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "input_too_complex"
    assert error["details"]["cause"] in (confined.CAUSE_MEMORY, confined.CAUSE_CRASH)
    assert error["details"]["memory_mb"] == 40
    assert edl_get(project=project)["version"] == before


def test_the_largest_flat_file_the_limits_accept_is_read_whole(auth_client, project):
    """5,000 clips of FCPXML (the reader searched its resources per clip: 7 s of the API worker):
    read in full, every clip's media name answered for matching."""
    response = post(auth_client, project, "fcpxml", files.fcpx_flat(5000).encode())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "media_unmatched" and error["details"]["count"] == 5000


def test_a_clip_with_thousands_of_effects_keeps_what_a_clip_holds_and_costs_the_api_nothing(auth_client, project,
                                                                                          make_media):
    """Each effect was checked against all those kept before it (quadratic: 4,000 effects, 17 s of
    the API's CPU). The child reads a clip's first effects only; the API checks each once."""
    make_media(project, name="a.mov", duration_ms=10_000)
    api = psutil.Process()
    cpu = api.cpu_times()
    response = post(auth_client, project, "otio", files.otio_clip(effects=4000).encode())
    spent = sum(api.cpu_times()[:2]) - sum(cpu[:2])
    assert response.status_code == 200, response.content
    [clip] = edl_get(project=project)["tracks"][0]["clips"]
    assert len(clip["effects"]) == 32
    assert {d["feature"] for d in response.json()["dropped"]} == {"volume", "effects"}
    assert spent < 5, spent  # a bound far above its cost (0.1 s), far below the quadratic's


def test_names_like_an_unmatched_one_are_looked_for_only_within_a_bound(auth_client, project, make_media,
                                                                      monkeypatch):
    from projects.edl.interchange import importing as interchange
    for n in range(4):
        make_media(project, name=f"interview_take{n}.mov", duration_ms=10_000)
    edl = ("TITLE: t\n001  AX       V     C        00:00:01:00 00:00:02:00 00:00:00:00 00:00:01:00\n"
           "* FROM CLIP NAME: interview_take9.mov\n")
    response = post(auth_client, project, "edl", edl.encode())
    assert response.json()["error"]["details"]["unmatched"][0]["candidates"]
    monkeypatch.setattr(interchange, "MAX_LIKENED_FILES", 3)  # a project of more files than searched
    response = post(auth_client, project, "edl", edl.encode())
    assert response.status_code == 422
    assert response.json()["error"]["details"]["unmatched"][0]["candidates"] == []


def test_a_media_list_nested_past_the_readers_recursion_is_a_400(auth_client, project):
    version = edl_get(project=project)["version"]
    upload = SimpleUploadedFile("cut.edl", b"TITLE: t\n")
    response = auth_client.post(f"/api/v1/projects/{project.pk}/timeline/import",
                                {"file": upload, "media": "[" * 100_000 + "]" * 100_000}, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert edl_get(project=project)["version"] == version


def test_one_files_words_on_thousands_of_its_clips_stop_at_what_a_timeline_holds(project):
    """Every clip that plays a word gets it: 200 words on 5,000 clips of one file asked for a million
    words (3 s and 476 MB of the API); the import's transcript stops at the timeline's word limit."""
    from projects.edl.documents import edl_limits
    from projects.edl.interchange.importing import transcript_onto
    media = "11111111-1111-1111-1111-111111111111"
    old = [{"id": "v", "type": "audio", "clips": [{"id": "c", "media_file_id": media, "start_ms": 0,
                                                  "duration_ms": 20_000, "in_point_ms": 0, "out_point_ms": 20_000,
                                                  "effects": [], "deleted": False}]}]
    words = [{"word": "w", "start_ms": 100 * n, "end_ms": 100 * n + 50, "confidence": 0.9, "deleted": False}
             for n in range(200)]
    transcript = {"segments": [{"id": "s", "clip_id": "c", "words": words, "deleted": False}]}
    new = [{"id": "v", "type": "audio", "clips": [
        {"id": f"c{n}", "media_file_id": media, "start_ms": n * 20_000, "duration_ms": 20_000, "in_point_ms": 0,
         "out_point_ms": 20_000, "effects": [], "deleted": False} for n in range(5000)]}]
    _, kept, before = transcript_onto(transcript, old, new)
    assert (kept, before) == (edl_limits().max_words, 200)
