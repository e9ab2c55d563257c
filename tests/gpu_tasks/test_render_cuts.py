"""The render of a cut timeline: pieces of clips, a hard cut of the picture, a crossfade of the sound."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import render
from gpu_tasks.engines.render_cuts import audio_window, crossfade_of, cut_summary
from gpu_tasks.engines.timeline import RenderInput
from gpu_tasks.errors import PermanentGpuError
from projects.edl.cuts import cut_tracks
from tests.gpu_tasks.helpers import frame_rgb_at, streams

FPS = 30
# 300 Hz: at 1001 ms and 2502 ms its phase differs by 0.3 of a cycle, so joining the two
# instants hard steps the waveform by 1.5 times its amplitude.
CUT = (1001, 2502)


def pcm(path: Path) -> tuple[np.ndarray, int]:
    """The first channel of the file's sound, decoded, and its rate."""
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        chunks = [frame.to_ndarray()[0] for frame in c.decode(audio=0)]
    return np.concatenate(chunks), rate


@pytest.fixture(scope="session")
def tone_300(make_media: Callable[..., Path]) -> Path:
    return make_media("tone300.wav", "-f", "lavfi", "-i", "sine=frequency=300:duration=6:sample_rate=48000")


def cut_timeline(spans: list[tuple[int, int]]) -> dict[str, Any]:
    """4 s of the colour video (red 0-2 s, green 2-4 s) over 4 s of a 300 Hz tone, cut at `spans`."""
    clip = {"start_ms": 0, "duration_ms": 4000, "in_point_ms": 0, "out_point_ms": 4000, "effects": [],
            "deleted": False}  # fmt: skip
    tracks = [
        {"type": "video", "clips": [{**clip, "id": "v1", "media_file_id": "v"}]},
        {"type": "audio", "clips": [{**clip, "id": "a1", "media_file_id": "a"}]},
    ]
    return {"settings": {"resolution": {"width": 320, "height": 180}, "frame_rate": FPS},
            "tracks": cut_tracks(tracks, spans)}  # fmt: skip


def run_cut(tmp_path: Path, color_video: Path, tone: Path, **extra: Any) -> tuple[Path, dict[str, Any]]:
    removed = CUT[1] - CUT[0]
    payload = {
        "output_dir": str(tmp_path / "out"),
        "edl": cut_timeline([CUT]),
        "media": {"v": {"kind": "video", "path": str(color_video)}, "a": {"kind": "audio", "path": str(tone)}},
        "cuts": {"spans": [list(CUT)], "duration_before_ms": 4000, "removed_ms": removed},
        **extra,
    }
    result = render.run(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    return Path(result["outputs"]["video"]["path"]), result


def max_step(samples: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(samples))))


def test_the_crossfade_window_is_centred_on_the_cut_and_keeps_the_length() -> None:
    spans = [(1000, 1500), (2000, 2600)]
    [track] = cut_tracks([{"type": "audio", "clips": [
        {"id": "a", "media_file_id": "m", "start_ms": 0, "duration_ms": 4000, "in_point_ms": 0,
         "out_point_ms": 4000}]}], spans)  # fmt: skip
    pieces = track["clips"]
    total = 4000 - 500 - 600
    windows = [
        audio_window(start_ms=p["start_ms"], duration_ms=p["duration_ms"], in_point_ms=p["in_point_ms"],
                     cut_in=p["cut_in"], cut_out=p["cut_out"], total_ms=total, crossfade_ms=10)
        for p in pieces
    ]  # fmt: skip
    assert [(p["start_ms"], p["duration_ms"]) for p in pieces] == [(0, 1000), (1000, 500), (1500, 1400)]
    # Each piece borrows 5 ms of removed source either side of a cut, and fades over the 10 ms.
    assert [(w.at_ms, w.duration_ms, w.seek_ms) for w in windows] == [
        (0, 1005, 0), (995, 510, 1495), (1495, 1405, 2595)]
    assert [(w.fade_in_ms, w.fade_out_ms) for w in windows] == [(0, 10), (10, 10), (10, 0)]
    # The overlaps are exactly the crossfades: the sound is as long as the kept time.
    overlap = sum(a.at_ms + a.duration_ms - b.at_ms for a, b in itertools.pairwise(windows))
    assert overlap == 2 * 10
    assert sum(w.duration_ms for w in windows) - overlap == total == windows[-1].at_ms + windows[-1].duration_ms
    assert windows[1].filters() == [
        "afade=t=in:st=0:d=0.010:curve=qsin", "afade=t=out:st=0.500:d=0.010:curve=qsin"]


def test_at_the_output_s_edges_the_fade_stays_inside_the_piece() -> None:
    # A cut at the very start (the first words deleted): nothing before it to cross into.
    first = audio_window(start_ms=0, duration_ms=800, in_point_ms=700, cut_in=True, cut_out=False, total_ms=800)
    assert (first.at_ms, first.duration_ms, first.seek_ms, first.fade_in_ms) == (0, 800, 700, 5)
    # A cut at the very end: the sound never runs past the output.
    last = audio_window(start_ms=0, duration_ms=800, in_point_ms=0, cut_in=False, cut_out=True, total_ms=800)
    assert (last.duration_ms, last.fade_out_ms, last.filters()) == (800, 5, ["afade=t=out:st=0.795:d=0.005:curve=qsin"])
    # No crossfade: the sound is cut hard, like the picture.
    hard = audio_window(start_ms=1000, duration_ms=500, in_point_ms=1500, cut_in=True, cut_out=True, total_ms=3000,
                        crossfade_ms=0)  # fmt: skip
    assert (hard.at_ms, hard.duration_ms, hard.seek_ms, hard.filters()) == (1000, 500, 1500, [])
    # At speed 2 the borrowed time in the source is twice as long.
    fast = audio_window(start_ms=1000, duration_ms=500, in_point_ms=3000, cut_in=True, cut_out=False, total_ms=3000,
                        rate=2.0)  # fmt: skip
    assert (fast.at_ms, fast.seek_ms, fast.source_ms) == (995, 2990, 1010)


def test_crossfade_option_is_checked_and_cuts_are_summarised() -> None:
    assert crossfade_of({}) == 10 and crossfade_of({"crossfade_ms": 0}) == 0
    for bad in (-1, 201, "10", True):
        with pytest.raises(PermanentGpuError) as raised:
            crossfade_of({"crossfade_ms": bad})
        assert raised.value.code == "invalid_input"
    assert cut_summary(None, 3000) == {"duration_before_ms": 3000, "removed_ms": 0, "cuts": 0}
    assert cut_summary({"duration_before_ms": 4000, "spans": [[1, 2]]}, 3000) == {
        "duration_before_ms": 4000, "removed_ms": 1000, "cuts": 1}


def test_a_cut_render_is_shorter_by_the_removed_time_on_both_streams(
    tmp_path: Path, color_video: Path, tone_300: Path
) -> None:
    out, result = run_cut(tmp_path, color_video, tone_300)
    kept_s = (4000 - (CUT[1] - CUT[0])) / 1000
    info = streams(out)
    frame = 1 / FPS
    assert abs(info["video"]["duration_s"] - kept_s) <= frame
    assert abs(info["audio"]["duration_s"] - kept_s) <= frame
    assert info["video"]["frames"] == round(kept_s * FPS)
    assert (result["duration_ms"], result["duration_before_ms"], result["removed_ms"], result["cuts"]) == (
        2499, 4000, 1501, 1)
    assert result["clips"] == 4  # two pieces on each track
    # The picture cuts hard: red before the cut (source 0.5 s), green after (source 2.502 + 0.3 s).
    r, g, _ = frame_rgb_at(out, 0.5)
    assert r > 150 and g < 60
    r, g, _ = frame_rgb_at(out, CUT[0] / 1000 + 0.3)
    assert g > 100 and r < 60


def test_the_crossfade_leaves_no_click_where_a_hard_join_does(
    tmp_path: Path, color_video: Path, tone_300: Path
) -> None:
    smooth, _ = run_cut(tmp_path / "smooth", color_video, tone_300)
    hard, _ = run_cut(tmp_path / "hard", color_video, tone_300, crossfade_ms=0)
    samples, rate = pcm(smooth)
    hard_samples, _ = pcm(hard)
    at = CUT[0] * rate // 1000
    near = slice(at - rate // 50, at + rate // 50)  # 20 ms either side of the cut
    steady = max_step(samples[rate // 4 : rate // 2])  # the tone's own steepest step, far from the cut
    assert max_step(hard_samples[near]) > 3 * steady, "the test tone does jump at a hard join"
    assert max_step(samples[near]) < 1.5 * steady, "the crossfade joins the waveform without a jump"
    # The crossfade keeps the tone's loudness across the join (equal power, no dip).
    envelope = np.abs(samples[near])
    assert envelope.max() > 0.6 * np.abs(samples[rate // 4 : rate // 2]).max()


def test_a_video_clip_s_own_sound_is_cut_with_its_picture(tmp_path: Path, color_video: Path) -> None:
    edl = cut_timeline([CUT])
    edl["tracks"] = edl["tracks"][:1]  # the video track only: its sound comes from the clip itself
    payload = {"output_dir": str(tmp_path / "out"), "edl": edl, "include_video_audio": True,
               "media": {"v": {"kind": "video", "path": str(color_video)}}}  # fmt: skip
    result = render.run(payload, EngineContext(workdir=tmp_path / "work", payload=payload))
    out = Path(result["outputs"]["video"]["path"])
    info = streams(out)
    kept_s = (4000 - (CUT[1] - CUT[0])) / 1000
    assert abs(info["audio"]["duration_s"] - kept_s) <= 1 / FPS
    samples, rate = pcm(out)
    at = CUT[0] * rate // 1000
    steady = max_step(samples[rate // 4 : rate // 2])
    assert max_step(samples[at - rate // 50 : at + rate // 50]) < 1.5 * steady


def test_a_cut_timeline_whose_sound_runs_out_ends_in_silence_on_every_run(make_media: Callable[..., Path]) -> None:
    # A 3.56 s file placed as a 5.44 s clip on both tracks, with 1.04 s cut: its sound runs out
    # 1.82 s before the timeline ends. Every ffmpeg run (not only the one the engine's length
    # check lets through) must carry the sound to the end in silence: padding a mix that ended
    # early was seen to drop the padding at random, in most runs of this very timeline.
    source = make_media("short-sound.mp4", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=3.56",
                        "-f", "lavfi", "-i", "sine=frequency=300:duration=3.576:sample_rate=22050",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac")  # fmt: skip
    clip = {"media_file_id": "f", "start_ms": 0, "duration_ms": 5440, "in_point_ms": 0, "out_point_ms": 5440,
            "effects": [], "deleted": False}  # fmt: skip
    tracks = [
        {"type": "video", "clips": [{**clip, "id": "picture"}]},
        {"type": "audio", "clips": [{**clip, "id": "sound"}]},
    ]
    timeline = render.parse_timeline({"settings": {"resolution": {"width": 320, "height": 180}, "frame_rate": 25},
                                      "tracks": cut_tracks(tracks, [(1280, 2320)])})  # fmt: skip
    assert timeline.total_ms == 4400
    command = render.build_command(timeline, {"f": RenderInput(source, "video", has_audio=True, has_video=True)},
                                   source.with_name("cut-short-sound.mp4"))  # fmt: skip
    lengths = []
    for _ in range(8):
        render.run_ffmpeg(command, total_s=4.4)
        info = streams(Path(command[-1]))
        lengths.append((info["video"]["duration_s"], round(info["audio"]["duration_s"], 3)))
    assert all(abs(video - 4.4) < 0.04 and abs(audio - 4.4) < 0.04 for video, audio in lengths), lengths
