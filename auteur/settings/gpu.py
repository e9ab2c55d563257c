"""GPU inference: the backend, the local runners, what a call's result may hold, the sandbox."""

from __future__ import annotations

import os

from auteur.settings.environment import VAR_DIR, env

# ---- GPU backend
AUTEUR_GPU_BACKEND = env.str("AUTEUR_GPU_BACKEND", default="local")
# The values AUTEUR_GPU_BACKEND may take (checked when the jobs app starts). The benchmarks'
# settings (bench/settings.py) add `noop`, which returns canned results and runs no model.
AUTEUR_GPU_BACKENDS: tuple[str, ...] = ("local", "modal")
# The backends whose engines run in this deployment's workers, and so reach its object store at its
# own endpoint (media.storage.s3 `for_engines`); `noop` is the benchmarks'.
AUTEUR_GPU_LOCAL_BACKENDS: tuple[str, ...] = ("local", "noop")
# Where the local backend keeps each call's payload, progress and outputs.
AUTEUR_GPU_LOCAL_DIR = env.str("AUTEUR_GPU_LOCAL_DIR", default=str(VAR_DIR / "gpu-local"))
# The local runners on this machine: at most this many engines at once, across every worker
# process (one per CPU by default: each runs a CPU-bound engine); the rest wait in line.
AUTEUR_LOCAL_RUNNER_SLOTS = env.int("AUTEUR_LOCAL_RUNNER_SLOTS", default=os.cpu_count() or 1)
# Memory each engine process (and its ffmpeg) may allocate, in MiB. By default the slots share
# 80% of the machine's memory, and each gets at least 2 GiB (what ffmpeg needs for a 1080p
# render, plus headroom; docs/jobs.md, "Local runners", has the measured figures).
AUTEUR_LOCAL_RUNNER_MEMORY_MB = env.int(
    "AUTEUR_LOCAL_RUNNER_MEMORY_MB",
    default=max(2048, int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.8 / 2**20
                          / max(1, AUTEUR_LOCAL_RUNNER_SLOTS))),
)
AUTEUR_MODAL_APP = env.str("AUTEUR_MODAL_APP", default="auteur-gpu")
# A GPU call's result is input (gpu_tasks/results.py): the largest output file, inline output
# (bytes in a Modal result) and result JSON (transcript, answer, metadata) that are accepted; a
# larger one fails the job (`invalid_result`, refunded).
AUTEUR_GPU_OUTPUT_MAX_BYTES = env.int("AUTEUR_GPU_OUTPUT_MAX_BYTES", default=8 * 1024**3)
AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES = env.int("AUTEUR_GPU_INLINE_OUTPUT_MAX_BYTES", default=256 * 1024**2)
AUTEUR_GPU_RESULT_MAX_BYTES = env.int("AUTEUR_GPU_RESULT_MAX_BYTES", default=16 * 1024**2)
# Whether the local backend's runners PUT a type's video or audio to a signed URL of the object
# storage, as Modal's calls always do, rather than leaving it in the call's folder for the worker
# to store (for runners on machines that share no disk with the worker's storage).
AUTEUR_GPU_LOCAL_UPLOAD_OUTPUTS = env.bool("AUTEUR_GPU_LOCAL_UPLOAD_OUTPUTS", default=False)
# How the probe's children and the local engines are isolated (gpu_tasks/sandbox.py): "auto"
# takes the best this machine allows (a uid of their own from AUTEUR_SANDBOX_UID_BASE + 0..COUNT
# and no network as root or with CAP_SETUID; a user and network namespace otherwise; none where
# neither works), and each process that starts them logs which once; "off" is for benchmarks.
AUTEUR_SANDBOX = env.str("AUTEUR_SANDBOX", default="auto")
AUTEUR_SANDBOX_UID_BASE = env.int("AUTEUR_SANDBOX_UID_BASE", default=2_000_000)
AUTEUR_SANDBOX_UID_COUNT = env.int("AUTEUR_SANDBOX_UID_COUNT", default=64)
# Model weights for the local backend's engines, one folder per model (manage.py download_models).
AUTEUR_MODELS_DIR = env.str("AUTEUR_MODELS_DIR", default=str(VAR_DIR / "models"))
