"""Real media for the engine and backend tests, made with the ffmpeg binary and eSpeak NG."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_tasks.engines.tts import synthesize, write_wav
from tests.gpu_tasks.helpers import SENTENCE, ffmpeg


@pytest.fixture(scope="session", autouse=True)
def _on_the_gpu_when_checking() -> None:
    """`make gpu-check` (scripts/gpu_check.py) runs these tests to see the engines on a GPU: there,
    a machine where the engines would pick another device fails at once instead of passing on CPU."""
    if os.environ.get("AUTEUR_GPU_CHECK") == "1":
        from gpu_tasks.engines import weights

        assert weights.device() == "cuda", "AUTEUR_GPU_CHECK=1, and the engines would not run on a GPU here"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu-media")


@pytest.fixture(scope="session")
def make_media(media_dir: Path) -> Callable[..., Path]:
    """make_media(name, *ffmpeg_args): the file, generated once per session."""

    def make(name: str, *args: str) -> Path:
        path = media_dir / name
        if not path.exists():
            ffmpeg(*args, str(path))
        return path

    return make


@pytest.fixture(scope="session")
def color_video(make_media: Callable[..., Path]) -> Path:
    """6 s, 320x180 at 25 fps: red for 0-2 s, green 2-4 s, blue 4-6 s, with a 300 Hz tone."""
    graph = (
        "color=c=red:s=320x180:r=25:d=2[r];color=c=green:s=320x180:r=25:d=2[g];"
        "color=c=blue:s=320x180:r=25:d=2[b];[r][g][b]concat=n=3:v=1:a=0,format=yuv420p[v];"
        "sine=frequency=300:duration=6[a]"
    )
    return make_media(
        "colors.mp4", "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-c:a", "aac"
    )


@pytest.fixture(scope="session")
def tone_wav(make_media: Callable[..., Path]) -> Path:
    """10 s of a 500 Hz tone."""
    return make_media("tone.wav", "-f", "lavfi", "-i", "sine=frequency=500:duration=10:sample_rate=48000")


@pytest.fixture(scope="session")
def still_png(make_media: Callable[..., Path]) -> Path:
    return make_media("still.png", "-f", "lavfi", "-i", "color=c=white:s=200x200", "-frames:v", "1")


@pytest.fixture(scope="session")
def hd_video(make_media: Callable[..., Path]) -> Path:
    """2 s of testsrc at 1280x720 with a tone."""
    return make_media(
        "hd.mp4", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25:duration=2",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest",
    )  # fmt: skip


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    """SENTENCE spoken by eSpeak NG (the local TTS engine), about 4 s."""
    path = media_dir / "speech.wav"
    if not path.exists():
        pcm, rate = synthesize(SENTENCE, speed=0.9)
        write_wav(path, pcm, rate)
    return path


@pytest.fixture(scope="session")
def long_render_payload(make_media: Callable[..., Path]) -> dict[str, object]:
    """A render that takes many seconds on two cores: for cancel, kill and time-limit tests."""
    src = make_media(
        "long.mp4", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30:duration=40",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    return {
        "edl": {
            "settings": {"resolution": {"width": 1920, "height": 1080}, "frame_rate": 30},
            "tracks": [{"type": "video", "clips": [{"media_file_id": "m", "start_ms": 0, "duration_ms": 40000}]}],
        },
        "media": {"m": {"kind": "video", "path": str(src)}},
        "encoder_preset": "slow",
    }
