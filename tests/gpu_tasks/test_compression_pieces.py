"""A long video compressed in pieces cut at keyframes, joined back with no frame lost or doubled."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import compression
from gpu_tasks.engines.media import open_input, probe
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.pieces import (
    frames_end,
    keyframe_bounds,
    keyframe_cuts,
    nearest_cuts,
    piece_count,
    pieces_between,
    plan_keyframe_pieces,
)

FPS = 25
SECONDS = 12
STEP = 7  # frame n is grey level 7n mod 256: a frame lost or doubled shifts every later one by 7
ROOT = Path(__file__).resolve().parents[2]
# In a fresh interpreter, after a first plan (the imports, PyAV's first file): the most Python
# memory each plan of the files named on the command line takes at once, in bytes, and its bounds.
PLAN_PEAK = """
import json, sys, tracemalloc
from pathlib import Path
from gpu_tasks.pieces import keyframe_bounds
keyframe_bounds(Path(sys.argv[1]), target_ms=int(sys.argv[2]))
found = {}
for name in sys.argv[3:]:
    tracemalloc.start()
    bounds = keyframe_bounds(Path(name), target_ms=int(sys.argv[2]))
    found[name] = {"peak": tracemalloc.get_traced_memory()[1], "bounds": bounds}
    tracemalloc.stop()
print(json.dumps(found))
"""


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
    cuts, end_ms = list(keyframe_cuts(numbered_video)), frames_end(numbered_video)
    assert cuts == [2000, 4000, 6000, 8000, 10000]
    assert end_ms == 11961  # the last frame starts at 11.96 s
    pieces = plan_keyframe_pieces(end_ms, cuts, target_ms=4000)  # targets at 3,987 and 7,974 ms
    assert [(p.start_ms, p.end_ms) for p in pieces] == [(0, 4000), (4000, 8000), (8000, 11961)]
    assert all((p.audio_start_ms, p.audio_end_ms) == (p.start_ms, p.end_ms) for p in pieces)
    # A target far from any keyframe takes the nearest one; a video shorter than 1.5 targets is one piece.
    assert [p.start_ms for p in plan_keyframe_pieces(end_ms, [6000], target_ms=3000)] == [0, 6000]
    assert len(plan_keyframe_pieces(end_ms, cuts, target_ms=9000)) == 1
    # Read from the file in one go, the same pieces.
    assert pieces_between(keyframe_bounds(numbered_video, target_ms=4000)) == pieces
    assert keyframe_bounds(numbered_video, target_ms=9000) == [0, 11961]


def test_the_streamed_plan_takes_the_nearest_later_cut_for_each_target() -> None:
    """`nearest_cuts` looks at each cut once as it comes; it plans what the definition does: for each
    target in turn, of the cuts later than the last bound and before the end, the nearest (the
    earlier of two as near)."""
    rng = random.Random(5)
    for _ in range(3000):
        end_ms, target_ms = rng.randint(1, 60_000), rng.randint(1, 20_000)
        cuts = sorted({rng.randint(0, end_ms + 50) for _ in range(rng.randint(0, 25))})
        count = piece_count(end_ms, target_ms)
        bounds = [0]
        for k in range(1, count):
            target = round(end_ms * k / count)
            later = [(abs(c - target), c) for c in cuts if bounds[-1] < c < end_ms]
            if later:
                bounds.append(min(later)[1])
        assert nearest_cuts(end_ms, iter(cuts), target_ms=target_ms) == [*bounds, end_ms], (end_ms, target_ms, cuts)


def test_pieces_joined_hold_every_frame_once_in_order_with_the_whole_audio(tmp_path: Path,
                                                                         numbered_video: Path) -> None:
    pieces = pieces_between(keyframe_bounds(numbered_video, target_ms=4000))
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


def test_planning_holds_no_more_memory_for_ten_times_the_packets(make_media: Callable[..., Path]) -> None:
    """A tiny video at 1,000 frames a second, a keyframe each second: 5 s of it is 5,000 packets,
    the same ten times over 50,000. Planning it holds none of them: its peak does not grow with the
    packets (a list of every packet would take ten times as much), and it cuts at whole seconds."""
    short = make_media(
        "kilo-fps.mp4",
        "-f", "lavfi", "-i", "color=c=black:s=16x16:r=1000:d=5,geq=lum='mod(N,256)':cb=128:cr=128",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-bf", "2", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    long = make_media("kilo-fps-x10.mp4", "-stream_loop", "9", "-i", str(short), "-c", "copy")
    with open_input(long) as container:
        assert container.streams.video[0].frames == 50_000
    answer = subprocess.run([sys.executable, "-c", PLAN_PEAK, str(short), "1000", str(short), str(long)],
                            cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    found = json.loads(answer.stdout)
    small, large = found[str(short)], found[str(long)]
    assert small["bounds"] == list(range(0, 5001, 1000))
    assert large["bounds"] == list(range(0, 50001, 1000))
    assert large["peak"] < 2 * small["peak"], f"5,000 packets: {small['peak']} B at most; 50,000: {large['peak']} B"


def test_a_piece_on_the_local_runner_reads_its_source_through_a_descriptor(tmp_path: Path,
                                                                          numbered_video: Path) -> None:
    """As another uid the engine may not open the worker's file: the runner holds it open and the
    engine reads through the descriptor, sought to its span (no copy of the whole file in its box),
    and encodes exactly the frames the same span gives in-process."""
    import os
    import shutil

    from gpu_tasks.backends.local import LocalBackend

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    source = private / "source.mp4"
    shutil.copy(numbered_video, source)
    os.chmod(source, 0o600)
    backend = LocalBackend(tmp_path / "calls")
    if not backend.sandbox.separate_uid:
        pytest.skip("the engines run as this process's uid here: the runner stages nothing")
    call_id = backend.spawn("compression", {"media": {"path": str(source)}, "preset": "480p",
                                            "span": {"start_ms": 4000, "end_ms": 8000}})
    deadline = time.monotonic() + 60
    while not (status := backend.poll(call_id)).done:
        assert not (backend.base_dir / call_id / "box" / "inputs").exists(), "nothing copied into the box"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert status.state == "succeeded", status.error
    assert status.result is not None and status.result["input_size_bytes"] == source.stat().st_size
    piece = Path(status.result["outputs"]["video"]["path"])
    expected = grey_levels(compress(tmp_path / "in-process", numbered_video, (4000, 8000)))
    assert len(grey_levels(piece)) == len(expected) == 100
    assert np.abs(grey_levels(piece) - expected).max() < STEP / 2
    backend.release(call_id)


def test_a_descriptor_input_is_read_by_the_fd_protocol_alone() -> None:
    from gpu_tasks.input_policy import descriptor_of, ffmpeg_input

    args = ffmpeg_input("/dev/fd/7", "-ss", "4.000")
    assert args[-4:] == ["-fd", "7", "-i", "fd:"] and args[args.index("-protocol_whitelist") + 1] == "fd"
    assert ffmpeg_input("/data/a.mp4")[-2:] == ["-i", "/data/a.mp4"]
    assert ffmpeg_input("/data/a.mp4")[ffmpeg_input("/data/a.mp4").index("-protocol_whitelist") + 1] == "file"
    named = ("/dev/fd/3", "/dev/fd/12", "/dev/fd/3/x", "/dev/fd/", "/proc/self/fd/3", "/dev/fd/0", "/dev/fd/\u0663")
    assert [descriptor_of(p) for p in named] == [3, 12, None, None, None, None, None]


def test_a_payload_never_names_a_descriptor_of_the_runners(tmp_path: Path) -> None:
    """Only the runner hands its engine a descriptor: a payload path under /dev/fd or /proc (the
    runner's own sockets and locks) is refused before anything is opened."""
    from gpu_tasks.backends.local import LocalBackend
    from gpu_tasks.local_runner import stage_inputs

    sandbox = LocalBackend(tmp_path / "calls").sandbox
    for path in ("/dev/fd/3", "/proc/self/fd/3", "/proc/1/environ"):
        with pytest.raises(PermanentGpuError, match="descriptor"):
            stage_inputs({"media": {"path": path}, "span": {"start_ms": 0, "end_ms": 1}}, tmp_path / "box", sandbox,
                         None, by_descriptor=True)
