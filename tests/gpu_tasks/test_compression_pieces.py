"""A long video compressed in pieces cut at keyframes, joined back with no frame lost or doubled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from gpu_tasks.engines.media import open_input, probe
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.pieces import keyframes, plan_keyframe_pieces

FPS = 25
SECONDS = 12
STEP = 7  # frame n is grey level 7n mod 256: a frame lost or doubled shifts every later one by 7


@pytest.fixture(scope="module")
def numbered_video(make_media: Callable[..., Path]) -> Path:
    """12 s at 25 fps, a keyframe every 2 s (and none elsewhere), every frame its own grey level,
    with a 440 Hz tone."""
    return make_media(
        "numbered.mp4",
        "-f", "lavfi", "-i", f"color=c=black:s=160x96:r={FPS}:d={SECONDS},geq=lum='mod(N*{STEP},256)':cb=128:cr=128",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}",
        "-c:v", "libx264", "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
        "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
    )  # fmt: skip


def grey_levels(path: Path) -> np.ndarray:
    with open_input(path) as container:
        return np.array([frame.to_ndarray(format="gray").mean() for frame in container.decode(video=0)])


def compress(tmp_path: Path, source: Path, span: tuple[int, int] | None = None) -> Path:
    payload: dict[str, object] = {"media": {"path": str(source)}, "preset": "480p",
                                  "output_dir": str(tmp_path / "out")}
    if span is not None:
        payload["span"] = {"start_ms": span[0], "end_ms": span[1]}
    result = compression.run(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    return Path(result["outputs"]["video"]["path"])


def test_keyframes_are_found_from_the_packets_and_cuts_fall_on_the_nearest(numbered_video: Path) -> None:
    cuts, end_ms = keyframes(numbered_video)
    assert cuts == [2000, 4000, 6000, 8000, 10000]
    assert end_ms == 11961  # the last frame starts at 11.96 s
    pieces = plan_keyframe_pieces(end_ms, cuts, target_ms=4000)  # targets at 3,987 and 7,974 ms
    assert [(p.start_ms, p.end_ms) for p in pieces] == [(0, 4000), (4000, 8000), (8000, 11961)]
    assert all((p.audio_start_ms, p.audio_end_ms) == (p.start_ms, p.end_ms) for p in pieces)
    # A target far from any keyframe takes the nearest one; a video shorter than 1.5 targets is one piece.
    assert [p.start_ms for p in plan_keyframe_pieces(end_ms, [6000], target_ms=3000)] == [0, 6000]
    assert len(plan_keyframe_pieces(end_ms, cuts, target_ms=9000)) == 1


def test_pieces_joined_hold_every_frame_once_in_order_with_the_whole_audio(tmp_path: Path,
                                                                         numbered_video: Path) -> None:
    cuts, end_ms = keyframes(numbered_video)
    pieces = plan_keyframe_pieces(end_ms, cuts, target_ms=4000)
    assert len(pieces) == 3
    encoded = [compress(tmp_path / f"p{p.index}", numbered_video, (p.start_ms, p.end_ms)) for p in pieces]
    counts = [len(grey_levels(path)) for path in encoded]
    assert counts == [round((p.end_ms - p.start_ms) / 40 + 0.49) for p in pieces]  # 40 ms a frame
    assert all(not probe(path).has_audio for path in encoded)

    joined = tmp_path / "joined.mp4"
    compression.join_pieces(encoded, numbered_video, joined, preset_name="480p", timeout_s=60)

    source, result = grey_levels(numbered_video), grey_levels(joined)
    assert len(result) == len(source) == SECONDS * FPS
    assert np.abs(result - source).max() < STEP / 2, "a frame lost, doubled or out of order"
    info = probe(joined)
    assert info.has_audio and abs(info.duration_s - SECONDS) < 0.1
    whole = grey_levels(compress(tmp_path / "whole", numbered_video))
    assert np.abs(whole - result).max() < STEP / 2


def test_a_span_is_whole_milliseconds_start_before_end(tmp_path: Path, numbered_video: Path) -> None:
    for bad in ((4000, 4000), (-1, 2000)):
        with pytest.raises(PermanentGpuError) as info:
            compress(tmp_path, numbered_video, bad)
        assert info.value.code == "invalid_input"
