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
from projects.edl.interchange_read import READ
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
