from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import render
from gpu_tasks.engines.render import Clip, flatten_video, parse_timeline
from gpu_tasks.errors import PermanentGpuError
from tests.gpu_tasks.helpers import audio_rms, frame_rgb_at, streams


def edl(*tracks: dict[str, Any], width: int = 320, height: int = 180, fps: float = 30) -> dict[str, Any]:
    return {"settings": {"resolution": {"width": width, "height": height}, "frame_rate": fps}, "tracks": list(tracks)}


def clip(media: str, start: int, duration: int, in_point: int = 0, **extra: Any) -> dict[str, Any]:
    return {"media_file_id": media, "start_ms": start, "duration_ms": duration, "in_point_ms": in_point,
            "out_point_ms": in_point + duration, "deleted": False, **extra}  # fmt: skip


def run(tmp_path: Path, payload: dict[str, Any], progress: list[float] | None = None) -> dict[str, Any]:
    payload = {"output_dir": str(tmp_path / "out"), **payload}
    context = EngineContext(
        workdir=tmp_path / "work", payload=payload, progress=(progress if progress is not None else []).append
    )
    return render.run(payload, context)


def test_three_clip_edl_renders_with_trims_gap_and_audio(tmp_path: Path, color_video: Path, tone_wav: Path) -> None:
    # Video: green (source 2.2-3.7 s) at 0-1.5 s, a black gap, blue (source 4.2-5.7 s) at 2.5-4.0 s.
    # Audio: the tone from 1.0 s into the source, placed at 0.5 s for 2.5 s. A deleted clip is ignored.
    timeline = edl(
        {"type": "video", "clips": [clip("v", 0, 1500, 2200), clip("v", 2500, 1500, 4200),
                                    clip("v", 4000, 5000, 0, deleted=True)]},
        {"type": "audio", "clips": [clip("a", 500, 2500, 1000)]},
    )  # fmt: skip
    payload = {"edl": timeline, "media": {"v": {"kind": "video", "path": str(color_video)},
                                          "a": {"kind": "audio", "path": str(tone_wav)}}}  # fmt: skip
    progress: list[float] = []
    result = run(tmp_path, payload, progress)

    out = Path(result["outputs"]["video"]["path"])
    info = streams(out)
    assert abs(info["duration_s"] - 4.0) < 0.06
    assert info["video"]["codec"] == "h264"
    assert (info["video"]["width"], info["video"]["height"], info["video"]["fps"]) == (320, 180, 30.0)
    assert info["video"]["frames"] == 120
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 48000 and info["audio"]["channels"] == 2
    assert abs(info["audio"]["duration_s"] - 4.0) < 0.06
    assert result["duration_ms"] == 4000 and result["clips"] == 3

    r, g, b = frame_rgb_at(out, 0.5)
    assert g > 100 and r < 60 and b < 60, "first clip shows the green part of the source (in_point 2.2 s)"
    assert max(frame_rgb_at(out, 2.0)) < 20, "the gap is black"
    r, g, b = frame_rgb_at(out, 3.0)
    assert b > 150 and r < 60 and g < 60, "second clip shows the blue part of the source (in_point 4.2 s)"
    assert audio_rms(out, 0.0, 0.4) < 0.005, "silence before the audio clip starts"
    assert audio_rms(out, 1.0, 2.8) > 0.03, "the tone plays while its clip is on the timeline"
    assert audio_rms(out, 3.2, 3.9) < 0.005, "silence after it ends"
    assert progress == sorted(progress) and progress[-1] == 100.0


def test_image_clips_and_upper_tracks(tmp_path: Path, color_video: Path, still_png: Path) -> None:
    # V1: red for 0-2 s. V2 (on top): a white still at 1-3 s. No audio track: silent AAC track.
    timeline = edl(
        {"type": "video", "clips": [clip("v", 0, 2000)]},
        {"type": "video", "clips": [clip("img", 1000, 2000)]},
        width=256, height=144, fps=25,
    )  # fmt: skip
    payload = {"edl": timeline, "media": {"v": {"kind": "video", "path": str(color_video)},
                                          "img": {"kind": "image", "path": str(still_png)}}}  # fmt: skip
    out = Path(run(tmp_path, payload)["outputs"]["video"]["path"])
    info = streams(out)
    assert abs(info["duration_s"] - 3.0) < 0.06 and info["video"]["frames"] == 75
    assert frame_rgb_at(out, 0.5)[0] > 150  # red
    assert min(frame_rgb_at(out, 1.5)) > 80  # white still, pillar-boxed: covers the red
    assert info["audio"] is not None and audio_rms(out, 0.0, 3.0) < 0.001


def test_flatten_puts_later_tracks_on_top_and_snaps_to_frames() -> None:
    fps = Fraction(30)
    low = Clip(track=0, order=0, media_file_id="a", start_ms=0, duration_ms=3000, in_point_ms=0)
    high = Clip(track=1, order=0, media_file_id="b", start_ms=1000, duration_ms=1000, in_point_ms=0)
    pieces = flatten_video([low, high], 4000, fps)
    assert [(p.start_ms, p.end_ms, p.clip.media_file_id if p.clip else None, p.frames) for p in pieces] == [
        (0, 1000, "a", 30), (1000, 2000, "b", 30), (2000, 3000, "a", 30), (3000, 4000, None, 30),
    ]  # fmt: skip
    assert sum(p.frames for p in flatten_video([low], 1001, fps)) == 30


@pytest.mark.parametrize(
    ("timeline", "code"),
    [
        ({"tracks": []}, "invalid_input"),
        (edl({"type": "subtitle", "clips": []}), "invalid_input"),
        (edl({"type": "video", "clips": [clip("v", 0, 0)]}), "invalid_input"),
        (edl({"type": "video", "clips": [clip("v", -5, 100)]}), "invalid_input"),
        (edl({"type": "video", "clips": [clip("missing", 0, 100)]}), "invalid_input"),
        (edl({"type": "video", "clips": [clip("v", 0, 100)]}, width=321), "invalid_input"),
        (edl({"type": "video", "clips": [clip("v", 0, 100)]}, fps=0), "invalid_input"),
        (edl({"type": "video", "clips": [clip("a", 0, 100)]}), "invalid_media"),  # an audio file on a video track
    ],
)
def test_bad_timelines_are_refused_before_ffmpeg_runs(
    tmp_path: Path, color_video: Path, tone_wav: Path, timeline: dict[str, Any], code: str
) -> None:
    payload = {"edl": timeline, "media": {"v": {"kind": "video", "path": str(color_video)},
                                          "a": {"kind": "audio", "path": str(tone_wav)}}}  # fmt: skip
    with pytest.raises(PermanentGpuError) as info:
        run(tmp_path, payload)
    assert info.value.code == code
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ntsc_frame_rate_is_kept_exact() -> None:
    timeline = parse_timeline(edl({"type": "video", "clips": [clip("v", 0, 1000)]}, fps=29.97))
    assert timeline.fps == Fraction(30000, 1001)


def truncating_ffmpeg(monkeypatch: pytest.MonkeyPatch, short_runs: int) -> list[str]:
    """run_ffmpeg as the engine calls it, except that its first `short_runs` runs leave a file whose
    sound stops after one second (what a flaky ffmpeg run was seen to deliver): each run is logged."""
    real = render.run_ffmpeg
    runs: list[str] = []

    def flaky(args: list[str], **kwargs: Any) -> str:
        reported = real(args, **kwargs)
        runs.append("short" if len(runs) < short_runs else "whole")
        if runs[-1] == "short":
            out = Path(args[-1])
            cut = out.with_name("cut.mp4")
            real(["-i", str(out), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-af", "atrim=end=1",
                  "-c:a", "aac", "-y", str(cut)], total_s=1)  # fmt: skip
            cut.replace(out)
        return reported

    monkeypatch.setattr(render, "run_ffmpeg", flaky)
    return runs


def three_seconds(video: Path, sound: Path) -> dict[str, Any]:
    """A 3 s timeline: the video's picture and the sound's tone."""
    timeline = edl({"type": "video", "clips": [clip("v", 0, 3000)]}, {"type": "audio", "clips": [clip("a", 0, 3000)]})
    return {"edl": timeline, "media": {"v": {"kind": "video", "path": str(video)},
                                       "a": {"kind": "audio", "path": str(sound)}}}


def test_a_render_whose_sound_comes_out_short_is_rendered_again(
    tmp_path: Path, color_video: Path, tone_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = truncating_ffmpeg(monkeypatch, short_runs=1)
    result = run(tmp_path, three_seconds(color_video, tone_wav))

    assert runs == ["short", "whole"]
    info = streams(Path(result["outputs"]["video"]["path"]))
    assert abs(info["audio"]["duration_s"] - 3.0) < 0.06 and abs(info["video"]["duration_s"] - 3.0) < 0.06


def test_a_render_short_twice_fails_instead_of_delivering_it(
    tmp_path: Path, color_video: Path, tone_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = truncating_ffmpeg(monkeypatch, short_runs=2)
    with pytest.raises(PermanentGpuError) as failed:
        run(tmp_path, three_seconds(color_video, tone_wav))

    assert runs == ["short", "short"]
    assert failed.value.code == "internal" and "audio 1.0" in str(failed.value), str(failed.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "nothing delivered"
