from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from gpu_tasks.errors import PermanentGpuError
from tests.gpu_tasks.helpers import streams


def run(tmp_path: Path, source: Path, preset: str, progress: list[float] | None = None) -> dict[str, object]:
    payload = {"media": {"path": str(source)}, "preset": preset, "output_dir": str(tmp_path / "out")}
    context = EngineContext(
        workdir=tmp_path / "work", payload=payload, progress=(progress if progress is not None else []).append
    )
    return compression.run(payload, context)


def test_720p_source_to_480p_keeps_aspect_and_audio(tmp_path: Path, hd_video: Path) -> None:
    progress: list[float] = []
    result = run(tmp_path, hd_video, "480p", progress)
    info = streams(Path(result["outputs"]["video"]["path"]))  # type: ignore[index]
    assert (info["video"]["width"], info["video"]["height"]) == (854, 480)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert abs(info["duration_s"] - 2.0) < 0.1
    assert (result["width"], result["height"], result["preset"]) == (854, 480, "480p")
    assert progress[-1] == 100.0


def test_never_upscales_and_bounds_the_short_side_of_portrait_video(
    tmp_path: Path, make_media: Callable[..., Path]
) -> None:
    small = make_media(
        "small.mp4", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25:duration=1", "-pix_fmt", "yuv420p"
    )
    portrait = make_media(
        "portrait.mp4", "-f", "lavfi", "-i", "testsrc=size=720x1280:rate=25:duration=1", "-pix_fmt", "yuv420p"
    )
    assert (run(tmp_path / "a", small, "1080p")["width"], run(tmp_path / "b", small, "480p")["height"]) == (640, 360)
    result = run(tmp_path / "c", portrait, "480p")
    assert (result["width"], result["height"]) == (480, 854)


def test_unknown_preset_and_non_video_are_refused(tmp_path: Path, hd_video: Path, tone_wav: Path) -> None:
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, hd_video, "4k")
    assert info.value.code == "invalid_input"
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, tone_wav, "480p")
    assert info.value.code == "invalid_media"
