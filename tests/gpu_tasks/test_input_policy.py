"""Engines open inputs as the probe does and read no more of them than was paid for.

Two attacks on a file that changed after it was probed and priced: a playlist (ffconcat, HLS)
that makes FFmpeg read other files of the worker, and a file longer than the duration the job
was charged for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.engines import compression, render, transcription, video_query
from gpu_tasks.engines.ffmpeg import run_ffmpeg
from gpu_tasks.engines.liveportrait.frames import audio_track, read_frames
from gpu_tasks.engines.media import decode_audio, decoded_frames, probe
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_policy import ffmpeg_input
from tests.gpu_tasks.helpers import ffmpeg, streams

# ----------------------------------------------------------------------------- whitelists


@pytest.fixture
def secret(tmp_path: Path, color_video: Path) -> Path:
    """A file of the worker's (video and sound) that no job names: the playlists below point at it."""
    path = tmp_path / "secret.mp4"
    path.write_bytes(color_video.read_bytes())
    ffmpeg("-i", str(path), "-c", "copy", str(tmp_path / "secret.ts"))  # an HLS segment must be MPEG-TS
    return path


@pytest.fixture(params=["ffconcat", "hls"])
def playlist(request: pytest.FixtureRequest, tmp_path: Path, secret: Path) -> Path:
    """A playlist naming `secret`, as an input could arrive: an ffconcat script renamed .mp4, an
    HLS playlist (FFmpeg itself only detects one under its own extension)."""
    if request.param == "ffconcat":
        path = tmp_path / "input-0.mp4"
        path.write_text(f"ffconcat version 1.0\nfile {secret.name}\n")
    else:
        path = tmp_path / "input-0.m3u8"
        path.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nsecret.ts\n#EXT-X-ENDLIST\n")
    return path


def test_a_playlist_really_reads_another_file_when_opened_blindly(playlist: Path) -> None:
    """The attack is live: FFmpeg left to choose its demuxer decodes the file the playlist names."""
    with av.open(str(playlist)) as container:
        assert container.format.name in ("concat", "hls")
        assert next(container.decode(video=0)) is not None
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


def engine_payload(playlist: Path, tmp_path: Path, job: str) -> dict[str, Any]:
    ref = {"path": str(playlist)}
    if job == "render":
        clip = {"media_file_id": "m", "start_ms": 0, "duration_ms": 1000}
        return {"edl": {"tracks": [{"type": "audio", "clips": [clip]}]}, "media": {"m": {"kind": "audio", **ref}},
                "output_dir": str(tmp_path / "out")}
    if job == "video-query":
        return {"video_media": ref, "question": "What is shown?"}
    return {"media": ref, "output_dir": str(tmp_path / "out")}


@pytest.mark.parametrize("job", ["transcription", "compression", "render", "video-query"])
def test_an_engine_refuses_a_playlist_and_reads_nothing_it_names(playlist: Path, tmp_path: Path, job: str) -> None:
    payload = engine_payload(playlist, tmp_path, job)
    context = EngineContext(workdir=tmp_path / "work", payload=payload)
    with pytest.raises(PermanentGpuError) as refused:
        if job == "video-query":
            video_query.sample_frames(playlist, start_ms=0, end_ms=None)
        else:
            {"transcription": transcription.run_local, "compression": compression.run, "render": render.run}[job](
                payload, context
            )
    assert refused.value.code == "invalid_media"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_ffmpeg_command_line_refuses_a_playlist_too(playlist: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        run_ffmpeg([*ffmpeg_input(playlist), "-f", "wav", "-y", str(tmp_path / "out.wav")], total_s=10)
    assert refused.value.code == "invalid_media"
    assert not (tmp_path / "out.wav").exists()


def test_the_pyav_readers_refuse_a_playlist(playlist: Path) -> None:
    for read in (probe, lambda p: decode_audio(p), lambda p: next(decoded_frames(p, "video"))):
        with pytest.raises(PermanentGpuError) as refused:
            read(playlist)
        assert refused.value.code == "invalid_media"


@pytest.fixture(params=["jpg", "jpeg", "png", "webp"])
def named_image(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A still image staged under its own name, as an input downloaded from its URL is."""
    import numpy as np
    from PIL import Image

    path = tmp_path / f"input-0.{request.param}"
    pixels = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format={"jpg": "JPEG"}.get(request.param, request.param.upper()))
    return path


def test_a_still_image_named_by_its_extension_opens_in_every_reader(named_image: Path, tmp_path: Path) -> None:
    """FFmpeg picks its image2 demuxer for `*.jpg` by the name alone; the whitelist refuses that
    demuxer, so the container is chosen from the file's first bytes instead."""
    info = probe(named_image)
    assert (info.width, info.height) == (64, 48)
    assert next(decoded_frames(named_image, "video")).width == 64
    out = tmp_path / "out.png"
    run_ffmpeg([*ffmpeg_input(named_image), "-frames:v", "1", "-y", str(out)], total_s=10)
    assert out.stat().st_size > 0


def test_a_playlist_named_as_an_image_is_still_refused(secret: Path, tmp_path: Path) -> None:
    path = tmp_path / "input-0.jpg"
    path.write_text(f"ffconcat version 1.0\nfile {secret.name}\n")
    with pytest.raises(PermanentGpuError) as refused:
        probe(path)
    assert refused.value.code == "invalid_media"
    with pytest.raises(PermanentGpuError):
        run_ffmpeg([*ffmpeg_input(path), "-f", "wav", "-y", str(tmp_path / "out.wav")], total_s=10)
    assert not (tmp_path / "out.wav").exists()


# ----------------------------------------------------------------------------- paid-for length


def test_the_limit_is_read_from_the_input_ref() -> None:
    assert input_limit_s({"path": "/x", "max_duration_ms": 2500}) == 2.5
    assert input_limit_s({"path": "/x"}) is None
    for bad in (0, -5, "2000", 2.5, True):
        with pytest.raises(PermanentGpuError):
            input_limit_s({"path": "/x", "max_duration_ms": bad})


def test_audio_decoding_stops_at_the_paid_length(tone_wav: Path) -> None:
    assert len(decode_audio(tone_wav, 16000)) == 160_000  # the whole 10 s
    assert len(decode_audio(tone_wav, 16000, max_s=2.0)) == 32_000
    track = audio_track(tone_wav, 1.5, 44100)
    assert track is not None and len(track) == 66_150


def test_frame_decoding_stops_at_the_paid_length(color_video: Path) -> None:
    assert sum(1 for _ in decoded_frames(color_video, "video")) == 150  # 6 s at 25 fps
    assert sum(1 for _ in decoded_frames(color_video, "video", max_s=2.0)) == 50
    assert read_frames(color_video, max_side=64, max_frames=1000, max_s=1.0).shape[0] == 25


def test_compression_of_a_longer_file_than_was_paid_for_stops_at_the_paid_length(
    tmp_path: Path, color_video: Path
) -> None:
    payload = {"media": {"path": str(color_video), "max_duration_ms": 2000}, "preset": "480p",
               "output_dir": str(tmp_path / "out")}
    result = compression.run(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    assert streams(Path(result["outputs"]["video"]["path"]))["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert result["duration_ms"] == pytest.approx(2000, abs=100)


def test_transcription_of_a_longer_file_than_was_paid_for_hears_only_the_paid_length(
    tmp_path: Path, tone_wav: Path
) -> None:
    payload = {"media": {"path": str(tone_wav), "max_duration_ms": 3000}}
    result = transcription.run_local(payload, EngineContext(workdir=tmp_path, payload=payload))
    assert result["duration_ms"] == 3000


def test_a_video_question_samples_only_the_paid_length(make_media: Callable[..., Path]) -> None:
    video = make_media("ten-seconds.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=10",
                       "-pix_fmt", "yuv420p")
    frames = video_query.sample_frames(video, start_ms=0, end_ms=None, max_frames=4, max_s=2.0)
    assert frames.range_ms == (0, 2000) and max(frames.times_ms) < 2000
