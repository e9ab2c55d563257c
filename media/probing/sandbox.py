"""The upload probe in a limited, sandboxed child process (gpu_tasks.confined).

A media file is untrusted input to FFmpeg's parsers: a crafted one can ask for gigabytes, spin
the CPU, or crash the process that reads it. So the process that parses it is never the worker:
`probe_isolated` runs `media.probing.facts.probe_confined` through the worker's confined server (one
per process, PyAV imported once), whose child opens the file with the worker's rights, enters
the sandbox (a uid of its own and no network where the machine allows it), lowers its own
RLIMIT_AS and RLIMIT_CPU, and reads the file through the descriptor it opened; the server kills
it past the wall-clock timeout. Whatever happens to the child, the caller gets a ProbeResult: a
child that runs out of memory, CPU or time, or dies, rejects the file with a plain reason, and
the worker itself is never at risk. A probe forked from the warm server costs about 15 ms of CPU
where a fresh interpreter importing PyAV for each file cost about 100 ms; the sandbox adds about
1 ms of it (bench/probe_sandbox.py). No Django here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpu_tasks.confined as confined
import gpu_tasks.sandbox as isolation
from media.probing.facts import DEFAULT_MAX_PIXELS, OVER_LIMITS, ProbeResult

logger = logging.getLogger(__name__)

PROBE = "media.probing.facts:probe_confined"
# One server per worker process reads untrusted media: the probe, and the scans that plan a long
# file's pieces (gpu_tasks.pieces). Each module is imported once there.
PRELOAD = ("av", "numpy", "media.probing.facts", "gpu_tasks.pieces")


@dataclass(frozen=True)
class ProbeLimits:
    memory_bytes: int = 2 * 1024**3  # address space: PyAV and FFmpeg take about 150 MB of it
    cpu_seconds: int = 120
    timeout_seconds: float = 300.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # How the children are isolated (gpu_tasks.sandbox), fixed when the server starts.
    sandbox: str = "auto"
    sandbox_uid_base: int = isolation.DEFAULT_UID_BASE
    sandbox_uid_count: int = isolation.DEFAULT_UID_COUNT

    def confined(self) -> confined.Limits:
        return confined.Limits(memory_bytes=self.memory_bytes, cpu_seconds=self.cpu_seconds,
                               timeout_seconds=self.timeout_seconds, max_result_bytes=1024**2,
                               sandbox=self.sandbox, sandbox_uid_base=self.sandbox_uid_base,
                               sandbox_uid_count=self.sandbox_uid_count, preload=PRELOAD)


def media_call(function: str, path: Path, *, limits: ProbeLimits, **args: Any) -> Any:
    """`function` ("module:name") of a media file, in a child of this process's media server (see
    `confined.call`: `path` and `fd=` its open descriptor are passed, then `args`)."""
    return confined.call(function, limits=limits.confined(), path=path, **args)


def probe_isolated(path: Path, declared_type: str, *, limits: ProbeLimits, function: str = PROBE) -> ProbeResult:
    """`probe_file` run in a limited child process; a child that fails rejects the file.
    (`function`: what the child runs instead, for tests that attack the sandbox.)"""
    try:
        result = media_call(function, path, limits=limits, declared_type=declared_type, max_pixels=limits.max_pixels)
    except (confined.BudgetSpent, confined.Refused):
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)
    try:
        return ProbeResult(**result)
    except TypeError:
        logger.warning("probe: the probe's child answered an unreadable result")
        return ProbeResult(ok=False, rejection_reason=OVER_LIMITS)


def server_key(function: str = PROBE, limits: ProbeLimits | None = None) -> tuple[str, ...]:
    return confined.server_key(function, (limits or ProbeLimits()).confined())


def stop_server(function: str = PROBE) -> None:
    """Kill this process's probe server, if it has one; the next probe starts another."""
    confined.stop_server(server_key(function))


def current_server_pid(function: str = PROBE) -> int | None:
    """The pid of this process's probe server, if one is running."""
    return confined.server_pid(server_key(function))
