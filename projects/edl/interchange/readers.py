"""The interchange formats' readers, made fast for the largest file the import accepts: each is the
format's OpenTimelineIO adapter with the methods that cost the most replaced by equivalent code.

An import reads the file as plain tracks (`read.plain_tracks`): each clip's names,
times, effects, markers (counted) and our own metadata (`auteur`, and the CMX 3600 reel). These
readers give the same timeline as the adapters in all of that: the same items in the same order
with the same times, names, references and effects; the same failures on a malformed file. What
they leave out is what the conversion never reads: the metadata the adapters copy from every
element into each clip, reference and item under their own namespace (`fcp_xml`, `cmx_3600`'s
comments), which OTIO converts value by value into its C++ dictionaries and which cost more than
all the rest. tests/projects/test_interchange_readers.py compares the plain tracks of both paths
(bench/adapter_interchange_read.py) on generated exports and on editors' files.

No Django here: this module runs in the confined child that reads an upload.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import xml.etree.ElementTree as ET
from typing import Any

import opentimelineio as otio

# The adapter's module is a plugin of OTIO's (it imports OTIO relatively): loaded through OTIO.
_fcp7: Any = otio.adapters.from_name("fcp_xml").module()
_SPECIAL = frozenset("*[]@{}.:='\"()")

# ----------------------------------------------------------------------------- FCP7 XML


def _path_parts(path: str) -> list[str] | None:
    """The tags of a path of child tags ("./rate/timebase"), None for any other path."""
    parts = path[2:].split("/") if path.startswith("./") else []
    if not parts or not all(parts) or any(c in _SPECIAL for c in path[2:]):
        return None
    return parts


def _child_path(element: ET.Element, path: str, parts: list[str] | None) -> ET.Element | None:
    """`element.find(path)` for a path of child tags: the first match in document order, as
    ElementPath finds it, with C's search of one level (ElementPath's Python generators cost ten
    times as much); any other path goes to ElementPath."""
    if parts is None:
        return element.find(path)

    def walk(parent: ET.Element, depth: int) -> ET.Element | None:
        if depth == len(parts) - 1:
            return parent.find(parts[depth])
        for child in parent:
            if child.tag == parts[depth]:
                found = walk(child, depth + 1)
                if found is not None:
                    return found
        return None

    return walk(element, 0)


class _Context(_fcp7._Context):
    """The adapter's inherited values (a clip's rate is its own, else its track's, else its
    sequence's), each element's answer kept: the adapter searched an element's children again for
    every lookup, a track's thousands of clip items for each clip. The tree is not changed while
    it is read, so an element's answer does not change; nor does a context's rate."""

    def __init__(self, element: ET.Element | None = None, parent_elements: list[ET.Element] | None = None,
                 memo: dict[tuple[ET.Element, str], ET.Element | None] | None = None) -> None:
        super().__init__(element, parent_elements)
        self.memo = {} if memo is None else memo
        self.rate: tuple[Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        parts = _PATHS[key] if key in _PATHS else _PATHS.setdefault(key, _path_parts(key))
        for element in reversed(self.elements):
            memo_key = (element, key)
            if memo_key not in self.memo:
                self.memo[memo_key] = _child_path(element, key, parts)
            found = self.memo[memo_key]
            if found is not None:
                return found
        return default

    def __getitem__(self, key: str) -> ET.Element:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def context_pushing_element(self, element: ET.Element) -> _Context:
        for context_element in self.elements:
            if context_element == element:
                raise ValueError(f"element {element} already in context")
        return _Context(element, self.elements, self.memo)


_PATHS: dict[str, list[str] | None] = {}


def _rate(context: _Context) -> Any:
    """The adapter's `_rate_from_context`, once per context."""
    if context.rate is None:
        context.rate = (_fcp7._rate_from_context(context),)
    return context.rate[0]


def _timecode_time(tc_element: ET.Element, context: _Context) -> otio.opentime.RationalTime:
    """The adapter's `_time_from_timecode_element` (given a context), its lookups C's."""
    rate = _rate(context.context_pushing_element(tc_element))
    frame = tc_element.find("frame")
    if frame is not None:
        return otio.opentime.RationalTime(int(frame.text), rate)  # type: ignore[arg-type]
    tc_string_element = tc_element.find("string")
    if tc_string_element is None:
        raise ValueError("Timecode element missing required elements")
    return otio.opentime.from_timecode(tc_string_element.text, rate)


def _name(element: ET.Element) -> str:
    """The adapter's `_name_from_element`: the text of the `name` child, or ""."""
    name = element.find("name")
    if name is not None:
        return name.text if name.text is not None else ""
    return ""


class Fcp7Reader(_fcp7.FCP7XMLParser):
    """The FCP7 XML adapter's parser, given a tree already built within bounds
    (gpu_tasks.bounded.xml_tree). Its inherited values are looked up once per element (`_Context`);
    a clip item, its file and its filters are read as the adapter reads them, less the metadata
    (`fcp_xml`) it copied from every element of each. A filter's effect keeps its metadata: that is
    where `documents.fcp7_read_effects` finds a speed or a volume."""

    def __init__(self, element_tree: ET.Element) -> None:
        super().__init__(element_tree)
        self.files: dict[ET.Element, tuple[str, str, str | None, Any]] = {}

    def top_level_sequences(self) -> list[otio.schema.Timeline]:
        context = _Context()
        top_iter = self._derefed_iterfind(self._etree, "./sequence")
        project_and_bin_iter = self._derefed_iterfind(self._etree, ".//children/sequence")
        return [self.timeline_for_sequence(s, context) for s in itertools.chain(top_iter, project_and_bin_iter)]

    def item_and_timing_for_element(self, item_element: ET.Element, head_transition: Any, tail_transition: Any,
                                    context: _Context) -> tuple[Any, Any]:
        parent_rate = _rate(context)
        start_value = int(item_element.find("start").text)  # type: ignore[union-attr,arg-type]
        end_value = int(item_element.find("end").text)  # type: ignore[union-attr,arg-type]
        if start_value == -1:
            start = _fcp7._transition_cut_point(head_transition, context)
            transition_rate = _fcp7._rate_from_context(context.context_pushing_element(head_transition))
            start_offset = start - otio.opentime.RationalTime(
                int(head_transition.find("start").text), transition_rate)
        else:
            start = otio.opentime.RationalTime(start_value, parent_rate)
            start_offset = otio.opentime.RationalTime()
        if end_value == -1:
            end = _fcp7._transition_cut_point(tail_transition, context)
        else:
            end = otio.opentime.RationalTime(end_value, parent_rate)
        item_range = otio.opentime.TimeRange(start, (end - start))
        if item_element.tag in {"clipitem", "generatoritem"}:
            item = self.clip_for_element(item_element, item_range, start_offset, context)
        elif item_element.tag == "transitionitem":
            item = self.transition_for_element(item_element, context)
        else:
            item = otio.core.Item(name=f"unknown-{item_element.tag}", source_range=item_range)
        return item, item_range

    def clip_for_element(self, clipitem_element: ET.Element, item_range: Any, start_offset: Any,
                         context: _Context) -> Any:
        local_context = context.context_pushing_element(clipitem_element)
        name = _name(clipitem_element)
        file_element = self._derefed_element(clipitem_element.find("file"))
        sequence_element = self._derefed_element(clipitem_element.find("sequence"))
        if clipitem_element.tag == "generatoritem":
            generator_effect_element = clipitem_element.find("./effect[effecttype='generator']")
        else:
            generator_effect_element = None
        media_start_time = otio.opentime.RationalTime()
        if sequence_element is not None:
            # A nested sequence holds its tracks in its `media`, as a top sequence does (Premiere,
            # Final Cut Pro 7); the adapter looked for them in the sequence itself and read none.
            media = self._derefed_element(sequence_element.find("media"))
            item = self.stack_for_element(sequence_element if media is None else media, local_context)
            item.name = _name(sequence_element) or item.name
        elif file_element is not None or generator_effect_element is not None:
            if file_element is not None:
                media_reference = self.media_reference_for_file_element(file_element, local_context)
                timecode_element = file_element.find("timecode")
                if timecode_element is not None:
                    media_start_time = _timecode_time(timecode_element, local_context)
            else:
                media_reference = self.media_reference_for_effect_element(generator_effect_element)
            item = otio.schema.Clip(name=name, media_reference=media_reference)
        else:
            what = _fcp7._element_identification_string(clipitem_element)
            raise TypeError(f"Type of clip item is not supported {what}")
        # Markers: the adapter's (their rate is the clip's, looked up again just below).
        if clipitem_element.find("marker") is not None:
            item.markers.extend(_fcp7.markers_from_element(clipitem_element, context))
        clip_rate = _rate(local_context)
        in_value = float(clipitem_element.find("in").text)  # type: ignore[union-attr,arg-type]
        in_time = otio.opentime.RationalTime(in_value, clip_rate)
        source_start_time = in_time + media_start_time + start_offset
        duration = item_range.duration
        item.source_range = otio.opentime.TimeRange(source_start_time.rescaled_to(clip_rate),
                                                    duration.rescaled_to(clip_rate))
        for filter_element in clipitem_element:
            if filter_element.tag == "filter":
                item.effects.append(self.effect_from_filter_element(self._derefed_element(filter_element)))
        return item

    def media_reference_for_file_element(self, file_element: ET.Element, context: _Context) -> Any:
        local_context = context.context_pushing_element(file_element)
        # A file's fields, worked out once where they depend on the file alone (it states its own
        # rate, timebase and NTSC: nothing is inherited): clips of one file name it by its id, and
        # each gets a reference of its own.
        found = self.files.get(file_element)
        if found is not None:
            kind, name, value, available_range = found
            return self._reference(kind, name, value, available_range)
        media_ref_rate = _rate(local_context)
        name = _name(file_element)
        path_element = file_element.find("pathurl")
        path = path_element.text if path_element is not None else None
        mediasource_element = file_element.find("mediaSource")
        mediasource = mediasource_element.text if mediasource_element is not None else None
        timecode_element = file_element.find("timecode")
        if timecode_element is not None:
            start_time = _timecode_time(timecode_element, local_context)
            start_time = start_time.rescaled_to(media_ref_rate)
        else:
            start_time = otio.opentime.RationalTime(0, media_ref_rate)
        duration_element = file_element.find("duration")
        if duration_element is not None:
            duration = otio.opentime.RationalTime(float(duration_element.text), media_ref_rate)  # type: ignore[arg-type]
            available_range = otio.opentime.TimeRange(start_time, duration)
        elif timecode_element is not None:
            available_range = otio.opentime.TimeRange(start_time, otio.opentime.RationalTime(0, media_ref_rate))
        else:
            available_range = None
        kind, value = ("external", path) if path is not None else \
            ("generator", mediasource) if mediasource is not None else ("missing", None)
        if _child_path(file_element, "./rate/timebase", ["rate", "timebase"]) is not None \
                and _child_path(file_element, "./rate/ntsc", ["rate", "ntsc"]) is not None:
            self.files[file_element] = (kind, name, value, available_range)
        return self._reference(kind, name, value, available_range)

    @staticmethod
    def _reference(kind: str, name: str, value: str | None, available_range: Any) -> Any:
        if kind == "external":
            media_reference = otio.schema.ExternalReference(target_url=value, available_range=available_range)
            media_reference.name = name
            return media_reference
        if kind == "generator":
            return otio.schema.GeneratorReference(name=name, generator_kind=value, available_range=available_range)
        return otio.schema.MissingReference(name=name, available_range=available_range)


# ----------------------------------------------------------------------------- CMX 3600

_cmx: Any = otio.adapters.from_name("cmx_3600").module()
_EVENT_NUMBER = re.compile(r"^\d+")
_TIMECODE_TEXT = re.compile(r"[0-9:;.]{11}")


def _m2_speed(motion: str) -> str:
    """The speed of an M2 line (`<reel> <speed> <timecode>`), read from its right: what the
    adapter's pattern takes (the digits just before the timecode), in one pass where its pattern
    backtracked over every run of white space (cubic), and with a drop-frame time (`;`) too."""
    text = motion.rstrip()
    if len(text) < 11 or not _TIMECODE_TEXT.fullmatch(text[-11:]):
        raise AttributeError("'NoneType' object has no attribute 'group'")  # the adapter's failed match
    rest = text[:-11].rstrip()
    at = len(rest)
    while at and (rest[at - 1].isdigit() or rest[at - 1] == "."):
        at -= 1
    if at and rest[at - 1] == "-":
        at -= 1
    return rest[at:]
_NOT_A_DIGIT = re.compile(r"^\D")


class _Comments(_cmx.CommentHandler):
    """The adapter's comment handler, its patterns compiled once (it formatted and looked up ten
    patterns for each comment line)."""

    patterns = [(re.compile(_cmx.CommentHandler.regex_template.format(id=comment_id)), comment_type)
                for comment_id, comment_type in _cmx.CommentHandler.comment_id_map.items()]

    def parse(self, comment: str) -> None:
        for pattern, comment_type in self.patterns:
            match = pattern.match(comment)
            if match:
                comment_body = match.group("comment_body").strip()
                if comment_type == "locators":
                    self.handled.setdefault(comment_type, []).append(comment_body)
                else:
                    self.handled[comment_type] = comment_body
                break
        else:
            stripped = comment.lstrip("*").strip()
            if stripped:
                self.unhandled.append(stripped)


class ClipHandler(_cmx.ClipHandler):
    """The adapter's event reader; a plain event's clip (a file, black, bars or nothing named; no
    colour decision, locator or image sequence, which the adapter's own code reads) is made in one
    call where the adapter set its fields one by one through OTIO's attribute hooks. (Its name is
    the adapter's: a message of the adapter's names the class.)"""

    def make_clip(self, comment_data: dict[str, Any]) -> otio.schema.Clip:
        media = comment_data.get("media_reference")
        plain_file = media is None or self.reel in ("BL", "BLACK", "BARS") or not self.is_image_sequence(comment_data)
        if "asc_sop" in comment_data or "asc_sat" in comment_data or "locators" in comment_data or not plain_file:
            return super().make_clip(comment_data)
        name = str(self.clip_num)
        if self.reel in ("BL", "BLACK"):
            reference: Any = otio.schema.GeneratorReference(generator_kind="black")
        elif self.reel == "BARS":
            reference = otio.schema.GeneratorReference(generator_kind="SMPTEBars")
        elif media is not None:
            reference = otio.schema.ExternalReference(target_url=media)
        else:
            reference = otio.schema.MissingReference()
        if "clip_name" in comment_data:
            name = comment_data["clip_name"]
        elif media is not None and self.reel not in ("BL", "BLACK", "BARS"):
            name = os.path.splitext(os.path.basename(media))[0]
        if "dest_clip_name" in comment_data:
            name = comment_data["dest_clip_name"]
        source_range = otio.opentime.range_from_start_end_time(
            otio.opentime.from_timecode(self.source_tc_in, self.edl_rate),
            otio.opentime.from_timecode(self.source_tc_out, self.edl_rate))
        return otio.schema.Clip(name=name, media_reference=reference, source_range=source_range)


class CmxReader(_cmx.EDLParser):
    """The CMX 3600 adapter's parser, reading its lines in one pass (it took each from the front
    of the list of lines: quadratic), its comments with compiled patterns, and giving a clip only
    the metadata the import reads (`cmx_3600`'s reel): the adapter also copied every comment it
    did not understand into it, value by value into OTIO's dictionaries."""

    def parse_edl(self, edl_string: str, rate: float = 24) -> None:
        edl_lines = [line for line in (line.strip() for line in edl_string.splitlines()) if line]
        at = 0

        def take() -> str:
            nonlocal at
            if at >= len(edl_lines):
                raise IndexError("pop from empty list")  # the adapter's list.pop(0), past the end
            at += 1
            return edl_lines[at - 1]

        while at < len(edl_lines):
            line = take()
            if line.startswith("TITLE:"):
                self.timeline.name = line.replace("TITLE:", "").strip()
            elif line.startswith("FCM"):
                pass
            elif line.startswith("SPLIT"):
                audio_delay = video_delay = None
                if "AUDIO DELAY" in line:
                    audio_delay = line.split()[-1].strip()
                if "VIDEO DELAY" in line:
                    video_delay = line.split()[-1].strip()
                if audio_delay and video_delay:
                    raise _cmx.EDLParseError("both audio and video delay declared after SPLIT.")
                if not (audio_delay or video_delay):
                    raise _cmx.EDLParseError("either audio or video delay declared after SPLIT.")
                line_1 = take()
                line_2 = take()
                comments = []
                while at < len(edl_lines) and _NOT_A_DIGIT.match(edl_lines[at]):
                    comments.append(take())
                self.add_clip(line_1, comments, rate=rate)
                self.add_clip(line_2, comments, rate=rate)
            elif line[0].isdigit():
                transition_line = None
                comments = []
                event_id = int(_EVENT_NUMBER.match(line).group(0))  # type: ignore[union-attr]
                while at < len(edl_lines):
                    m = _EVENT_NUMBER.match(edl_lines[at])
                    if not m:
                        comments.append(take())
                    elif int(m.group(0)) == event_id:
                        if transition_line:
                            raise _cmx.EDLParseError(f"Invalid transition {edl_lines[at]}")
                        transition_line = take()
                    else:
                        break
                self.add_clip(line, comments, rate=rate, transition_line=transition_line)
            else:
                raise _cmx.EDLParseError("Unknown event type")
        for track in self.timeline.tracks:
            if track.source_range == track.available_range():
                track.source_range = None

    def add_clip(self, line: str, comments: list[str], rate: float = 24, transition_line: str | None = None) -> None:
        comment_handler = _Comments(comments)
        clip_handler = ClipHandler(line, comment_handler.handled, rate=rate, transition_line=transition_line)
        clip = clip_handler.clip
        transition = clip_handler.transition
        # The reel (not `AX`, the adapter's unknown source) is the only `cmx_3600` metadata read.
        if clip_handler.reel and clip_handler.reel != "AX":
            clip.metadata["cmx_3600"] = {"reel": clip_handler.reel}
        edl_rate = clip_handler.edl_rate
        record_in = otio.opentime.from_timecode(clip_handler.record_tc_in, edl_rate)
        record_out = otio.opentime.from_timecode(clip_handler.record_tc_out, edl_rate)
        src_duration = clip.duration()
        rec_duration = record_out - record_in
        if rec_duration != src_duration:
            motion = comment_handler.handled.get("motion_effect")
            freeze = comment_handler.handled.get("freeze_frame")
            if motion is not None or freeze is not None:
                clip.source_range = otio.opentime.TimeRange(start_time=clip.source_range.start_time,
                                                            duration=rec_duration)
                if freeze is not None:
                    clip.effects.append(otio.schema.FreezeFrame())
                    if clip.name.endswith(" FF"):
                        clip.name = clip.name[:-3]
                elif motion is not None:
                    fps = float(_m2_speed(motion))
                    clip.effects.append(otio.schema.LinearTimeWarp(time_scalar=fps / rate))
            elif self.ignore_timecode_mismatch:
                record_out = record_in + src_duration
            else:
                raise _cmx.EDLParseError(f"Source and record duration don't match: {src_duration} != "
                                         f"{rec_duration} for clip {clip.name}")
        tracks = self.tracks_for_channel(clip_handler.channel_code)
        for track in tracks:
            track_transition = transition
            if len(tracks) > 1:
                track_clip = copy.deepcopy(clip)
                if transition:
                    track_transition = copy.deepcopy(transition)
            else:
                track_clip = clip
            if track.source_range is None:
                zero = otio.opentime.RationalTime(0, edl_rate)
                track.source_range = otio.opentime.TimeRange(start_time=zero - record_in, duration=zero)
            track_end = track.duration() - track.source_range.start_time
            if record_in < track_end:
                if self.ignore_timecode_mismatch:
                    record_in = track_end
                    record_out = record_in + rec_duration
                else:
                    raise _cmx.EDLParseError(f"Overlapping record in value: {clip_handler.record_tc_in} for clip "
                                             f"{track_clip.name}")
            if record_in > track_end and len(track) > 0:
                gap = otio.schema.Gap()
                gap.source_range = otio.opentime.TimeRange(start_time=otio.opentime.RationalTime(0, edl_rate),
                                                           duration=record_in - track_end)
                track.append(gap)
                _cmx._extend_source_range_duration(track, gap.duration())
            if track_transition:
                if len(track) < 1:
                    raise _cmx.EDLParseError("Transitions can't be at the very beginning of a track")
                track.append(track_transition)
            track.append(track_clip)
            _cmx._extend_source_range_duration(track, track_clip.duration())
