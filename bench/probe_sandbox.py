"""The sandboxed probe: a fresh interpreter per probe against the probe server, in the same run.

    .venv/bin/python bench/probe_sandbox.py [--probes 50]

Probes one small video (2 s, 320x240 H.264 + AAC, made here with ffmpeg) N times each way, one
probe at a time, alternating the ways so that the machine's load falls on all alike:
  fresh interpreter  what probe_isolated did before the server: `python -c` lowers its rlimits,
                     imports media.probing.facts and PyAV, probes, prints the JSON (the code is below)
  server             probe_isolated as it is: the per-process server forks a limited child, which
                     enters the sandbox (gpu_tasks.sandbox: on root, its own uid, no network, a
                     mount namespace) before it parses the file
  unsandboxed        the same server started with AUTEUR_SANDBOX=off: what the sandbox costs
The server's start (interpreter and PyAV import, once per worker process) is timed apart and
left out of its per-probe figures. Prints per-probe ms (p50, mean, p99), the ratios of the
medians, and the CPU each way costs per probe outside this process (the fresh interpreters; the
servers and their children). No stack needed. Writes bench/results/probe_sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, load_average
from bench._stack import percentile as pct

ROOT = Path(__file__).resolve().parent.parent

# The child as probe_isolated ran it before the server: limits first, then PyAV's import.
FRESH_CHILD = """
import json, resource, sys
from dataclasses import asdict
from pathlib import Path
from media.probing.facts import probe_file
path, declared_type, max_pixels, memory_bytes, cpu_seconds = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_AS, (int(memory_bytes), int(memory_bytes)))
resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds) + 1))
sys.stdout.write(json.dumps(asdict(probe_file(Path(path), declared_type, max_pixels=int(max_pixels)))))
"""


def reaped_children_cpu() -> float:
    """CPU seconds of this process's reaped children: the fresh interpreters (the server is not
    reaped while it runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(proc: psutil.Process) -> float:
    """CPU seconds of the server and of the probe children it reaped."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()

    from gpu_tasks import confined
    from media.probing.facts import ProbeResult, ffmpeg_exe
    from media.probing.sandbox import PROBE, ProbeLimits, current_server_pid, probe_isolated, server_key

    limits = ProbeLimits()
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    off = ProbeLimits(sandbox="off")

    def bare(path: Path) -> ProbeResult:
        return probe_isolated(path, "video", limits=off)

    def fresh(path: Path) -> ProbeResult:
        cmd = [sys.executable, "-c", FRESH_CHILD, str(path), "video", str(limits.max_pixels),
               str(limits.memory_bytes), str(limits.cpu_seconds)]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True, timeout=limits.timeout_seconds)
        return ProbeResult(**json.loads(proc.stdout))

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        video = Path(tmp) / "clip.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "2", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "1", "-shortest", str(video)],
            check=True,
        )  # fmt: skip
        load_start = load_average()
        started = time.perf_counter()
        first = probe_isolated(video, "video", limits=limits)
        server_start_ms = (time.perf_counter() - started) * 1000
        server_pid = current_server_pid()
        bare(video)
        timings: dict[str, list[float]] = {"fresh": [], "server": [], "unsandboxed": []}
        server = psutil.Process(server_pid)
        bare_server = psutil.Process(confined.server_pid(server_key(PROBE, off)))
        cpu_before = {"fresh": reaped_children_cpu(), "server": process_cpu(server),
                      "unsandboxed": process_cpu(bare_server)}
        ways = (("fresh", fresh), ("server", lambda p: probe_isolated(p, "video", limits=limits)),
                ("unsandboxed", bare))
        for _ in range(args.probes):
            for name, probe in ways:
                started = time.perf_counter()
                result = probe(video)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert result == first and result.ok, result
        cpu_ms = {"fresh": (reaped_children_cpu() - cpu_before["fresh"]) * 1000 / args.probes,
                  "server": (process_cpu(server) - cpu_before["server"]) * 1000 / args.probes,
                  "unsandboxed": (process_cpu(bare_server) - cpu_before["unsandboxed"]) * 1000 / args.probes}
        assert current_server_pid() == server_pid  # one server served every probe
        load_end = load_average()
        sandbox = confined._servers[server_key()].sandbox
        confined.stop_servers()

    def summary(ms: list[float]) -> dict[str, float]:
        return {"p50": round(pct(ms, 50), 2), "mean": round(sum(ms) / len(ms), 2), "p99": round(pct(ms, 99), 2)}

    results = {
        "probes": args.probes,
        "file": "2 s 320x240 H.264 + AAC mp4",
        "fresh_interpreter_ms": summary(timings["fresh"]),
        "server_ms": summary(timings["server"]),
        "unsandboxed_server_ms": summary(timings["unsandboxed"]),
        "sandbox": sandbox,
        "cpu_ms_per_probe": {name: round(ms, 2) for name, ms in cpu_ms.items()},
        "server_start_ms": round(server_start_ms, 1),
        "ratio_p50": round(pct(timings["fresh"], 50) / pct(timings["server"], 50), 1),
        "sandbox_cost_ratio_p50": round(pct(timings["server"], 50) / pct(timings["unsandboxed"], 50), 2),
        "load_average": {"start": load_start, "end": load_end},
    }
    print(json.dumps(results, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "probe_sandbox.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
