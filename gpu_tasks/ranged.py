"""A URL input read by range: a piece of a long file (gpu_tasks.pieces) fetches its own span's
packets, not the whole file.

`RangedUrl` is a read-only, seekable file over a signed GET URL. Each read fetches the blocks it
needs with a bounded `Range: bytes=a-b` request (BLOCK bytes, aligned) and keeps the last few, so
a demuxer's seeks back and forth within a block cost nothing more, and no request ever asks for
more than one block: what a reader never reads is never sent. A server that does not answer
ranges (200 instead of 206) raises `NotRanged`, and the caller downloads the file instead.

`fetch_span` copies the packets of a span (from the keyframe at or before its start to a little
past its end) of the first video and/or first audio stream into a local NUT file, every timestamp
moved by the same whole seconds (NUT stores none below zero), and registers the file with that
shift (gpu_tasks.input_policy), so an engine reads it as it would read the source at that span:
an ffmpeg `-ss` to the start lands on the same keyframe, and a decode counts the same times.
Where a range read does not serve (NotRanged), the caller downloads the file whole.
"""

from __future__ import annotations

import io
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError, raise_for_http
from gpu_tasks.input_policy import SAFE_INPUT_OPTIONS, SPAN_FORMAT, register_span_file

BLOCK = 1 << 20
CACHE_BLOCKS = 4
# What a read by range may fetch past the object's size before the whole download is cheaper.
OVERFETCH_BLOCKS = 4
# How far past a span's end (in decoding time) its packets are kept. Every packet a frame shown
# before the end needs is decoded before it, so before the end: this is a margin, not a need.
SPAN_TAIL_S = 0.5
# Every timestamp of a span file is this many seconds (times the least common multiple of its
# streams' time base numerators, so that it is whole ticks of each) later than in its source.
LEAD_S = 10
# The first packet after the seek to a span's start is at most this far before it (a keyframe
# interval): a file whose times say otherwise is read whole instead (fetched by range, a piece of it
# would cost as much, in many more requests).
SEEK_LEAD_MAX_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class NotRanged(Exception):
    """Reading by range does not serve here: the server answered with the whole body (HTTP 200),
    or the file would have the reads fetch more than the whole (blocks fetched again and again,
    a keyframe far before the span, times too far below zero). The caller downloads it whole."""


class RangedUrl(io.RawIOBase):
    """The object at `url`, read by bounded range requests; `fetched` counts the bytes received.

    Every block after the first is asked `If-Match` the first answer's ETag: an object replaced
    while it is read fails the read (transient) instead of mixing two files. At most the object's
    size and OVERFETCH_BLOCKS more are fetched (a file whose packets jump between far regions would
    have each read fetch a block anew): past that, NotRanged. The first error is kept, and every
    later read raises it again without a request (a demuxer retries a failed read)."""

    def __init__(self, url: str, *, timeout: tuple[float, float], max_bytes: int) -> None:
        import requests

        super().__init__()
        self._url = url
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._session = requests.Session()
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self._etag = ""
        self._failed: BaseException | None = None
        self.fetched = 0
        self.size = -1
        self._block(0)  # the first block says the size (Content-Range) and that ranges are served

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            index, within = divmod(self._pos, BLOCK)
            data = self._block(index)
            count = min(len(view) - done, len(data) - within)
            if count <= 0:
                break
            view[done : done + count] = data[within : within + count]
            done += count
            self._pos += count
        return done

    def close(self) -> None:
        self._session.close()
        self._blocks.clear()
        super().close()

    def _block(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        if self._failed is not None:
            raise self._failed
        try:
            data = self._get(index * BLOCK)
        except (GpuError, NotRanged) as exc:
            self._failed = exc
            raise
        self._blocks[index] = data
        if len(self._blocks) > CACHE_BLOCKS:
            self._blocks.popitem(last=False)
        return data

    def _get(self, start: int) -> bytes:
        import requests
        import urllib3

        if self.size >= 0 and self.fetched >= self.size + OVERFETCH_BLOCKS * BLOCK:
            raise NotRanged
        end = start + BLOCK - 1 if self.size < 0 else min(start + BLOCK, self.size) - 1
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity",
                   **({"If-Match": self._etag} if self._etag else {})}
        try:
            with self._session.get(self._url, headers=headers, stream=True, timeout=self._timeout) as resp:
                if resp.status_code == 200:
                    raise NotRanged
                if resp.status_code == 412:
                    raise TransientGpuError("network", "download failed: the input changed while it was read")
                raise_for_http(resp.status_code, "download")
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if resp.status_code != 206 or match is None:
                    raise PermanentGpuError("invalid_input", "download refused: the range answered is not one")
                first, last, total = (int(group) for group in match.groups())
                if first != start or last != min(end, total - 1):
                    raise PermanentGpuError("invalid_input", "download refused: not the range asked")
                if total > self._max_bytes:
                    raise PermanentGpuError("invalid_input", "input larger than the size limit")
                if 0 <= self.size != total:
                    raise TransientGpuError("network", "download failed: the input changed while it was read")
                self._etag = self._etag or resp.headers.get("ETag", "")
                data = resp.raw.read(last - first + 2, decode_content=False)
        except (GpuError, NotRanged):
            raise
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # Nothing of the error but its kind: its text holds the URL, a bearer credential.
            raise TransientGpuError("network", f"download failed: {type(exc).__name__}") from None
        if len(data) != last - first + 1:
            raise TransientGpuError("network", "download failed: the range arrived short or long")
        self.size = total
        self.fetched += len(data)
        return data


@dataclass(frozen=True)
class SpanFile:
    path: Path
    source_size: int  # the whole source's size, in bytes
    fetched: int  # what was read of it


def fetch_span(url: str, span_ms: tuple[int, int], dest: Path, *, streams: tuple[str, ...] = ("video", "audio"),
               timeout: tuple[float, float], max_bytes: int) -> SpanFile:
    """The packets of `span_ms` of the first stream of each kind in `streams` ("video", "audio")
    at `url`, in a NUT file at `dest`, each timestamp moved by the same whole number of seconds
    (NUT stores none below zero, and an encoder's priming makes the first ones negative); the
    file is registered with what its times are off by (gpu_tasks.input_policy), so an engine reads
    it at the source's times. Raises NotRanged where the server serves no ranges."""
    import av

    dest.parent.mkdir(parents=True, exist_ok=True)
    with RangedUrl(url, timeout=timeout, max_bytes=max_bytes) as raw:
        try:
            source: Any = av.open(raw, options=dict(SAFE_INPUT_OPTIONS))
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise PermanentGpuError("invalid_media", f"cannot open media: {type(exc).__name__}") from exc
        with source:
            kept = [found[0] for kind in streams if (found := getattr(source.streams, kind))]
            if not kept:
                raise PermanentGpuError("invalid_media", f"the media has no {' or '.join(streams)} stream")
            # A whole number of ticks of every stream's time base.
            lead_s = LEAD_S * math.lcm(*(stream.time_base.numerator for stream in kept))
            origin = source.start_time or 0
            try:
                if lead_s > LEAD_S * 1000:
                    raise NotRanged
                # Timestamps as given: a muxer's default moves them all when the first is negative.
                with av.open(str(dest), "w", format=SPAN_FORMAT, options={"avoid_negative_ts": "disabled"}) as out:
                    into = {stream.index: out.add_stream_from_template(stream) for stream in kept}
                    if span_ms[0] > 0:  # the seek the engines make: the span file starts where it lands
                        source.seek(origin + span_ms[0] * 1000, backward=True, any_frame=False)
                    _copy_span(source.demux(kept), out, into, lead_s, origin / 1_000_000, span_ms)
                with av.open(str(dest), format=SPAN_FORMAT) as written:
                    register_span_file(dest, origin + lead_s * 1_000_000 - (written.start_time or 0))
            except (av.FFmpegError, NotRanged) as exc:
                # What FFmpeg could not copy (times more than the lead below zero, say) is read
                # from the whole file, as before, where the engine says what is wrong with it.
                dest.unlink(missing_ok=True)
                raise NotRanged from exc
        return SpanFile(dest, raw.size, raw.fetched)


def _copy_span(packets: Any, out: Any, into: dict[int, Any], lead_s: int, base_s: float,
               span_ms: tuple[int, int]) -> None:
    """Mux each packet (in decoding order), `lead_s` later, until every stream is past the span."""
    start_s, end_s = span_ms[0] / 1000, span_ms[1] / 1000
    running = set(into)
    checked = False
    for packet in packets:
        at = packet.dts if packet.dts is not None else packet.pts
        if at is None or packet.stream.index not in running:
            continue  # a demuxer's flush packet, or a stream already past the end
        seconds = float(at * packet.time_base) - base_s
        if not checked and start_s > 0:
            if not start_s - SEEK_LEAD_MAX_S <= seconds <= start_s + SEEK_LEAD_MAX_S:
                raise NotRanged  # a keyframe far before the span (a screen recording's), or crafted times
            checked = True
        if seconds > end_s + SPAN_TAIL_S:
            running.discard(packet.stream.index)
            if not running:
                return
            continue
        ticks = int(lead_s / packet.time_base)
        packet.pts = None if packet.pts is None else packet.pts + ticks
        packet.dts = None if packet.dts is None else packet.dts + ticks
        packet.stream = into[packet.stream.index]
        out.mux(packet)
