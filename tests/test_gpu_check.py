"""scripts/gpu_check.py (`make gpu-check`) where there is no GPU: it says so and runs nothing, and
the real-size pass it times runs here on a tiny Wan transformer through the same code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from scripts import gpu_check


def test_without_cuda_it_says_so_and_runs_nothing() -> None:
    run = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no CUDA GPU, nothing was run" in run.stderr and "GPU_PY=" in run.stderr
    assert run.stdout == ""


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
