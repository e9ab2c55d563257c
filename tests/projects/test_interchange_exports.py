"""Every valid timeline exports in every format, or is refused with a 4xx naming what the format
cannot hold; never a 500. A property test over generated timelines (tracks of both kinds, clips of
videos, sounds and still pictures, trims, speeds, fades, volume, text, crop and fit, transcript cuts,
media named with quotes, markup and `../`), each exported to every format and read back by the
import's own reader; and the cases that answered 500 before, kept as examples."""

from __future__ import annotations

import base64
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auteur.core.errors import ApplicationError
from projects.edl.interchange.export import timeline_export
from projects.edl.interchange.formats import FORMATS
from projects.edl.interchange.read import Bounds, read_timeline
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.projects.test_edl_support import editable

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

BOUNDS = Bounds(max_clips=5000, max_tracks=50)


def examples(default: int) -> int:
    """Generated timelines per property (this module's, the readers' and the round trip's): `default` in
    `make test`; AUTEUR_INTERCHANGE_EXAMPLES asks for more, a longer search (each run draws new ones)."""
    return int(os.environ.get("AUTEUR_INTERCHANGE_EXAMPLES", default))
SPEEDS = (0.25, 0.5, 0.75, 1.5, 2.0, 3.0, 4.0)
NAMES = ("interview.mp4", "Bob's \"best\" take <1> & more.mov", "../../etc/passwd.mov", "música ☃.wav",
         "still.png", "b roll.mp4")


@pytest.fixture
def library(project, make_media):
    """The project's files: videos, a sound and a still picture (no duration), oddly named."""
    return {
        "video": [make_media(project, name=NAMES[0], duration_ms=20_000, metadata={"width": 1920, "height": 1080}),
                  make_media(project, name=NAMES[1], duration_ms=9_000, metadata={"width": 640, "height": 360}),
                  make_media(project, name=NAMES[2], duration_ms=5_000)],
        "audio": [make_media(project, name=NAMES[3], type="audio", mime_type="audio/wav", duration_ms=30_000)],
        "image": [make_media(project, name=NAMES[4], type="image", mime_type="image/png", duration_ms=None)],
    }


@st.composite
def effects(draw: st.DrawFn, duration: int, rate: float) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    if rate != 1.0:
        chosen.append({"type": "speed", "rate": rate})
    target = st.sampled_from(("both", "video", "audio"))
    if draw(st.booleans()):
        chosen.append({"type": "fade_in", "duration_ms": draw(st.integers(1, duration)), "target": draw(target)})
    if draw(st.booleans()):
        chosen.append({"type": "fade_out", "duration_ms": draw(st.integers(1, duration)), "target": draw(target)})
    if draw(st.booleans()):
        gain = draw(st.floats(-60, 24, allow_nan=False))
        chosen.append({"type": "volume", "gain_db": round(gain, 2)})
    if draw(st.booleans()):
        chosen.append({"type": "text", "text": draw(st.sampled_from(("Hello", "<b>&'\"</b>"))),
                       "start_ms": draw(st.integers(0, duration - 1))})
    if draw(st.booleans()):
        chosen.append({"type": "crop", "x": 0.1, "y": 0.0, "width": 0.5, "height": 0.9})
    if draw(st.booleans()):
        chosen.append({"type": "fit", "mode": draw(st.sampled_from(("contain", "cover", "stretch")))})
    return chosen


@st.composite
def timelines(draw: st.DrawFn, library: dict[str, list[Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tracks, transcript segments): a valid timeline's content, clips back to back or spaced."""
    kinds = ["video", *draw(st.lists(st.sampled_from(("video", "audio")), max_size=3))]
    tracks: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    for t, kind in enumerate(kinds):
        track: dict[str, Any] = {"id": f"{kind}-{t}", "type": kind, "name": f"T{t}", "clips": []}
        at = draw(st.integers(0, 3000))
        for c in range(draw(st.integers(0, 5))):
            pool = library["video"] + (library["image"] if kind == "video" else library["audio"])
            media = draw(st.sampled_from(pool))
            if media.duration_ms is None:  # a still picture: any length, no speed
                inp, length, rate = 0, draw(st.integers(1, 8000)), 1.0
            else:
                inp = draw(st.integers(0, media.duration_ms - 40))
                length = draw(st.integers(40, media.duration_ms - inp))
                rate = draw(st.sampled_from((1.0, 1.0, *SPEEDS)))
            duration = round(length / rate)
            if duration < 1:
                continue
            ident = f"c{t}-{c}"
            track["clips"].append({
                "id": ident, "media_file_id": str(media.pk), "track_id": track["id"], "start_ms": at,
                "duration_ms": duration, "in_point_ms": inp, "out_point_ms": inp + length,
                "effects": draw(effects(duration, rate)), "deleted": False,
            })
            if media.duration_ms is not None and draw(st.booleans()):
                # Words on this clip, some deleted: the export cuts them out.
                words: list[dict[str, Any]] = []
                w = at
                while w + 200 <= at + duration and len(words) < 6:
                    words.append({"word": "w", "start_ms": w, "end_ms": w + 150, "confidence": 0.9,
                                  "deleted": draw(st.booleans())})
                    w += draw(st.integers(200, 900))
                if words:
                    segments.append({"id": f"s-{ident}", "speaker": "A", "start_ms": words[0]["start_ms"],
                                     "end_ms": words[-1]["end_ms"], "text": " ".join("w" for _ in words),
                                     "words": words, "deleted": False, "edited_text": None, "clip_id": ident})
            at += duration + draw(st.sampled_from((0, 0, 1, 33, 500)))
        tracks.append(track)
    segments.sort(key=lambda s: s["start_ms"])
    return tracks, segments


def export_everywhere(user: Any, project: Any, markers: bool = False,
                      compare: Callable[[bytes, str], Any] | None = None) -> int:
    """Each format's export: a file the import's reader reads, or a refusal a client can act on.
    `compare(data, fmt)`: one more check of each file written. The number of formats that wrote one."""
    written = 0
    for fmt in FORMATS:
        try:
            export = timeline_export(user=user, project=project, fmt=fmt, markers=markers)
        except ApplicationError as exc:
            assert exc.status_code < 500, (fmt, exc.code, exc.message)
            continue
        encoding, content = export.content()
        data = base64.b64decode(content) if encoding == "base64" else content.encode()
        assert data == export.data
        timeline = read_timeline(data, fmt, 30.0, BOUNDS)
        assert sum(1 for _ in timeline.find_clips()) <= export.pieces
        if compare is not None:
            compare(data, fmt)
        written += 1
    return written


def test_every_generated_timeline_exports_in_every_format_or_is_refused_with_a_4xx(user, project, library):
    """The files of the first `examples(12)` timelines are the readers' oracle too
    (test_interchange_readers.py): each is read by the import's readers and by the adapters' former
    path, and answered the same, and at least four formats write one. An export (an AAF file most
    of all) costs as much as that comparison: each timeline is exported once for both."""
    from tests.projects.test_interchange_readers import assert_same

    compared: list[bool] = []

    @settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
    @given(content=timelines(library), markers=st.booleans())
    def check(content: tuple[list[dict[str, Any]], list[dict[str, Any]]], markers: bool) -> None:
        doc = editable(edl_get(project=project))
        doc["tracks"], doc["transcript"] = content[0], {"generated_at": None, "segments": content[1], "pauses": []}
        edl_replace(project=project, expected_version=doc["version"], data=doc)
        if len(compared) < examples(12):
            assert export_everywhere(user, project, markers, lambda data, fmt: assert_same(data, fmt, 30.0)) >= 4
            compared.append(True)  # counted once it passed: a failing one is shrunk with the comparison
        else:
            export_everywhere(user, project, markers)

    with override_settings(AUTEUR_EDL_HISTORY=2):
        check()


@pytest.mark.parametrize("case", ["empty", "still", "still only audio"])
def test_the_timelines_that_answered_500_now_export(user, project, library, case):
    doc = editable(edl_get(project=project))
    still, sound = library["image"][0], library["audio"][0]
    video, audio = doc["tracks"]
    if case in ("still", "still only audio"):
        video["clips"] = [{"id": "p", "media_file_id": str(still.pk), "track_id": video["id"], "start_ms": 0,
                           "duration_ms": 3000, "in_point_ms": 0, "out_point_ms": 3000, "effects": [],
                           "deleted": False}]
    if case == "still only audio":
        audio["clips"] = [{"id": "m", "media_file_id": str(sound.pk), "track_id": audio["id"], "start_ms": 500,
                           "duration_ms": 1000, "in_point_ms": 0, "out_point_ms": 1000, "effects": [],
                           "deleted": False}]
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    export_everywhere(user, project)


def test_fcpxml_export_takes_sizes_from_the_probe_and_never_a_path_from_a_name(user, project, make_media, tmp_path,
                                                                               monkeypatch):
    """A media name is the user's: `../` in it named a server path that the FCPXML writer ran ffprobe
    on (whether it exists, and its frame size, came back in the file). Now no subprocess runs, and
    the format's name comes from the media row's own probe."""
    calls = tmp_path / "ffprobe-calls"
    stub = tmp_path / "bin" / "ffprobe"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho 1920x1080\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{os.environ['PATH']}")
    probed = make_media(project, name="interview.mp4", duration_ms=20_000, metadata={"width": 1920, "height": 1080})
    named = make_media(project, name="../../../../../../etc/hostname", duration_ms=20_000,
                       metadata={"width": 640, "height": 360})
    rate = round(float(edl_get(project=project)["settings"]["frame_rate"]), 2)
    for media, name in ((named, ""), (probed, f"FFVideoFormat1080p{rate:g}")):
        doc = editable(edl_get(project=project))
        video = doc["tracks"][0]
        video["clips"] = [{"id": "c", "media_file_id": str(media.pk), "track_id": video["id"], "start_ms": 0,
                           "duration_ms": 1000, "in_point_ms": 0, "out_point_ms": 1000, "effects": [],
                           "deleted": False}]
        edl_replace(project=project, expected_version=doc["version"], data=doc)
        root = ET.fromstring(timeline_export(user=user, project=project, fmt="fcpxml").data)
        # 640x360 has no FCPXML format name; what a path on the server holds never names one.
        assert [f.get("name") for f in root.iter("format")] == [name]
    assert not calls.exists()
