"""`make gpu-check`: the engines on a real GPU, and one real-size step of the model that the cost
model of video generation rests on. For the day a machine with CUDA is at hand.

    make gpu-check                      # with the venv's Python
    make gpu-check GPU_PY=/path/python  # with another one (a CUDA build of torch)

1. Each engine's tests (tests/gpu_tasks: the real model classes on tiny weights the tests build)
   run on this machine's GPU: `weights.device()` is `cuda` wherever torch sees one, so the
   engines place their models and inputs there and use the dtype they choose for it (bf16 or
   fp16). `AUTEUR_GPU_CHECK=1` makes the tests' conftest refuse to run on anything else.
   They need no services: pytest runs them without the repository's addopts, pytest-django and
   tests/conftest.py (Django, PostgreSQL, Redis), so a bare machine with torch and the engines'
   packages (requirements/gpu.txt) runs them. The one ffmpeg binary they start is $AUTEUR_FFMPEG,
   else imageio-ffmpeg's. Each module has --timeout seconds; one that hangs is ended and fails.
2. One denoising pass of Wan2.1-T2V-14B's transformer at its real size (40 blocks of width 5120,
   random bf16 weights: no download) on the default request (832x480, 5 s: 32,760 tokens), timed
   after a warm-up pass, beside what `gpu_tasks.engines.video_generation.estimated_seconds`
   assumes for one pass on that GPU. The type's time limit and the steps the API admits rest on
   that estimate: a measured pass slower than it means requests are admitted that cannot finish.

It prints one table and exits 0 when every engine's tests pass; without CUDA it says so and
exits 2 having run nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The engines whose code runs on a GPU in production, by their test modules.
ENGINE_TESTS = {
    "transcription (Whisper, pyannote)": "tests/gpu_tasks/test_transcription_hf.py",
    "lip sync (MuseTalk)": "tests/gpu_tasks/test_lip_sync.py",
    "face restoration (GFPGAN)": "tests/gpu_tasks/test_gfpgan.py",
    "face detection (RetinaFace)": "tests/gpu_tasks/test_retinaface.py",
    "performance cloning (LivePortrait)": "tests/gpu_tasks/test_performance_cloning.py",
    "gaze redirection (LivePortrait)": "tests/gpu_tasks/test_gaze_redirection.py",
    "video generation (Wan2.1)": "tests/gpu_tasks/test_video_generation.py",
    "audio generation (Stable Audio Open)": "tests/gpu_tasks/test_audio_generation.py",
    "image generation (FLUX.1)": "tests/gpu_tasks/test_image_generation.py",
    "video query (Qwen2.5-VL)": "tests/gpu_tasks/test_video_query.py",
}
# Wan2.1-T2V-14B's transformer, as its published diffusers config gives it.
WAN_14B: dict[str, Any] = {
    "patch_size": (1, 2, 2), "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024,
}
TEXT_TOKENS = 512  # UMT5's padded prompt length in Wan's pipeline


@dataclass(frozen=True)
class PassTiming:
    tokens: int
    params: int
    seconds: float
    peak_gib: float


def no_cuda_reason() -> str | None:
    """Why this interpreter cannot run the check (None: it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed in this Python"
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        return (f"torch {torch.__version__} here is {build} and sees no GPU. Run it on a machine with CUDA, with "
                "a CUDA build of torch (PyPI's Linux wheel): make gpu-check GPU_PY=/path/to/that/python")
    return None


def gpu_key(name: str) -> str | None:
    """The cost model's name (video_generation.SUSTAINED_FLOPS) for a device name, if it has one."""
    for pattern, key in ((r"H100|H200", "H100"), (r"A100", "A100-80GB"), (r"L40S", "L40S"), (r"A10G|A10\b", "A10G")):
        if re.search(pattern, name):
            return key
    return None


def estimated_pass_seconds(tokens: int, gpu: str) -> float:
    """One transformer pass by the cost model: 2 x params FLOPs per token, 4 x layers x tokens^2 x dim
    for attention, at the GPU's sustained bf16 rate."""
    from gpu_tasks.engines import video_generation as vg

    variant = vg.VARIANTS["wan2.1-t2v-14b"]
    flops = 2 * variant.params * tokens + 4 * variant.layers * tokens * tokens * variant.dim
    return flops / vg.SUSTAINED_FLOPS[gpu]


def time_wan_pass(config: dict[str, Any], *, width: int, height: int, frames: int, device: str, dtype: Any,
                  text_dim: int | None = None) -> PassTiming:
    """A Wan transformer of `config`, random weights made on `device` in `dtype`, timed on one
    pass (after a warm-up pass) over a clip of `frames` frames at `width` x `height`."""
    import torch
    from diffusers import WanTransformer3DModel

    from gpu_tasks.engines.video_generation import tokens

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model: Any = WanTransformer3DModel(**config)
        model.eval()
    finally:
        torch.set_default_dtype(previous)
    latents = torch.randn(1, config["in_channels"], (frames - 1) // 4 + 1, height // 8, width // 8, device=device,
                          dtype=dtype)
    text = torch.randn(1, TEXT_TOKENS, text_dim or config["text_dim"], device=device, dtype=dtype)
    step = torch.tensor([500], device=device)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for warm in (True, False):
            synchronize()
            started = time.perf_counter()
            model(hidden_states=latents, timestep=step, encoder_hidden_states=text, return_dict=False)
            synchronize()
            seconds = time.perf_counter() - started
            if not warm:
                break
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    return PassTiming(tokens=tokens(width, height, frames), params=sum(p.numel() for p in model.parameters()),
                      seconds=seconds, peak_gib=peak)


def engine_test_command(python: str, module: str) -> list[str]:
    """pytest on one engine test module, with no services: the repository's addopts load
    tests.parallel (each xdist worker's servers) and tests/conftest.py imports Django and reaches
    Redis; the engine tests need neither, only tests/gpu_tasks/conftest.py."""
    return [python, "-m", "pytest", "-q", "-rfE", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:django",
            "--confcutdir=tests/gpu_tasks", module]


def run_engine_tests(python: str, timeout_s: float) -> list[tuple[str, str, float, str]]:
    """(engine, PASS/FAIL, seconds, pytest's summary line) of each engine's tests on the GPU."""
    rows = []
    env = {**os.environ, "AUTEUR_GPU_CHECK": "1"}
    for engine, module in ENGINE_TESTS.items():
        started = time.monotonic()
        try:
            run = subprocess.run(engine_test_command(python, module), cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode("utf-8", "replace")
            verdict, summary = "FAIL", f"timed out after {timeout_s:.0f} s"
        else:
            output = run.stdout + run.stderr
            verdict = "PASS" if run.returncode == 0 else "FAIL"
            summary = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
        seconds = time.monotonic() - started
        rows.append((engine, verdict, seconds, summary))
        # As each module ends, with what failed: a run stopped from outside still tells this much.
        print(f"gpu-check: {engine}: {verdict} in {seconds:.0f} s ({summary})", file=sys.stderr, flush=True)
        if verdict != "PASS":
            print("\n".join(output.splitlines()[-80:]) + "\n", file=sys.stderr, flush=True)
    return rows


def pinned_differences(requirements: Path = ROOT / "requirements" / "gpu.txt") -> list[tuple[str, str, str]]:
    """(package, pinned, installed or "missing") for each pin of the GPU image that this Python does
    not have as pinned: a test that fails on such a machine may fail on the version, not the GPU
    (OpenCV 5 has no Haar cascades, which lip sync and LivePortrait find faces with)."""
    from importlib import metadata

    differences = []
    for line in requirements.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if found is None:
            continue
        name, pinned = found.groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed.split("+")[0] != pinned:
            differences.append((name, pinned, installed))
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-tests", action="store_true", help="only the real-size step")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each engine's tests may take (900)")
    args = parser.parse_args()
    reason = no_cuda_reason()
    if reason is not None:
        print(f"gpu-check: no CUDA GPU, nothing was run: {reason}", file=sys.stderr)
        return 2
    import torch

    name = torch.cuda.get_device_name(0)
    print(f"gpu-check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})\n", flush=True)
    differences = pinned_differences()
    if differences:
        print("Not as requirements/gpu.txt pins them (a failure below may be the version's, not the GPU's):")
        print("\n".join(f"- {name}: {installed} here, {pinned} pinned" for name, pinned, installed in differences))
        print(flush=True)
    rows = [] if args.skip_tests else run_engine_tests(sys.executable, args.timeout)
    print("| engine | on the GPU | seconds | tests |\n| --- | --- | --- | --- |")
    for engine, verdict, seconds, summary in rows:
        print(f"| {engine} | {verdict} | {seconds:.0f} | {summary} |", flush=True)
    timing = time_wan_pass(WAN_14B, width=832, height=480, frames=81, device="cuda", dtype=torch.bfloat16)
    key = gpu_key(name)
    estimate = estimated_pass_seconds(timing.tokens, key) if key else None
    print("\n| Wan2.1-T2V-14B transformer, one pass | measured | cost model |\n| --- | --- | --- |")
    print(f"| 832x480, 81 frames ({timing.tokens:,} tokens), {timing.params / 1e9:.1f} B params, bf16 | "
          f"{timing.seconds:.2f} s, peak {timing.peak_gib:.1f} GiB | "
          + (f"{estimate:.2f} s on {key} (measured / model: {timing.seconds / estimate:.2f})" if estimate
             else f"no figure for {name}") + " |")
    failed = [engine for engine, verdict, _, _ in rows if verdict != "PASS"]
    if failed:
        print(f"\nFAIL on the GPU: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
