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


def marked_rows(text: str) -> set[str]:
    """The rows whose headline figure is marked as more than 15 % worse than the one it replaced."""
    return {line for line in table_rows(text) if "more than 15 % worse" in line}


def measured_date(row: str) -> str:
    """A row's last column without the mark of a figure worse than the one it replaced."""
    return row.rsplit("|", 2)[1].split(";", 1)[0].strip()


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
    assert all(measured_date(row) in {d for n, d in stored.items() if n not in report.SECTIONS_ONLY}
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
    assert all(measured_date(row) in {d for n, d in stored.items() if n not in report.SECTIONS_ONLY}
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


def write_fresh(bench_dir: Path, name: str, result: dict[str, Any], mtime: float | None = None) -> None:
    (bench_dir / "results").mkdir(exist_ok=True)
    path = bench_dir / "results" / f"{name}.json"
    path.write_text(json.dumps(result))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def throughput_row(text: str) -> str:
    return next(line for line in table_rows(text) if line.startswith("| pipeline throughput"))


def test_a_figure_more_than_15_percent_worse_than_the_one_it_replaces_is_marked_in_its_row_and_on_stdout(
        bench_dir, capsys):
    report = load_report()
    stored_report = report.main(bench_dir)  # no fresh result: the store's rows, marks and all
    before = json.loads((bench_dir / "last_results.json").read_text())
    old = before["pipeline_throughput"]["result"]
    worker = old["cpu_ms_per_job"]["worker"]
    slower = round(worker * 1.2, 2)
    change = f"{(slower - worker) / worker:+.0%}"
    # Worker CPU 20 % higher (worse), jobs/s 10 % lower (within the margin), the ratio 20 % higher (better).
    fresh = {**old, "cpu_ms_per_job": {**old["cpu_ms_per_job"], "worker": slower},
             "jobs_per_second": round(old["jobs_per_second"] * 0.9, 1),
             "ratio_to_raw": round(old["ratio_to_raw"] * 1.2, 3)}
    write_fresh(bench_dir, "pipeline_throughput", fresh)

    text = report.main(bench_dir)

    row = throughput_row(text)
    figure = f"worker CPU ms/job {worker:g} -> {slower:g} ({change})"
    assert f"**more than 15 % worse than the value it replaced: {figure}**" in row
    marked = row.split("more than 15 %")[1]
    assert "jobs/s" not in marked and "ratio to raw" not in marked
    assert f"WORSE by more than 15 %: pipeline_throughput: {figure}" in capsys.readouterr().out
    # Only the row measured again gains a mark: every other row keeps what the store gave it.
    assert marked_rows(text) - {row} == marked_rows(stored_report) - {throughput_row(stored_report)}
    stored = json.loads((bench_dir / "last_results.json").read_text())
    assert stored["pipeline_throughput"]["worse_than_replaced"] == [
        {"figure": "worker CPU ms/job", "before": worker, "after": slower,
         "change": round((slower - worker) / worker, 3)}]


def test_a_lower_throughput_is_worse_and_the_mark_goes_at_the_next_measurement_that_is_not(bench_dir, capsys):
    report = load_report()
    old = json.loads((bench_dir / "last_results.json").read_text())["pipeline_throughput"]["result"]
    slower = {**old, "jobs_per_second": round(old["jobs_per_second"] * 0.8, 1)}
    write_fresh(bench_dir, "pipeline_throughput", slower, mtime=time.time() - 60)
    assert "jobs/s" in throughput_row(report.main(bench_dir)).split("more than 15 % worse")[1]

    # Measured again, within 15 % of the slower figure it replaces: no mark, nothing on stdout.
    write_fresh(bench_dir, "pipeline_throughput", {**slower, "jobs_per_second": slower["jobs_per_second"] * 0.9})
    capsys.readouterr()
    text = report.main(bench_dir)

    assert "more than 15 % worse" not in throughput_row(text)
    assert "WORSE" not in capsys.readouterr().out
    assert "worse_than_replaced" not in json.loads((bench_dir / "last_results.json").read_text())["pipeline_throughput"]


def test_worse_figures_reads_each_figures_direction_and_skips_what_either_result_lacks():
    report = load_report()
    before = {"drf": {"rps": 1000.0, "p99_ms": 40.0}, "ratio_rps": 1.0}
    assert report.worse_figures("api_reads", before, {"drf": {"rps": 851.0, "p99_ms": 46.0}, "ratio_rps": 1.0}) == []
    worse = report.worse_figures("api_reads", before, {"drf": {"rps": 849.0, "p99_ms": 46.1}, "ratio_rps": 2.0})
    assert [w["figure"] for w in worse] == ["req/s", "p99 ms"]
    assert report.worse_figures("api_reads", before, {"drf": {}}) == []
    assert report.worse_figures("a_benchmark_without_headline_figures", before, {}) == []


def test_the_throughput_row_shows_the_worker_cpu_against_the_raw_chain_and_the_run_targets(bench_dir):
    report = load_report()
    old = json.loads((bench_dir / "last_results.json").read_text())["pipeline_throughput"]["result"]
    counts = ("redis_commands_per_job", "redis_commands_per_raw_chain", "pg_write_transactions_per_job")
    old = {k: v for k, v in old.items() if k not in counts}  # a result from before they were counted
    fresh = {**old, "raw_cpu_ms_per_chain": 9.5, "cpu_ratio_to_raw": 0.88, "cpu_ratio_to_raw_min_max": [0.86, 0.9],
             "ratio_to_raw": 0.74, "cpu_ms_per_job": {**old["cpu_ms_per_job"], "worker": 8.4},
             "targets": {**old["targets"], "ratio_to_raw": 0.75, "worker_cpu_ms_per_job": 9}}
    write_fresh(bench_dir, "pipeline_throughput", fresh)

    row = throughput_row(report.main(bench_dir))

    assert "worker CPU 8.4 ms/job = 0.88 x the raw chain's 9.5 ms/chain (rounds [0.86, 0.9])" in row
    assert ">= 0.75 of raw: **misses target**; worker CPU <= 9 ms/job: meets target" in row
    assert "Redis commands/job" not in row


def test_the_throughput_row_shows_the_servers_work_per_job_and_a_job_that_asks_more_is_marked(bench_dir):
    report = load_report()
    old = json.loads((bench_dir / "last_results.json").read_text())["pipeline_throughput"]["result"]
    work = {"redis_commands_per_job": 27.9, "redis_commands_per_raw_chain": 45.4, "pg_write_transactions_per_job": 7.0}
    write_fresh(bench_dir, "pipeline_throughput", {**old, "cpu_ratio_to_raw": 0.88, **work})

    row = throughput_row(report.main(bench_dir))

    assert "27.9 Redis commands/job (45.4/raw chain), 7.0 Postgres write transactions/job" in row
    more = report.worse_figures("pipeline_throughput", work, {**work, "pg_write_transactions_per_job": 9.0})
    assert [w["figure"] for w in more] == ["Postgres write transactions per job"]


def test_a_stored_mark_stays_in_its_row_after_the_date_until_the_figure_is_measured_again(bench_dir):
    report = load_report()
    store = json.loads((bench_dir / "last_results.json").read_text())
    store["memory"]["worse_than_replaced"] = [{"figure": "API worker MB", "before": 100.0, "after": 130.0,
                                               "change": 0.3}]
    (bench_dir / "last_results.json").write_text(json.dumps(store))

    text = report.main(bench_dir)

    row = next(line for line in table_rows(text) if line.startswith("| peak RSS, idle"))
    date = dates(report, store)["memory"]
    assert row.endswith(f"| {date}; **more than 15 % worse than the value it replaced: API worker MB 100 -> 130 "
                        "(+30%)** |")
    assert measured_date(row) == date
