"""What planning a compression in pieces holds: the planner before (every packet in a list) against
the bounded scan (gpu_tasks.pieces.keyframe_bounds), on the same files, in the same run.

    .venv/bin/python bench/piece_planning_memory.py [--packets 100000,1000000] [--target-ms 10000]

The files are a tiny video (16x16) at 1,000 frames a second with a keyframe each second: 10 s of
it encoded once (10,000 packets), then looped with a stream copy to each `--packets`. Each plan
runs in a fresh interpreter, after a first plan of the 10 s file (imports, PyAV's first file): once
for the peak of the Python memory it allocates (tracemalloc), once for the growth of the process's
peak RSS (ru_maxrss, which also counts FFmpeg's own allocations, such as the MP4 demuxer's index of
every sample) and its time. Both planners must give the same bounds. Writes
bench/results/piece_planning_memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import REPO_ROOT, RESULTS_DIR
from gpu_tasks.engines.ffmpeg import ffmpeg_exe

SEGMENT_PACKETS = 10_000

# The planner as it was: every video packet's (time, keyframe) in a list, sorted, then the cuts.
BEFORE = '''
import itertools, math
from gpu_tasks.engines.media import open_input
from gpu_tasks.pieces import nearest_cuts

def plan(path, target_ms):
    with open_input(path) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        origin = (container.start_time or 0) / 1_000_000
        frames = []
        for packet in container.demux(stream):
            if packet.pts is not None and base is not None:
                frames.append((float(packet.pts * base) - origin, bool(packet.is_keyframe)))
    frames.sort()
    cuts = [math.floor(t * 1000) for (before, _), (t, key) in itertools.pairwise(frames)
            if key and t > 0 and before < math.floor(t * 1000) / 1000]
    return nearest_cuts(math.floor(frames[-1][0] * 1000) + 1, cuts, target_ms=target_ms)
'''
AFTER = '''
from gpu_tasks.pieces import keyframe_bounds

def plan(path, target_ms):
    return keyframe_bounds(path, target_ms=target_ms)
'''
# argv: the warm-up file, the file, the target, and "python" (tracemalloc's peak) or "rss" (the
# growth of the peak RSS, and the time, with tracemalloc off: its own records would count).
MEASURE = '''
import json, resource, sys, time, tracemalloc
from pathlib import Path
plan(Path(sys.argv[1]), int(sys.argv[3]))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[4] == "python":
    tracemalloc.start()
started = time.monotonic()
bounds = plan(Path(sys.argv[2]), int(sys.argv[3]))
seconds = time.monotonic() - started
if sys.argv[4] == "python":
    print(json.dumps({"bounds": bounds, "python_peak_kib": tracemalloc.get_traced_memory()[1] // 1024}))
else:
    print(json.dumps({"bounds": bounds, "seconds": round(seconds, 2),
                      "rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024, 1)}))
'''


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def measure(planner: str, warm: Path, path: Path, target_ms: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for what in ("python", "rss"):
        answer = subprocess.run([sys.executable, "-c", planner + MEASURE, str(warm), str(path), str(target_ms), what],
                                cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        found.update(json.loads(answer.stdout))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", default="100000,1000000")
    parser.add_argument("--target-ms", type=int, default=10_000)
    args = parser.parse_args()
    counts = [int(n) for n in args.packets.split(",")]
    cases = []
    with tempfile.TemporaryDirectory(prefix="auteur-plan-") as tmp:
        segment = Path(tmp) / "segment.mp4"
        ffmpeg("-f", "lavfi", "-i", "color=c=black:s=16x16:r=1000:d=10,geq=lum='mod(N,256)':cb=128:cr=128",
               "-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-bf", "2", "-pix_fmt", "yuv420p", str(segment))
        for count in counts:
            path = Path(tmp) / f"{count}.mp4"
            ffmpeg("-stream_loop", str(count // SEGMENT_PACKETS - 1), "-i", str(segment), "-c", "copy", str(path))
            before = measure(BEFORE, segment, path, args.target_ms)
            after = measure(AFTER, segment, path, args.target_ms)
            assert before.pop("bounds") == after.pop("bounds"), "the two planners disagree"
            mib = round(path.stat().st_size / 2**20, 1)
            case = {"packets": count, "file_mib": mib, "before": before, "after": after}
            cases.append(case)
            print(f"{count:>10,} packets ({case['file_mib']} MiB): before {before['python_peak_kib']:,} KiB Python, "
                  f"+{before['rss_growth_mib']} MiB RSS, {before['seconds']} s; after {after['python_peak_kib']:,} KiB "
                  f"Python, +{after['rss_growth_mib']} MiB RSS, {after['seconds']} s")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "piece_planning_memory.json").write_text(json.dumps(
        {"target_ms": args.target_ms, "cases": cases}, indent=2) + "\n")


if __name__ == "__main__":
    main()
