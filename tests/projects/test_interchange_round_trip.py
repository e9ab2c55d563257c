"""Any timeline this API accepts, exported to each format and imported back, keeps its clips and
every edit point within one frame, at 23.976, 24, 25, 29.97 (drop-frame and not), 30, 50, 59.94
(drop-frame and not) and 60 frames a second.

A property test over generated timelines (tracks of both kinds, clips back to back or spaced,
trims, speeds, fades, volume, stills, transcript cuts): each is exported by the export itself and
imported by the import itself (its confined reader, its matching, its save), and the imported
clips are compared with the pieces the export wrote: the same number, each starting and ending
within a frame of where it played, its source in point within a frame of the timeline (`speed`
frames of a retimed clip's source), and the timeline at the file's rate."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from auteur.core.errors import ApplicationError
from projects.edl.cuts import cut_tracks, transcript_cuts
from projects.edl.effects import clip_speed
from projects.edl.frame_rates import exact_rate
from projects.edl.interchange.export import timeline_export
from projects.edl.interchange.formats import FORMATS
from projects.edl.interchange.importing import _clip_times, timeline_import
from projects.edl.selectors import edl_get
from projects.edl.services import edl_replace
from tests.projects.test_edl_support import editable
from tests.projects.test_interchange_exports import NAMES, examples, library, timelines  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_edl_store")]

# (the timeline's rate, drop-frame timecode where the rate has it)
RATES = [(23.976, False), (24.0, False), (25.0, False), (29.97, True), (29.97, False), (30.0, False), (50.0, False),
         (59.94, True), (59.94, False), (60.0, False)]


def exported_pieces(doc: Mapping[str, Any], fmt: str) -> list[dict[str, Any]]:
    """The pieces the export writes as clips: the render's pieces, each placed on whole frames as the
    export places them, less a piece with no frame of its own and the tracks the format drops."""
    rate = exact_rate(float(doc["settings"]["frame_rate"]))
    pieces = cut_tracks(doc["tracks"], transcript_cuts(doc.get("transcript") or {}, padding_ms=40))
    first_video = next((t["id"] for t in pieces if t["type"] == "video"), None)
    kept = []
    for track in pieces:
        if fmt == "edl" and track["id"] != first_video:
            continue  # a CMX 3600 list holds the first video track
        at = 0
        for piece in sorted(track["clips"], key=lambda p: int(p["start_ms"])):
            start = round(int(piece["start_ms"]) * rate / 1000)
            end = round((int(piece["start_ms"]) + int(piece["duration_ms"])) * rate / 1000)
            if end - max(start, at) <= 0:
                continue
            start = max(start, at)
            kept.append({"kind": track["type"], "media": str(piece["media_file_id"]), "start_f": start, "end_f": end,
                         "in_ms": int(piece["in_point_ms"]), "speed": clip_speed(piece)})
            at = end
    return kept


def check_round_trip(user: Any, project: Any, doc: dict[str, Any], fmt: str, drop_frame: bool) -> None:
    rate = exact_rate(float(doc["settings"]["frame_rate"]))
    frame = 1000 / rate
    try:
        export = timeline_export(user=user, project=project, fmt=fmt, drop_frame=drop_frame)
    except ApplicationError as exc:
        assert exc.status_code < 500, (fmt, exc.code, exc.message)
        return
    expected = exported_pieces(doc, fmt)
    result = timeline_import(user=user, project=project, data=export.data, fmt=fmt)
    imported = edl_get(project=project)
    assert abs(result.frame_rate - float(doc["settings"]["frame_rate"])) < 0.001, (fmt, result.frame_rate)
    assert imported["settings"]["frame_rate"] == result.frame_rate
    clips = [{"kind": t["type"], "media": c["media_file_id"], **c} for t in imported["tracks"] for c in t["clips"]]
    assert len(clips) == len(expected), (fmt, drop_frame, len(clips), len(expected), result.dropped)
    order = ("kind", "media", "start_ms")
    for want, got in zip(sorted(expected, key=lambda e: (e["kind"], e["media"], e["start_f"], e["in_ms"])),
                         sorted(clips, key=lambda c: (*(c[k] for k in order), c["in_point_ms"])), strict=True):
        where = (fmt, drop_frame, want, {k: got[k] for k in ("start_ms", "duration_ms", "in_point_ms")})
        assert (got["kind"], got["media"]) == (want["kind"], want["media"]), where
        assert abs(got["start_ms"] - want["start_f"] * frame) <= frame + 1, where
        assert abs(got["start_ms"] + got["duration_ms"] - want["end_f"] * frame) <= frame + 1, where
        # A frame of the timeline is `speed` frames of a retimed clip's source.
        slack = frame * max(1.0, want["speed"])
        assert abs(got["in_point_ms"] - want["in_ms"]) <= slack + 1, where


def test_every_accepted_timeline_round_trips_in_every_format_at_every_common_rate(user, project,
                                                                                   library):  # noqa: F811
    # Each example is ten files written and read back: no "explain" phase (it traces every line
    # of a failing example again), and shrinking bounded.
    # (AUTEUR_ROUND_TRIP_EXAMPLES, or AUTEUR_INTERCHANGE_EXAMPLES for all three properties: more examples,
    # for a longer search than make test's.)
    @settings(max_examples=int(os.environ.get("AUTEUR_ROUND_TRIP_EXAMPLES", examples(12))), deadline=None,
              phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(content=timelines(library), rate=st.sampled_from(RATES))
    def check(content: tuple[list[dict[str, Any]], list[dict[str, Any]]], rate: tuple[float, bool]) -> None:
        for fmt in FORMATS:
            doc = editable(edl_get(project=project))
            doc["tracks"], doc["transcript"] = content[0], {"generated_at": None, "segments": content[1],
                                                            "pauses": []}
            doc["settings"]["frame_rate"] = rate[0]
            edl_replace(project=project, expected_version=doc["version"], data=doc)
            check_round_trip(user, project, editable(edl_get(project=project)), fmt, rate[1])

    with override_settings(AUTEUR_EDL_HISTORY=2):
        check()


@pytest.mark.parametrize(("rate", "drop_frame"), RATES)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_neighbouring_clips_of_every_rate_round_trip_without_overlapping(user, project, make_media,
                                                                       fmt, rate, drop_frame):
    """Clips back to back, each a whole number of frames long (the lengths a frame-based editor
    makes: 417, 416, 417 ms at 24 fps), at each rate: every format's file imports again, into a
    timeline whose own rate was another (30 fps), and keeps every edge. (Of the generated
    timelines' library, the one file these clips play: its 50 tests make no other.)"""
    video = make_media(project, name=NAMES[0], duration_ms=20_000, metadata={"width": 1920, "height": 1080})
    doc = editable(edl_get(project=project))
    exact = exact_rate(rate)
    edges = [round(n * 10 * 1000 / exact) for n in range(7)]
    doc["tracks"][0]["clips"] = [
        {"id": f"c{n}", "media_file_id": str(video.pk), "track_id": doc["tracks"][0]["id"], "start_ms": a,
         "duration_ms": b - a, "in_point_ms": 1000 + n * 7, "out_point_ms": 1000 + n * 7 + b - a, "effects": [],
         "deleted": False}
        for n, (a, b) in enumerate(itertools.pairwise(edges))]
    doc["settings"]["frame_rate"] = rate
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    export = timeline_export(user=user, project=project, fmt=fmt, drop_frame=drop_frame)
    # The timeline is at 30 fps when the file comes back; the file's own rate is what it takes.
    doc = editable(edl_get(project=project))
    doc["settings"]["frame_rate"] = 30.0
    doc["tracks"][0]["clips"] = []
    edl_replace(project=project, expected_version=doc["version"], data=doc)
    result = timeline_import(user=user, project=project, data=export.data, fmt=fmt,
                             frame_rate=rate if fmt == "edl" else None)
    assert result.frame_rate == rate and result.clips == 6, (result.frame_rate, result.clips, result.dropped)
    clips = sorted(edl_get(project=project)["tracks"][0]["clips"], key=lambda c: c["start_ms"])
    # Each edge where it was (a frame's edge at half a millisecond may round either way), and each
    # clip ending exactly where the next starts.
    got = [c["start_ms"] for c in clips] + [clips[-1]["start_ms"] + clips[-1]["duration_ms"]]
    assert all(abs(a - b) <= 1 for a, b in zip(got, edges, strict=True)), (got, edges)
    assert all(a["start_ms"] + a["duration_ms"] == b["start_ms"] for a, b in itertools.pairwise(clips))


@pytest.mark.parametrize(("in_ms", "expected_in"), [(8975.6, 8933), (8960.0, 8933), (8930.0, 8930)])
def test_a_clip_that_frame_rounding_puts_past_its_medias_end_starts_earlier(in_ms, expected_in):
    """Found by the round trip above: a 41 ms clip ending at a 9,000 ms file's end, written to OTIO at
    29.97 fps, came back with its in point rounded up half a frame and its length up a frame (42 ms
    past the end, more than one frame): its import was refused. Up to a frame and a half of overshoot
    now moves its in point back; the clip keeps its place and length."""
    start, length, got_in, out = _clip_times({"rate": 1.0, "start_ms": 367, "end_ms": 434, "duration_ms": 67,
                                              "in_ms": in_ms}, 0,
                                             9000, 1000 / exact_rate(29.97))
    assert (start, length, got_in, out) == (367, 67, expected_in, expected_in + 67)
    assert out <= 9000
