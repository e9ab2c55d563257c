"""The interchange formats' readers, made fast for the largest file the import accepts: each is the
format's OpenTimelineIO adapter with the methods that cost the most replaced by equivalent code.

An import reads the file as plain tracks (`interchange_read.plain_tracks`): each clip's names,
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

import itertools
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


class _Context(_fcp7._Context):  # type: ignore[misc]
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
        return found  # type: ignore[no-any-return]

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


class Fcp7Reader(_fcp7.FCP7XMLParser):  # type: ignore[misc]
    """The FCP7 XML adapter's parser, given a tree already built within bounds
    (gpu_tasks.bounded.xml_tree). Its inherited values are looked up once per element (`_Context`);
    a clip item, its file and its filters are read as the adapter reads them, less the metadata
    (`fcp_xml`) it copied from every element of each. A filter's effect keeps its metadata: that is
    where `interchange_formats.fcp7_read_effects` finds a speed or a volume."""

    def top_level_sequences(self) -> list[otio.schema.Timeline]:
        context = _Context()
        top_iter = self._derefed_iterfind(self._etree, "./sequence")
        project_and_bin_iter = self._derefed_iterfind(self._etree, ".//children/sequence")
        return [self.timeline_for_sequence(s, context) for s in itertools.chain(top_iter, project_and_bin_iter)]

    def item_and_timing_for_element(self, item_element: ET.Element, head_transition: ET.Element | None,
                                    tail_transition: ET.Element | None, context: _Context) -> tuple[Any, Any]:
        parent_rate = _rate(context)
        start_value = int(item_element.find("start").text)  # type: ignore[union-attr,arg-type]
        end_value = int(item_element.find("end").text)  # type: ignore[union-attr,arg-type]
        if start_value == -1:
            start = _fcp7._transition_cut_point(head_transition, context)
            transition_rate = _fcp7._rate_from_context(context.context_pushing_element(head_transition))
            start_offset = start - otio.opentime.RationalTime(
                int(head_transition.find("start").text), transition_rate)  # type: ignore[union-attr,arg-type]
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
            item = self.stack_for_element(sequence_element, local_context)
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
            raise TypeError(f"Type of clip item is not supported {_fcp7._element_identification_string(clipitem_element)}")
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
        if path is not None:
            media_reference = otio.schema.ExternalReference(target_url=path, available_range=available_range)
            media_reference.name = name
        elif mediasource is not None:
            media_reference = otio.schema.GeneratorReference(name=name, generator_kind=mediasource,
                                                             available_range=available_range)
        else:
            media_reference = otio.schema.MissingReference(name=name, available_range=available_range)
        return media_reference
