"""The committed screener model is exactly what the committed training data and script make, and
the script cannot read the tests' held-out evaluation set."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.screening import text as screener

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_screening.py"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "screening_eval.jsonl"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_retraining_from_the_committed_data_gives_the_committed_model_byte_for_byte(tmp_path: Path) -> None:
    # At the L2 strength the model records (the search among the others is the script's without
    # --l2): five fits (one per fold, then every line) of 300 full-batch steps, about 26 s of one core.
    with np.load(screener.MODEL_PATH, allow_pickle=False) as model:
        l2 = float(model["l2"])
    out = tmp_path / "text_head.npz"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--l2", repr(l2)], cwd=ROOT,
                         capture_output=True, text=True, timeout=840, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert digest(out) == digest(screener.MODEL_PATH), run.stdout


@pytest.mark.slow
def test_the_training_script_refuses_to_open_the_evaluation_set(tmp_path: Path) -> None:
    copy = tmp_path / "screening_eval.jsonl"
    copy.write_bytes(FIXTURE.read_bytes())
    for forbidden in (FIXTURE, copy):  # by its place under tests/, and by its name anywhere
        run = subprocess.run([sys.executable, str(SCRIPT), "--train", str(forbidden), "--out",
                              str(tmp_path / "model.npz")], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode != 0
        assert "PermissionError: training must not read" in run.stderr
        assert not (tmp_path / "model.npz").exists()

