"""The chaos drill's short version (`bench/chaos.py --quick`), on its own throwaway stack.

75 jobs of every kind (and a batch of 15) with injected GPU faults, hung calls included, while a pool process and a
whole worker node are SIGKILLed and Redis and Postgres restart (and the RabbitMQ node, under
`make test-rabbitmq`), on production's timing scaled down as a whole (every time limit, the grace,
the reaper's period and thresholds x 0.05). The drill checks from the database that no job was lost
or stuck, that refunds happened exactly once and only for failed or canceled jobs (outputs flagged by the
screening's test seam among them), that a text the content policy refuses made no job, that every
ledger adds up and never went negative, and that completed jobs have one set of outputs. The hung
calls announce nothing, as a hung container does: only the reaper ends them, so a reaper whose
time-out path is broken leaves them processing and fails the drill. The full run (1,000 jobs,
production's timing unscaled) is `make chaos`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import REPO_ROOT

QUICK_BATCH = 15  # bench/chaos.py's QUICK_BATCH: the batch's items in the quick drill


# The drill waits up to 300 s for its jobs to end: a failing drill reports what it left running.
@pytest.mark.timeout(600)
def test_the_quick_chaos_drill_keeps_every_invariant(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    run = subprocess.run([sys.executable, "bench/chaos.py", "--quick", "--out", str(out)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=560)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = {name: v["detail"] for name, v in report["invariants"].items() if not v["pass"]}
    assert not failed and run.returncode == 0, (failed, run.stdout[-3000:])
    figures = report["figures"]
    # The drill really disrupted something and really produced each outcome.
    # Five disruptions, and a broker restart when the broker is RabbitMQ (`make test-rabbitmq`).
    expected_broker = "rabbitmq" if os.environ.get("AUTEUR_DEVSTACK_BROKER") == "rabbitmq" else "redis"
    assert report["broker"] == expected_broker
    assert len(report["disruptions"]) == (6 if expected_broker == "rabbitmq" else 5)
    # Every submission was answered: accepted, or refused 402 (every 10th user's credits run out, and
    # each team's budgeted member meets their budget); the batch's items were accepted besides.
    assert figures["batch_items"] == QUICK_BATCH
    # and every REFUSED_EVERY-th was a text the content policy refuses (422, no job).
    assert figures["refused_policy"] == len(range(1, report["jobs"], 25)) > 0
    assert (figures["accepted"] - figures["batch_items"] + sum(figures["refused_402"].values())
            + figures["refused_policy"]) == report["jobs"]
    assert set(figures["refused_402"]) <= {"insufficient_credits", "spend_cap_reached"}
    assert figures["refused_402"].get("spend_cap_reached", 0) > 0
    assert figures["completed"] > 0 and figures["failed"] > 0 and figures["canceled"] > 0
    assert figures["refunded"] == figures["failed"] + figures["canceled"]
    assert figures["retries"] > 0
    # Outputs flagged by the screening's test seam were withheld: failed output_moderated, refunded once.
    assert figures["outputs_withheld"] > 0 and figures["failure_codes"].get("output_moderated") == \
        figures["outputs_withheld"]
    # Calls out of GPU memory ran again on a larger class of their type's ladder, and completed there.
    assert any(key.startswith("completed on ") for key in figures["on_a_larger_gpu"]), figures["on_a_larger_gpu"]
    # Hung calls were timed out (by the reaper, or by the poll it sent) on the scaled limits.
    assert report["timing"]["scale"] == 0.05 and report["timing"]["tts_limit_s"] == 6
    assert figures["failure_codes"].get("timeout", 0) > 0 and figures["reaper_repolls"] > 0
