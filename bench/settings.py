"""The benchmarks' and drills' settings: production's, plus what only they may use.

- `AUTEUR_GPU_BACKEND=noop`: every job "succeeds" at once with a canned result (no model runs),
  to measure the orchestration around inference.
- `AUTEUR_FAULT_INJECTION` (e.g. `transcription:transient=0.2,permanent=0.1,hang=0.02`) and
  `AUTEUR_FAULT_SEED`: GPU calls fail or hang at those rates (gpu_tasks/backends/faults.py).

Processes get these with `DJANGO_SETTINGS_MODULE=bench.settings` (bench/_stack.py sets it); the
production settings refuse both, so a deployment cannot serve canned results by mistake.
"""

from __future__ import annotations

from auteur.settings import *  # noqa: F403
from auteur.settings import (
    AUTEUR_GPU_BACKENDS,
    AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS,
    AUTEUR_REAPER_INTERVAL_SECONDS,
    AUTEUR_REAPER_PENDING_AFTER_SECONDS,
    AUTEUR_REAPER_REPOLL_AFTER_SECONDS,
    env,
)

AUTEUR_GPU_BACKENDS = (*AUTEUR_GPU_BACKENDS, "noop")
AUTEUR_FAULT_INJECTION: str = env.str("AUTEUR_FAULT_INJECTION", default="")
AUTEUR_FAULT_SEED: int | None = env.int("AUTEUR_FAULT_SEED", default=None)
# The noop backend's calls stay "running" this long plus a uniform share of the spread, and each
# status call takes this long (bench/inflight.py); AUTEUR_GPU_ANNOUNCE=0 turns announcements off
# so that calls are polled.
AUTEUR_NOOP_HOLD_SECONDS: float = env.float("AUTEUR_NOOP_HOLD_SECONDS", default=0.0)
AUTEUR_NOOP_HOLD_SPREAD_SECONDS: float = env.float("AUTEUR_NOOP_HOLD_SPREAD_SECONDS", default=0.0)
AUTEUR_NOOP_STATUS_LATENCY_MS: int = env.int("AUTEUR_NOOP_STATUS_LATENCY_MS", default=0)
# ...and this long more per minute of media a call is given (its span, or its media's length).
AUTEUR_NOOP_HOLD_PER_MEDIA_MINUTE: float = env.float("AUTEUR_NOOP_HOLD_PER_MEDIA_MINUTE", default=0.0)
AUTEUR_GPU_ANNOUNCE: bool = env.bool("AUTEUR_GPU_ANNOUNCE", default=True)
# A file the noop backend appends "<job id> <call id>" to for every call it spawns: a drill
# counts the GPU calls each job started (bench/partition.py).
AUTEUR_NOOP_SPAWN_LOG: str = env.str("AUTEUR_NOOP_SPAWN_LOG", default="")
# Each noop spawn takes this long, as a container's start request does: a step that starts a call
# is then still running when a drill cuts its worker off (bench/partition.py).
AUTEUR_NOOP_SPAWN_LATENCY_MS: int = env.int("AUTEUR_NOOP_SPAWN_LATENCY_MS", default=0)
# The Redis broker's visibility timeout, shortened for a drill that shows what happens when a
# worker holds a message past it (0: production's, celeryconfig.py).
AUTEUR_DRILL_VISIBILITY_TIMEOUT_SECONDS: int = env.int("AUTEUR_DRILL_VISIBILITY_TIMEOUT_SECONDS", default=0)

# Every other setting is production's: a benchmark that needs another value (bench/inflight.py's
# long grace) sets it in its own stack's environment, so no drill silently runs other rules.
# A drill that must end in minutes scales time as a whole: every type's time limit (jobs.specs),
# the grace past it, the reaper's period, thresholds and margin are multiplied by this together.
AUTEUR_DRILL_TIME_SCALE: float = env.float("AUTEUR_DRILL_TIME_SCALE", default=1.0)
if not 0 < AUTEUR_DRILL_TIME_SCALE <= 1:
    raise ValueError("AUTEUR_DRILL_TIME_SCALE must be in (0, 1]")
AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS = max(1, round(AUTEUR_GPU_TIME_LIMIT_GRACE_SECONDS * AUTEUR_DRILL_TIME_SCALE))
AUTEUR_REAPER_INTERVAL_SECONDS = AUTEUR_REAPER_INTERVAL_SECONDS * AUTEUR_DRILL_TIME_SCALE
AUTEUR_REAPER_PENDING_AFTER_SECONDS = max(1, round(AUTEUR_REAPER_PENDING_AFTER_SECONDS * AUTEUR_DRILL_TIME_SCALE))
AUTEUR_REAPER_REPOLL_AFTER_SECONDS = max(1, round(AUTEUR_REAPER_REPOLL_AFTER_SECONDS * AUTEUR_DRILL_TIME_SCALE))
