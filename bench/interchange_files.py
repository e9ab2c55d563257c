"""Timeline files written by others, shaped to cost the most: for bench/interchange_import.py and the
tests that attack the import with them.

Each hostile shape is a few kilobytes that a naive reader turns into seconds of CPU or gigabytes:
references that expand (a sequence or compound clip used ten times by the one above it, level after
level), nesting deeper than a recursive reader's stack, and flat files large enough that a reader
searching its resources per clip becomes quadratic. `largest` writes, in each format, the largest
file the import's limits accept (every clip a timeline may hold), as an editor's export would.
"""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from collections.abc import Callable

import aaf2
import aaf2.mobid
import opentimelineio as otio

RATE = 24


# ----------------------------------------------------------------------------- FCP7 XML (xmeml)


def _fcp7_file(ident: str, name: str) -> str:
    return (f'<file id="{ident}"><name>{name}</name><pathurl>file:///media/{name}</pathurl>'
            f"<rate><timebase>{RATE}</timebase></rate><duration>1000</duration></file>")


def _fcp7_clipitem(ident: str, start: int, inner: str) -> str:
    return (f'<clipitem id="{ident}"><name>{ident}</name><start>{start}</start><end>{start + 10}</end>'
            f"<in>0</in><out>10</out>{inner}</clipitem>")


def fcp7_nested(levels: int, fanout: int = 10) -> str:
    """Sequences nested `levels` deep, each used `fanout` times by the one above by its id (the first
    use defines it, the others name it): `fanout ** levels` clips of one file in a few KB."""
    def sequence(level: int) -> str:
        items = []
        for n in range(fanout):
            if level == levels:
                inner = _fcp7_file("f1", "a.mov") if n == 0 else '<file id="f1"/>'
            else:
                inner = sequence(level + 1) if n == 0 else f'<sequence id="s{level + 1}"/>'
            items.append(_fcp7_clipitem(f"c{level}-{n}", n * 10, inner))
        # The reader takes a nested sequence's tracks from the sequence itself, the top one's from its media.
        tracks = f"<video><track>{''.join(items)}</track></video>"
        return (f'<sequence id="s{level}"><name>s{level}</name><rate><timebase>{RATE}</timebase></rate>'
                + (f"<media>{tracks}</media>" if level == 0 else tracks) + "</sequence>")

    return f'<?xml version="1.0" encoding="UTF-8"?>\n<xmeml version="4">{sequence(0)}</xmeml>\n'


def fcp7_cycle() -> str:
    """A sequence whose clip item holds the sequence itself, by its id."""
    item = _fcp7_clipitem("c0", 0, '<sequence id="s1"/>')
    inner = (f'<sequence id="s1"><name>s1</name><rate><timebase>{RATE}</timebase></rate>'
             f"<video><track>{item}</track></video></sequence>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xmeml version="4"><sequence id="s0"><name>s0</name>'
            f"<rate><timebase>{RATE}</timebase></rate><media><video><track>{_fcp7_clipitem('c1', 0, inner)}"
            "</track></video></media></sequence></xmeml>\n")


def fcp7_track_references(tracks: int, clips: int) -> str:
    """One track of `clips` clip items, defined once and named by its id `tracks` times: a reader that
    follows ids at every level builds tracks x clips clips."""
    items = "".join(_fcp7_clipitem(f"c{n}", n * 10, _fcp7_file("f1", "a.mov") if n == 0 else '<file id="f1"/>')
                    for n in range(clips))
    refs = '<track id="t1"/>' * (tracks - 1)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xmeml version="4"><sequence id="s0"><name>s0</name>'
            f'<rate><timebase>{RATE}</timebase></rate><media><video><track id="t1">{items}</track>{refs}'
            "</video></media></sequence></xmeml>\n")


def fcp7_deep(depth: int) -> str:
    """Elements nested `depth` deep inside a clip item: a recursive reader's stack, or a tree's."""
    inner = "<a>" * depth + "</a>" * depth
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xmeml version="4"><sequence id="s0"><name>s</name>'
            f"<rate><timebase>{RATE}</timebase></rate><media><video><track>"
            f"{_fcp7_clipitem('c0', 0, _fcp7_file('f1', 'a.mov') + inner)}"
            "</track></video></media></sequence></xmeml>\n")


# ----------------------------------------------------------------------------- FCPXML

_FCPX_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<fcpxml version="1.9"><resources>'
              f'<format id="r1" frameDuration="1/{RATE}s" width="1920" height="1080"/>'
              '<asset id="a1" name="a" src="file:///media/a.mov" start="0s" duration="100s" hasVideo="1" '
              'format="r1"/>')


def fcpx_nested(levels: int, fanout: int = 10) -> str:
    """Compound clips (`media`) nested `levels` deep, each used `fanout` times by the one above
    (`ref-clip`): `fanout ** levels` clips in a few KB."""
    media = []
    for level in range(1, levels + 1):
        if level == levels:
            items = "".join(f'<asset-clip ref="a1" offset="{n}s" duration="1s" name="a"/>' for n in range(fanout))
        else:
            items = "".join(f'<ref-clip ref="m{level + 1}" offset="{n}s" duration="1s" name="m"/>'
                            for n in range(fanout))
        media.append(f'<media id="m{level}" name="m{level}"><sequence format="r1" duration="10s">'
                     f"<spine>{items}</spine></sequence></media>")
    top = "".join(f'<ref-clip ref="m1" offset="{n}s" duration="1s" name="m"/>' for n in range(fanout))
    return (_FCPX_HEAD + "".join(media) + '</resources><library><event name="e"><project name="p">'
            f'<sequence format="r1" duration="10s"><spine>{top}</spine></sequence></project></event></library>'
            "</fcpxml>\n")


def fcpx_empty_compounds(levels: int) -> str:
    """Compound clips nested `levels` deep, each used twice by the one above, the bottom one holding
    no clip at all: 2 ** levels compound clips built, and not one clip to count."""
    media = ['<media id="m0" name="m0"><sequence format="r1" duration="1s"><spine>'
             '<gap offset="0s" duration="1s"/></spine></sequence></media>']
    for level in range(1, levels + 1):
        media.append(f'<media id="m{level}" name="m{level}"><sequence format="r1" duration="2s"><spine>'
                     f'<ref-clip ref="m{level - 1}" offset="0s" duration="1s"/>'
                     f'<ref-clip ref="m{level - 1}" offset="1s" duration="1s"/></spine></sequence></media>')
    return (_FCPX_HEAD + "".join(media) + '</resources><library><event name="e"><project name="p">'
            f'<sequence format="r1" duration="1s"><spine><ref-clip ref="m{levels}" offset="0s" duration="1s"/>'
            "</spine></sequence></project></event></library></fcpxml>\n")


def otio_clip(*, frames: float = RATE, speed: float = 1.0, effects: int = 0) -> str:
    """One clip of `a.mov` lasting `frames`, at `speed`, with `effects` volume effects of ours."""
    warp = ([f'{{"OTIO_SCHEMA": "LinearTimeWarp.1", "effect_name": "LinearTimeWarp", "time_scalar": {speed}}}']
            if speed != 1.0 else [])
    volume = ('{"OTIO_SCHEMA": "Effect.1", "effect_name": "auteur.volume", '
              '"metadata": {"auteur": {"type": "volume", "gain_db": 0}}}')
    clip = ('{"OTIO_SCHEMA": "Clip.1", "name": "a.mov", "effects": [' + ", ".join(warp + [volume] * effects)
            + '], "source_range": {"OTIO_SCHEMA": "TimeRange.1", '
            f'"start_time": {{"OTIO_SCHEMA": "RationalTime.1", "rate": {RATE}, "value": 0}}, '
            f'"duration": {{"OTIO_SCHEMA": "RationalTime.1", "rate": {RATE}, "value": {frames!r}}}}}}}')
    return ('{"OTIO_SCHEMA": "Timeline.1", "name": "t", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": ['
            '{"OTIO_SCHEMA": "Track.1", "kind": "Video", "children": [' + clip + "]}]}}")


def cmx_padded(spaces: int) -> str:
    """A CMX 3600 list whose speed line and blank lines are padded with white space: patterns that
    backtrack over white space (cubic, or quadratic across lines) spend seconds on a few KB."""
    return ("TITLE: t\n" + "\n" * spaces + "FCM:" + " " * spaces + "DROP FRAME\n"
            "001  A001     V     C        00:00:00:00 00:00:01:00 00:00:00:00 00:00:02:00\n"
            "M2   A001" + " " * spaces + "12.0" + " " * spaces + "x\n")


def fcpx_cycle() -> str:
    """A compound clip whose sequence uses the compound clip itself."""
    return (_FCPX_HEAD + '<media id="m1" name="m1"><sequence format="r1" duration="10s"><spine>'
            '<ref-clip ref="m1" offset="0s" duration="1s" name="m"/></spine></sequence></media></resources>'
            '<library><event name="e"><project name="p"><sequence format="r1" duration="10s"><spine>'
            '<ref-clip ref="m1" offset="0s" duration="1s" name="m"/></spine></sequence></project></event>'
            "</library></fcpxml>\n")


def fcpx_flat(clips: int, assets: int | None = None) -> str:
    """`clips` clips in one spine, over `assets` assets (one each by default): a reader that searches
    the resources for each clip does clips x assets work."""
    assets = clips if assets is None else assets
    resources = "".join(f'<asset id="a{n}" name="c{n}" src="file:///media/c{n}.mov" start="0s" duration="100s" '
                        'hasVideo="1" format="r1"/>' for n in range(assets))
    spine = "".join(f'<asset-clip ref="a{n % assets}" offset="{n}s" duration="1s" name="c{n % assets}"/>'
                    for n in range(clips))
    return (_FCPX_HEAD.replace('<asset id="a1" name="a" src="file:///media/a.mov" start="0s" duration="100s" '
                               'hasVideo="1" format="r1"/>', "") + resources
            + '</resources><library><event name="e"><project name="p"><sequence format="r1" duration="10s">'
            f"<spine>{spine}</spine></sequence></project></event></library></fcpxml>\n")


# ----------------------------------------------------------------------------- OTIO JSON


def otio_flat(clips: int, *, rate: float = RATE) -> str:
    """`clips` clips in one track, written as OTIO writes them (a rate of 0 is what a hostile file says)."""
    timeline = timeline_of(clips, media=clips, rate=rate if rate else RATE)
    text = str(otio.adapters.write_to_string(timeline, adapter_name="otio_json"))
    return text if rate else text.replace(f'"rate": {float(RATE)}', '"rate": 0.0')


def otio_clips(clips: int) -> str:
    """`clips` clips in one track, each with only what OTIO's reader requires (an editor's export
    writes ten times as much per clip)."""
    def time(value: int) -> str:
        return f'{{"OTIO_SCHEMA": "RationalTime.1", "rate": {RATE}, "value": {value}}}'

    clip = ('{"OTIO_SCHEMA": "Clip.2", "name": "a.mov", "source_range": {"OTIO_SCHEMA": "TimeRange.1", '
            f'"start_time": {time(0)}, "duration": {time(RATE)}}}}}')
    return ('{"OTIO_SCHEMA": "Timeline.1", "name": "t", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": ['
            '{"OTIO_SCHEMA": "Track.1", "kind": "Video", "children": [' + ", ".join([clip] * clips) + "]}]}}")


def otio_deep(depth: int) -> str:
    """A document nested `depth` brackets deep (in a clip's metadata, where any JSON is allowed)."""
    return ('{"OTIO_SCHEMA": "Timeline.1", "name": "t", "metadata": {"x": ' + "[" * depth + "]" * depth
            + '}, "tracks": {"OTIO_SCHEMA": "Stack.1", "children": []}}')


def otio_deep_stacks(depth: int) -> str:
    """Stacks nested `depth` deep: a reader that walks the composition recursively."""
    inner = '{"OTIO_SCHEMA": "Gap.1", "source_range": null}'
    for _ in range(depth):
        inner = '{"OTIO_SCHEMA": "Stack.1", "children": [' + inner + "]}"
    return '{"OTIO_SCHEMA": "Timeline.1", "name": "t", "tracks": {"OTIO_SCHEMA": "Stack.1", "children": [' \
        '{"OTIO_SCHEMA": "Track.1", "kind": "Video", "children": [' + inner + "]}]}}"


# ----------------------------------------------------------------------------- AAF


def aaf_nested(levels: int, fanout: int = 10) -> bytes:
    """Composition mobs nested `levels` deep, each one's sequence holding `fanout` source clips of the
    one below (the bottom's, of a master mob): `fanout ** levels` clips."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "nested.aaf")
        with aaf2.open(path, "w") as f:
            master = f.create.MasterMob("a.mov")
            f.content.mobs.append(master)
            master.create_timeline_slot(RATE).segment = f.create.SourceClip(start=0, length=1000,
                                                                            media_kind="picture")
            below, below_slot = master, 1
            for level in range(levels, 0, -1):
                mob = f.create.CompositionMob(f"m{level}")
                if level == 1:
                    mob.usage = "Usage_TopLevel"
                f.content.mobs.append(mob)
                sequence = f.create.Sequence(media_kind="picture")
                for _ in range(fanout):
                    clip = f.create.SourceClip(start=0, length=10, media_kind="picture")
                    clip.mob, clip.slot_id = below, below_slot
                    sequence.components.append(clip)
                slot = mob.create_timeline_slot(RATE)
                slot.segment = sequence
                below, below_slot = mob, slot.slot_id
        with open(path, "rb") as handle:
            return handle.read()


def aaf_cycle() -> bytes:
    """A composition mob whose sequence plays the mob itself."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "cycle.aaf")
        with aaf2.open(path, "w") as f:
            mob = f.create.CompositionMob("loop")
            mob.usage = "Usage_TopLevel"
            f.content.mobs.append(mob)
            sequence = f.create.Sequence(media_kind="picture")
            slot = mob.create_timeline_slot(RATE)
            slot.segment = sequence
            clip = f.create.SourceClip(start=0, length=10, media_kind="picture")
            clip.mob, clip.slot_id = mob, slot.slot_id
            sequence.components.append(clip)
        with open(path, "rb") as handle:
            return handle.read()


def cmx_events(events: int) -> str:
    """A CMX 3600 list of `events` cuts."""
    def tc(frames: int) -> str:
        return f"{frames // (3600 * RATE):02d}:{frames // (60 * RATE) % 60:02d}:{frames // RATE % 60:02d}:" \
               f"{frames % RATE:02d}"
    lines = ["TITLE: many", "FCM: NON-DROP FRAME", ""]
    for n in range(events):
        lines += [f"{n + 1:06d}  AX       V     C        {tc(0)} {tc(RATE)} {tc(n * RATE)} {tc((n + 1) * RATE)}",
                  "* FROM CLIP NAME: a.mov", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the largest accepted


def timeline_of(clips: int, tracks: int = 1, *, media: int = 20, rate: float = RATE) -> otio.schema.Timeline:
    """`clips` one-second clips back to back over `tracks` video tracks, naming `media` files
    (`m0.mov` ...) by name, as an editor's export would. Each clip has its own in point (half a
    second after the one before): the FCP7 writer writes a clip equal to an earlier one as a
    reference to it, which an editor's export of distinct shots never does."""
    timeline = otio.schema.Timeline(name="largest")
    per_track = -(-clips // tracks)
    for t in range(tracks):
        track = otio.schema.Track(name=f"V{t + 1}", kind=otio.schema.TrackKind.Video)
        for n in range(min(per_track, clips - t * per_track)):
            name = f"m{n % media}.mov"
            reference = otio.schema.ExternalReference(
                target_url=f"file:///media/{name}",
                available_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate),
                                                        otio.opentime.RationalTime(rate * 3600, rate)))
            reference.name = name
            track.append(otio.schema.Clip(name=name, media_reference=reference, source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(round(n * rate / 2), rate), otio.opentime.RationalTime(rate, rate))))
        timeline.tracks.append(track)
    return timeline


def with_mob_ids(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    """A copy whose media references carry the AAF MobID the AAF writer names a clip's media by
    (as the export's do: projects.edl.interchange._mob_id), one per media file, stable."""
    shaped = timeline.deepcopy()
    for clip in shaped.find_clips():
        reference = clip.media_reference
        mob = aaf2.mobid.MobID.new()
        mob.material = uuid.uuid5(uuid.NAMESPACE_URL, str(getattr(reference, "target_url", "") or reference.name))
        reference.metadata["AAF"] = {"MobID": str(mob)}
    return shaped


def write(timeline: otio.schema.Timeline, fmt: str) -> bytes:
    """`timeline` in `fmt` (a format name of the API), written by the format's adapter."""
    if fmt == "aaf":
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "t.aaf")
            otio.adapters.write_to_file(with_mob_ids(timeline), path, adapter_name="AAF")
            with open(path, "rb") as handle:
                return handle.read()
    adapter = {"otio": "otio_json", "fcpxml": "fcpx_xml", "fcp7xml": "fcp_xml", "edl": "cmx_3600"}[fmt]
    kwargs = {"rate": RATE} if fmt == "edl" else {}
    return str(otio.adapters.write_to_string(timeline, adapter_name=adapter, **kwargs)).encode()


EXTENSIONS = {"otio": "otio", "fcpxml": "fcpxml", "fcp7xml": "xml", "edl": "edl", "aaf": "aaf"}

# Each hostile shape by name: (format, a function of a size giving the file).
HOSTILE: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "fcp7xml_nested_sequences": ("fcp7xml", lambda n: fcp7_nested(n).encode()),
    "fcp7xml_deep_elements": ("fcp7xml", lambda n: fcp7_deep(n).encode()),
    "fcpxml_nested_compounds": ("fcpxml", lambda n: fcpx_nested(n).encode()),
    "fcpxml_empty_compounds": ("fcpxml", lambda n: fcpx_empty_compounds(n).encode()),
    "fcpxml_flat": ("fcpxml", lambda n: fcpx_flat(n).encode()),
    "otio_deep_brackets": ("otio", lambda n: otio_deep(n).encode()),
    "otio_deep_stacks": ("otio", lambda n: otio_deep_stacks(n).encode()),
    "aaf_nested_mobs": ("aaf", aaf_nested),
    "fcp7xml_track_references": ("fcp7xml", lambda n: fcp7_track_references(n, 100).encode()),
    "otio_clips": ("otio", lambda n: otio_clips(n).encode()),
    "edl_events": ("edl", lambda n: cmx_events(n).encode()),
}


def as_file(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
