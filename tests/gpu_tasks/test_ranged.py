"""A URL input read by range (gpu_tasks.ranged): a piece fetches its span, not the file, and reads
exactly what it would have read from the whole file."""

from __future__ import annotations

import http.server
import itertools
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_tasks import ranged
from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from gpu_tasks.engines.media import decode_audio
from gpu_tasks.errors import GpuError, PermanentGpuError, TransientGpuError
from gpu_tasks.ranged import BLOCK, NotRanged, RangedUrl, fetch_span
from tests.gpu_tasks.helpers import ffmpeg

TIMEOUT = (5.0, 30.0)


class _Ranges(http.server.BaseHTTPRequestHandler):
    """Serves `files` with `Range: bytes=a-b` as S3 and R2 do; counts what it sent and each range
    asked. `mode` makes it misbehave: "no-ranges" (200, the whole body), "wrong-start", "fewer"
    (a range that ends before the one asked), "short" (a body cut off in transit), "huge" (a total
    over any limit), "stall" (every block after the first stops part way), "changed" (the object
    is replaced once its first block is read, with another ETag)."""

    files: dict[str, bytes] = {}
    sent = 0
    asked: list[tuple[int, int | None]] = []
    mode = ""
    lock = threading.Lock()

    def do_GET(self) -> None:
        body = self.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match is None or self.mode == "no-ranges":
            self._send(200, body, {})
            return
        start = int(match.group(1))
        end = min(int(match.group(2)), len(body) - 1) if match.group(2) else len(body) - 1
        with self.lock:
            type(self).asked.append((start, int(match.group(2)) if match.group(2) else None))
        if start >= len(body):
            self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
            return
        if self.mode == "changed" and self.headers.get("If-Match") not in (None, '"v2"'):
            self._send(412, b"", {})  # replaced once its first block was read: now "v2"
            return
        chunk = body[start : end + 1]
        total = 10**15 if self.mode == "huge" else len(body)
        first = start + 1 if self.mode == "wrong-start" else start
        if self.mode == "fewer":  # a smaller range than asked, said as such
            chunk = chunk[:-1]
        headers = {"Content-Range": f"bytes {first}-{first + len(chunk) - 1}/{total}"}
        if self.mode == "changed":
            headers["ETag"] = '"v1"' if start == 0 else '"v2"'
        if self.mode == "stall" and start > 0:  # promises the block, sends part of it, and stops
            self.send_response(206)
            for name, value in {**headers, "Content-Length": str(len(chunk))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(chunk[:100])
            self.wfile.flush()
            time.sleep(1.5)
            return
        self._send(206, chunk[:-1] if self.mode == "short" else chunk, headers)  # short: cut off in transit

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        with self.lock:  # counted before the write: the client may finish reading (and the test
            type(self).sent += len(body)  # compare) before this thread runs again
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            with self.lock:
                type(self).sent -= len(body)

    def log_message(self, *args: Any) -> None:
        return None


def _clip(path: Path, *, size: str, seconds: int, gop: int, extra: tuple[str, ...] = ()) -> Path:
    """testsrc at 25 fps (B-frames, a keyframe every `gop` frames) with a tone, as an MP4."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}", "-f", "lavfi", "-i",
           f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop),
           "-bf", "2", *extra, "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of 320x240 (a keyframe every 2 s): about 3 MB."""
    return _clip(tmp_path_factory.mktemp("ranged") / "long.mp4", size="320x240", seconds=60, gop=50,
                 extra=("-b:v", "700k"))


@pytest.fixture(scope="module")
def late_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s whose times start at 8 s (as a cut from a longer recording can)."""
    return _clip(tmp_path_factory.mktemp("ranged") / "late.mp4", size="160x120", seconds=20, gop=25,
                 extra=("-output_ts_offset", "8"))


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of 64 KiB: what a 1 MiB block is to a file of hundreds of MB, for this 3 MB clip."""
    monkeypatch.setattr(ranged, "BLOCK", 64 * 1024)
    return ranged.BLOCK


@pytest.fixture
def server(long_clip: Path, late_clip: Path) -> Iterator[str]:
    _Ranges.files = {"/long.mp4": long_clip.read_bytes(), "/small.bin": bytes(range(256)) * 20_000,
                     "/late.mp4": late_clip.read_bytes()}
    _Ranges.sent, _Ranges.asked, _Ranges.mode = 0, [], ""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ranges)
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_reads_and_seeks_by_bounded_ranges(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranged, "OVERFETCH_BLOCKS", 1000)  # these reads jump about on purpose
    body = _Ranges.files["/small.bin"]
    rng = random.Random(7)
    with RangedUrl(f"{server}/small.bin", timeout=TIMEOUT, max_bytes=10**9) as raw:
        assert raw.size == len(body)
        for _ in range(50):
            at, count = rng.randrange(len(body)), rng.randrange(1, 3 * BLOCK)
            raw.seek(at)
            assert raw.read(count) == body[at : at + count]
        raw.seek(-10, 2)
        assert raw.read() == body[-10:]
        assert raw.read(5) == b""
    assert _Ranges.asked and all(end is not None and end - start < BLOCK for start, end in _Ranges.asked)


@pytest.mark.parametrize(("mode", "error", "code"), [
    ("wrong-start", PermanentGpuError, "invalid_input"),
    ("huge", PermanentGpuError, "invalid_input"),
    ("fewer", PermanentGpuError, "invalid_input"),
    ("short", TransientGpuError, "network"),
])
def test_an_answer_that_is_not_the_range_asked_is_refused(
    server: str, mode: str, error: type[GpuError], code: str
) -> None:
    _Ranges.mode = mode
    with pytest.raises(error) as caught:
        RangedUrl(f"{server}/small.bin", timeout=TIMEOUT, max_bytes=10**9)
    assert caught.value.code == code
    assert "127.0.0.1" not in str(caught.value)  # the URL (a bearer credential) is never in an error


def test_a_server_without_ranges_says_so(server: str, tmp_path: Path) -> None:
    _Ranges.mode = "no-ranges"
    with pytest.raises(NotRanged):
        fetch_span(f"{server}/long.mp4", (10_000, 20_000), tmp_path / "span.nut", timeout=TIMEOUT, max_bytes=10**9)


def _piece(ctx_dir: Path, media: dict[str, Any], span: tuple[int, int]) -> tuple[dict[str, Any], Path]:
    ctx = EngineContext(workdir=ctx_dir, payload={"output_dir": str(ctx_dir / "out")})
    result = compression.run({"media": media, "preset": "480p", "encoder_preset": "ultrafast",
                              "span": {"start_ms": span[0], "end_ms": span[1]}}, ctx)
    return result, Path(result["outputs"]["video"]["path"])


def _frames(path: Path) -> list[tuple[int | None, str]]:
    import av

    with av.open(str(path)) as container:
        return [(frame.pts, frame.to_ndarray().tobytes().hex()[:64]) for frame in container.decode(video=0)]


@pytest.mark.parametrize("span", [(0, 6_000), (30_000, 36_000), (54_000, 60_000)])
def test_a_piece_fetches_its_span_and_encodes_the_same_frames(
    server: str, long_clip: Path, tmp_path: Path, span: tuple[int, int], small_blocks: int
) -> None:
    by_path, path_out = _piece(tmp_path / "path", {"path": str(long_clip)}, span)
    by_url, url_out = _piece(tmp_path / "url", {"url": f"{server}/long.mp4"}, span)
    assert _frames(url_out) == _frames(path_out)
    assert len(_frames(url_out)) == 150  # 6 s at 25 fps: every frame of the span, none of the next
    assert by_url["input_size_bytes"] == by_path["input_size_bytes"] == long_clip.stat().st_size
    # Its span and the margin past it, the index (this file's moov is at its end), and a block's
    # rounding at each end of each.
    share = ((span[1] - span[0]) / 1000 + ranged.SPAN_TAIL_S) / 60 * long_clip.stat().st_size
    assert _Ranges.sent <= share + 4 * small_blocks, (_Ranges.sent, share)


@pytest.mark.parametrize("start_s", [0, 40])  # at 0, the encoder's priming: negative times
def test_a_transcription_piece_decodes_the_same_audio(
    server: str, long_clip: Path, tmp_path: Path, small_blocks: int, start_s: int
) -> None:
    span = fetch_span(f"{server}/long.mp4", (start_s * 1000, (start_s + 7) * 1000), tmp_path / "span.nut",
                      streams=("audio",), timeout=TIMEOUT, max_bytes=10**9)
    assert span.fetched == _Ranges.sent <= 8 / 60 * long_clip.stat().st_size + 4 * small_blocks
    whole = decode_audio(long_clip, 16000, max_s=start_s + 7.0, start_s=start_s)
    piece = decode_audio(span.path, 16000, max_s=start_s + 7.0, start_s=start_s)
    assert len(piece) == len(whole) == 7 * 16000
    assert (piece == whole).all()


def test_a_source_whose_times_start_late_reads_the_same(server: str, late_clip: Path, tmp_path: Path) -> None:
    _, path_out = _piece(tmp_path / "path", {"path": str(late_clip)}, (5_000, 9_000))
    _, url_out = _piece(tmp_path / "url", {"url": f"{server}/late.mp4"}, (5_000, 9_000))
    assert _frames(url_out) == _frames(path_out) and len(_frames(url_out)) == 100
    span = fetch_span(f"{server}/late.mp4", (5_000, 9_000), tmp_path / "span.nut", streams=("audio",),
                      timeout=TIMEOUT, max_bytes=10**9)
    whole = decode_audio(late_clip, 16000, max_s=9.0, start_s=5.0)
    assert len(whole) == 4 * 16000 and (decode_audio(span.path, 16000, max_s=9.0, start_s=5.0) == whole).all()


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A screen recording's shape (5 fps, a keyframe every 50 s) and a stream-copied cut whose
    first packets are 12 s below zero (an edit list): read whole, as a range read would not serve."""
    folder = tmp_path_factory.mktemp("odd")
    screen, gop, cut = folder / "screen.mp4", folder / "gop.mp4", folder / "cut.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=5:duration=160", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", str(screen))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=40", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "375", "-pix_fmt", "yuv420p", str(gop))
    ffmpeg("-ss", "12", "-i", str(gop), "-c", "copy", str(cut))
    return {"screen": screen, "cut": cut}


@pytest.mark.parametrize(("name", "span"), [("screen", (140_000, 150_000)), ("cut", (0, 5_000))])
def test_what_a_range_read_cannot_copy_is_read_whole(
    server: str, odd_clips: dict[str, Path], tmp_path: Path, name: str, span: tuple[int, int]
) -> None:
    _Ranges.files[f"/{name}.mp4"] = odd_clips[name].read_bytes()
    with pytest.raises(NotRanged):
        fetch_span(f"{server}/{name}.mp4", span, tmp_path / "span.nut", timeout=TIMEOUT, max_bytes=10**9)
    assert not (tmp_path / "span.nut").exists()
    _, path_out = _piece(tmp_path / "path", {"path": str(odd_clips[name])}, span)
    _, url_out = _piece(tmp_path / "url", {"url": f"{server}/{name}.mp4"}, span)
    assert _frames(url_out) == _frames(path_out) != []


def test_reads_that_jump_about_stop_at_the_size_of_the_file(server: str, small_blocks: int) -> None:
    """A file whose packets jump between far regions would have every read fetch a block anew."""
    body = _Ranges.files["/small.bin"]
    with RangedUrl(f"{server}/small.bin", timeout=TIMEOUT, max_bytes=10**9) as raw, pytest.raises(NotRanged):
        for at in itertools.cycle(range(0, len(body), len(body) // 8)):
            raw.seek(at)
            raw.read(10)
    assert _Ranges.sent <= len(body) + (ranged.OVERFETCH_BLOCKS + 1) * small_blocks


def test_an_object_replaced_while_it_is_read_fails_the_read(server: str) -> None:
    _Ranges.mode = "changed"
    with RangedUrl(f"{server}/small.bin", timeout=TIMEOUT, max_bytes=10**9) as raw:
        raw.seek(BLOCK)
        with pytest.raises(TransientGpuError, match="changed"):
            raw.read(10)


def test_a_stalled_read_is_retryable_once_and_never_names_the_url(
    server: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _Ranges.mode = "stall"
    url = f"{server}/long.mp4?X-Amz-Signature=SECRETSIG"
    ctx = EngineContext(workdir=tmp_path, payload={}, http_timeout=(2.0, 0.5))
    with pytest.raises(TransientGpuError) as caught:
        ctx.input_path({"url": url}, "media", span=(30_000, 36_000), streams=("video",))
    assert caught.value.code == "network"
    stalls = [start for start, _ in _Ranges.asked if start > 0]
    assert len(stalls) == 1  # the demuxer's retries of a failed read asked nothing more
    assert "SECRETSIG" not in str(caught.value) and "SECRETSIG" not in "".join(capfd.readouterr())


def test_a_piece_through_the_modal_function_body_fetches_its_span(
    server: str, long_clip: Path, tmp_path: Path, small_blocks: int
) -> None:
    from gpu_tasks.backends.modal_backend import ModalBackend
    from tests.gpu_tasks.test_modal_backend import FakeModal

    backend = ModalBackend("auteur-test", environment_name="staging", modal_module=FakeModal())
    payload = {"media": {"url": f"{server}/long.mp4"}, "preset": "480p", "encoder_preset": "ultrafast",
               "span": {"start_ms": 12_000, "end_ms": 18_000}}
    status = backend.poll(backend.spawn("compression", payload))
    assert status.state == "succeeded", status.error
    out = tmp_path / "piece.mp4"
    out.write_bytes(status.result["outputs"]["video"]["data"])  # type: ignore[index]
    assert len(_frames(out)) == 150
    assert _Ranges.sent <= (6 + ranged.SPAN_TAIL_S) / 60 * long_clip.stat().st_size + 4 * small_blocks


def test_only_a_span_file_this_process_wrote_is_opened_as_nut(server: str, tmp_path: Path) -> None:
    """NUT is allowed for the span files fetch_span registers, and for nothing else: the same bytes
    at another path (an input from outside) are refused by the whitelist, as any NUT upload is."""
    import shutil

    from gpu_tasks.engines.media import open_input, probe
    from gpu_tasks.input_policy import ffmpeg_input

    span = fetch_span(f"{server}/long.mp4", (10_000, 14_000), tmp_path / "span.nut", timeout=TIMEOUT,
                      max_bytes=10**9)
    assert probe(span.path).has_video
    outside = tmp_path / "upload.nut"
    shutil.copyfile(span.path, outside)
    with pytest.raises(PermanentGpuError) as caught:
        open_input(outside)
    assert caught.value.code == "invalid_media"
    assert "nut" not in ffmpeg_input(outside)[: ffmpeg_input(outside).index("-i")]
    assert ffmpeg_input(span.path)[ffmpeg_input(span.path).index("-f") + 1] == "nut"
