"""Reading an editor's timeline file: what runs in a confined child (gpu_tasks/confined.py), never in
the process that serves the request.

A timeline file is untrusted input to readers that are recursive (the XML adapters, OTIO's C++
JSON reader) and that follow references (a sequence used by another, a compound clip by its
parent, a composition mob by the one above it): a few kilobytes can ask them for millions of clips
or a stack deeper than the process has. So the work is bounded twice. Before any adapter builds
an object, the file's shape is checked (gpu_tasks/bounded.py: nesting depth and element counts,
entity declarations refused), and what its references expand to is counted, memoised over the
reference graph (each sequence, compound clip or mob counted once, a cycle refused), against the
timeline's clip limit. Then the format's reader reads it in a child of the confined server, under
memory, CPU and time limits, so whatever a check did not foresee costs that child, not the API.
The readers answer as the OpenTimelineIO adapters do, at a fraction of their cost over the largest
file the limits accept (readers.py: the adapters with their costliest methods replaced;
aaf.py: AAF's plain edits read without pyaaf2's object layer, the rest by the adapter).

`read` answers the file as plain JSON data (tracks of clips with their names, times in
milliseconds and effects), which the API matches to the project's media and saves
(projects/edl/interchange/); a file that cannot be read is refused as `Refused`, with the
API's error code. No Django here: this module is imported by the confined server.
"""

from __future__ import annotations

import gc
import os
import posixpath
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import aaf2
import opentimelineio as otio

from gpu_tasks.bounded import ShapeError, json_value, xml_tree
from gpu_tasks.confined import Refused
from projects.edl.frame_rates import cmx_as_declared, cmx_record_start, exact_rate, stored_rate
from projects.edl.interchange import aaf as aaf_fast
from projects.edl.interchange import documents, readers

READ = "projects.edl.interchange.read:read"

INVALID, LIMIT = "interchange_invalid", "edl_limit_exceeded"
MAX_DEPTH = 128  # XML elements or JSON brackets; the deepest real editor's file nests about 30
MAX_ELEMENTS = 500_000  # XML elements, JSON objects and arrays: a 5,000-clip export holds about 100,000
# The formats' adapters, by the API's format names (projects.edl.interchange.formats.FORMATS declares the rest).
ADAPTERS = {"otio": "otio_json", "fcpxml": "fcpx_xml", "fcp7xml": "fcp_xml", "edl": "cmx_3600", "aaf": "AAF"}
SPEED, MARKERS, PLAIN_EFFECTS = "speed", "markers", ("volume", "text", "crop", "fit")
# A timeline's times are a 32-bit count of milliseconds (about 24.8 days): a file's time past that is
# no timeline's, and never reaches the arithmetic that places a clip.
MAX_TIME_MS = 2**31 - 1
# Effects of one clip read at most (a clip holds 32; the rest is reported, not read one by one).
MAX_EFFECTS_READ = 64
# A CMX 3600 event line: its number first.
_CMX_EVENT = re.compile(rb"^[ \t]*\d+[ \t]", re.MULTILINE)  # (within a line: `\s` crossed blank lines)
# The adapters are OTIO plugins, loaded on first use: loaded here, once, when the confined server
# imports this module, so that no child pays for it.
for _adapter in ADAPTERS.values():
    otio.adapters.from_name(_adapter).module()


@dataclass(frozen=True)
class Bounds:
    max_clips: int
    max_tracks: int
    max_depth: int = MAX_DEPTH
    max_elements: int = MAX_ELEMENTS


def _invalid(fmt: str, message: str, **details: Any) -> Refused:
    return Refused(INVALID, message, {"format": fmt, **details})


def _too_many(what: str, count: int, maximum: int, *, counted: bool = False, expanded: bool = False) -> Refused:
    """Past a limit: `count` is exact once the file is read, or, when refused before (`counted`),
    what was counted when the limit was passed (the file holds at least that many)."""
    has = f"more than {maximum}" if counted else str(count)
    how = ", counting a sequence or compound clip each time it is used" if expanded else ""
    return Refused(LIMIT, f"The file has {has} {what}{how}; a timeline holds at most {maximum}.",
                   {"limit": what, "max": maximum, "count": count, "expanded": expanded})


def _shape(fmt: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except ShapeError as exc:
        raise _invalid(fmt, str(exc), **exc.details) from None


# ----------------------------------------------------------------------------- what references expand to


class _Expansion:
    """Clips counted over a reference graph, each node once (memoised), refused past `limit` or at a
    cycle. `children(node)` gives a node's direct clips and the nodes it references, which it holds
    all of (their counts add up), or one of (a third item, "one of": the largest counts)."""

    def __init__(self, fmt: str, limit: int, children: Callable[[Any], tuple[Any, ...]],
                 key: Callable[[Any], Any] = id) -> None:
        self.fmt, self.limit, self.children, self.key = fmt, limit, children, key
        self.memo: dict[Any, int] = {}

    def count(self, root: Any) -> int:
        """The clips `root` expands to, walked without recursion (a chain of references may be as
        long as the file allows)."""
        active: set[Any] = set()
        # (node, its children once they are asked for: then the nodes it references are counted)
        stack: list[tuple[Any, tuple[Any, ...] | None]] = [(root, None)]
        while stack:
            node, found = stack.pop()
            key = self.key(node)
            if found is not None:
                direct, refs, *one_of = found
                counts = [self.memo[self.key(r)] for r in refs]
                total = direct + (max(counts, default=0) if one_of else sum(counts))
                if total > self.limit:
                    raise _too_many("clips", total, self.limit, counted=True, expanded=bool(refs))
                self.memo[key] = total
                active.discard(key)
                continue
            if key in self.memo:
                continue
            if key in active:
                raise _invalid(self.fmt, "The file's references form a cycle (a sequence that contains itself).")
            active.add(key)
            found = self.children(node)
            stack.append((node, found))
            stack.extend((r, None) for r in found[1] if self.key(r) not in self.memo)
        return self.memo[self.key(root)]


def _fcp7_check(root: ET.Element, bounds: Bounds) -> None:
    """FCP7 XML: a clip item is one clip, or the sequence it holds; a top sequence holds its tracks
    in its `media`, a nested one in itself. The reader replaces an element that has an id by the
    element of that id it met first, at every level (media, video and audio, track, clip item,
    nested sequence), so an id counts as the largest of its elements: never less than the one the
    reader keeps."""
    by_id: dict[str, list[ET.Element]] = {}
    for element in root.iter():
        if "id" in element.attrib:
            by_id.setdefault(element.attrib["id"], []).append(element)

    def ref(element: ET.Element, role: str = "") -> tuple[str, Any, str]:
        return ("id", element.attrib["id"], role) if "id" in element.attrib else ("own", element, role)

    def children(node: tuple[str, Any, str]) -> tuple[Any, ...]:
        kind, subject, role = node
        if kind == "id":
            return 0, [("own", e, role) for e in by_id[subject]], "one of"
        element: ET.Element = subject
        tag = element.tag
        # (Children by tag through C's search of one level: ElementPath's "./tag" costs ten times as much.)
        if tag == "sequence" and (role == "top" or element.find("media") is not None):
            media = element.find("media")
            return 0, [] if media is None else [ref(media)]
        if tag in ("sequence", "media"):
            return 0, [ref(e) for e in element if e.tag in ("video", "audio")]
        if tag in ("video", "audio"):
            return 0, [ref(e) for e in element if e.tag == "track"]
        if tag == "track":
            return 0, [ref(e) for e in element if e.tag in ("clipitem", "generatoritem")]
        if tag in ("clipitem", "generatoritem"):
            # A clip item is one clip, or the nested sequence it holds: that one more (its stack is
            # built each time it is used, clips or none).
            nested = element.find("sequence")
            return (1, []) if nested is None else (1, [ref(nested, "nested")])
        return 0, []

    def key(node: tuple[str, Any, str]) -> Any:
        kind, subject, role = node
        return (kind, subject if kind == "id" else id(subject), role)

    expansion = _Expansion("fcp7xml", bounds.max_clips, children, key)
    total = 0
    for top in [*root.iterfind("./sequence"), *root.iterfind(".//children/sequence")]:
        total += expansion.count(ref(top, "top"))
        if total > bounds.max_clips:
            raise _too_many("clips", total, bounds.max_clips, counted=True, expanded=True)


def _fcpx_check(root: ET.Element, bounds: Bounds) -> None:
    """FCPXML: every clip (`asset-clip`, `video`, `audio`) below a sequence is one; a `ref-clip`
    expands to the sequence of the compound clip (`media`) it names."""
    media: dict[str | None, ET.Element] = {}
    for element in root.iterfind("./resources/media"):
        media.setdefault(element.get("id"), element)

    def children(sequence: ET.Element) -> tuple[int, list[Any]]:
        direct, refs = 0, []
        for element in sequence.iter():
            if element.tag in ("video", "audio", "asset-clip"):
                direct += 1
            elif element.tag == "ref-clip":
                direct += 1  # the compound clip itself: built each time it is used, clips or none
                compound = media.get(element.get("ref"))
                inner = compound.find("./sequence") if compound is not None else None
                if inner is None:
                    raise _invalid("fcpxml", f"A ref-clip names a compound clip the file does not hold: "
                                             f"{str(element.get('ref'))[:100]!r}.")
                refs.append(inner)
        return direct, refs

    expansion = _Expansion("fcpxml", bounds.max_clips, children)
    # What the reader reads: the first event's projects (in a library), an event's projects, a
    # project's sequence, or else the clips at the top of the document.
    event = root.find("./library/event") if root.find("./library") is not None else root.find("./event")
    projects = event.findall("./project") if event is not None else root.findall("./project")[:1]
    sequences = [s for s in (p.find("./sequence") for p in projects) if s is not None]
    if not projects:
        sequences = [ET.Element("sequence")]
        sequences[0].extend(e for e in root if e.tag in ("asset-clip", "ref-clip"))
    total = 0
    for sequence in sequences:
        total += expansion.count(sequence)
        if total > bounds.max_clips:
            raise _too_many("clips", total, bounds.max_clips, counted=True, expanded=True)


# The properties that hold an AAF container's parts, by its class.
_AAF_PARTS: dict[type, tuple[str, ...]] = {
    aaf2.components.OperationGroup: ("InputSegments", "Rendering"),
    aaf2.components.Selector: ("Selected", "Alternates"),
    aaf2.components.EssenceGroup: ("Choices", "StillFrame"),
    aaf2.components.NestedScope: ("Slots",),
}


def _aaf_check(f: Any, bounds: Bounds) -> None:
    """AAF: a source clip of a composition (or master) mob expands to that mob's slot, as the reader
    copies it; sequences, operation groups, selectors and nested scopes hold their parts."""
    def mob_slot(clip: Any) -> Any:
        try:
            mob = clip.mob
        except Exception:  # noqa: BLE001 - a mob the file does not hold reads as a gap
            return None
        if isinstance(mob, aaf2.mobs.CompositionMob | aaf2.mobs.MasterMob):
            slot = next((s for s in mob.slots if s.slot_id == clip.slot_id), None)
            return None if slot is None else (mob, slot)
        return None

    def parts(component: Any, depth: int = 0) -> Iterator[Any]:
        """The component's own clips and mob slots, through its containers."""
        if depth > bounds.max_depth:
            raise _invalid("aaf", f"The file nests its components deeper than {bounds.max_depth} levels.")
        if isinstance(component, aaf2.components.SourceClip):
            node = mob_slot(component)
            yield node if node is not None else 1
        elif isinstance(component, aaf2.components.Sequence):
            for part in component.components:
                yield from parts(part, depth + 1)
        else:
            # The reader follows every part of these (a selector's alternates too): so does the count.
            names = next((names for kind, names in _AAF_PARTS.items() if isinstance(component, kind)), ())
            for name in names:
                value = component.getvalue(name, None)
                several = value is not None and not isinstance(value, aaf2.core.AAFObject)
                for part in (list(value) if several else [value] if value is not None else []):
                    yield from parts(part, depth + 1)

    def children(node: tuple[Any, Any]) -> tuple[int, list[Any]]:
        direct, refs = 0, []
        for part in parts(node[1].segment):
            if part == 1:
                direct += 1
            else:
                refs.append(part)
                # A composition mob used as a clip: that one more (built each time, clips or none).
                direct += isinstance(part[0], aaf2.mobs.CompositionMob)
        return direct, refs

    def key(node: tuple[Any, Any]) -> Any:
        mob, slot = node
        return (str(mob.mob_id), slot.slot_id)

    expansion = _Expansion("aaf", bounds.max_clips, children, key)
    mobs = list(f.content.toplevel()) or list(f.content.compositionmobs()) or list(f.content.mastermobs())
    total = 0
    for mob in mobs:
        for slot in mob.slots:
            total += expansion.count((mob, slot))
            if total > bounds.max_clips:
                raise _too_many("clips", total, bounds.max_clips, counted=True, expanded=True)


def _otio_check(data: Any, bounds: Bounds) -> None:
    """OTIO JSON holds no references: its clips are the objects whose schema is a Clip, counted
    over the parsed value (its depth already bounded), before OTIO's reader builds any."""
    clips, stack = 0, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if str(value.get("OTIO_SCHEMA", "")).startswith("Clip."):
                clips += 1
                if clips > bounds.max_clips:
                    raise _too_many("clips", clips, bounds.max_clips, counted=True)
            stack.extend(v for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, dict | list))


# ----------------------------------------------------------------------------- reading


def _text(data: bytes, fmt: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid(fmt, "The file is not UTF-8 text.") from None


def _read_fcp7(text: str, bounds: Bounds) -> Any:
    root = _shape("fcp7xml", lambda: xml_tree(text, max_depth=bounds.max_depth, max_elements=bounds.max_elements))
    _fcp7_check(root, bounds)
    sequences = readers.Fcp7Reader(root).top_level_sequences()
    if not sequences:
        raise _invalid("fcp7xml", "The file holds no sequence.")
    return sequences[0] if len(sequences) == 1 else otio.schema.SerializableCollection(children=sequences)


def _read_fcpx(text: str, bounds: Bounds) -> Any:
    root = _shape("fcpxml", lambda: xml_tree(text, max_depth=bounds.max_depth, max_elements=bounds.max_elements))
    _fcpx_check(root, bounds)
    return documents.FcpxReader(root).to_otio()


def _read_otio(text: str, bounds: Bounds) -> Any:
    value = _shape("otio", lambda: json_value(text, max_depth=bounds.max_depth, max_containers=bounds.max_elements))
    _otio_check(value, bounds)
    return otio.adapters.read_from_string(text, adapter_name="otio_json")


def _aaf_fast_check(f: aaf_fast.AafFile, mobs: list[aaf_fast.Obj], bounds: Bounds) -> None:
    """`_aaf_check`, over the fast reader's objects."""
    too_deep = lambda: _invalid("aaf", f"The file nests its components deeper than {bounds.max_depth} levels.")  # noqa: E731
    expansion = _Expansion("aaf", bounds.max_clips, aaf_fast.check_parts(f, bounds.max_depth, too_deep),
                           aaf_fast.check_key(f))
    total = 0
    for mob in mobs:
        for slot in f.vector(mob, aaf_fast.SLOTS):
            total += expansion.count((mob, slot))
            if total > bounds.max_clips:
                raise _too_many("clips", total, bounds.max_clips, counted=True, expanded=True)


def _read_aaf(data: bytes, bounds: Bounds) -> Any:
    # A plain edit is read by this module's own reader (aaf.py: pyaaf2 and the adapter took
    # seconds over the largest file). Anything it does not cover, or trips on, is read as before:
    # its failure costs the time it took, never a different answer.
    try:
        f = aaf_fast.AafFile(data)
        mobs = aaf_fast.mobs_to_read(f)
        _aaf_fast_check(f, mobs, bounds)
        if len(mobs) == 1 and mobs[0].cls == "CompositionMob":
            return aaf_fast.read_timeline(f, mobs[0])
    except (Refused, MemoryError):
        raise
    except Exception:  # noqa: BLE001, S110 - `Unsupported`, or a file this reader does not expect: the adapter's
        pass
    # The AAF reader opens a file only; the child's own temporary folder holds it.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "timeline.aaf")
        with open(path, "wb") as handle:
            handle.write(data)
        with aaf2.open(path, "r") as f2:
            _aaf_check(f2, bounds)
        return otio.adapters.read_from_file(path, adapter_name="AAF")


def _read_cmx(text: str, rate: float, bounds: Bounds) -> Any:
    rate = exact_rate(rate)
    text = cmx_as_declared(text, rate)
    events = len(_CMX_EVENT.findall(text.encode()))
    # An event is one clip, a dissolve two: more lines than that is more clips than a timeline holds.
    if events > 2 * bounds.max_clips:
        raise _too_many("clips", events // 2, bounds.max_clips, counted=True)
    # What the adapter's `read_from_string` does (the child's environment names no OTIO plugin, so
    # OTIO runs no hook or media linker around it), with the faster parser.
    return readers.CmxReader(text, rate=float(rate)).timeline


def read_timeline(data: bytes, fmt: str, rate: float, bounds: Bounds) -> otio.schema.Timeline:
    """The file as an OTIO timeline, its shape and expansion checked first, read by the format's
    reader (as its adapter reads it) with the speed and volume that `interchange.documents` writes
    read too. Metadata the plain tracks never read (what the adapters copy from each element under
    their own namespace) may be left out."""
    try:
        if fmt == "aaf":
            result = _read_aaf(data, bounds)
        elif fmt == "edl":
            result = _read_cmx(_text(data, fmt), rate, bounds)
        else:
            reader = {"fcp7xml": _read_fcp7, "fcpxml": _read_fcpx, "otio": _read_otio}[fmt]
            result = reader(_text(data, fmt), bounds)
    except (Refused, MemoryError):
        raise
    except RecursionError:
        raise _invalid(fmt, "The file nests deeper than its reader can follow.") from None
    except Exception as exc:  # noqa: BLE001 - an adapter's failure on a malformed file has no one type
        raise _invalid(fmt, f"The file could not be read as {fmt}: {str(exc)[:300]}") from None
    if isinstance(result, otio.schema.SerializableCollection):
        result = next(iter(result.find_children(descended_from_type=otio.schema.Timeline)), None)
    if not isinstance(result, otio.schema.Timeline):
        raise _invalid(fmt, "The file holds no timeline.")
    if fmt == "fcp7xml":
        documents.fcp7_read_effects(result)
    return result


# ----------------------------------------------------------------------------- as plain data
#
# OTIO's Python bindings raise and catch a C++ exception for each metadata key that is absent and
# at the end of each walk over a dictionary or a list of effects: about 15 us each, more than the
# rest of a clip's conversion. So a dictionary is read through its keys (as many as its length)
# and a list by index. And a clip's place in its track is summed as the track is walked, where
# OTIO's `range_in_parent` walks every item before the clip (quadratic over a track).


def _ms(time: otio.opentime.RationalTime) -> int:
    return round(time.to_seconds() * 1000)


def _keys(mapping: Any) -> list[Any]:
    """An OTIO dictionary's keys, its iterator never run to its end."""
    iterator = iter(mapping)
    return [next(iterator) for _ in range(len(mapping))]


def _plain_mapping(mapping: Any) -> dict[str, Any]:
    """An OTIO dictionary's top level as a dict (its values as OTIO gives them)."""
    if isinstance(mapping, dict):
        return mapping
    return {key: mapping[key] for key in _keys(mapping)} if len(mapping) else {}


def _namespace(metadata: Any, namespace: str) -> dict[str, Any] | None:
    """An object's metadata under `namespace` (ours, `auteur`, or an adapter's), if it is a mapping."""
    ours = _plain_mapping(metadata).get(namespace)
    return _plain_mapping(ours) if isinstance(ours, Mapping) else None


def _field(ours: Mapping[str, Any] | None, key: str) -> str | None:
    value = ours.get(key) if ours is not None else None
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None


class _Names:
    """What a clip calls its media, best first: the reference's name, its file name, the clip's. A
    file name is worked out once per address (an editor's clips share a few media files)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def of(self, clip: otio.schema.Clip) -> list[str]:
        names = []
        reference = clip.media_reference
        if reference is not None and reference.name:
            names.append(str(reference.name))
        url = str(getattr(reference, "target_url", None) or "")
        if url:
            if url not in self.files:
                self.files[url] = unquote(posixpath.basename(urlparse(url).path or url))
            names.append(self.files[url])
        if clip.name:
            names.append(clip.name)
        return [n.strip()[:255] for n in names if n and n.strip()]


class _Dropped:
    """What the conversion could not carry: [feature, why, the clip's number or None], in order."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []

    def drop(self, feature: str, why: str, clip: int | None) -> None:
        self.items.append([feature, why, clip])


def _effects(clip: otio.schema.Clip, dropped: _Dropped, ident: int) -> tuple[list[dict[str, Any]], float]:
    effects: list[dict[str, Any]] = []
    rate = 1.0
    listed = clip.effects
    for index in range(len(listed)):
        if index == MAX_EFFECTS_READ:
            dropped.drop("effects", f"a clip's effects past its first {MAX_EFFECTS_READ} are not read", ident)
            break
        effect = listed[index]
        if isinstance(effect, otio.schema.LinearTimeWarp) and not isinstance(effect, otio.schema.FreezeFrame):
            scalar = float(effect.time_scalar)
            if 0.25 <= scalar <= 4 and abs(scalar - 1) > 1e-9:
                rate = scalar
                effects.append({"type": SPEED, "rate": round(scalar, 6)})
            elif abs(scalar - 1) > 1e-9:
                dropped.drop(SPEED, "a speed outside 0.25x-4x (or a reverse or freeze) is not a timeline speed",
                             ident)
            continue
        ours = _namespace(effect.metadata, "auteur")
        kind = ours.get("type") if ours is not None else None
        if ours is not None and kind in PLAIN_EFFECTS and effect.effect_name == f"auteur.{kind}":
            effects.append(dict(ours))
        else:
            dropped.drop("effects", "an editor's own effects have no equivalent here", ident)
    return effects, rate


class _Place:
    """Where each item of a track starts, summed as the track is walked: OTIO's own sum (each
    item's duration added, in order, from 0 at the clip's rate, transitions left out) while every
    duration is at one rate; else, or past an item whose duration cannot be computed, OTIO's
    `range_in_parent`, which computes it (or fails) as it always did. A clip's end is where the
    next item starts, so neighbours share their edge exactly."""

    def __init__(self) -> None:
        self.value = 0.0
        self.rate: float | None = None
        self.exact = True

    def placed(self, item: otio.core.Item) -> tuple[otio.opentime.RationalTime, otio.opentime.RationalTime]:
        """The item's (start, duration) in its track, its duration counted in."""
        start = self.value
        duration = self.add(item)
        if duration is None:
            placed = item.range_in_parent()
            return placed.start_time, placed.duration
        return otio.opentime.RationalTime(start, duration.rate), duration

    def add(self, item: Any) -> otio.opentime.RationalTime | None:
        """Count a (non-transition) item's duration in; its duration, while the sum is exact."""
        if not self.exact:
            return None
        try:
            duration: otio.opentime.RationalTime = item.duration()
        except Exception:  # noqa: BLE001 - the clip's `range_in_parent` raises it again, where it always did
            self.exact = False
            return None
        if self.rate is None:
            self.rate = duration.rate
        elif duration.rate != self.rate:
            self.exact = False
            return None
        self.value += duration.value
        return duration


def _plain_clip(item: otio.schema.Clip, start: otio.opentime.RationalTime, duration: otio.opentime.RationalTime,
                names: _Names, dropped: _Dropped, number: int) -> dict[str, Any]:
    source = item.source_range or item.trimmed_range()
    origin = getattr(item.media_reference, "available_range", None)
    in_ms = _ms(source.start_time - origin.start_time) if origin is not None else _ms(source.start_time)
    effects, rate = _effects(item, dropped, number)
    metadata = _plain_mapping(item.metadata)
    ours = _namespace(metadata, "auteur")
    if max(abs(_ms(start)), abs(_ms(start + duration)), abs(in_ms)) > MAX_TIME_MS:
        raise ValueError(f"a time past the longest a timeline holds ({MAX_TIME_MS} ms)")
    clip = {
        "number": number,
        "names": names.of(item), "media_file_id": _field(ours, "media_file_id"),
        "reel": _field(_namespace(metadata, "cmx_3600"), "reel"), "piece_id": _field(ours, "piece_id"),
        "start_ms": _ms(start), "duration_ms": _ms(duration), "end_ms": _ms(start + duration), "in_ms": in_ms,
        "rate": rate, "effects": effects, "fades": [], "markers": len(item.markers),
    }
    if isinstance(item.media_reference, otio.schema.GeneratorReference):
        clip["generator"] = str(item.media_reference.generator_kind or "generator")[:64]
    return clip


def _fade(transition: otio.schema.Transition, kind: str) -> dict[str, Any]:
    ours = _namespace(transition.metadata, "auteur") or {}
    target = ours.get("target", "both") if ours else "both"
    return {"kind": kind, "length_ms": _ms(transition.in_offset + transition.out_offset),
            "target": target if target in ("both", "video", "audio") else "both"}


COMPOUND = "compound_clips"
_FLATTENED = "compound clips and nested sequences are flattened onto the timeline, their clips kept where they play"
COMPOUND_EFFECTS = "a compound clip's own effects (its speed included) are not applied to its clips"
COMPOUND_MARKERS = "a compound clip's markers are not kept in the timeline"
COMPOUND_WHYS = (_FLATTENED, COMPOUND_EFFECTS, COMPOUND_MARKERS)


class _Tracks:
    """The timeline's tracks as plain data: each clip (numbered through the file, as the drops name
    it) with what names its media, where it plays (ms; its end is its own edge, rounded alone) and
    its effects; a dissolve from or to nothing is its clip's fade.

    A compound clip or nested sequence (a Stack in a track) is flattened: its clips are placed on
    the timeline where the compound plays them, cut to the part of it the compound shows. Its first
    track of the outer track's kind lands on that track, where the compound alone plays; its other
    tracks on tracks added after it (shared by the compounds of one track, which never overlap)."""

    def __init__(self, dropped: _Dropped) -> None:
        self.dropped = dropped
        self.tracks: list[dict[str, Any]] = []
        self.number = self.inner = 0
        self.names = _Names()
        self._added: dict[tuple[int, str, int], dict[str, Any]] = {}

    def read(self, timeline: otio.schema.Timeline, start: otio.opentime.RationalTime | None) -> list[dict[str, Any]]:
        """The tracks; a track that starts after `start` (its range starts before its first item:
        how a CMX 3600 list's first record time is read) says how much later (`lead_ms`)."""
        for track in timeline.tracks:
            entry = self._entry(track, (track.name or "")[:255],
                                _field(_namespace(track.metadata, "auteur"), "track_id"))
            shown = track.source_range
            if start is not None and shown is not None and shown.start_time < -start:
                entry["lead_ms"] = _ms(-shown.start_time - start)
            self.tracks.append(entry)
            self._walk(track, entry, None)
        # A compound's clips land as it is walked, its track's own once the track is: in time order
        # now, and a track added for a compound's lane that shows none of it is left out.
        for entry in self.tracks:
            entry["clips"].sort(key=lambda c: c["start_ms"])
        return [t for t in self.tracks if t["clips"] or not t.get("nested")]

    @staticmethod
    def _entry(track: Any, name: str, track_id: str | None) -> dict[str, Any]:
        kind = "video" if track.kind == otio.schema.TrackKind.Video else "audio"
        return {"kind": kind, "name": name, "track_id": track_id, "clips": []}

    def _onto(self, outer: dict[str, Any], inner: Any, nth: int, compound: str) -> dict[str, Any]:
        """The track an inner track of a compound on `outer` lands on (`nth` of its kind there)."""
        entry = self._entry(inner, "", None)
        if nth == 0 and entry["kind"] == outer["kind"]:
            return outer
        key = (id(outer), entry["kind"], nth)
        if key not in self._added:
            entry["name"] = f"{outer['name'] or outer['kind']} / {compound or 'compound clip'} {nth + 1}"[:255]
            entry["nested"] = True
            self._added[key] = entry
            self.tracks.append(entry)
        return self._added[key]

    def _walk(self, track: Any, entry: dict[str, Any], frame: tuple[float, float, float, str] | None) -> None:
        """Read `track`'s items onto `entry`. `frame`, inside a compound: (the timeline's time in
        seconds of the track's 0, the start and end of what the compound shows), and its name."""
        placed: list[dict[str, Any]] = []
        items = list(track)
        place = _Place()
        for i, item in enumerate(items):
            if isinstance(item, otio.schema.Transition):
                before = items[i - 1] if i else None
                after = items[i + 1] if i + 1 < len(items) else None
                if not isinstance(before, otio.schema.Clip) and isinstance(after, otio.schema.Clip):
                    placed.append({"transition": i + 1, **_fade(item, "fade_in")})
                elif isinstance(before, otio.schema.Clip) and not isinstance(after, otio.schema.Clip):
                    placed.append({"transition": i - 1, **_fade(item, "fade_out")})
                else:
                    self.dropped.drop("transitions", "a dissolve between two clips has no equivalent here", None)
                continue
            if isinstance(item, otio.schema.Clip):
                # The file's own clips are numbered 1, 2, ...; those inside compound clips -1, -2, ...
                if frame is None:
                    self.number += 1
                    number, where = self.number, f"track {track.name!r}"
                else:
                    self.inner -= 1
                    number, where = self.inner, f"compound clip {frame[3]!r}"
                try:
                    start, duration = place.placed(item)
                    clip = _plain_clip(item, start, duration, self.names, self.dropped, number)
                except (ValueError, TypeError, ArithmeticError, AttributeError) as exc:
                    # A time the file states that has no value (a rate of 0, say): the file's fault, named.
                    raise Refused(INVALID, f"Clip {abs(number)} ({str(item.name)[:100]!r}) of {where} has a time "
                                           f"that cannot be read: {str(exc)[:200]}.", {"clip": number}) from None
                if frame is not None and not _within(clip, start, duration, frame):
                    continue
                placed.append({"item": i, **clip})
            elif isinstance(item, otio.schema.Stack):
                self._compound(item, place, entry, frame)
            else:
                place.add(item)
        # Each fade onto the clip it belongs to, by the item's place in the track.
        by_item = {c["item"]: c for c in placed if "item" in c}
        for entry_item in placed:
            if "transition" in entry_item:
                owner = by_item.get(entry_item.pop("transition"))
                if owner is not None and entry_item["kind"] not in owner.get("cut", ()):
                    owner["fades"].append(entry_item)
                elif owner is not None:
                    self.dropped.drop("fades", "a fade cut off by a compound clip's trim", owner["number"])
            else:
                del entry_item["item"]
                entry_item.pop("cut", None)
                entry["clips"].append(entry_item)

    def _compound(self, stack: otio.schema.Stack, place: _Place, entry: dict[str, Any],
                  frame: tuple[float, float, float, str] | None) -> None:
        try:
            start, duration = place.placed(stack)
            shown = stack.trimmed_range()
        except Exception as exc:  # noqa: BLE001 - the file's times, as for a clip
            raise Refused(INVALID, f"The compound clip {str(stack.name)[:100]!r} has a time that cannot be read: "
                                   f"{str(exc)[:200]}.", {}) from None
        zero = frame[0] if frame is not None else 0.0
        begin, end = zero + start.to_seconds(), zero + (start + duration).to_seconds()
        if max(abs(begin), abs(end), abs(shown.start_time.to_seconds())) * 1000 > MAX_TIME_MS:
            raise Refused(INVALID, f"The compound clip {str(stack.name)[:100]!r} has a time past the longest a "
                                   f"timeline holds ({MAX_TIME_MS} ms).", {})
        if frame is not None:
            begin, end = max(begin, frame[1]), min(end, frame[2])
        self.dropped.drop(COMPOUND, _FLATTENED, None)
        if len(stack.effects):
            self.dropped.drop("effects", COMPOUND_EFFECTS, None)
        if len(stack.markers):
            self.dropped.drop(MARKERS, COMPOUND_MARKERS, None)
        if end <= begin:
            return
        inner_zero = zero + start.to_seconds() - shown.start_time.to_seconds()
        name = str(stack.name or "")[:100]
        counts: dict[str, int] = {}
        for inner in stack:
            if not isinstance(inner, otio.schema.Track):
                continue
            kind = "video" if inner.kind == otio.schema.TrackKind.Video else "audio"
            nth = counts[kind] = counts.get(kind, -1) + 1
            self._walk(inner, self._onto(entry, inner, nth, name), (inner_zero, begin, end, name))


def _within(clip: dict[str, Any], start: otio.opentime.RationalTime, duration: otio.opentime.RationalTime,
            frame: tuple[float, float, float, str]) -> bool:
    """A clip inside a compound, placed on the timeline and cut to what the compound shows; False
    where it shows none of it."""
    zero, begin, end, _ = frame
    a, b = zero + start.to_seconds(), zero + (start + duration).to_seconds()
    lo, hi = max(a, begin), min(b, end)
    if hi <= lo:
        return False
    cut = []
    if lo > a:
        clip["in_ms"] += round((lo - a) * 1000 * clip["rate"])
        cut.append("fade_in")
    if hi < b:
        cut.append("fade_out")
    clip["start_ms"], clip["end_ms"] = round(lo * 1000), round(hi * 1000)
    clip["duration_ms"] = clip["end_ms"] - clip["start_ms"]
    clip["cut"] = cut
    clip["nested"] = frame[3] or "compound clip"
    return True


def plain_tracks(timeline: otio.schema.Timeline, dropped: _Dropped,
                 start: otio.opentime.RationalTime | None = None) -> list[dict[str, Any]]:
    """The timeline's tracks as plain data (`_Tracks`)."""
    return _Tracks(dropped).read(timeline, start)


def file_rate(timeline: otio.schema.Timeline, fmt: str, rate: float) -> float:
    """The rate the file counts its frames at: its timeline's start (OTIO, FCP7 XML), else its
    first item's (FCPXML's format, AAF's edit rate). A CMX 3600 list states none: `rate`, which
    it was read at. A rate out of 1-240 is no timeline's: `rate` too."""
    found: float | None = None
    if fmt != "edl":
        start = timeline.global_start_time
        if start is not None:
            found = start.rate
        else:
            for track in timeline.tracks:
                item = next((i for i in track if not isinstance(i, otio.schema.Transition)), None)
                if item is not None:
                    try:
                        found = item.duration().rate
                    except Exception:  # noqa: BLE001 - a time without value: the conversion names it
                        found = None
                    break
    if found is None or not 1 <= found <= 240:
        found = rate
    return stored_rate(found)


def read(*, data: bytes, fmt: str, rate: float, max_clips: int, max_tracks: int) -> dict[str, Any]:
    """The confined child's work: the file read (checked, then by its reader) and answered as plain
    tracks, with what could not be carried; refused past the timeline's track and clip limits.

    The cyclic collector is paused meanwhile: the reading makes a few hundred thousand objects (an
    element tree, OTIO's objects, the plain tracks), each burst of which set off a full pass over
    every object of the child, imported modules included (a fifth of the largest file's reading);
    what they hold is freed by reference counting, and the child's memory limit bounds the rest."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        bounds = Bounds(max_clips=max_clips, max_tracks=max_tracks)
        timeline = read_timeline(data, fmt, rate, bounds)
        counts = {"tracks": len(timeline.tracks), "clips": sum(1 for _ in timeline.find_clips())}
        for what, maximum in (("tracks", max_tracks), ("clips", max_clips)):
            if counts[what] > maximum:
                raise _too_many(what, counts[what], maximum)
        dropped = _Dropped()
        start = cmx_record_start(_text(data, fmt), rate) if fmt == "edl" else None
        tracks = plain_tracks(timeline, dropped, start)
        if len(tracks) > max_tracks:  # the tracks of flattened compound clips counted in
            raise _too_many("tracks", len(tracks), max_tracks, expanded=True)
        return {"tracks": tracks, "dropped": dropped.items, "frame_rate": file_rate(timeline, fmt, rate)}
    finally:
        if collecting:
            gc.enable()
