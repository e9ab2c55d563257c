"""The render engine against one hand-written ffmpeg command doing the same work.

    .venv/bin/python bench/render.py [--rounds 3] [--width 1280 --height 720 --fps 30] [--preset veryfast]

Generates its media with ffmpeg (testsrc/testsrc2 video with sine audio, a still image, two sine
tracks), then renders a 60 s, 10-clip EDL (eight picture clips on one video track with trims,
a frame-rate change, a still and a black gap; two audio clips, one delayed, mixed) two ways:

engine  gpu_tasks.engines.render.render_timeline: parse the EDL, probe the inputs, build the
        filter graph, run ffmpeg with -progress parsed for the progress callback;
hand    one ffmpeg command written by hand for this timeline (below), same encoder settings.

Rounds alternate the two so that load changes on the machine weigh on both alike; medians are
compared (target: engine <= 1.2x hand), for wall time and for CPU time (user+sys of ffmpeg and,
for the engine, of its own Python side): on a shared machine the CPU ratio is the steadier one.
Both outputs are checked to be 60 s with one video and one audio stream. Results are printed and
written to bench/results/render.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gpu_tasks.engines.ffmpeg import ffmpeg_exe  # noqa: E402
from gpu_tasks.engines.media import probe  # noqa: E402
from gpu_tasks.engines.render import render_timeline  # noqa: E402

TARGET_RATIO = 1.2


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_media(d: Path, width: int, height: int) -> dict[str, Path]:
    size = f"{width}x{height}"
    media = {
        "a": d / "a.mp4",  # 40 s, same rate as the project
        "b": d / "b.mp4",  # 30 s at 25 fps: the render converts its frame rate
        "still": d / "still.png",
        "music": d / "music.wav",
        "voice": d / "voice.wav",
    }
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=30:duration=40", "-f", "lavfi", "-i",
           "sine=frequency=220:duration=40", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(media["a"]))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=30", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(media["b"]))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=c=orange:s=800x800", "-frames:v", "1", str(media["still"]))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:duration=60:sample_rate=44100", str(media["music"]))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=660:duration=15:sample_rate=48000", str(media["voice"]))
    return media


def clip(media: str, start: int, duration: int, in_point: int = 0) -> dict[str, Any]:
    return {"media_file_id": media, "start_ms": start, "duration_ms": duration, "in_point_ms": in_point,
            "out_point_ms": in_point + duration, "deleted": False}  # fmt: skip


def timeline(width: int, height: int, fps: int) -> dict[str, Any]:
    video = [
        clip("a", 0, 8000, 1000),
        clip("b", 8000, 6000, 5000),
        # 14-15 s: a black gap
        clip("still", 15000, 5000),
        clip("a", 20000, 10000, 20000),
        clip("b", 30000, 8000, 0),
        clip("a", 38000, 7000, 10000),
        clip("b", 45000, 15000, 15000),
    ]
    audio = [clip("music", 0, 60000, 0), clip("voice", 22000, 10000, 2000)]
    return {
        "settings": {"resolution": {"width": width, "height": height}, "frame_rate": fps},
        "tracks": [{"type": "video", "clips": video}, {"type": "audio", "clips": audio}],
    }


def hand_command(m: dict[str, Path], out: Path, width: int, height: int, fps: int, preset: str) -> list[str]:
    """The same render, written by hand as one ffmpeg command."""
    w, h = width, height
    norm = (
        f"fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
        f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p"
    )
    graph = ";".join(
        [
            f"[0:v]{norm}[v0]",
            f"[1:v]{norm}[v1]",
            f"color=c=black:s={w}x{h}:r={fps}:d=1,format=yuv420p,setsar=1[gap]",
            f"[2:v]{norm}[v2]",
            f"[3:v]{norm}[v3]",
            f"[4:v]{norm}[v4]",
            f"[5:v]{norm}[v5]",
            f"[6:v]{norm}[v6]",
            "[v0][v1][gap][v2][v3][v4][v5][v6]concat=n=8:v=1:a=0[v]",
            "[7:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo[music]",
            "[8:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,adelay=22000:all=1[voice]",
            "[music][voice]amix=inputs=2:duration=first:normalize=0[a]",
        ]
    )
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-ss", "1", "-t", "8", "-i", str(m["a"]),
        "-ss", "5", "-t", "6", "-i", str(m["b"]),
        "-loop", "1", "-framerate", str(fps), "-t", "5", "-i", str(m["still"]),
        "-ss", "20", "-t", "10", "-i", str(m["a"]),
        "-t", "8", "-i", str(m["b"]),
        "-ss", "10", "-t", "7", "-i", str(m["a"]),
        "-ss", "15", "-t", "15", "-i", str(m["b"]),
        "-t", "60", "-i", str(m["music"]),
        "-ss", "2", "-t", "10", "-i", str(m["voice"]),
        "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", preset, "-crf", "20", "-pix_fmt", "yuv420p", "-r", str(fps),
        "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its waited-for children (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def check(path: Path) -> float:
    info = probe(path)
    assert info.has_video and info.has_audio, f"{path}: missing a stream"
    assert abs(info.duration_s - 60.0) < 0.2, f"{path}: {info.duration_s} s, expected 60"
    return info.duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--preset", default="veryfast")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        d = Path(tmp)
        media = make_media(d, args.width, args.height)
        kinds = {"a": "video", "b": "video", "still": "image", "music": "audio", "voice": "audio"}
        mapping = {k: (p, kinds[k]) for k, p in media.items()}
        edl = timeline(args.width, args.height, args.fps)
        engine_s: list[float] = []
        hand_s: list[float] = []
        cpu: dict[str, list[float]] = {"engine": [], "hand": []}
        durations: dict[str, float] = {}
        progress_updates = 0
        for n in range(args.rounds):
            order = ("engine", "hand") if n % 2 == 0 else ("hand", "engine")
            for which in order:
                out = d / f"{which}-{n}.mp4"
                started = time.perf_counter()
                cpu_started = cpu_seconds()
                if which == "engine":
                    updates: list[float] = []
                    render_timeline(edl, mapping, out, progress=updates.append, encoder_preset=args.preset)
                    engine_s.append(time.perf_counter() - started)
                    progress_updates = len(updates)
                else:
                    cmd = hand_command(media, out, args.width, args.height, args.fps, args.preset)
                    subprocess.run(cmd, check=True)
                    hand_s.append(time.perf_counter() - started)
                cpu[which].append(cpu_seconds() - cpu_started)
                durations[which] = check(out)
                out.unlink()
                wall = (engine_s if which == "engine" else hand_s)[-1]
                print(f"round {n + 1}/{args.rounds} {which:6s} wall {wall:6.2f} s  cpu {cpu[which][-1]:6.2f} s")

    engine_median = statistics.median(engine_s)
    hand_median = statistics.median(hand_s)
    ratio = engine_median / hand_median
    cpu_ratio = statistics.median(cpu["engine"]) / statistics.median(cpu["hand"])
    result = {
        "benchmark": "render of a 60 s, 10-clip EDL: engine vs one hand-written ffmpeg command",
        "settings": {
            "width": args.width,
            "height": args.height,
            "fps": args.fps,
            "x264_preset": args.preset,
            "rounds": args.rounds,
            "clips": 10,
            "output_s": 60,
        },
        "engine_s": [round(x, 3) for x in engine_s],
        "hand_s": [round(x, 3) for x in hand_s],
        "engine_median_s": round(engine_median, 3),
        "hand_median_s": round(hand_median, 3),
        "ratio": round(ratio, 3),
        "engine_cpu_s": [round(x, 3) for x in cpu["engine"]],
        "hand_cpu_s": [round(x, 3) for x in cpu["hand"]],
        "cpu_ratio": round(cpu_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "output_duration_s": {k: round(v, 3) for k, v in durations.items()},
        "engine_progress_updates": progress_updates,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"engine median {engine_median:.2f} s, hand median {hand_median:.2f} s, ratio {ratio:.3f} "
          f"(target <= {TARGET_RATIO}); CPU time ratio {cpu_ratio:.3f}")  # fmt: skip
    out_path = REPO_ROOT / "bench" / "results" / "render.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out_path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
