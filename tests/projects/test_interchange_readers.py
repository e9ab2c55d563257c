"""The import's readers answer as the OpenTimelineIO adapters did, file for file.

`projects.edl.interchange.read.read` reads an editor's file with faster readers (the adapters'
with their costliest methods replaced, and for AAF a reader of our own over the compound file);
the adapters' former path is kept as the oracle (bench/adapter_interchange_read.py). For every
file here both paths run, and the answers (the plain tracks, or the refusal with its code and
message) must be equal: files of several sizes and shapes as each format's adapter writes them,
timelines exported through the export itself (speeds, volumes, fades, text, cuts, markers: in the
export's property test, test_interchange_exports.py, which hands its files to `assert_same`), the
editors' files of the OpenTimelineIO projects' test data (tests/projects/interchange_samples/),
those files damaged, and the hostile shapes the import refuses.

One exception, stated where it is tested: an AAF file damaged where only pyaaf2 reads (its
metadictionary, its table of weak references) may be read by the AAF reader where pyaaf2 refused
it; on every file the adapter reads, the answer is the same.
"""

from __future__ import annotations

import functools
import json
import os
import random
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import opentimelineio as otio
import pytest

from bench import adapter_interchange_read as former
from bench import interchange_files as files
from gpu_tasks.confined import Refused
from projects.edl.interchange import aaf as interchange_aaf
from projects.edl.interchange import documents as interchange_formats
from projects.edl.interchange import read as interchange_read

SAMPLES = Path(__file__).parent / "interchange_samples"
EXTENSIONS = {".otio": "otio", ".fcpxml": "fcpxml", ".xml": "fcp7xml", ".edl": "edl", ".aaf": "aaf"}
SAMPLE_FILES = sorted(p for p in SAMPLES.glob("*/*") if p.suffix in EXTENSIONS)
MAX_CLIPS, MAX_TRACKS = 5000, 50


def outcome(read: Callable[..., dict[str, Any]], data: bytes, fmt: str, rate: float,
            max_clips: int = MAX_CLIPS) -> tuple[Any, ...]:
    """A path's answer: ("ok", the plain tracks as JSON) or ("refused", code, message, details)."""
    try:
        return "ok", json.dumps(read(data=data, fmt=fmt, rate=rate, max_clips=max_clips, max_tracks=MAX_TRACKS),
                                sort_keys=True)
    except Refused as exc:
        return "refused", exc.code, exc.message, json.dumps(exc.details, sort_keys=True, default=str)


def as_former(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    """The readers' answer in the terms the former path answered (`former.as_former`)."""
    return answer if answer[0] != "ok" else ("ok", json.dumps(former.as_former(json.loads(answer[1])), sort_keys=True))


def assert_same(data: bytes, fmt: str, rate: float = 24.0, max_clips: int = MAX_CLIPS) -> tuple[Any, ...]:
    before = outcome(former.read, data, fmt, rate, max_clips)
    after = outcome(interchange_read.read, data, fmt, rate, max_clips)
    assert as_former(after) == before
    return after


# ----------------------------------------------------------------------------- files as the adapters write them

SHAPES = [(1, 1, 1), (40, 1, 3), (300, 3, 20), (120, 4, 120), (500, 1, 100)]
# An AAF file of 500 clips costs the adapter's writer and reader 4 CPU-s and holds no part that the
# 300-clip one lacks: tracks of 100 source clips (a sequence's vector over several of the mini
# stream's sectors), media named again and again (20 master mobs), the mobs' index in the file's
# own sectors (not the mini stream). The readers read a sequence of any length the same way.
FILES = [pytest.param(fmt, *shape, id=f"{'-'.join(map(str, shape))}-{fmt}")
         for shape in SHAPES for fmt in ("otio", "fcpxml", "fcp7xml", "edl", "aaf")
         if not (fmt == "aaf" and shape == (500, 1, 100))]


@pytest.mark.parametrize(("fmt", "clips", "tracks", "media"), FILES)
def test_readers_answer_as_the_adapters_on_files_the_adapters_write(fmt, clips, tracks, media):
    if fmt == "edl" and tracks > 1:
        tracks = 1  # a CMX 3600 list holds one track
    data = files.write(files.timeline_of(clips, tracks, media=media), fmt)
    answer = assert_same(data, fmt)
    assert answer[0] == "ok"
    assert sum(len(t["clips"]) for t in json.loads(answer[1])["tracks"]) == clips
    if fmt == "aaf":  # plain edits: the AAF reader reads them itself (no `Unsupported`), not the adapter
        f = interchange_aaf.AafFile(data)
        mobs = interchange_aaf.mobs_to_read(f)
        assert len(mobs) == 1
        interchange_aaf.read_timeline(f, mobs[0])


def mixed_rates() -> bytes:
    """An OTIO timeline whose items are at different rates, a transition between two clips and
    one from a gap: the conversion's running sum of places gives way to OTIO's own there."""
    rt, tr = otio.opentime.RationalTime, otio.opentime.TimeRange
    track = otio.schema.Track(name="V", kind=otio.schema.TrackKind.Video)
    track.append(otio.schema.Gap(source_range=tr(rt(0, 25), rt(13, 25))))
    track.append(otio.schema.Transition(in_offset=rt(0, 24), out_offset=rt(5, 24)))
    for n, rate in enumerate((24, 24, 30, 24)):
        track.append(otio.schema.Clip(name=f"c{n}.mov", source_range=tr(rt(3 * n, rate), rt(17 + n, rate))))
        if n == 1:
            track.append(otio.schema.Transition(in_offset=rt(2, 24), out_offset=rt(3, 24)))
    uniform = otio.schema.Track(name="A", kind=otio.schema.TrackKind.Audio)
    for n in range(3):
        uniform.append(otio.schema.Clip(name="a.wav", source_range=tr(rt(n, 48000), rt(48000.5, 48000))))
    timeline = otio.schema.Timeline(tracks=[track, uniform])
    return str(otio.adapters.write_to_string(timeline, adapter_name="otio_json")).encode()


def test_readers_answer_as_the_adapters_where_a_track_mixes_rates():
    answer = assert_same(mixed_rates(), "otio")
    assert answer[0] == "ok"


# ----------------------------------------------------------------------------- timelines the export writes

# Generated timelines (speeds, fades with targets, volumes, text, crops, fits, still pictures,
# transcript cuts, media named with quotes and markup), exported to every format, markers or not,
# are compared with `assert_same` by the export's property test (test_interchange_exports.py), on
# the files it exports anyway: an export costs as much as the comparison.


# ----------------------------------------------------------------------------- editors' files


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_readers_answer_as_the_adapters_on_editors_files(path):
    data = path.read_bytes()
    fmt = EXTENSIONS[path.suffix]
    # A CMX 3600 list states no rate: it is read at the one given, at two here. Every other file
    # states its own, and the rate given is read for nothing the two paths answer (only the
    # import's `frame_rate` when the file's is missing, which `as_former` leaves out): once.
    for rate in (24.0, 30.0) if fmt == "edl" else (24.0,):
        assert_same(data, fmt, rate)


def damaged_xml(text: str, rnd: random.Random) -> str:
    root = ET.fromstring(text)
    elements = list(root.iter())
    parents = {child: parent for parent in elements for child in parent}
    element = rnd.choice(elements[1:])
    how = rnd.randrange(4)
    if how == 0:
        parents[element].remove(element)
    elif how == 1:
        element.text = rnd.choice(["", "x", "-1", "0", "1e9", None])
    elif how == 2 and element.attrib:
        element.attrib[rnd.choice(list(element.attrib))] = rnd.choice(["", "x", "0s", "1/0s", "r1", "clipitem-1"])
    else:
        parents[element].append(ET.fromstring(ET.tostring(element)))
    return ET.tostring(root, encoding="unicode")


def damaged_edl(text: str, rnd: random.Random) -> str:
    lines = text.splitlines()
    at = rnd.randrange(len(lines))
    how = rnd.randrange(3)
    if how == 0:
        del lines[at]
    elif how == 1:
        fields = lines[at].split()
        if fields:
            fields[rnd.randrange(len(fields))] = rnd.choice(["x", "000", "D", "C", "01:00:00:00", "AX", "M2"])
            lines[at] = " ".join(fields)
    else:
        lines.insert(at, lines[rnd.randrange(len(lines))])
    return "\n".join(lines)


TEXT_SAMPLES = [p for p in SAMPLE_FILES if p.suffix in (".xml", ".fcpxml", ".edl")]


@pytest.mark.parametrize("path", TEXT_SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_readers_refuse_and_answer_as_the_adapters_on_damaged_editors_files(path):
    """An element removed, emptied or doubled, an attribute or an EDL field changed, a line removed
    or repeated: twelve damaged copies of each file (three of a large one), many refused, each as
    the adapter refused it."""
    text = path.read_text(encoding="utf-8-sig")
    rnd = random.Random(path.name)
    for _ in range(12 if len(text) < 100_000 else 3):
        damaged = damaged_edl(text, rnd) if path.suffix == ".edl" else damaged_xml(text, rnd)
        assert_same(damaged.encode(), EXTENSIONS[path.suffix])


# ----------------------------------------------------------------------------- AAF

# Editors' AAF files the AAF reader reads itself (Avid's plain edits: transitions, fillers, speed
# effects, audio pan, timecode tracks); the others here go to the adapter (markers, a selector).
PLAIN_AAF = ["transitions.aaf", "linear_speed_effects.aaf", "timecode_test.aaf", "one_audio_clip.aaf", "simple.aaf"]


@functools.cache
def aaf_export(speeds: bool) -> bytes:
    """An AAF file as the export writes it (the adapter's writer, then `aaf_add_speed`)."""
    timeline = files.with_mob_ids(files.timeline_of(30, 2, media=4))
    if speeds:
        for clip in list(timeline.find_clips())[::3]:
            clip.effects.append(otio.schema.LinearTimeWarp(name="speed", time_scalar=2.0))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.aaf")
        otio.adapters.write_to_file(timeline, path, adapter_name="AAF")
        interchange_formats.aaf_add_speed(timeline, path)
        with open(path, "rb") as handle:
            return handle.read()


def test_the_aaf_reader_reads_plain_edits_itself_and_answers_as_the_adapter():
    """The export's AAF files and Avid's plain edits here; the adapter's own files of every shape
    (several tracks, a media file per clip or shared) are checked so in the test of those files.
    Avid's files are compared with the adapter's answer, at this rate, by the test of the editors'
    files: here they are read."""
    editors = [(SAMPLES / "otio-aaf-adapter" / name).read_bytes() for name in PLAIN_AAF]
    ours = [aaf_export(False), aaf_export(True)]
    for data in [*ours, *editors]:
        f = interchange_aaf.AafFile(data)
        mobs = interchange_aaf.mobs_to_read(f)
        assert len(mobs) == 1
        interchange_aaf.read_timeline(f, mobs[0])  # no `Unsupported`: not the adapter's path
        answer = assert_same(data, "aaf") if data in ours else outcome(interchange_read.read, data, "aaf", 24.0)
        assert answer[0] == "ok"


def test_a_damaged_aaf_file_is_answered_as_the_adapter_answered_whenever_the_adapter_reads_it():
    base = aaf_export(True)
    rnd = random.Random(7)
    same = read_where_pyaaf2_refused = 0
    for _ in range(40):
        data = bytearray(base)
        for _ in range(rnd.choice((1, 2, 8))):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        before = outcome(former.read, bytes(data), "aaf", 24.0)
        after = outcome(interchange_read.read, bytes(data), "aaf", 24.0)
        if before[0] == "ok" or after[0] == "refused":
            assert as_former(after) == before
            same += 1
        else:
            # Damaged where only pyaaf2 reads (its metadictionary, its weak-reference table): the
            # timeline's own objects are whole, and read.
            read_where_pyaaf2_refused += 1
    assert same > read_where_pyaaf2_refused


# ----------------------------------------------------------------------------- hostile files


@pytest.mark.parametrize("name", sorted(files.HOSTILE))
def test_hostile_files_are_refused_or_read_as_the_adapters_did(name):
    fmt, make = files.HOSTILE[name]
    size = {"fcp7xml_deep_elements": 200, "otio_deep_brackets": 200, "otio_deep_stacks": 200, "fcpxml_flat": 300,
            "otio_clips": 300, "edl_events": 300}.get(name, 3)
    for max_clips in (MAX_CLIPS, 50):
        assert_same(make(size), fmt, max_clips=max_clips)


# ----------------------------------------------------------------------------- the work per clip


def test_a_file_is_read_without_work_per_clip_that_searches_the_track_or_converts_metadata(monkeypatch):
    """The former readers searched a track's clip items again for each clip's inherited rate
    (FCP7), converted every element's metadata into OTIO's dictionaries (FCP7 and FCPXML), and the
    conversion asked OTIO for each clip's place (a walk over the clips before it). Counted, not
    timed: the counts do not grow with the file."""
    import xml.etree.ElementPath as element_path

    from opentimelineio.core import _core_utils

    counts = {"metadata": 0, "searches": 0, "places": 0}

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(_core_utils, "_value_to_any", counted("metadata", _core_utils._value_to_any))
    monkeypatch.setattr(element_path, "iterfind", counted("searches", element_path.iterfind))
    monkeypatch.setattr(otio.schema.Clip, "range_in_parent", counted("places", otio.schema.Clip.range_in_parent))
    for fmt in ("fcp7xml", "fcpxml"):
        seen = []
        for clips in (100, 400):
            data = files.write(files.timeline_of(clips, 1), fmt)
            counts.update(metadata=0, searches=0, places=0)
            interchange_read.read(data=data, fmt=fmt, rate=24.0, max_clips=MAX_CLIPS, max_tracks=MAX_TRACKS)
            seen.append(dict(counts))
        assert seen[0] == seen[1], (fmt, seen)
        assert seen[1]["places"] == 0 and seen[1]["metadata"] < 50 and seen[1]["searches"] < 50, (fmt, seen)


def test_an_avid_file_with_a_muted_clip_selector_is_counted_through_its_parts_and_read():
    """A Selector (Avid's muted clip, a multicam) holds its parts in properties: the expansion count
    follows them as the reader does (it read attributes pyaaf2 does not have, refusing every such
    file as unreadable)."""
    from projects.edl.interchange.read import read

    data = (SAMPLES / "otio-aaf-adapter" / "test_muted_clip.aaf").read_bytes()
    answer = read(data=data, fmt="aaf", rate=24.0, max_clips=5000, max_tracks=50)
    assert sum(len(track["clips"]) for track in answer["tracks"]) == 1
