"""The timeline import's reading as it was before its readers were made fast: the baseline that
bench/interchange_readers.py measures against in the same run, and the oracle that
tests/projects/test_interchange_readers.py compares the readers with.

Not used by the application. The checks in front (the file's shape, what its references expand
to) are the application's own, the same in both paths. The rest is the former code, unchanged
but for its imports: each format's OpenTimelineIO adapter reads the whole file (the FCP7 XML
adapter's parser, `FcpxReader`: the FCPXML adapter with its resources indexed, the CMX 3600
adapter, OTIO's JSON reader, the AAF adapter), and the timeline is converted to plain tracks by
the former conversion, which asked OTIO for each clip's place in its track (a walk over the
clips before it) and looked up metadata keys that are absent (a C++ exception each).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlparse

import aaf2
import opentimelineio as otio

from gpu_tasks.bounded import json_value, xml_tree
from gpu_tasks.confined import Refused
from projects.edl.interchange import documents as formats
from projects.edl.interchange import read as ir


def _read_fcp7(text: str, bounds: ir.Bounds) -> Any:
    root = ir._shape("fcp7xml", lambda: xml_tree(text, max_depth=bounds.max_depth, max_elements=bounds.max_elements))
    ir._fcp7_check(root, bounds)
    sequences = otio.adapters.from_name("fcp_xml").module().FCP7XMLParser(root).top_level_sequences()
    if not sequences:
        raise ir._invalid("fcp7xml", "The file holds no sequence.")
    return sequences[0] if len(sequences) == 1 else otio.schema.SerializableCollection(children=sequences)


def _read_fcpx(text: str, bounds: ir.Bounds) -> Any:
    root = ir._shape("fcpxml", lambda: xml_tree(text, max_depth=bounds.max_depth, max_elements=bounds.max_elements))
    ir._fcpx_check(root, bounds)
    return formats.FcpxReader(root).to_otio()


def _read_otio(text: str, bounds: ir.Bounds) -> Any:
    value = ir._shape("otio", lambda: json_value(text, max_depth=bounds.max_depth,
                                                 max_containers=bounds.max_elements))
    ir._otio_check(value, bounds)
    return otio.adapters.read_from_string(text, adapter_name="otio_json")


def _read_aaf(data: bytes, bounds: ir.Bounds) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "timeline.aaf")
        with open(path, "wb") as handle:
            handle.write(data)
        with aaf2.open(path, "r") as f:
            ir._aaf_check(f, bounds)
        return otio.adapters.read_from_file(path, adapter_name="AAF")


def _read_cmx(text: str, rate: float, bounds: ir.Bounds) -> Any:
    events = len(ir._CMX_EVENT.findall(text.encode()))
    if events > 2 * bounds.max_clips:
        raise ir._too_many("clips", events // 2, bounds.max_clips, counted=True)
    return otio.adapters.read_from_string(text, adapter_name="cmx_3600", rate=rate)


def read_timeline(data: bytes, fmt: str, rate: float, bounds: ir.Bounds) -> otio.schema.Timeline:
    try:
        if fmt == "aaf":
            result = _read_aaf(data, bounds)
        elif fmt == "edl":
            result = _read_cmx(ir._text(data, fmt), rate, bounds)
        else:
            reader = {"fcp7xml": _read_fcp7, "fcpxml": _read_fcpx, "otio": _read_otio}[fmt]
            result = reader(ir._text(data, fmt), bounds)
    except (Refused, MemoryError):
        raise
    except RecursionError:
        raise ir._invalid(fmt, "The file nests deeper than its reader can follow.") from None
    except Exception as exc:  # noqa: BLE001 - an adapter's failure on a malformed file has no one type
        raise ir._invalid(fmt, f"The file could not be read as {fmt}: {str(exc)[:300]}") from None
    if isinstance(result, otio.schema.SerializableCollection):
        result = next(iter(result.find_children(descended_from_type=otio.schema.Timeline)), None)
    if not isinstance(result, otio.schema.Timeline):
        raise ir._invalid(fmt, "The file holds no timeline.")
    if fmt == "fcp7xml":
        formats.fcp7_read_effects(result)
    return result


def _ms(time: otio.opentime.RationalTime) -> int:
    return round(time.to_seconds() * 1000)


def _names(clip: otio.schema.Clip) -> list[str]:
    names = []
    reference = clip.media_reference
    if reference is not None and reference.name:
        names.append(str(reference.name))
    url = str(getattr(reference, "target_url", None) or "")
    if url:
        names.append(unquote(posixpath.basename(urlparse(url).path or url)))
    if clip.name:
        names.append(clip.name)
    return [n.strip()[:255] for n in names if n and n.strip()]


def _ours(metadata: Any, key: str, namespace: str = "auteur") -> str | None:
    ours = metadata.get(namespace) if isinstance(metadata.get(namespace), Mapping) else None
    value = ours.get(key) if ours is not None else None
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None


def _effects(clip: otio.schema.Clip, dropped: ir._Dropped, ident: int) -> tuple[list[dict[str, Any]], float]:
    effects: list[dict[str, Any]] = []
    rate = 1.0
    for effect in clip.effects:
        if isinstance(effect, otio.schema.LinearTimeWarp) and not isinstance(effect, otio.schema.FreezeFrame):
            scalar = float(effect.time_scalar)
            if 0.25 <= scalar <= 4 and abs(scalar - 1) > 1e-9:
                rate = scalar
                effects.append({"type": ir.SPEED, "rate": round(scalar, 6)})
            elif abs(scalar - 1) > 1e-9:
                dropped.drop(ir.SPEED, "a speed outside 0.25x-4x (or a reverse or freeze) is not a timeline speed",
                             ident)
            continue
        ours = effect.metadata.get("auteur") if isinstance(effect.metadata.get("auteur"), Mapping) else None
        kind = ours.get("type") if ours is not None else None
        if ours is not None and kind in ir.PLAIN_EFFECTS and effect.effect_name == f"auteur.{kind}":
            effects.append(dict(ours))
        else:
            dropped.drop("effects", "an editor's own effects have no equivalent here", ident)
    return effects, rate


def _plain_clip(item: otio.schema.Clip, dropped: ir._Dropped, number: int) -> dict[str, Any]:
    placed = item.range_in_parent()
    source = item.source_range or item.trimmed_range()
    origin = getattr(item.media_reference, "available_range", None)
    in_ms = _ms(source.start_time - origin.start_time) if origin is not None else _ms(source.start_time)
    effects, rate = _effects(item, dropped, number)
    return {
        "number": number,
        "names": _names(item), "media_file_id": _ours(item.metadata, "media_file_id"),
        "reel": _ours(item.metadata, "reel", "cmx_3600"), "piece_id": _ours(item.metadata, "piece_id"),
        "start_ms": _ms(placed.start_time), "duration_ms": _ms(placed.duration), "in_ms": in_ms, "rate": rate,
        "effects": effects, "fades": [], "markers": len(item.markers),
    }


def _fade(transition: otio.schema.Transition, kind: str) -> dict[str, Any]:
    ours = transition.metadata.get("auteur") if isinstance(transition.metadata.get("auteur"), Mapping) else {}
    target = ours.get("target", "both") if ours else "both"
    return {"kind": kind, "length_ms": _ms(transition.in_offset + transition.out_offset),
            "target": target if target in ("both", "video", "audio") else "both"}


def plain_tracks(timeline: otio.schema.Timeline, dropped: ir._Dropped) -> list[dict[str, Any]]:
    tracks = []
    number = 0
    for track in timeline.tracks:
        clips: list[dict[str, Any]] = []
        items = list(track)
        for i, item in enumerate(items):
            if isinstance(item, otio.schema.Transition):
                before = items[i - 1] if i else None
                after = items[i + 1] if i + 1 < len(items) else None
                if not isinstance(before, otio.schema.Clip) and isinstance(after, otio.schema.Clip):
                    fades_of = ("fade_in", i + 1)
                elif isinstance(before, otio.schema.Clip) and not isinstance(after, otio.schema.Clip):
                    fades_of = ("fade_out", i - 1)
                else:
                    dropped.drop("transitions", "a dissolve between two clips has no equivalent here", None)
                    continue
                clips.append({"transition": fades_of[1], **_fade(item, fades_of[0])})
                continue
            if isinstance(item, otio.schema.Clip):
                number += 1
                try:
                    clips.append({"item": i, **_plain_clip(item, dropped, number)})
                except (ValueError, TypeError, ArithmeticError, AttributeError) as exc:
                    raise Refused(ir.INVALID, f"Clip {number} ({str(item.name)[:100]!r}) of track {track.name!r} "
                                              f"has a time that cannot be read: {str(exc)[:200]}.",
                                  {"clip": number}) from None
        by_item = {c["item"]: c for c in clips if "item" in c}
        plain = []
        for entry in clips:
            if "transition" in entry:
                owner = by_item.get(entry.pop("transition"))
                if owner is not None:
                    owner["fades"].append(entry)
            else:
                plain.append(entry)
        for entry in plain:
            del entry["item"]
        tracks.append({
            "kind": "video" if track.kind == otio.schema.TrackKind.Video else "audio",
            "name": (track.name or "")[:255], "track_id": _ours(track.metadata, "track_id"), "clips": plain,
        })
    return tracks


def read(*, data: bytes, fmt: str, rate: float, max_clips: int, max_tracks: int) -> dict[str, Any]:
    """`interchange_read.read` as it was: the same answer, or the same refusal."""
    bounds = ir.Bounds(max_clips=max_clips, max_tracks=max_tracks)
    timeline = read_timeline(data, fmt, rate, bounds)
    counts = {"tracks": len(timeline.tracks), "clips": sum(1 for _ in timeline.find_clips())}
    for what, maximum in (("tracks", max_tracks), ("clips", max_clips)):
        if counts[what] > maximum:
            raise ir._too_many(what, counts[what], maximum)
    dropped = ir._Dropped()
    return {"tracks": plain_tracks(timeline, dropped), "dropped": dropped.items}


def as_former(plain: dict[str, Any]) -> dict[str, Any]:
    """`interchange_read.read`'s answer in the terms the former path answered: without what the
    import reads since (the file's frame rate, a clip's own end, whether it is a generator, where a
    CMX 3600 list's track starts after its sequence) and without the clips of compound clips and
    nested sequences (numbered -1, -2, ...), which the former path read as gaps, and the report of
    them."""
    return {
        "tracks": [{**{k: v for k, v in t.items() if k != "lead_ms"},
                    "clips": [{k: v for k, v in c.items() if k not in ("end_ms", "generator")}
                              for c in t["clips"] if not c.get("nested")]}
                   for t in plain["tracks"] if not t.get("nested")],
        "dropped": [d for d in plain["dropped"] if d[1] not in ir.COMPOUND_WHYS
                    and not (isinstance(d[2], int) and d[2] < 0)],
    }
