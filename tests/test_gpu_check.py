"""scripts/gpu_check.py (`make gpu-check`) where there is no GPU: it says so and runs nothing, and
the real-size pass it times runs here on a tiny Wan transformer through the same code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from scripts import gpu_check


def test_without_cuda_it_says_so_and_runs_nothing() -> None:
    run = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no CUDA GPU, nothing was run" in run.stderr and "GPU_PY=" in run.stderr
    assert run.stdout == ""


def test_the_engine_tests_run_with_no_services_and_no_django() -> None:
    """A bare GPU machine has no Django, PostgreSQL or Redis: the command gpu_check runs each engine's
    tests with must not load pytest-django or tests/conftest.py (either would fail at once on a
    settings module that does not exist, with no server to reach)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "MONGODB_URI",
                                                                "AUTEUR_GPU_CHECK")}
    env["DJANGO_SETTINGS_MODULE"] = "no_such_settings_module"
    run = subprocess.run(gpu_check.engine_test_command(sys.executable, "tests/gpu_tasks/test_retinaface.py"),
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.strip().splitlines()[-1] and "failed" not in run.stdout


def test_the_pass_it_times_runs_a_wan_transformer_of_the_given_config() -> None:
    import torch

    tiny = {**gpu_check.WAN_14B, "num_attention_heads": 2, "attention_head_dim": 8, "ffn_dim": 32, "num_layers": 2,
            "text_dim": 32, "rope_max_seq_len": 64}
    timing = gpu_check.time_wan_pass(tiny, width=64, height=48, frames=5, device="cpu", dtype=torch.float32)
    assert timing.tokens == 2 * 3 * 4 and timing.seconds > 0 and timing.params > 0


@pytest.mark.parametrize(("name", "key"), [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
                                           ("NVIDIA A10G", "A10G"), ("NVIDIA L40S", "L40S"), ("Tesla T4", None)])
def test_the_cost_models_figure_for_the_device(name: str, key: str | None) -> None:
    assert gpu_check.gpu_key(name) == key
    if key:  # the default request (32,760 tokens): seconds, not milliseconds or hours
        assert 1 < gpu_check.estimated_pass_seconds(32_760, key) < 120


def test_it_names_the_packages_not_as_the_gpu_image_pins_them(tmp_path: Path) -> None:
    from importlib import metadata

    pins = tmp_path / "gpu.txt"
    pins.write_text(f"# a comment\nnumpy=={metadata.version('numpy')}\npytest==0.0.1  # old\n"
                    "no-such-package-here==1.0\n")
    assert gpu_check.pinned_differences(pins) == [("pytest", "0.0.1", metadata.version("pytest")),
                                                  ("no-such-package-here", "1.0", "missing")]
