"""The upload probe in a child process with memory and CPU limits and a wall-clock timeout.

A media file is untrusted input to FFmpeg's parsers: a crafted one can ask for gigabytes, spin
the CPU, or crash the process that reads it. The probe therefore runs in a child Python
(`python -m media.probe_sandbox`) that lowers its own RLIMIT_AS and RLIMIT_CPU before it
imports PyAV, with a minimal environment (no secrets). Whatever happens to the child, the
caller gets a ProbeResult: a child that runs out of memory, CPU or time, or dies, rejects the
file with a plain reason; the worker itself is never at risk. No Django here.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from media.probing import DEFAULT_MAX_PIXELS, OVER_LIMITS, ProbeResult, probe_file

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProbeLimits:
    memory_bytes: int = 2 * 1024**3  # address space: PyAV and FFmpeg take about 150 MB of it
    cpu_seconds: int = 120
    timeout_seconds: float = 300.0
    max_pixels: int = DEFAULT_MAX_PIXELS


def probe_isolated(path: Path, declared_type: str, *, limits: ProbeLimits) -> ProbeResult:
    """`probe_file` run in a limited child process; a child that fails rejects the file."""
    cmd = [
        sys.executable, "-m", "media.probe_sandbox", str(path), declared_type,
        str(limits.max_pixels), str(limits.memory_bytes), str(limits.cpu_seconds),
    ]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=limits.timeout_seconds
        )
    except subprocess.TimeoutExpired:
        logger.warning("probe: child ran past %s s", limits.timeout_seconds)
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    if proc.returncode != 0:
        # A negative code is the signal that ended it (SIGXCPU past the CPU limit, SIGKILL...).
        tail = proc.stderr[-500:].decode("utf-8", "replace").strip().splitlines()[-1:]
        logger.warning("probe: child exited with %s (%s)", proc.returncode, tail[0] if tail else "")
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    return ProbeResult(**json.loads(proc.stdout))


def main(argv: list[str]) -> int:
    """The child: limit this process, probe, and print the result as JSON."""
    path, declared_type, max_pixels, memory_bytes, cpu_seconds = argv
    resource.setrlimit(resource.RLIMIT_AS, (int(memory_bytes), int(memory_bytes)))
    # Past the soft limit the kernel sends SIGXCPU, which ends the process.
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds) + 1))
    result = probe_file(Path(path), declared_type, max_pixels=int(max_pixels))
    sys.stdout.write(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
