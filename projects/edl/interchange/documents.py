"""What the FCP7 XML, FCPXML and AAF adapters do not write or read themselves: a clip's constant speed
(all three) and its volume (the two XML formats), in each format's own form.

The adapters still write and read every document; these steps add one element to a clip the
adapter wrote, or read one the adapter skipped, and nothing else:

- FCP7 XML (xmeml): a `Time Remap` filter (effectid `timeremap`, speed in percent) and an
  `Audio Levels` filter (effectid `audiolevels`, a linear level) appended to the clipitem, after
  its `file` as the format orders them. The adapter's reader keeps unknown filters as effects
  with their XML as metadata; `fcp7_read_effects` turns those two back into speed and volume.
- FCPXML: a `timeMap` (two points, one constant speed) and an `adjust-volume` as the first
  children of the `clip`, where FCPXML's DTD puts timing and intrinsic audio parameters. The
  adapter's writer and reader are subclassed for exactly that (the adapter's version is pinned).
- AAF: the adapter writes a plain SourceClip; `aaf_add_speed` wraps it, in the written file, in
  the `Motion Control` time warp (an OperationGroup with a SpeedRatio) that Avid writes and the
  adapter's own reader already turns into a `LinearTimeWarp`.

In both XML formats a retimed clip's in point is counted in the clip's retimed frames (the source
in point divided by the speed), as Premiere, Resolve and Final Cut write it; `retime_in_points`
shapes a timeline so before writing, and the readers undo it. AAF counts the source frames.
"""

from __future__ import annotations

import copy
import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import aaf2
import opentimelineio as otio
from aaf2.rational import AAFRational
from otio_fcpx_xml_adapter import fcpx_xml

from projects.edl.frame_rates import exact_rate

XML_LEVEL_MAX = 3.98109  # an FCP7 Audio Levels value of +12 dB, the filter's maximum
_MOTION_CONTROL = uuid.UUID("9d2ea890-0968-11d3-8a38-0050040ef7d2")  # OperationDef_VideoSpeedControl
_SPEED_RATIO = uuid.UUID("72559a80-24d7-11d3-8a50-0050040ef7d2")  # ParameterDef_SpeedRatio


def clip_speed(clip: otio.schema.Clip) -> float:
    """The clip's constant speed: its `LinearTimeWarp`'s scalar, 1 without one."""
    for effect in clip.effects:
        if isinstance(effect, otio.schema.LinearTimeWarp) and not isinstance(effect, otio.schema.FreezeFrame):
            return float(effect.time_scalar)
    return 1.0


def clip_gain_db(clip: otio.schema.Clip) -> float | None:
    """The sum of the clip's volume changes in dB, None without one."""
    gains = [float(ours.get("gain_db") or 0) for effect in clip.effects
             if isinstance(ours := effect.metadata.get("auteur"), Mapping) and ours.get("type") == "volume"]
    return sum(gains) if gains else None


def _origin(clip: otio.schema.Clip) -> otio.opentime.RationalTime:
    available = clip.media_reference.available_range if clip.media_reference is not None else None
    if available is not None:
        return available.start_time
    return otio.opentime.RationalTime(0, clip.source_range.start_time.rate)


def retime_in_points(timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    """A copy whose retimed clips start at their in point in retimed frames (in / speed), and
    whose markers sit in that time too."""
    shaped = copy.deepcopy(timeline)
    for clip in shaped.find_clips():
        speed = clip_speed(clip)
        if speed == 1.0:
            continue
        origin, source = _origin(clip), clip.source_range
        rate = source.start_time.rate
        start = origin + otio.opentime.RationalTime(round((source.start_time - origin).rescaled_to(rate).value / speed),
                                                    rate)
        clip.source_range = otio.opentime.TimeRange(start, source.duration)
        for marker in clip.markers:
            at = marker.marked_range.start_time
            marker.marked_range = otio.opentime.TimeRange(
                origin + otio.opentime.RationalTime((at - origin).rescaled_to(rate).value / speed, rate),
                marker.marked_range.duration)
    return shaped


def _source_in_from_retimed(clip: otio.schema.Clip, speed: float) -> None:
    origin, source = _origin(clip), clip.source_range
    rate = source.start_time.rate
    start = origin + otio.opentime.RationalTime((source.start_time - origin).rescaled_to(rate).value * speed, rate)
    clip.source_range = otio.opentime.TimeRange(start, source.duration)


def _replace_effects(clip: otio.schema.Clip, effects: list[otio.schema.Effect]) -> None:
    del clip.effects[:]
    clip.effects.extend(effects)


def _volume_effect(gain_db: float) -> otio.schema.Effect:
    gain = max(-60.0, min(24.0, round(gain_db, 2)))
    return otio.schema.Effect(name="volume", effect_name="auteur.volume",
                              metadata={"auteur": {"type": "volume", "gain_db": gain}})


# ----------------------------------------------------------------------------- FCP7 XML

_MARK = "auteurclip"  # a clipitem attribute naming the clip, set through the adapter and removed after


def _param(parent: ET.Element, pid: str, value: str, low: str | None = None, high: str | None = None) -> None:
    param = ET.SubElement(parent, "parameter")
    ET.SubElement(param, "parameterid").text = pid
    ET.SubElement(param, "name").text = pid
    if low is not None and high is not None:
        ET.SubElement(param, "valuemin").text = low
        ET.SubElement(param, "valuemax").text = high
    ET.SubElement(param, "value").text = value


def _filter(name: str, effectid: str, category: str, mediatype: str) -> tuple[ET.Element, ET.Element]:
    element = ET.Element("filter")
    effect = ET.SubElement(element, "effect")
    for tag, text in (("name", name), ("effectid", effectid), ("effectcategory", category),
                      ("effecttype", category), ("mediatype", mediatype)):
        ET.SubElement(effect, tag).text = text
    return element, effect


def _time_remap(speed: float) -> ET.Element:
    element, effect = _filter("Time Remap", "timeremap", "motion", "video")
    _param(effect, "variablespeed", "0", "0", "1")
    _param(effect, "speed", f"{speed * 100:g}", "-100000", "100000")
    _param(effect, "reverse", "FALSE")
    _param(effect, "frameblending", "FALSE")
    return element


def _audio_levels(gain_db: float) -> ET.Element:
    element, effect = _filter("Audio Levels", "audiolevels", "audiolevels", "audio")
    _param(effect, "level", f"{min(10 ** (gain_db / 20), XML_LEVEL_MAX):.6g}", "0", f"{XML_LEVEL_MAX}")
    return element


def fcp7_write(timeline: otio.schema.Timeline, drop_frame: bool = False) -> str:
    """The adapter's FCP7 XML of `timeline`, with each clip's speed and volume as filters, and its
    timecode shown drop-frame where asked (its times are frames either way)."""
    shaped = retime_in_points(timeline)
    shaped.metadata["fcp_xml"] = {"timecode": {"displayformat": "DF" if drop_frame else "NDF"}}
    extras: dict[str, tuple[float, float | None]] = {}
    for n, clip in enumerate(shaped.find_clips()):
        speed, gain = clip_speed(clip), clip_gain_db(clip)
        if speed != 1.0 or gain is not None:
            extras[str(n)] = (speed, gain)
            # The adapter writes a clip's `fcp_xml` metadata onto its clipitem, `@` keys as attributes.
            clip.metadata["fcp_xml"] = {f"@{_MARK}": str(n)}
    text: str = otio.adapters.write_to_string(shaped, adapter_name="fcp_xml")
    if not extras:
        return text
    root = ET.fromstring(text)  # noqa: S314 - the adapter's own output for our timeline, not an upload
    for item in root.iter("clipitem"):
        key = item.attrib.pop(_MARK, None)
        if key is None:
            continue
        speed, gain = extras[key]
        if speed != 1.0:
            item.append(_time_remap(speed))
        if gain is not None:
            item.append(_audio_levels(gain))
    ET.indent(root, "    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) or type(value).__name__ == "AnyVector" else [value]


def _fcp7_params(info: Mapping[str, Any]) -> dict[str, Any]:
    return {str(p.get("parameterid")): p.get("value") for p in _as_list(info.get("parameter"))
            if isinstance(p, Mapping)}


def fcp7_read_effects(timeline: otio.schema.Timeline) -> None:
    """Turn the reader's Time Remap (one constant speed, forwards) and Audio Levels (one level)
    effects into a `LinearTimeWarp` with the source in point, and a volume change; any other
    remap or level (keyframed, reversed, variable) stays an editor's own effect."""
    for clip in timeline.find_clips():
        if not len(clip.effects):  # most clips have none (and a walk over an empty list costs a C++ exception)
            continue
        effects: list[otio.schema.Effect] = []
        for effect in clip.effects:
            info = effect.metadata.get("fcp_xml")
            params = _fcp7_params(info) if isinstance(info, Mapping) else {}
            kind = info.get("effectid") if isinstance(info, Mapping) else None
            try:
                if kind == "timeremap" and str(params.get("variablespeed") or "0").strip() == "0" \
                        and str(params.get("reverse") or "FALSE").strip().upper() == "FALSE":
                    speed = float(params["speed"]) / 100
                    if speed > 0 and math.isfinite(speed):
                        if abs(speed - 1) > 1e-9:
                            _source_in_from_retimed(clip, speed)
                            effects.append(otio.schema.LinearTimeWarp(name="speed", time_scalar=speed))
                        continue
                if kind == "audiolevels":
                    level = float(params["level"])
                    if level >= 0 and math.isfinite(level):
                        if abs(level - 1) > 1e-6:
                            effects.append(_volume_effect(20 * math.log10(level) if level > 0 else -60.0))
                        continue
            except (KeyError, TypeError, ValueError):
                pass  # a keyframed value (no single `value`) is the editor's own effect
            effects.append(effect)
        _replace_effects(clip, effects)


# ----------------------------------------------------------------------------- FCPXML


def _seconds(value: Fraction) -> str:
    return f"{value.numerator}s" if value.denominator == 1 else f"{value.numerator}/{value.denominator}s"


def _fraction(time: otio.opentime.RationalTime) -> Fraction:
    return Fraction(time.value).limit_denominator(1_000_000) / Fraction(time.rate).limit_denominator(100_000)


def _seconds_of(text: str | None) -> Fraction:
    """An FCPXML time (`1001/30000s`), 0 where there is none."""
    return _parse_seconds(text) if text else Fraction(0)


def rational(rate: float) -> Fraction:
    """A frame rate as a fraction, NTSC rates exactly (30000/1001)."""
    return Fraction(exact_rate(rate)).limit_denominator(100_000)


def _parse_seconds(text: str | None) -> Fraction:
    if not text:
        raise ValueError("no time")
    return Fraction(text.strip().removesuffix("s"))


class _ChildIndex:
    """An element's children by (tag, attribute value), the first of each kept: the adapter's
    searches (`./asset[@src='...']`, one XPath per clip) made a lookup. An XPath built from a name
    broke on a quote in it, and searching per clip made a long timeline quadratic. Children are
    only ever appended, so the index reads the new ones as it is asked."""

    def __init__(self, parent: ET.Element, attribute: str) -> None:
        self.parent, self.attribute = parent, attribute
        self.seen = 0
        self.found: dict[tuple[str, str | None], ET.Element] = {}

    def get(self, tag: str, value: str | None) -> ET.Element | None:
        while self.seen < len(self.parent):
            child = self.parent[self.seen]
            self.seen += 1
            self.found.setdefault((child.tag, child.get(self.attribute)), child)
        return self.found.get((tag, value))


def format_name(width: int | None, height: int | None, rate: float) -> str:
    """FCPXML's name of a video format (`FFVideoFormat1080p24`) from the media's probed size; ""
    for a size that has no such name (or no size: a still, or sound only)."""
    if not width or not height or (width, height) not in ((3840, 2160), (1920, 1080), (1280, 720), (720, 480)):
        return ""
    return f"FFVideoFormat{height}p{round(rate, 2):g}"


class FcpxWriter(fcpx_xml.FcpxOtio):
    """The adapter's FCPXML writer; a clip also gets its speed (`timeMap`) and volume. A format's name
    comes from the media's own probed size (`frame_size` in the reference's `auteur` metadata), never
    from a path: the adapter ran ffprobe on a path it derived from the media's name. Resources are
    found by index, not by an XPath built from a name."""

    def __init__(self, otio_timeline: otio.schema.Timeline) -> None:
        super().__init__(otio_timeline)
        self._resources = {attribute: _ChildIndex(self.resource_element, attribute)
                           for attribute in ("src", "id", "name", "frameDuration")}
        self._event_clips = _ChildIndex(self.event_resource, "name")

    def _asset_by_path(self, path: str) -> ET.Element | None:
        return self._resources["src"].get("asset", path)

    def _asset_by_id(self, asset_id: str) -> ET.Element | None:
        return self._resources["id"].get("asset", asset_id)

    def _media_by_name(self, name: str) -> ET.Element | None:
        return self._resources["name"].get("media", name)

    def _media_by_id(self, media_id: str) -> ET.Element | None:
        return self._resources["id"].get("media", media_id)

    def _format_by_frame_rate(self, frame_rate: float) -> ET.Element | None:
        return self._resources["frameDuration"].get("format", self._framerate_to_frame_duration(frame_rate))

    @staticmethod
    def _framerate_to_frame_duration(framerate: float) -> str:
        """A frame's duration at any rate, NTSC rates exactly (`1001/30000s`): the adapter's table
        knew integer rates only and wrote an empty duration for 29.97."""
        known: str = fcpx_xml.FcpxOtio._framerate_to_frame_duration(framerate)
        exact = exact_rate(framerate)
        return known if known and exact == int(exact) else _seconds(1 / rational(exact))

    def _asset_clip_by_name(self, name: str) -> ET.Element | None:
        return self._event_clips.get("asset-clip", name)

    def _clip_format_name(self, clip: Any) -> str:
        if clip.schema_name() in ("Stack", "Track") or not clip.media_reference \
                or clip.media_reference.is_missing_reference:
            return ""
        ours = clip.media_reference.metadata.get("auteur")
        size = _as_list(ours.get("frame_size")) if isinstance(ours, Mapping) else []
        width, height = (int(size[0]), int(size[1])) if len(size) == 2 else (None, None)
        return format_name(width, height, float(clip.duration().rate))

    def _track_for_spine(self, track: otio.schema.Track, lane_id: int, spine: ET.Element, compound: Any) -> list[Any]:
        """The adapter's, with a connected clip's anchor and offset worked out in exact seconds: it
        truncated each time to whole frames at an integer rate, so a clip could land a frame early,
        or past every item of the primary storyline, where it found no anchor and failed."""
        for child in self._lanable_items(track.find_children()):
            if self._item_in_compound_clip(child) and not compound:
                continue
            child_element = self._element_for_item(child, lane_id, compound=compound)
            if not lane_id:
                spine.append(child_element)
                continue
            if child.schema_name() == "Gap":
                continue
            at = _fraction(track.trimmed_range_of_child(child).start_time)
            parent = self._anchor(spine, at)
            offset = at - _seconds_of(parent.get("offset")) + _seconds_of(parent.get("start"))
            child_element.set("offset", _seconds(offset) if offset else "0s")
            parent.append(child_element)
        return []

    @staticmethod
    def _anchor(spine: ET.Element, at: Fraction) -> ET.Element:
        """The item of the primary storyline that plays at `at` (seconds), as the adapter chose it."""
        for item in spine.iter():
            if item.tag not in ("clip", "asset-clip", "gap", "ref-clip") or item.get("lane") is not None:
                continue
            if item.tag == "gap" and item.find("./audio") is not None:
                continue
            offset = _seconds_of(item.get("offset"))
            if offset <= at < offset + _seconds_of(item.get("duration")):
                return item
        raise ValueError(f"no item of the primary storyline plays at {float(at):.3f} s")

    def _element_for_clip(self, item: otio.schema.Clip, asset_id: str, duration: str, lane: Any) -> ET.Element:
        element: ET.Element = super()._element_for_clip(item, asset_id, duration, lane)
        at = 0
        speed = clip_speed(item)
        if speed != 1.0:
            # Clip time t plays source time origin + (t - origin) x speed, over the whole media.
            origin = _fraction(_origin(item))
            ratio = Fraction(speed).limit_denominator(1000)
            available = item.media_reference.available_range if item.media_reference is not None else None
            end = _fraction(available.end_time_exclusive()) if available is not None else \
                origin + (_fraction(item.source_range.end_time_exclusive()) - origin) * ratio
            time_map = ET.Element("timeMap")
            ET.SubElement(time_map, "timept", {"time": _seconds(origin), "value": _seconds(origin), "interp": "linear"})
            ET.SubElement(time_map, "timept", {"time": _seconds(origin + (end - origin) / ratio),
                                               "value": _seconds(end), "interp": "linear"})
            element.insert(at, time_map)
            at += 1
        gain = clip_gain_db(item)
        if gain is not None:
            element.insert(at, ET.Element("adjust-volume", {"amount": f"{gain:g}dB"}))
        return element


# The FCPXML elements that play something on a timeline: the adapter's (clips of media, compound
# clips) and what it skipped without a word: titles, and the clips of a multicam (whose angles
# live in the resources), both read as a clip without media (GeneratorReference) that the import
# reports as dropped. A generator (a `video` whose `ref` names an effect) is one too.
_COMPOSABLE = (*fcpx_xml.COMPOSABLE_ELEMENTS, "title", "mc-clip")
_TIMING = ("clip", "asset-clip", "ref-clip", "title", "mc-clip", "sync-clip")


def fcpx_asset_src(asset: ET.Element) -> str:
    """The file an FCPXML asset names: its `src` (FCPXML 1.8 and before), else its original
    media's `media-rep` (1.9 and later), else its first `media-rep`."""
    src = asset.get("src")
    if src:
        return src
    reps = asset.findall("media-rep")
    original = next((r for r in reps if r.get("kind") == "original-media"), reps[0] if reps else None)
    return (original.get("src") or "") if original is not None else ""


class FcpxReader(fcpx_xml.FcpxXml):
    """The adapter's FCPXML reader, given a tree already built within bounds
    (gpu_tasks.bounded.xml_tree), with its resources found by index (the adapter searched them for
    every clip: quadratic in a long timeline) and its lanes filled in one pass. A clip's constant
    `timeMap` and single `adjust-volume` are read too (a varying map or a keyframed volume is
    reported as the editor's own effect).

    Where the adapter is wrong it is corrected: times are counted at the format's exact rate and
    rounded to the nearest frame (it truncated them at an integer rate: 29 frames a second for
    29.97), a format's frame duration may be any fraction, an asset's file is also found in its
    `media-rep` (FCPXML 1.9 on), and titles, generators and multicam clips are read as clips
    without media, where they broke the reading or vanished. A media reference carries none of
    the metadata the adapter copied into it from the event's clip of the same asset; that metadata
    is still checked as the adapter's conversion checked it (an `md` element without a key failed
    it), so the same files fail."""

    def __init__(self, root: ET.Element) -> None:  # the adapter's own parses the text again
        self.fcpx_xml = root
        self.child_parent_map = {c: p for p in root.iter() for c in p}
        self._by_id: dict[tuple[str, str | None], ET.Element] = {}
        for element in root.iterfind("./resources/*"):
            self._by_id.setdefault((element.tag, element.get("id")), element)
        event = root.find("./event")
        self._asset_clips: dict[str | None, ET.Element] = {}
        for element in (event if event is not None else root).iterfind("./asset-clip"):
            self._asset_clips.setdefault(element.get("ref"), element)
        self._rates: dict[str | None, Fraction] = {}
        self._metadata_checked: set[str | None] = set()

    def _asset_by_id(self, asset_id: str | None) -> ET.Element | None:
        return self._by_id.get(("asset", asset_id))

    def _assetclip_by_ref(self, asset_id: str | None) -> ET.Element | None:
        return self._asset_clips.get(asset_id)

    def _format_by_id(self, format_id: str | None) -> ET.Element | None:
        return self._by_id.get(("format", format_id))

    def _compound_clip_by_id(self, compound_id: str | None) -> ET.Element | None:
        return self._by_id.get(("media", compound_id))

    # Time: rational seconds counted in frames at the format's exact rate.

    def _rate(self, format_id: str | None) -> Fraction:
        if format_id not in self._rates:
            element = self._format_by_id(format_id)
            if element is None:
                raise ValueError(f"no format {str(format_id)[:100]!r}")
            frame = _parse_seconds(element.get("frameDuration"))
            if frame <= 0:
                raise ValueError("a frame duration that is not positive")
            self._rates[format_id] = rational(float(1 / frame))
        return self._rates[format_id]

    def _format_frame_rate(self, format_id: str | None) -> float:
        return float(self._rate(format_id))

    def _number_of_frames(self, time_value: str | None, format_id: str | None) -> int:
        if time_value is None or time_value == "0s":
            return 0
        return round(_parse_seconds(time_value) * self._rate(format_id))

    def _time(self, time_value: str | None, format_id: str | None) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(self._number_of_frames(time_value, format_id),
                                          self._format_frame_rate(format_id))

    def _time_range(self, element: ET.Element, format_id: str | None) -> otio.opentime.TimeRange:
        return otio.opentime.TimeRange(self._time(element.get("start", "0s"), format_id),
                                       self._time(element.get("duration"), format_id))

    def _timing_clip(self, clip: ET.Element) -> ET.Element:
        """The element that places `clip`: the clip that holds it (a `video` of a `clip`), else, for
        a `video` or `audio` of its own on a storyline (a generator), itself."""
        element: ET.Element | None = clip
        while element is not None and element.tag not in _TIMING:
            element = self.child_parent_map.get(element)
        if element is None:
            if clip.tag in ("video", "audio") and clip.get("duration") is not None:
                return clip
            raise ValueError("a clip outside any clip")
        return element

    def _format_id_for_clip(self, clip: ET.Element, default_format: Any) -> Any:
        if not clip.get("ref") or clip.tag in ("gap", "title", "mc-clip"):
            return default_format
        resource = self._asset_by_id(clip.get("ref"))
        if resource is None:
            media = self._compound_clip_by_id(clip.get("ref"))
            resource = media.find("sequence") if media is not None else None
        return resource.get("format", default_format) if resource is not None else default_format

    def _reference_from_id(self, asset_id: str | None, default_format: str | None) -> Any:
        asset = self._asset_by_id(asset_id)
        if asset is None:
            effect = self._by_id.get(("effect", asset_id))
            if effect is None:
                raise ValueError(f"a clip names a resource the file does not hold: {str(asset_id)[:100]!r}")
            # A generator (a solid colour, a pattern, a placeholder): a picture of its own, no file.
            return otio.schema.GeneratorReference(name=effect.get("name") or "", generator_kind="generator")
        src = fcpx_asset_src(asset)
        if not src:
            return otio.schema.MissingReference()
        format_id = asset.get("format", default_format)
        available_range = otio.opentime.TimeRange(start_time=self._time(asset.get("start"), format_id),
                                                  duration=self._time(asset.get("duration"), format_id))
        if asset_id not in self._metadata_checked:
            self._metadata_checked.add(asset_id)
            asset_clip = self._assetclip_by_ref(asset_id)
            if asset_clip is not None and any(e.get("key") is None for e in asset_clip.iter("md")):
                raise ValueError("key 'None' is not a string")  # OTIO's words for the adapter's {None: value}
        return otio.schema.ExternalReference(target_url=src, available_range=available_range)

    def _squence_to_stack(self, sequence_element: ET.Element, name: str = "", source_range: Any = None) -> Any:
        """The adapter's, with each lane's items grouped once and each track's length kept as it
        grows (it filtered every item per lane and summed the track again per item)."""
        stack = otio.schema.Stack(name=name, source_range=source_range)
        default_format = sequence_element.get("format")
        lanes: dict[str, list[dict[str, Any]]] = {}
        for element in sequence_element.iter():
            if element.tag not in _COMPOSABLE:
                continue
            composable = self._build_composable(element, default_format)
            offset, lane = self._offset_and_lane(element, default_format)
            lanes.setdefault(lane, []).append({"track": lane, "offset": offset, "composable": composable,
                                               "audio_only": self._audio_only(element)})
        for lane in sorted(lanes):
            items = sorted(lanes[lane], key=lambda k: k["offset"])
            track = otio.schema.Track(name=lane, kind=self._track_type(items))
            length = otio.opentime.RationalTime()  # the track's duration, as the adapter read it
            for item in items:
                frame_diff = int(item["offset"].value) - length.value
                if frame_diff > 0:
                    gap = self._create_gap(0, frame_diff, default_format)
                    track.append(gap)
                    length += gap.duration()
                track.append(item["composable"])
                length += item["composable"].duration()
            stack.append(track)
        return stack

    def _build_composable(self, element: ET.Element, default_format: Any) -> Any:
        if element.tag in ("title", "mc-clip"):
            # Read as a clip without media, for its place and length: a title's text, and a
            # multicam's angles, are not read.
            kind = "title" if element.tag == "title" else "multicam"
            return otio.schema.Clip(
                name=element.get("name") or kind,
                media_reference=otio.schema.GeneratorReference(name=element.get("name") or "", generator_kind=kind),
                source_range=self._time_range(element, default_format))
        composable = self._base_composable(element, default_format)
        if isinstance(composable, otio.schema.Clip):
            fcpx_read_adjustments(composable, self._timing_clip(element))
        return composable

    def _base_composable(self, element: ET.Element, default_format: Any) -> Any:
        """The adapter's composable, but for the markers' search (C's walk of the clip's elements)."""
        timing_clip = self._timing_clip(element)
        source_range = self._time_range(timing_clip, self._format_id_for_clip(element, default_format))
        if element.tag != "ref-clip":
            composable = otio.schema.Clip(name=timing_clip.get("name"),
                                          media_reference=self._reference_from_id(element.get("ref"), default_format),
                                          source_range=source_range)
        else:
            media_element = self._compound_clip_by_id(element.get("ref"))
            composable = self._squence_to_stack(media_element.find("./sequence"),  # type: ignore[union-attr,arg-type]
                                                name=media_element.get("name"),  # type: ignore[union-attr,arg-type]
                                                source_range=source_range)
        for marker in timing_clip.iter("marker"):  # its descendants called marker, as ".//marker" finds them
            if marker is not timing_clip:
                composable.markers.append(self._marker(marker, default_format))
        return composable


def fcpx_read_adjustments(clip: otio.schema.Clip, timing: ET.Element) -> None:
    # (Children by tag: C's search of one level, where ElementPath's "./tag" runs Python for each clip.)
    time_map = timing.find("timeMap")
    if time_map is not None:
        try:
            points = [(_parse_seconds(p.get("time")), _parse_seconds(p.get("value")))
                      for p in time_map.findall("timept")]
            (t0, v0), (t1, v1) = points[0], points[-1]
            ratio = (v1 - v0) / (t1 - t0)
            constant = ratio > 0 and all(abs((v - v0) - (t - t0) * ratio) < Fraction(1, 1000) for t, v in points)
        except (ValueError, ZeroDivisionError, IndexError):
            constant = False
        if constant:
            source = clip.source_range
            rate = source.start_time.rate
            start = v0 + (_fraction(source.start_time) - t0) * ratio
            clip.source_range = otio.opentime.TimeRange(
                otio.opentime.RationalTime(float(start * Fraction(rate).limit_denominator(100_000)), rate),
                source.duration)
            if ratio != 1:
                clip.effects.append(otio.schema.LinearTimeWarp(name="speed", time_scalar=float(ratio)))
        else:
            clip.effects.append(otio.schema.TimeEffect(name="timeMap", effect_name="timeMap"))
    volume = timing.find("adjust-volume")
    if volume is not None:
        try:
            if volume.find("param") is not None:
                raise ValueError("keyframed")
            gain = float((volume.get("amount") or "0dB").strip().removesuffix("dB"))
            if not math.isfinite(gain):
                raise ValueError("not a number")
            if gain != 0:
                clip.effects.append(_volume_effect(gain))
        except ValueError:
            clip.effects.append(otio.schema.Effect(name="adjust-volume", effect_name="adjust-volume"))


def fcpx_write(timeline: otio.schema.Timeline, drop_frame: bool = False) -> str:
    writer = FcpxWriter(retime_in_points(timeline))
    text: str = writer.to_xml()
    if drop_frame:
        # A sequence's timecode is shown non-drop unless it says otherwise (its times are seconds).
        text = text.replace("<sequence ", '<sequence tcFormat="DF" ', 1)
    return text


# ----------------------------------------------------------------------------- AAF


def _sequences(timeline: otio.schema.Timeline, mob: Any) -> Iterator[tuple[otio.schema.Track, Any]]:
    """Each written track with its sequence: the adapter writes one slot per non-empty track, in
    order, its sequence the slot's segment (picture) or the first input of its pan group (sound);
    a timecode slot has none."""
    tracks = [t for t in timeline.tracks if len(t)]
    sequences = []
    for slot in mob.slots:
        segment = slot.segment
        if isinstance(segment, aaf2.components.OperationGroup) and len(segment.segments):
            segment = segment.segments[0]
        if isinstance(segment, aaf2.components.Sequence):
            sequences.append(segment)
    if len(tracks) != len(sequences):
        raise ValueError("the AAF file's tracks are not the timeline's")
    yield from zip(tracks, sequences, strict=True)


def aaf_add_speed(timeline: otio.schema.Timeline, path: str) -> None:
    """Wrap each retimed clip's SourceClip in the written file in a Motion Control time warp: the
    group lasts the clip's frames on the timeline, the SourceClip its frames of source."""
    retimed = [c for c in timeline.find_clips() if clip_speed(c) != 1.0]
    if not retimed:
        return
    with aaf2.open(path, "rw") as f:
        mob = next(f.content.compositionmobs())
        op_def = f.create.OperationDef(_MOTION_CONTROL, "Motion Control")
        f.dictionary.register_def(op_def)
        op_def["IsTimeWarp"].value = True
        op_def["Bypass"].value = 0
        op_def["NumberInputs"].value = 1
        op_def["OperationCategory"].value = "OperationCategory_Effect"
        op_def["DataDefinition"].value = f.dictionary.lookup_datadef("picture")
        param_def = f.create.ParameterDef(_SPEED_RATIO, "SpeedRatio", "speed ratio",
                                          f.dictionary.lookup_typedef("Rational"))
        f.dictionary.register_def(param_def)
        for track, sequence in _sequences(timeline, mob):
            components = list(sequence.components)
            if len(components) != len(track):
                raise ValueError("the AAF sequence's components are not the track's items")
            for index, item in enumerate(track):
                speed = clip_speed(item) if isinstance(item, otio.schema.Clip) else 1.0
                if speed == 1.0:
                    continue
                source = components[index]
                inner = f.create.SourceClip(start=source.start, length=max(1, round(source.length * speed)),
                                            media_kind=source.media_kind)
                inner.mob, inner.slot_id = source.mob, source.slot_id
                group = f.create.OperationGroup(op_def, source.length)
                group.media_kind = source.media_kind
                # Avid's SpeedRatio is timeline frames per source frame: 1/2 plays at twice the speed.
                # A ratio equal to the group's length is how Avid marks a freeze frame, to readers
                # that compare its text ("4" for 4 frames): such a ratio is written unreduced (8/2).
                ratio = Fraction(1 / speed).limit_denominator(1000)
                value = AAFRational(ratio.numerator * 2, ratio.denominator * 2) if ratio == source.length else ratio
                group["Parameters"].append(f.create.ConstantValue(param_def, value))
                sequence.components[index] = group
                group.segments.append(inner)
