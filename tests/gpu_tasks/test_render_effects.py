"""Each clip effect checked on the rendered file, with real ffmpeg: pixels, loudness, pitch, length."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from gpu_tasks.engines.effects import Stretch, audio_level, audio_tempo, parse_effects
from gpu_tasks.errors import PermanentGpuError
from tests.gpu_tasks.helpers import audio_rms, frame_rgb_at, streams
from tests.gpu_tasks.test_render import clip, edl, run


def frame(path: Path, seconds: float) -> np.ndarray:
    """The RGB frame (height x width x 3, float) at or after `seconds`."""
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            if f.time is not None and f.time + 1e-6 >= seconds:
                return f.to_ndarray(format="rgb24").astype(float)
    raise AssertionError(f"no frame at {seconds}s")


def last_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        frames = [f for f in c.decode(c.streams.video[0])]
        return frames[-1].to_ndarray(format="rgb24").astype(float)


def mono(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        pcm = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)])
    return pcm, rate


def dominant_hz(path: Path, start_s: float, end_s: float) -> float:
    pcm, rate = mono(path)
    chunk = pcm[int(start_s * rate) : int(end_s * rate)]
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
    return float(np.fft.rfftfreq(len(chunk), 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture(scope="session")
def quadrants_png(make_media: Callable[..., Path]) -> Path:
    """320x180: red top-left, green top-right, blue bottom-left, white bottom-right."""
    graph = (
        "color=c=red:s=160x90[a];color=c=lime:s=160x90[b];color=c=blue:s=160x90[c];color=c=white:s=160x90[d];"
        "[a][b]hstack[top];[c][d]hstack[bottom];[top][bottom]vstack"
    )
    return make_media("quadrants.png", "-filter_complex", graph, "-frames:v", "1")


def render(tmp_path: Path, media: dict[str, Path], *tracks: dict[str, Any], **options: Any) -> Path:
    kinds = {".mp4": "video", ".wav": "audio", ".png": "image"}
    payload = {
        "edl": edl(*tracks, **{k: options.pop(k) for k in ("width", "height") if k in options}),
        "media": {name: {"kind": kinds[p.suffix], "path": str(p)} for name, p in media.items()},
        **options,
    }
    return Path(run(tmp_path, payload)["outputs"]["video"]["path"])


def video(*clips: dict[str, Any]) -> dict[str, Any]:
    return {"type": "video", "clips": list(clips)}


def audio(*clips: dict[str, Any]) -> dict[str, Any]:
    return {"type": "audio", "clips": list(clips)}


def test_fades_go_from_and_to_black_and_silence(tmp_path: Path, color_video: Path) -> None:
    # 2 s of the red part with its own 300 Hz tone; 1 s fade in, 0.5 s fade out, picture and sound.
    fades = [{"type": "fade_in", "duration_ms": 1000}, {"type": "fade_out", "duration_ms": 500}]
    out = render(tmp_path, {"v": color_video}, video(clip("v", 0, 2000, effects=fades)), include_video_audio=True)

    assert max(frame_rgb_at(out, 0.0)) < 20, "the first frame is black"
    assert 40 < frame_rgb_at(out, 0.5)[0] < 200, "half way through the fade in: dimmed red"
    assert frame_rgb_at(out, 1.2)[0] > 200, "full red between the fades"
    assert last_frame(out).mean(axis=(0, 1)).max() < 30, "the last frame is (nearly) black"
    rising = [audio_rms(out, t, t + 0.2) for t in (0.0, 0.3, 0.6, 1.1)]
    assert rising == sorted(rising) and rising[0] < 0.3 * rising[-1], rising
    assert audio_rms(out, 1.9, 2.0) < 0.3 * audio_rms(out, 1.1, 1.4), "the sound fades out"


def test_a_fade_for_one_target_leaves_the_other_alone(tmp_path: Path, color_video: Path) -> None:
    effects = [{"type": "fade_in", "duration_ms": 1000, "target": "audio"}]
    out = render(tmp_path, {"v": color_video}, video(clip("v", 0, 1500, effects=effects)), include_video_audio=True)
    assert frame_rgb_at(out, 0.0)[0] > 200, "the picture is not faded"
    assert audio_rms(out, 0.0, 0.2) < 0.3 * audio_rms(out, 1.1, 1.4), "the sound is"


def test_fades_apply_only_at_the_clips_own_edges(tmp_path: Path, color_video: Path) -> None:
    # Pieces of a clip split by cuts: the first piece is not the clip's start, the last not its end.
    fades = [{"type": "fade_in", "duration_ms": 500}, {"type": "fade_out", "duration_ms": 500}]
    out = render(
        tmp_path, {"v": color_video},
        video(clip("v", 0, 1000, effects=fades, first=False), clip("v", 1000, 1000, 1000, effects=fades, last=False)),
    )  # fmt: skip
    assert frame_rgb_at(out, 0.0)[0] > 200, "no fade in where the piece is not the clip's start"
    assert frame_rgb_at(out, 0.9)[0] < 100, "the first piece holds the clip's end: it fades out"
    assert frame_rgb_at(out, 1.0)[0] < 30, "the second piece holds a start: it fades in"
    assert last_frame(out)[..., 0].mean() > 200, "no fade out where the piece is not the clip's end"


def test_volume_minus_6_db_halves_the_amplitude(tmp_path: Path, tone_wav: Path) -> None:
    plain = render(tmp_path / "plain", {"a": tone_wav}, audio(clip("a", 0, 2000)))
    quieter = render(
        tmp_path / "quiet", {"a": tone_wav}, audio(clip("a", 0, 2000, effects=[{"type": "volume", "gain_db": -6}]))
    )
    ratio = audio_rms(quieter, 0.2, 1.8) / audio_rms(plain, 0.2, 1.8)
    assert abs(ratio - 10 ** (-6 / 20)) < 0.02, ratio  # 0.501
    louder = render(
        tmp_path / "loud", {"a": tone_wav},
        audio(clip("a", 0, 2000, effects=[{"type": "volume", "gain_db": 3}, {"type": "volume", "gain_db": 3}])),
    )  # fmt: skip
    assert abs(audio_rms(louder, 0.2, 1.8) / audio_rms(plain, 0.2, 1.8) - 10 ** (6 / 20)) < 0.04, "gains add up"


def test_speed_2x_halves_the_duration_and_keeps_the_pitch(tmp_path: Path, color_video: Path, tone_wav: Path) -> None:
    # 6 s of source in 3 s of timeline: red, green and blue for 1 s each; the 500 Hz tone likewise.
    speed = [{"type": "speed", "rate": 2}]
    out = render(
        tmp_path, {"v": color_video, "a": tone_wav},
        video({**clip("v", 0, 3000), "out_point_ms": 6000, "effects": speed}),
        audio({**clip("a", 0, 3000), "out_point_ms": 6000, "effects": speed}),
    )  # fmt: skip
    info = streams(out)
    assert abs(info["duration_s"] - 3.0) < 0.06 and info["video"]["frames"] == 90
    assert frame_rgb_at(out, 0.5)[0] > 200, "source 1 s: red"
    assert frame_rgb_at(out, 1.5)[1] > 100, "source 3 s: green"
    assert frame_rgb_at(out, 2.5)[2] > 200, "source 5 s: blue"
    assert abs(dominant_hz(out, 0.2, 2.8) - 500) < 15, "pitch kept (a plain 2x would be 1000 Hz)"
    assert audio_rms(out, 2.5, 2.95) > 0.03, "the sound lasts the whole clip"


def test_quarter_speed_keeps_the_pitch_with_chained_atempo(tmp_path: Path, tone_wav: Path) -> None:
    slow = [{"type": "speed", "rate": 0.25}]
    out = render(tmp_path, {"a": tone_wav}, audio({**clip("a", 0, 2000), "out_point_ms": 500, "effects": slow}))
    assert abs(streams(out)["duration_s"] - 2.0) < 0.06
    assert abs(dominant_hz(out, 0.2, 1.8) - 500) < 15
    assert audio_tempo(parse_effects(slow, "c")) == "atempo=0.5,atempo=0.5,"
    assert audio_tempo(parse_effects([{"type": "speed", "rate": 3}], "c")) == "atempo=2,atempo=1.5,"


def test_crop_shows_only_the_chosen_part_of_the_frame(tmp_path: Path, quadrants_png: Path) -> None:
    plain = render(tmp_path / "plain", {"q": quadrants_png}, video(clip("q", 0, 500)))
    crop = [{"type": "crop", "x": 0.5, "y": 0, "width": 0.5, "height": 0.5}]  # the green top-right quadrant
    out = render(tmp_path / "crop", {"q": quadrants_png}, video(clip("q", 0, 500, effects=crop)))
    r, g, _ = frame(plain, 0.2)[10, 10]
    assert r > 200 and g < 60, "without the crop, the top-left corner is red"
    picture = frame(out, 0.2)
    assert (picture[..., 1] > 200).all() and (picture[..., 0] < 60).all() and (picture[..., 2] < 60).all(), (
        "cropped to the green quadrant, scaled up to fill the frame"
    )


@pytest.mark.parametrize(("mode", "bars"), [("contain", True), ("cover", False), ("stretch", False)])
def test_fit_modes(tmp_path: Path, still_png: Path, mode: str, bars: bool) -> None:
    # A square white still in a 16:9 frame: contain keeps black bars at the sides, the others fill.
    out = render(tmp_path, {"s": still_png}, video(clip("s", 0, 500, effects=[{"type": "fit", "mode": mode}])))
    picture = frame(out, 0.2)
    edge, middle = picture[:, :20].mean(), picture[:, 150:170].mean()
    assert middle > 230
    assert (edge < 10) if bars else (edge > 230), (mode, edge)


def test_text_times_count_from_the_clips_own_start_in_a_cut_piece(tmp_path: Path, color_video: Path) -> None:
    # The piece starts 1 s into its clip: a text shown at 1.2-1.6 s of the clip is at 0.2-0.6 s of it.
    text = {"type": "text", "text": "LATER", "position": "center", "font_size": 48, "start_ms": 1200,
            "duration_ms": 400}  # fmt: skip
    plain = render(tmp_path / "plain", {"v": color_video}, video(clip("v", 0, 1000, 4000)))
    out = render(
        tmp_path / "text", {"v": color_video},
        video(clip("v", 0, 1000, 4000, effects=[text], first=False, clip_offset_ms=1000)),
    )  # fmt: skip
    changed = [float(np.abs(frame(out, t) - frame(plain, t)).mean()) > 1 for t in (0.1, 0.4, 0.8)]
    assert changed == [False, True, False]


def test_text_overlay_draws_in_its_place_and_time(tmp_path: Path, color_video: Path) -> None:
    plain = render(tmp_path / "plain", {"v": color_video}, video(clip("v", 0, 1500, 4000)))
    text = {"type": "text", "text": "HELLO: [it's], ok; 100%", "position": "bottom", "font_size": 36,
            "color": "#ffffff", "start_ms": 500, "duration_ms": 500}  # fmt: skip
    out = render(tmp_path / "text", {"v": color_video}, video(clip("v", 0, 1500, 4000, effects=[text])))

    def diff(t: float, rows: slice) -> float:
        return float(np.abs(frame(out, t)[rows] - frame(plain, t)[rows]).mean())

    bottom, top = slice(120, 180), slice(0, 60)
    assert diff(0.2, bottom) < 2, "not yet shown"
    assert diff(0.7, bottom) > 15, "white text over the blue, at the bottom"
    assert diff(0.7, top) < 2, "nothing at the top"
    assert diff(1.2, bottom) < 2, "gone after its duration"
    title = {"type": "text", "text": "TITLE", "position": "top", "font_size": 36}
    top_text = render(tmp_path / "top", {"v": color_video}, video(clip("v", 0, 1500, 4000, effects=[title])))
    assert np.abs(frame(top_text, 0.2)[top] - frame(plain, 0.2)[top]).mean() > 3, "a title at the top, from 0"
    assert np.abs(frame(top_text, 0.2)[bottom] - frame(plain, 0.2)[bottom]).mean() < 2


@pytest.mark.parametrize(
    "effects",
    [
        [{"type": "blur"}],
        [{"type": "speed", "rate": 10}],
        [{"type": "volume", "gain_db": -6, "curve": 1}],
        [{"type": "fit", "mode": "cover"}, {"type": "fit", "mode": "stretch"}],
        {"type": "volume", "gain_db": 1},
    ],
)
def test_bad_effects_are_refused_before_ffmpeg_runs(tmp_path: Path, color_video: Path, effects: Any) -> None:
    with pytest.raises(PermanentGpuError) as info:
        render(tmp_path, {"v": color_video}, video(clip("v", 0, 500, effects=effects)))
    assert info.value.code == "invalid_input" and "track 0 clip 0" in info.value.message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_fade_longer_than_its_piece_is_shortened_to_it() -> None:
    fx = parse_effects([{"type": "fade_out", "duration_ms": 800, "target": "audio"}], "c")
    assert audio_level(fx, Stretch(0, 500, starts_clip=False, ends_clip=True)) == "afade=t=out:st=0:d=0.5,"
    assert audio_level(fx, Stretch(0, 500, starts_clip=True, ends_clip=False)) == ""
