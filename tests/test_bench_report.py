"""bench/report.py keeps every figure it did not measure this time, with the date it was measured."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    """A bench folder as on a fresh clone: the committed store, no bench/results/."""
    shutil.copy(BENCH / "last_results.json", tmp_path / "last_results.json")
    return tmp_path


def table_rows(text: str) -> list[str]:
    table = text.split("| benchmark |", 1)[1].split("\n\n", 1)[0]
    return [line for line in table.splitlines()[2:] if line.startswith("|")]


def dates(report: ModuleType, store: dict[str, Any]) -> dict[str, str]:
    """When each stored figure was measured, as the report shows it (the committed store changes
    every time the benchmarks are run, so the tests read their expectations from it)."""
    return {name: datetime.fromisoformat(entry["measured_at"]).strftime(report.DATE_FORMAT)
            for name, entry in store.items()}


def test_a_fresh_clone_renders_every_stored_figure_with_its_date(bench_dir):
    report = load_report()
    stored = dates(report, json.loads((bench_dir / "last_results.json").read_text()))
    text = report.main(bench_dir)
    rows = table_rows(text)
    assert len(rows) == len([name for name in stored if name not in report.SECTIONS_ONLY])
    assert all(row.rsplit("|", 2)[1].strip() in {d for n, d in stored.items() if n not in report.SECTIONS_ONLY}
               for row in rows)
    assert f"Measured {stored['chaos']}." in text
    assert json.loads((bench_dir / "last_results.json").read_text()) == json.loads(
        (BENCH / "last_results.json").read_text())


def test_a_fresh_chaos_result_replaces_only_the_chaos_section(bench_dir):
    report = load_report()
    before = json.loads((bench_dir / "last_results.json").read_text())
    chaos = {**before["chaos"]["result"], "jobs": 12, "users": 3}
    (bench_dir / "results").mkdir()
    (bench_dir / "results" / "chaos.json").write_text(json.dumps(chaos))

    text = report.main(bench_dir)

    stored = dates(report, before)
    rows = table_rows(text)
    assert len(rows) == len([name for name in stored if name not in report.SECTIONS_ONLY])
    assert all(row.rsplit("|", 2)[1].strip() in {d for n, d in stored.items() if n not in report.SECTIONS_ONLY}
               for row in rows)
    reads = before["api_reads"]["result"]["drf"]["rps"]
    assert f"| GET /api/v1/jobs/{{id}}, 32 clients, gunicorn 3 sync workers | {reads} req/s" in text
    assert f"Measured {stored['chaos']}." not in text
    assert "12 jobs from 3 users over 8 clients" in text
    after = json.loads((bench_dir / "last_results.json").read_text())
    assert after["chaos"]["result"] == chaos
    assert after["chaos"]["measured_at"] > before["chaos"]["measured_at"]
    assert {k: v for k, v in after.items() if k != "chaos"} == {k: v for k, v in before.items() if k != "chaos"}
    assert (bench_dir / "RESULTS.md").read_text() == text


def test_a_leftover_result_older_than_the_stored_one_is_ignored(bench_dir):
    report = load_report()
    before = json.loads((bench_dir / "last_results.json").read_text())
    (bench_dir / "results").mkdir()
    stale = bench_dir / "results" / "memory.json"
    stale.write_text(json.dumps({**before["memory"]["result"], "api_worker_mb": 999.0}))
    old = time.mktime((2020, 1, 1, 0, 0, 0, 0, 0, 0))
    os.utime(stale, (old, old))

    text = report.main(bench_dir)

    assert f"API worker {before['memory']['result']['api_worker_mb']} MB" in text
    assert json.loads((bench_dir / "last_results.json").read_text()) == before


def test_the_events_ab_and_load_averages_of_a_fresh_throughput_result_are_shown(bench_dir):
    report = load_report()
    before = json.loads((bench_dir / "last_results.json").read_text())
    base = {k: v for k, v in before["pipeline_throughput"]["result"].items() if k not in ("events_ab", "load_average")}
    off = {**base, "jobs_per_second": 50.0, "raw_chain_per_second": 90.0,
           "cpu_ms_per_job": {**base["cpu_ms_per_job"], "worker": 20.0}}
    fresh = {**base, "load_average": {"start": [1.5, 1.2, 1.0], "end": [2.5, 1.7, 1.1]},
             "events_ab": {"on": base, "off": off, "jobs_per_second_off_over_on": 1.1,
                           "worker_cpu_ms_per_job_on_minus_off": 3.5}}
    (bench_dir / "results").mkdir()
    (bench_dir / "results" / "pipeline_throughput.json").write_text(json.dumps(fresh))

    text = report.main(bench_dir)

    row = next(line for line in table_rows(text) if line.startswith("| pipeline throughput"))
    assert "load average 1.5/1.2/1.0 at start, 2.5/1.7/1.1 at end" in row
    assert "worker without task/queue-wait events: 50.0 jobs/s (1.1 x with), raw 90.0 chains/s" in row
    assert "(events cost 3.5 ms/job)" in row


def test_a_result_without_load_averages_or_events_ab_renders_as_before():
    report = load_report()
    assert report.load_note({}) == "" and report.events_ab_note({}) == ""


def test_a_partition_run_shows_what_each_fault_touched(bench_dir):
    report = load_report()
    before = json.loads((bench_dir / "last_results.json").read_text())
    run = before["partition"]["result"]["runs"][0]
    touched = {"submissions": 45, "answers": {"202": 43, "402": 2}, "answer_ms": {"p50": 40, "p95": 900, "max": 3100},
               "running_at_start": {"jobs": 8, "ended": {"completed": 7, "canceled": 1}, "attempts_over_1": 2},
               "accepted_during": {"jobs": 43, "ended": {"completed": 43}, "attempts_over_1": 0}}
    faults = [{**run["faults"][0], "touched": touched}, {**run["faults"][1], "touched": {}}]
    fresh = {**before["partition"]["result"], "runs": [{**run, "faults": faults}]}
    (bench_dir / "results").mkdir()
    (bench_dir / "results" / "partition.json").write_text(json.dumps(fresh))

    text = report.main(bench_dir)

    assert report.TOUCHED_HEADER in text
    assert (f"| {faults[0]['fault']} | 45 (202: 43, 402: 2) | 40 / 900 / 3100 ms | "
            "8 (canceled 1, completed 7; 2 with 2+ attempts) | 43 (completed 43; 0 with 2+ attempts) |") in text
    assert f"| {faults[1]['fault']} | - | - | - | - |" in text
