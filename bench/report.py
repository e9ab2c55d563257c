"""Writes bench/RESULTS.md from the JSON each benchmark left in bench/results/ (`make bench`)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool) -> str:
    return "meets target" if ok else "**misses target**"


def main() -> None:
    rows: list[str] = []
    if (d := load("pipeline_overhead")) is not None:
        u = d["unloaded"]
        rows.append(f"| pipeline overhead, one job at a time (noop GPU) | submit->inference start p50 "
                    f"{u['submit_to_inference_start_ms']['p50']} ms / p99 {u['submit_to_inference_start_ms']['p99']} ms;"
                    f" inference end->completed p50 {u['inference_end_to_completed_ms']['p50']} ms / p99 "
                    f"{u['inference_end_to_completed_ms']['p99']} ms | - | - | p99 <= 100 ms: "
                    f"{verdict(max(u['submit_to_inference_start_ms']['p99'], u['inference_end_to_completed_ms']['p99']) <= 100)} |")
    if (d := load("pipeline_throughput")) is not None:
        rows.append(f"| pipeline throughput: {d['jobs']} TTS jobs over HTTP, {d['clients']} clients, {d['users']} users, noop GPU, {d['worker_processes']} worker processes | {d['jobs_per_second']} jobs/s ({d['completed']} completed, {d['failed']} failed); submit p50 {d['submit_ms']['p50']} / p99 {d['submit_ms']['p99']} ms; overhead p99 {d['submit_to_inference_start_ms']['p99']} / {d['inference_end_to_completed_ms']['p99']} ms | raw 3-task Celery chain: {d['raw_chain_per_second']} chains/s (mean of before {d['raw_chain_per_second_before_after'][0]} / after {d['raw_chain_per_second_before_after'][1]}) | {d['ratio_to_raw']} | >= 100 jobs/s: {verdict(d['jobs_per_second'] >= 100)}; >= 0.4 of raw: {verdict(d['ratio_to_raw'] >= 0.4)} |")
    if (d := load("api_reads")) is not None:
        rows.append(f"| GET /api/v1/jobs/{{id}}, {d['clients']} clients, gunicorn {d['gunicorn_workers']} "
                    f"{d['worker_class']} workers | {d['drf']['rps']} req/s, p50 {d['drf']['p50_ms']} ms, p99 "
                    f"{d['drf']['p99_ms']} ms | bare Django view: {d['bare']['rps']} req/s, p99 {d['bare']['p99_ms']} ms"
                    f" | {d['ratio_rps']} | >= 0.7: {verdict(d['ratio_rps'] >= 0.7)}; p99 < 50 ms: "
                    f"{verdict(d['drf']['p99_ms'] < 50)} |")
    if (d := load("ledger_contention")) is not None:
        rows.append(f"| ledger: deductions on one hot account, {d['workers']} processes | {d['service']['ops_per_s']} ops/s "
                    f"| raw guarded UPDATE + INSERT: {d['raw']['ops_per_s']} ops/s | {d['ratio_service_to_raw']} | "
                    f">= 0.5: {verdict(d['ratio_service_to_raw'] >= 0.5)}; overdrafts {d['overdrafts']}, ledger "
                    f"{d['ledger_check']} |")
    if (d := load("render")) is not None:
        rows.append(f"| render, 10 clips, {d['settings']['output_s']} s output | {d['engine_median_s']} s | hand-written "
                    f"ffmpeg command: {d['hand_median_s']} s | {d['ratio']} | <= 1.2: {verdict(d['ratio'] <= 1.2)} |")
    if (d := load("memory")) is not None:
        rows.append(f"| peak RSS, idle | API worker {d['api_worker_mb']} MB; Celery main {d['worker_main_mb']} MB, pool "
                    f"{d['worker_pool_mb']} MB | - | - | API <= 150 MB: {verdict(d['api_ok'])}; worker <= 200 MB: "
                    f"{verdict(d['worker_ok'])} |")
    if (d := load("media_upload")) is not None:
        m = d["median"]
        rows.append(f"| upload -> confirm -> ready, {d['file_bytes'] / 1e6:.0f} MB video | {m['total_s']} s (PUT "
                    f"{m['put_s']} s, confirm->ready {m['processing_s']} s) | - | - | - |")
    if (d := load("edl_latency")) is not None:
        rows.append(f"| EDL of {d['clips']} clips ({d['document_bytes'] // 1024} KiB) | service GET p50 "
                    f"{d['service']['get']['p50_ms']:.0f} / p99 {d['service']['get']['p99_ms']:.0f} ms; PUT p50 "
                    f"{d['service']['put']['p50_ms']:.0f} / p99 {d['service']['put']['p99_ms']:.0f} ms | - | - | - |")
    chaos = ""
    if (d := load("chaos")) is not None:
        f = d["figures"]
        chaos = (f"\n## Chaos drill (`make chaos`)\n\n{d['jobs']} jobs from {d['users']} users over {d['clients']} "
                 f"clients, noop GPU with faults `{d['faults']}`; reaper every {d['reaper']['AUTEUR_REAPER_INTERVAL_SECONDS']}"
                 f" s. Disruptions, in order: " + "; ".join(x["what"] for x in d["disruptions"]) + ".\n\n"
                 "| figure | value |\n| --- | --- |\n"
                 + "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in f.items())
                 + "\n\n| invariant | result | detail |\n| --- | --- | --- |\n"
                 + "\n".join(f"| {k} | {'pass' if v['pass'] else '**FAIL**'} | {v['detail']} |"
                              for k, v in d["invariants"].items()) + "\n")
    text = f"""# Benchmark results

Written by `make bench` (bench/report.py) from bench/results/*.json. Each figure comes from a
script in this folder that starts its own throwaway stack; where a baseline is shown, it was
measured in the same run on the same servers.

- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}
- written: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}

| benchmark | figure | baseline (same run) | ratio | target |
| --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n" + chaos
    (BENCH / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
