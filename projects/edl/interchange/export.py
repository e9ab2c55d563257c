"""The timeline as an editor's file: the render's pieces as the clips of one OTIO timeline, written
by the format's adapter, with what the format cannot carry listed in the report."""

from __future__ import annotations

import base64
import os
import posixpath
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aaf2.mobid
import opentimelineio as otio
from django.conf import settings

from auteur.users.models import User
from media.models import MediaFile, MediaStatus
from media.services.downloads import media_urls
from projects.edl.cuts import DEFAULT_PADDING_MS, Cuts, count_pieces, cut_tracks, transcript_cuts
from projects.edl.documents import edl_limits
from projects.edl.frame_rates import cmx_timecodes, exact_rate, is_drop_frame_rate, stored_rate
from projects.edl.interchange import documents
from projects.edl.interchange.formats import (
    _ONLY_OTIO,
    AUDIO_TRACKS,
    EXTRA_VIDEO_TRACKS,
    FADES,
    FORMATS,
    MARKERS,
    MAX_XML_GAIN_DB,
    PLAIN_EFFECTS,
    RELINK_ROOT,
    SPEED,
    TEXT,
    VOLUME,
    InterchangeFormat,
    Report,
    _frames,
    _range,
    _rt,
)
from projects.edl.selectors import edl_get
from projects.edl.validation import check_edl_limits
from projects.errors import EdlLimitExceeded
from projects.models import Project

# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class MediaEntry:
    media_file_id: str
    name: str  # the stable name clips carry
    path: str  # the relink path
    url: str | None = None
    expires_at: str | None = None
    missing: bool = False
    frame_size: tuple[int, int] | None = None  # (width, height), as the probe measured the picture


@dataclass(frozen=True)
class Export:
    format: str
    filename: str
    content_type: str
    data: bytes
    dropped: list[dict[str, Any]]
    media: list[MediaEntry]
    version: int
    pieces: int
    duration_ms: int
    frame_rate: float  # the timeline's, which the file counts its frames at
    drop_frame: bool  # whether its timecode is drop-frame

    def content(self) -> tuple[str, str]:
        """(encoding, content): the file as text, or base64 for a binary format."""
        if FORMATS[self.format].binary:
            return "base64", base64.b64encode(self.data).decode()
        return "utf-8", self.data.decode()


def stable_names(files: Iterable[MediaFile]) -> dict[str, str]:
    """Each file's name in an exported timeline: its own, or with the start of its id where
    several files share it (an editor relinks by name, so a name must name one file)."""
    files = sorted(files, key=lambda m: str(m.pk))
    counts = Counter(m.name for m in files)
    names = {}
    for media in files:
        if counts[media.name] == 1:
            names[str(media.pk)] = media.name
        else:
            stem, ext = posixpath.splitext(media.name)
            names[str(media.pk)] = f"{stem} ({str(media.pk)[:8]}){ext}"
    return names


def _mob_id(media_file_id: str) -> str:
    """A stable AAF MobID for a media file: its id as the UMID's material number."""
    mob = aaf2.mobid.MobID.new()
    mob.material = uuid.UUID(media_file_id)
    return str(mob)


def _reel(media_file_id: str) -> str:
    """A CMX 3600 reel name (8 characters, no spaces): the start of the file's id."""
    return media_file_id.replace("-", "")[:8].upper()


def _fade(kind: str, duration_frames: int, rate: float, target: str) -> otio.schema.Transition:
    fade_in = kind == "fade_in"
    transition = otio.schema.Transition(
        name=kind, transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=_rt(0 if fade_in else duration_frames, rate), out_offset=_rt(duration_frames if fade_in else 0, rate),
    )
    transition.metadata["auteur"] = {"type": kind, "target": target}
    transition.metadata["AAF"] = _aaf_dissolve(fade_in, 0 if fade_in else duration_frames)
    return transition


def _aaf_dissolve(fade_in: bool, cut_point: int) -> dict[str, Any]:
    """What the AAF writer requires of a transition: its operation, its level's keyframes, and its
    cut point (the frames before the cut: AAF's form of OTIO's in_offset, which its reader reads)."""
    return {
        "PointList": [{"Value": 0 if fade_in else 1, "Time": 0}, {"Value": 1 if fade_in else 0, "Time": 1}],
        "CutPoint": cut_point,
        "OperationGroup": {"Operation": {
            "DataDefinition": {"Name": "Picture"}, "Description": "Video Dissolve", "Name": "VideoDissolve_2",
            "Identification": "0c3bea41-fc05-11d2-8a29-0050040ef7d2", "IsTimeWarp": False, "Bypass": 1,
            "NumberInputs": 2, "OperationCategory": "OperationCategory_Effect",
        }},
    }


def _gap(frames: int, rate: float) -> otio.schema.Gap:
    return otio.schema.Gap(source_range=_range(0, frames, rate))


def _track_fades(piece: Mapping[str, Any], track_type: str, fmt: InterchangeFormat,
                 report: Report, frames: int, rate: float) -> dict[str, int]:
    """The fades of a piece that the file shows, in frames: a fade belongs to the piece that holds
    the clip's own start (fade_in) or end (fade_out), as in the render."""
    fades: dict[str, int] = {}
    for effect in piece.get("effects") or ():
        kind = effect.get("type")
        if kind not in ("fade_in", "fade_out") or not piece["first" if kind == "fade_in" else "last"]:
            continue
        target = effect.get("target", "both")
        if FADES not in fmt.carries:
            report.drop(FADES, fmt.notes.get(FADES, "the format has no fades"), piece["clip_id"])
        elif target not in ("both", track_type):
            report.drop(FADES, f"a {target}-only fade on a {track_type} track is a fade of the whole clip in an "
                        "editor's file", piece["clip_id"])
        else:
            fades[kind] = max(1, min(frames, _frames(int(effect["duration_ms"]), rate)))
    return fades


def _clip(piece: Mapping[str, Any], media: MediaEntry, fmt: InterchangeFormat, rate: float,
          frames: int, available_ms: int | None, report: Report, track_type: str) -> otio.schema.Clip:
    media_id = media.media_file_id
    reference = otio.schema.ExternalReference(target_url=media.url or media.path)
    reference.name = media.name
    in_frames = _frames(int(piece["in_point_ms"]), rate)
    # A still picture (or a file whose length is unknown) holds as much as its clips play: every
    # format's writer needs the media's range.
    available = _frames(available_ms, rate) if available_ms else in_frames + frames
    reference.available_range = _range(0, max(available, 1), rate)
    reference.metadata["auteur"] = {"media_file_id": media_id}
    if media.frame_size:
        reference.metadata["auteur"]["frame_size"] = list(media.frame_size)
    reference.metadata["AAF"] = {"MobID": _mob_id(media_id)}
    clip = otio.schema.Clip(name=media.name, media_reference=reference,
                            source_range=_range(in_frames, frames, rate))
    clip.metadata["auteur"] = {
        "clip_id": str(piece["clip_id"]), "piece_id": str(piece["id"]), "media_file_id": media_id,
        "in_point_ms": piece["in_point_ms"], "out_point_ms": piece["out_point_ms"],
        "start_ms": piece["start_ms"], "duration_ms": piece["duration_ms"],
    }
    clip.metadata["cmx_3600"] = {"reel": _reel(media_id)}
    for effect in piece.get("effects") or ():
        kind = effect.get("type")
        if kind == SPEED:
            if SPEED in fmt.carries:
                clip.effects.append(otio.schema.LinearTimeWarp(name="speed", time_scalar=float(effect["rate"])))
            else:
                report.drop(SPEED, fmt.notes.get(SPEED, "the format has no speed"), str(piece["clip_id"]))
        elif kind in PLAIN_EFFECTS:
            why = _volume_problem(effect, fmt, track_type) if kind == VOLUME and kind in fmt.carries else None
            ours = _text_on_piece(effect, piece) if kind == TEXT else dict(effect)
            if why:
                report.drop(kind, why, str(piece["clip_id"]))
            elif ours is None:
                continue  # a text overlay this piece of its clip does not show
            elif kind in fmt.carries:
                clip.effects.append(otio.schema.Effect(name=kind, effect_name=f"auteur.{kind}",
                                                       metadata={"auteur": ours}))
            else:
                report.drop(kind, fmt.notes.get(kind, _ONLY_OTIO), str(piece["clip_id"]))
    return clip


def _text_on_piece(effect: Mapping[str, Any], piece: Mapping[str, Any]) -> dict[str, Any] | None:
    """A text overlay as the piece shows it: its times count in the clip's own time, where the
    piece starts `clip_offset_ms` in; None where the piece shows none of it."""
    offset, length = int(piece.get("clip_offset_ms") or 0), int(piece["duration_ms"])
    start = int(effect.get("start_ms") or 0)
    shown = effect.get("duration_ms")
    end = start + int(shown) if shown is not None else None
    first, last = max(start, offset), min(end, offset + length) if end is not None else offset + length
    if last <= first:
        return None
    text = {**effect, "start_ms": first - offset}
    if end is not None:
        text["duration_ms"] = last - first
    return text


def _volume_problem(effect: Mapping[str, Any], fmt: InterchangeFormat, track_type: str) -> str | None:
    """Why `fmt` cannot carry this volume change, if it cannot. The XML formats give a level to an
    audio clip only, and their level stops at +12 dB (an FCP7 level of 3.98)."""
    if fmt.name == "otio":
        return None
    if track_type != "audio":
        return fmt.notes[VOLUME]
    if float(effect.get("gain_db") or 0) > MAX_XML_GAIN_DB:
        return f"the format's level stops at +{MAX_XML_GAIN_DB:g} dB"
    return None


def _cut_markers(cuts: Cuts, duration_ms: int) -> list[tuple[int, int]]:
    """(edited time, removed ms) of every cut inside the timeline: where it joins, and how much."""
    return [(a - cuts.removed_before(a), b - a) for a, b in cuts.spans if a < duration_ms]


def timeline_to_otio(
    *, edl: Mapping[str, Any], pieces: Sequence[Mapping[str, Any]], cuts: Cuts, fmt: InterchangeFormat,
    media: Mapping[str, MediaEntry], available: Mapping[str, int | None], markers: bool, name: str,
    report: Report,
) -> otio.schema.Timeline:
    """The cut timeline (`pieces`: `cut_tracks` of the timeline's tracks) as an OTIO timeline,
    less what `fmt` cannot carry (in `report`)."""
    rate = exact_rate(float(edl["settings"]["frame_rate"]))
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = _rt(0, rate)
    timeline.metadata["auteur"] = {"version": edl["version"], "frame_rate": rate}
    first_video = next((t["id"] for t in pieces if t["type"] == "video"), None)
    cut_points = {_frames(at, rate): (at, removed) for at, removed in _cut_markers(cuts, int(edl["settings"].get(
        "duration_ms") or 0))} if markers else {}
    marked: set[int] = set()
    for track in pieces:
        kind = track["type"]
        if kind == "audio" and AUDIO_TRACKS not in fmt.carries:
            report.drop(AUDIO_TRACKS, fmt.notes[AUDIO_TRACKS], None)
            continue
        if kind == "video" and track["id"] != first_video and EXTRA_VIDEO_TRACKS not in fmt.carries:
            report.drop(EXTRA_VIDEO_TRACKS, fmt.notes[EXTRA_VIDEO_TRACKS], None)
            continue
        out = otio.schema.Track(name=track.get("name") or track["id"],
                                kind=otio.schema.TrackKind.Video if kind == "video" else otio.schema.TrackKind.Audio)
        out.metadata["auteur"] = {"track_id": track["id"], "type": kind}
        at = 0  # frames placed so far
        for piece in sorted(track["clips"], key=lambda p: int(p["start_ms"])):
            start_f = _frames(int(piece["start_ms"]), rate)
            end_f = _frames(int(piece["start_ms"]) + int(piece["duration_ms"]), rate)
            frames = end_f - max(start_f, at)
            if frames <= 0:
                report.drop("sub_frame_pieces", "a piece shorter than a frame has no frame of its own in a "
                            "frame-based file", str(piece["clip_id"]))
                continue
            start_f = max(start_f, at)
            fades = _track_fades(piece, kind, fmt, report, frames, rate)
            if start_f > at or "fade_in" in fades:
                out.append(_gap(start_f - at, rate))
            if "fade_in" in fades:
                out.append(_fade("fade_in", fades["fade_in"], rate, _target(piece, "fade_in")))
            entry = media[str(piece["media_file_id"])]
            clip = _clip(piece, entry, fmt, rate, frames, available.get(entry.media_file_id), report, kind)
            if start_f in cut_points and piece.get("cut_in") and start_f not in marked:
                when, removed = cut_points[start_f]
                if MARKERS in fmt.carries:
                    marker = otio.schema.Marker(
                        name=f"Cut: {removed / 1000:.3f} s removed",
                        marked_range=otio.opentime.TimeRange(clip.source_range.start_time, _rt(0, rate)),
                        color=otio.schema.MarkerColor.RED)
                    marker.metadata["auteur"] = {"edited_ms": when, "removed_ms": removed}
                    clip.markers.append(marker)
                else:
                    report.drop(MARKERS, fmt.notes.get(MARKERS, "the format has no markers"), None)
                marked.add(start_f)
            out.append(clip)
            at = start_f + frames
            if "fade_out" in fades:
                out.append(_fade("fade_out", fades["fade_out"], rate, _target(piece, "fade_out")))
                out.append(_gap(0, rate))
        timeline.tracks.append(out)
    if fmt.name == "fcpxml":
        _span_primary_storyline(timeline, rate)
    return timeline


def _span_primary_storyline(timeline: otio.schema.Timeline, rate: float) -> None:
    """FCPXML anchors every clip of another track to the item of the first video track (the primary
    storyline) that plays at its start: that track is made to last the whole timeline, with a gap
    where it has nothing (and made, empty, where the timeline has no video track)."""
    video = next((t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video), None)
    if video is None:
        video = otio.schema.Track(name="Video", kind=otio.schema.TrackKind.Video)
        timeline.tracks.insert(0, video)
    end = max((round(t.duration().to_seconds() * rate) for t in timeline.tracks), default=0)
    missing = end - round(video.duration().to_seconds() * rate)
    if missing > 0:
        video.append(_gap(missing, rate))


def _target(piece: Mapping[str, Any], kind: str) -> str:
    return next((str(e.get("target", "both")) for e in piece.get("effects") or () if e.get("type") == kind), "both")


def _write(timeline: otio.schema.Timeline, fmt: InterchangeFormat, rate: float, drop_frame: bool) -> bytes:
    """The file of `timeline` in `fmt`; its timecode (CMX 3600's times, the XML formats' display
    of them) drop-frame where asked and the rate has it."""
    if fmt.binary:
        # The AAF adapter writes to a file only.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"timeline.{fmt.extension}")
            otio.adapters.write_to_file(timeline, path, adapter_name=fmt.adapter)
            documents.aaf_add_speed(timeline, path)
            with open(path, "rb") as handle:
                return handle.read()
    if fmt.adapter == "fcp_xml":
        return documents.fcp7_write(timeline, drop_frame).encode()
    if fmt.adapter == "fcpx_xml":
        return documents.fcpx_write(timeline, drop_frame).encode()
    if fmt.adapter == "cmx_3600":
        if not any(True for _ in timeline.find_clips()):
            # A list of no events (the adapter's writer fails on a track without items).
            title = "".join(ch if ch.isprintable() else " " for ch in timeline.name)
            return cmx_timecodes(f"TITLE: {title}\n", rate, drop_frame).encode()
        return cmx_timecodes(otio.adapters.write_to_string(timeline, adapter_name=fmt.adapter, rate=rate),
                             rate, drop_frame).encode()
    text: str = otio.adapters.write_to_string(timeline, adapter_name=fmt.adapter)
    return text.encode()


def _max_export_pieces() -> int:
    limits = edl_limits()
    return int(getattr(settings, "AUTEUR_INTERCHANGE_MAX_PIECES", limits.max_clips * 2))


def _media_entries(user: User, project: Project, ids: set[str], *, signed: bool, report: Report,
                   ) -> tuple[dict[str, MediaEntry], dict[str, int | None]]:
    files = list(MediaFile.objects.filter(project=project, user=user, pk__in=ids))
    names = stable_names(files)
    entries: dict[str, MediaEntry] = {}
    available: dict[str, int | None] = {}
    for media in files:
        key = str(media.pk)
        url = expires = None
        if signed and media.status == MediaStatus.READY:
            urls = media_urls(media=media)
            url = urls.download_url
            expires = urls.expires_at.isoformat() if urls.expires_at else None
        entries[key] = MediaEntry(media_file_id=key, name=names[key], path=f"{RELINK_ROOT}/{quote(names[key])}",
                                  url=url, expires_at=expires, frame_size=_frame_size(media))
        available[key] = media.duration_ms
    for key in sorted(ids - entries.keys()):
        name = f"missing-{key[:8]}"
        report.drop("media", "the file was deleted from the project: the clip names it by id", None)
        entries[key] = MediaEntry(media_file_id=key, name=name, path=f"{RELINK_ROOT}/{name}", missing=True)
        available[key] = None
    return entries, available


def _frame_size(media: MediaFile) -> tuple[int, int] | None:
    meta = media.metadata if isinstance(media.metadata, dict) else {}
    width, height = meta.get("width"), meta.get("height")
    return (width, height) if type(width) is int and type(height) is int and width > 0 and height > 0 else None


def timeline_export(*, user: User, project: Project, fmt: str, padding_ms: int = DEFAULT_PADDING_MS,
                    markers: bool = False, signed_urls: bool = False, drop_frame: bool | None = None) -> Export:
    """The project's timeline as the render plays it, in format `fmt` (a key of FORMATS); its
    timecode drop-frame at 29.97 and 59.94 unless `drop_frame` is False."""
    spec = FORMATS[fmt]
    edl = edl_get(project=project)
    check_edl_limits(edl)  # one saved under other limits: refused before anything is computed
    cuts = transcript_cuts(edl.get("transcript") or {}, padding_ms=padding_ms)
    tracks = edl.get("tracks") or []
    count, maximum = count_pieces(tracks, cuts), _max_export_pieces()
    if count > maximum:
        raise EdlLimitExceeded(
            f"An export takes at most {maximum} clips, counting each piece the transcript's cuts split a clip "
            f"into; this timeline makes {count}.",
            details={"limit": "export_pieces", "max": maximum, "count": count, "path": "tracks[].clips"},
        )
    pieces = cut_tracks(tracks, cuts)
    report = Report()
    ids = {str(p["media_file_id"]) for t in pieces for p in t["clips"]}
    media, available = _media_entries(user, project, ids, signed=signed_urls, report=report)
    timeline = timeline_to_otio(edl=edl, pieces=pieces, cuts=cuts, fmt=spec, media=media, available=available,
                                markers=markers, name=project.name or "Timeline", report=report)
    rate = exact_rate(float(edl["settings"]["frame_rate"]))
    drop = is_drop_frame_rate(rate) and drop_frame is not False
    data = _write(timeline, spec, rate, drop)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in (project.name or "timeline"))[:80]
    before = int(edl["settings"].get("duration_ms") or 0)
    return Export(
        format=fmt, filename=f"{stem or 'timeline'}.{spec.extension}", content_type=spec.content_type, data=data,
        frame_rate=stored_rate(rate), drop_frame=drop,
        dropped=report.items(), media=sorted(media.values(), key=lambda m: m.name), version=edl["version"],
        pieces=sum(len(t["clips"]) for t in pieces), duration_ms=cuts.edited_duration(before),
    )
