"""Writes bench/RESULTS.md from the last measured result of every benchmark (`make bench`).

bench/last_results.json (committed) keeps, for each benchmark, the JSON its script last wrote in
bench/results/ (git-ignored), with when and on what machine it was measured. Each run merges the
fresh files into it, so a figure keeps its last measured value, dated, until it is measured
again: `make chaos` on a fresh clone rewrites the chaos section and keeps every other row.

A fresh result whose headline figure (HEADLINE_FIGURES) is more than 15 % worse than the value
it replaces is marked in its row of RESULTS.md and printed after the report, so a regression
shows the day it lands; the mark stays with the row until that benchmark is measured again.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

BENCH = Path(__file__).resolve().parent
STORE = "last_results.json"
DATE_FORMAT = "%Y-%m-%d %H:%M UTC"


def verdict(ok: bool) -> str:
    return "meets target" if ok else "**misses target**"


def _cores(case: dict[str, Any]) -> str:
    """How busy the machine's cores and the worker were in a batch_fairness case (when measured)."""
    if "cores_busy" not in case:
        return ""
    return f"; cores busy {case['cores_busy']:.2f} (worker {case['worker_cores_busy']:.2f})"


def interchange_import_row(d: dict[str, Any]) -> str:
    """Timeline imports at the limits, hostile files, a bystander (bench/interchange_import.py)."""
    imports = "; ".join(f"{fmt} {f['clips']:,} clips ({f['bytes'] // 1024:,} KiB) p50 {f['p50_s']} / p99 {f['p99_s']} s"
                        for fmt, f in d["imports"].items())
    worst = max(d["attacks"].values(), key=lambda a: a["max_s"], default=None)
    attacks = (f"{len(d['attacks'])} hostile files, every answer a 422 within {worst['max_s']} s" if worst else "-")
    b = d["bystander"]
    return (f"| timeline imports over HTTP, {d['gunicorn_workers']} sync workers: the largest file of each format the "
            f"limits accept | {imports}; {attacks} | a bystander's GET /projects p99: alone {b['alone']['p99_s']} s, "
            f"during imports {b['during_imports']['p99_s']} s, during attacks {b['during_attacks']['p99_s']} s | "
            f"{b['during_imports_p99_ratio']}x / {b['during_attacks_p99_ratio']}x | import p99 < 1 s: "
            f"{verdict(d['worst_import_p99_s'] < d['target_p99_s'])} |")


def interchange_readers_row(d: dict[str, Any]) -> str:
    """Reading the largest accepted timeline file, in the confined child's code (bench/interchange_readers.py)."""
    def side(key: str) -> str:
        return "; ".join(f"{r['format']} ({r['shape']}, {r['clips']:,} clips) p50 {r[key]['p50_s']} / p99 {r[key]['p99_s']} s"
                         for r in d["rows"])
    worst = max(r["after"]["p99_s"] for r in d["rows"])
    ratio = min(r["before"]["p50_s"] / max(r["after"]["p50_s"], 1e-6) for r in d["rows"])
    return (f"| reading the largest timeline file the limits accept, CPU of `read()` ({d['runs']} runs) | {side('after')} "
            f"| the adapters as they were (same run): {side('before')} | at least {ratio:.1f}x (p50) | read p99 < 1 s: "
            f"{verdict(worst < 1)} |")


def inflight_row(d: dict[str, Any]) -> str:
    """Jobs in flight (bench/inflight.py): announced completions against today's polling."""
    def side(mode: str) -> str:
        parts = []
        for c in (c for c in d["cases"] if c["mode"] == mode):
            w = c["waiting"]
            if w.get("valid") is False:
                parts.append(f"N={c['n']} (hold {c['hold_s']} s): window {w['seconds']} s, too short to measure")
                continue
            parts.append(f"N={c['n']} (hold {c['hold_s']} s): CPU {w.get('cpu_percent_of_core', '-')} % of a core, "
                         f"{w.get('broker_messages_per_s', '-')} msg/s, Redis +{w.get('redis_memory_kib', '-')} KiB "
                         f"while waiting; {c['broker_messages_per_job']} msg/job; ends at {c.get('ends_per_s', '-')}/s, end->completed p50 "
                         f"{c['end_to_completed_ms']['p50']} / p99 {c['end_to_completed_ms']['p99']} ms")
        return "; ".join(parts) or "-"
    announced = [c for c in d["cases"] if c["mode"] == "announce"]
    largest = max(announced, key=lambda c: c["n"]) if announced else None
    # Announced against polled at the largest N both ran.
    polled = max((c for c in d["cases"] if c["mode"] == "poll"), key=lambda c: c["n"], default=None)
    peer = next((c for c in announced if polled and c["n"] == polled["n"]), None)
    ratio = "-"
    if peer and polled and polled["waiting"].get("cpu_percent_of_core"):
        ratio = (f"{peer['waiting'].get('cpu_percent_of_core', 0) / polled['waiting']['cpu_percent_of_core']:.3f} "
                 f"(CPU, N={peer['n']})")
    cpu_ok = largest is not None and largest["waiting"].get("cpu_percent_of_core", 100) < 5
    p99_ok = bool(announced) and all(c["end_to_completed_ms"]["p99"] < 1000 for c in announced)
    verdicts = (f"CPU < 5 % of a core at N={largest['n'] if largest else '-'} (issue: N=5,000, T=120 s): {verdict(cpu_ok)}; "
                f"p99 < 1 s at every N: {verdict(p99_ok)}")
    hold = (f"max({d['hold_s']}, N x {d['seconds_per_job']}) s + as much again spread" if "seconds_per_job" in d
            else f"{d['hold_s']} s + up to {d.get('spread_s', 0)} s")
    return (f"| jobs in flight: N calls held {hold}, {d['status_latency_ms']} ms status calls, noop GPU, "
            f"{d['worker_processes']} worker processes; announced | {side('announce')} | polling (same run): "
            f"{side('poll')} | {ratio} | {verdicts} |")


def cold_note(d: dict[str, Any]) -> str:
    """The first job after the worker started, measured apart (bench/pipeline_overhead.py)."""
    cold = d.get("cold_first_job")
    if not cold:
        return ""
    return (f" (the first job after the worker started: {cold['submit_to_inference_start_ms']['p50']} / "
            f"{cold['inference_end_to_completed_ms']['p50']} ms)")


def load_note(d: dict[str, Any]) -> str:
    """The machine's load averages while the figure was measured, where the result recorded them."""
    if "load_average" not in d:
        return ""
    start, end = d["load_average"]["start"], d["load_average"]["end"]
    return f"; load average {'/'.join(map(str, start))} at start, {'/'.join(map(str, end))} at end (2 cores)"


def cpu_ratio_note(d: dict[str, Any]) -> str:
    """The worker's CPU per job over its CPU per raw chain, measured alternately in the same run:
    load inflates both, so this is the figure to compare between runs on a shared machine."""
    if "cpu_ratio_to_raw" not in d:
        return ""
    tasks = f", {d['step_tasks_per_job']} step tasks/job" if "step_tasks_per_job" in d else ""
    # The work a job asks of the servers, which load does not move (older results lack it).
    work = (f", {d['redis_commands_per_job']} Redis commands/job ({d['redis_commands_per_raw_chain']}/raw chain), "
            f"{d['pg_write_transactions_per_job']} Postgres write transactions/job"
            if "redis_commands_per_job" in d else "")
    return (f" = {d['cpu_ratio_to_raw']} x the raw chain's {d['raw_cpu_ms_per_chain']} ms/chain (rounds "
            f"{d['cpu_ratio_to_raw_min_max']}){tasks}{work}")


def throughput_verdicts(d: dict[str, Any]) -> str:
    targets = d.get("targets", {})
    ratio, cpu = targets.get("ratio_to_raw", 0.7), targets.get("worker_cpu_ms_per_job", 10)
    return (f">= {ratio} of raw: {verdict(d['ratio_to_raw'] >= ratio)}; worker CPU <= {cpu} ms/job: "
            f"{verdict(d['cpu_ms_per_job']['worker'] <= cpu)}")


def events_ab_note(d: dict[str, Any]) -> str:
    """`--events-ab`: the same run again with the worker's task and queue-wait events off."""
    if "events_ab" not in d:
        return ""
    ab, off = d["events_ab"], d["events_ab"]["off"]
    return (f"; same stack, worker without task/queue-wait events: {off['jobs_per_second']} jobs/s "
            f"({ab['jobs_per_second_off_over_on']} x with), raw {off['raw_chain_per_second']} chains/s, worker CPU "
            f"{off['cpu_ms_per_job']['worker']} ms/job (events cost {ab['worker_cpu_ms_per_job_on_minus_off']} ms/job)")


def tracing_ab_note(d: dict[str, Any]) -> str:
    """`--tracing-ab`: the pipeline again, right after on the same stack, with traces on in the API
    and the worker (exported over OTLP/HTTP to a loopback receiver)."""
    if "tracing_ab" not in d:
        return ""
    ab, on, off = d["tracing_ab"], d["tracing_ab"]["on"], d["tracing_ab"]["off"]
    exported = ab.get("exported") or {}
    return (f"; traces on (API and worker exporting OTLP/HTTP, {exported.get('bytes', 0) / 1e6:.1f} MB in "
            f"{exported.get('requests', 0)} batches), same stack right after: {on['jobs_per_second']} jobs/s = "
            f"{ab['jobs_per_second_on_over_off']} x off ({off['jobs_per_second']}), ratio to raw {on['ratio_to_raw']} "
            f"= {ab['ratio_to_raw_on_over_off']} x off, CPU +{ab['cpu_ms_per_job_on_minus_off']['api']} ms/job API, "
            f"+{ab['cpu_ms_per_job_on_minus_off']['worker']} ms/job worker (>= 0.9 x off: "
            f"{verdict(ab['jobs_per_second_on_over_off'] >= 0.9)})")


def submit_recovery_row(d: dict[str, Any]) -> str:
    phases = ", ".join(f"{n} {p}" for p, n in sorted(d["by_phase"].items()))
    found = ", ".join(f"{n} by {how}" for how, n in sorted(d["recovered_by"].items()))
    ok = not d["problems"] and d["balance_consistent"] and not d["ledger_check_problems"]
    return (f"| submission drill: a client killed (SIGKILL) at {d['points']:,} random points of a submission "
            f"({phases}), then recovering by its key | {found}; keys with other than one job "
            f"{d['jobs_per_key_other_than_one']}, double charges {d['double_charges']}, balance consistent "
            f"{d['balance_consistent']}, ledger_check problems {d['ledger_check_problems']} | answer p50 "
            f"{d['median_answer_ms']} ms | - | every job recovered, charged once: {verdict(ok)} |")


def retention_row(d: dict[str, Any]) -> str:
    """bench/retention_sweep.py: one batch of each sweep without and with its index."""
    ev, idem, out = d["job_events"], d["idempotency_keys"], d["job_outputs"]

    def side(name: str) -> str:
        return (f"job events: backlog batch {ev['backlog'][name]['ms']} ms, steady run ({ev['steady']['run_deleted']} "
                f"due) {ev['steady'][name]['run_ms']} ms, nothing-due batch {ev['swept'][name]['ms']} ms; idempotency "
                f"records: backlog {idem['backlog'][name]['ms']} ms, nothing due {idem['swept'][name]['ms']} ms; job "
                f"outputs page: backlog {out['backlog'][name]['ms']} ms, nothing due {out['swept'][name]['ms']} ms")
    return (f"| retention sweeps: {d['jobs']} jobs, {d['events']} events over {d['days']} days, batches of {d['batch']},"
            f" Postgres {d['postgres']} | with the indexes: {side('after')} | without (job events: the query before "
            f"the index): {side('before')} | steady run {ev['steady']['run_ratio']}; nothing due: job events "
            f"{ev['swept']['ratio']}, idempotency {idem['swept']['ratio']}, outputs {out['swept']['ratio']} | - |")


TIMELINE_COMPUTATIONS = ("cuts", "render_refusal", "render_snapshot", "captions_json", "captions_srt",
                         "captions_dense_srt", "fillers")


def _timeline_counts(t: dict[str, Any]) -> str:
    return (f"{t['words']:,} words, {t['pauses']:,} pauses, {t['segments']:,} segments, {t['clips']:,} clips, "
            f"{t['document_bytes'] / 2**20:.1f} MiB")


def timeline_limits_row(d: dict[str, Any]) -> str:
    """bench/timeline_limits.py: the slowest computation on the largest accepted timeline, the
    bystander's wait over HTTP, the former code's captions on a smaller timeline."""
    accepted, base, http = d["in_process"]["largest_accepted"], d["in_process"]["baseline"], d["http"]
    worst = max(accepted["figures"].items(), key=lambda kv: kv[1]["cpu"]["p99_ms"])
    captions = base["figures"]["captions_json"]
    return (f"| timeline at the EDL limits (largest accepted: {_timeline_counts(accepted['timeline'])}), one core "
            f"| slowest computation {worst[0]}: CPU p99 {worst[1]['cpu']['p99_ms']} ms (wall {worst[1]['wall']['p99_ms']}"
            f" ms); over HTTP, {http['caption_clients']} clients asking for its captions on {http['gunicorn_workers']} "
            f"gunicorn workers: another user's GET /projects p99 {http['bystander_loaded']['p99_ms']} ms (alone "
            f"{http['bystander_alone']['p99_ms']} ms){load_note(d)} | former code, captions of "
            f"{base['timeline']['words']:,} words: CPU p50 {captions['former']['cpu']['p50_ms']} ms (new "
            f"{captions['new']['cpu']['p50_ms']} ms) | {captions['ratio_cpu_p50']} (captions) | p99 < "
            f"{d['target_p99_ms']} ms: {verdict(worst[1]['cpu']['p99_ms'] < d['target_p99_ms'])} |")


def timeline_limits_section(load: Callable[[str], dict[str, Any] | None], measured: Callable[[str], str]) -> str:
    """Each computation of bench/timeline_limits.py on its three timelines, and the HTTP figures."""
    if (d := load("timeline_limits")) is None:
        return ""
    ip, http = d["in_process"], d["http"]
    accepted, limits, base = ip["largest_accepted"], ip["count_limits"], ip["baseline"]
    lines = [f"\n## Timeline limits (`bench/timeline_limits.py`)\n\nMeasured {measured('timeline_limits')}"
             f"{load_note(d)}. The costliest shape (every other word deleted, a deleted pause in every gap, clips "
             "back to back on every track), the cyclic collector paused as the API pauses it (auteur/core/collector.py), CPU "
             f"time of one process (wall time in brackets: the machine is shared). Largest accepted: {_timeline_counts(accepted['timeline'])} (the byte limit binds first); at "
             f"the count limits: {_timeline_counts(limits['timeline'])}; baseline: "
             f"{_timeline_counts(base['timeline'])}, the former quadratic code (`bench/quadratic_timeline.py`) and "
             "the new in the same run. The former render submission had no piece limit and cut every clip; the new "
             "one counts the pieces and refuses past the engine's limit, so its baseline row compares the two.\n",
             "| computation | largest accepted: p50 / p99 (wall p99) ms | count limits: p50 / p99 (wall p99) ms | "
             "baseline: former p50 ms | baseline: new p50 ms | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]

    def cell(f: dict[str, Any]) -> str:
        return f"{f['cpu']['p50_ms']} / {f['cpu']['p99_ms']} ({f['wall']['p99_ms']})"

    for name in TIMELINE_COMPUTATIONS:
        b = base["figures"].get(name)
        lines.append(f"| {name} | {cell(accepted['figures'][name])} | {cell(limits['figures'][name])} | "
                     f"{b['former']['cpu']['p50_ms'] if b else '-'} | {b['new']['cpu']['p50_ms'] if b else '-'} | "
                     f"{b['ratio_cpu_p50'] if b else '-'} |")
    target = d["target_p99_ms"]
    slowest = {key: max(part["figures"].items(), key=lambda kv: kv[1]["cpu"]["p99_ms"])
               for key, part in (("accepted", accepted), ("limits", limits))}
    lines.append(f"\nTarget p99 < {target} ms: on the largest accepted timeline, slowest {slowest['accepted'][0]} "
                 f"{slowest['accepted'][1]['cpu']['p99_ms']} ms, "
                 f"{verdict(slowest['accepted'][1]['cpu']['p99_ms'] < target)}; at the count limits (which only a "
                 f"raised `AUTEUR_EDL_MAX_BYTES` admits), slowest {slowest['limits'][0]} "
                 f"{slowest['limits'][1]['cpu']['p99_ms']} ms, {verdict(slowest['limits'][1]['cpu']['p99_ms'] < target)}.")
    lines.append(f"\nOver HTTP (gunicorn, {http['gunicorn_workers']} sync workers, the largest accepted timeline "
                 f"saved in {http['save_s']} s and read back from the embedded MongoDB-protocol server in "
                 f"{http['edl_get']['p50_ms']} ms at p50): {http['caption_clients']} clients asked for its JSON "
                 f"captions without pause ({http['captions_requests']} requests, p50 {http['captions_json']['p50_ms']}"
                 f" / p99 {http['captions_json']['p99_ms']} ms) while another user listed their projects: p50 "
                 f"{http['bystander_loaded']['p50_ms']} / p99 {http['bystander_loaded']['p99_ms']} / max "
                 f"{http['bystander_loaded']['max_ms']} ms, against p50 {http['bystander_alone']['p50_ms']} / p99 "
                 f"{http['bystander_alone']['p99_ms']} ms alone on the same server just before.\n")
    return "\n".join(lines)


def team_text(d: dict[str, Any]) -> str:
    """The same read in a team workspace (its seat checked), where the run measured it."""
    if "ratio_rps_team" not in d:
        return ""
    return (f"; in a team workspace (Auteur-Workspace, the seat checked): {d['team']['rps']} req/s, "
            f"{d['ratio_rps_team']} of bare, >= 0.85: {verdict(d['ratio_rps_team'] >= 0.85)}")


def fair_share_row(d: dict[str, Any]) -> str:
    """A light user's wait behind a heavy user's backlog (bench/fair_share.py): fair share against arrival order."""
    def side(mode: str) -> str:
        parts = []
        for c in (c for c in d["cases"] if c["mode"] == mode):
            w, jd = c["light_wait_s"], c["light_wait_in_job_durations"]
            parts.append(f"backlog {c['heavy_jobs']}: light wait p50 {w['p50']} / p99 {w['p99']} s ({jd['p99']} job "
                         f"durations; first {w['first']}, last {w['last']} s), {c['all_started_per_s']} starts/s, "
                         f"at most {c['most_in_inference_at_once']} in inference, {c['broker_messages_per_started_job']} "
                         f"msg/job")
        return "; ".join(parts)
    weighted = [c for c in d["cases"] if c["mode"] == "weighted"]
    ok = bool(weighted) and all(c["light_wait_in_job_durations"]["p99"] <= d["targets"]["weighted_light_p99_wait_in_job_durations"]
                                and c["most_in_inference_at_once"] <= d["capacity"] for c in weighted)
    ratios = ", ".join(f"{v} (backlog {k})" for k, v in d["light_p99_wait_arrival_over_weighted"].items())
    who = ("user's", "user's") if d.get("between", "users") == "users" else ("team workspace's (3 members submitting)",
                                                                          "team workspace's")
    return (f"| fair share: TTS capped at {d['capacity']}, {d['hold_s']} s jobs (noop GPU), a heavy {who[0]} backlog, "
            f"then a light {who[1]} {d['light_jobs']} jobs at 1/s; weighted | {side('weighted')} | arrival order (same run): "
            f"{side('arrival')} | {ratios} (arrival p99 / fair p99) | light p99 wait <= 2 job durations at every backlog, "
            f"capacity held: {verdict(ok)} |")


def table_rows(load: Callable[[str], dict[str, Any] | None]) -> list[tuple[str, str]]:
    """(benchmark, its row of the table) for each benchmark whose result `load` gives, in order."""
    rows: list[tuple[str, str]] = []
    if (d := load("pipeline_overhead")) is not None:
        u = d["unloaded"]
        rows.append(("pipeline_overhead", f"| pipeline overhead, one job at a time (noop GPU) | submit->inference start p50 "
                    f"{u['submit_to_inference_start_ms']['p50']} ms / p99 {u['submit_to_inference_start_ms']['p99']} ms;"
                    f" inference end->completed p50 {u['inference_end_to_completed_ms']['p50']} ms / p99 "
                    f"{u['inference_end_to_completed_ms']['p99']} ms, after {u.get('after_warm_up', 0)} warm-up jobs"
                    f"{cold_note(d)}{load_note(d)} | - | - | p99 <= 50 ms: "
                    f"{verdict(max(u['submit_to_inference_start_ms']['p99'], u['inference_end_to_completed_ms']['p99']) <= 50)} |"))
    if (d := load("pipeline_throughput")) is not None:
        rows.append(("pipeline_throughput", f"| pipeline throughput: {d.get('rounds', 1)} x {d['jobs']} TTS jobs over HTTP, alternating with raw chains, {d['clients']} clients, {d['users']} users, noop GPU, {d['worker_processes']} worker processes | {d['jobs_per_second']} jobs/s, median of rounds ({d['completed']} completed, {d['failed']} failed); submit p50 {d['submit_ms']['p50']} / p99 {d['submit_ms']['p99']} ms; overhead p99 {d['submit_to_inference_start_ms']['p99']} / {d['inference_end_to_completed_ms']['p99']} ms; worker CPU {d['cpu_ms_per_job']['worker']} ms/job{cpu_ratio_note(d)}{load_note(d)} | raw 3-task Celery chain: {d['raw_chain_per_second']} chains/s (median of {d.get('raw_chain_per_second_each', d.get('raw_chain_per_second_before_after'))}){events_ab_note(d)}{tracing_ab_note(d)} | {d['ratio_to_raw']} (rounds {d.get('ratio_to_raw_min_max', '-')}, spread {d.get('ratio_spread', '-')}) | {throughput_verdicts(d)} |"))
    if (d := load("probe_sandbox")) is not None:
        f, s, cpu = d["fresh_interpreter_ms"], d["server_ms"], d["cpu_ms_per_probe"]
        rows.append(("probe_sandbox", f"| sandboxed probe of a {d['file']}, {d['probes']} probes each way | probe "
                    f"server (fork per probe): p50 {s['p50']} / mean {s['mean']} / p99 {s['p99']} ms, CPU "
                    f"{cpu['server']} ms/probe; server start once per worker process {d['server_start_ms']} ms"
                    f"{load_note(d)} | fresh interpreter per probe: p50 {f['p50']} / mean {f['mean']} / p99 "
                    f"{f['p99']} ms, CPU {cpu['fresh']} ms/probe | {d['ratio_p50']} (p50) | - |"))
    if (d := load("retention_sweep")) is not None:
        rows.append(("retention_sweep", retention_row(d)))
    if (d := load("inflight")) is not None:
        rows.append(("inflight", inflight_row(d)))
    if (d := load("fair_share")) is not None:
        rows.append(("fair_share", fair_share_row(d)))
    if (d := load("fair_share_workspaces")) is not None:
        rows.append(("fair_share_workspaces", fair_share_row(d)))
    if (d := load("api_reads")) is not None:
        opened = d.get("open_loop_at_half_of_bare") or {}
        drf_open, bare_open = opened.get("drf"), opened.get("bare")
        open_text = (f"; open loop at {drf_open['rate']} req/s: p99 {drf_open['p99_ms']} ms (bare {bare_open['p99_ms']} ms)"
                     if drf_open and bare_open else "")
        open_verdict = verdict(drf_open["p99_ms"] < 50) if drf_open else "not measured"
        rows.append(("api_reads", f"| GET /api/v1/jobs/{{id}}, {d['clients']} clients, gunicorn {d['gunicorn_workers']} "
                    f"{d['worker_class']} workers | {d['drf']['rps']} req/s, p50 {d['drf']['p50_ms']} ms, p99 "
                    f"{d['drf']['p99_ms']} ms saturated{open_text} | bare Django view: {d['bare']['rps']} req/s, p99 "
                    f"{d['bare']['p99_ms']} ms | {d['ratio_rps']} | >= 0.9: {verdict(d['ratio_rps'] >= 0.9)}; "
                    f"p99 < 50 ms open loop at half of bare: {open_verdict}{team_text(d)} |"))
    if (d := load("balance_read")) is not None:
        pg, rd, rq = d["postgres"], d["redis"], d["request"]
        rows.append(("balance_read", f"| credit balance read (GET /api/v1/credits), in-process | PostgreSQL (prepared "
                    f"read): p50 {pg['p50_us']} / p99 {pg['p99_us']} us, in a request of p50 {rq['p50_us']} us | Redis GET "
                    f"of a cached balance: p50 {rd['p50_us']} / p99 {rd['p99_us']} us | a cache would save "
                    f"{d['saved_per_request_us']} us, {d['saved_share_of_request']:.1%} of the request | - (why no "
                    f"cache: docs/credits-billing.md) |"))
    if (d := load("screening")) is not None:
        rows.append(("screening", screening_row(d)))
    if (d := load("input_screening")) is not None:
        rows.append(("input_screening", input_screening_row(d)))
    if (d := load("output_screening")) is not None:
        rows.append(("output_screening", f"| output image screening (bench/output_screening.py): a {d['image']}, "
                    f"decoded in the sandbox, scored by open_nsfw on 1 thread; load average "
                    f"{'/'.join(map(str, d['load_average']))} (2 cores) | decode p50 "
                    f"{d['decode_ms']['p50']} / p99 {d['decode_ms']['p99']} ms; score p50 {d['score_ms']['p50']} / p99 "
                    f"{d['score_ms']['p99']} ms | a process's first call {d['first_call_ms']} ms (model load "
                    f"{d['load_ms']} ms) | - | - |"))
    if (d := load("speaker_threshold")) is not None:
        rows.append(("speaker_threshold", speaker_threshold_row(d)))
    if (d := load("consent_phrases")) is not None:
        statement = next(iter(d["statements"].values()))
        rows.append(("consent_phrases", f"| consent phrase words (bench/consent_phrases.py): {d['words_tried']} words "
                    f"read by {len(d['recognised_percent_by_voice'])} eSpeak voices to Whisper tiny.en, "
                    f"{d['trials']:,} trials | words kept {d['words_kept']} (each heard right >= {d['keep_percent']} "
                    f"%): heard right {d['recognised_percent_kept']} % of their trials | all words tried: "
                    f"{d['recognised_percent_all']} %; the statement within the WER bound in "
                    f"{statement['within_max_wer_percent']} % of its trials | - | - |"))
    if (d := load("ledger_contention")) is not None:
        rows.append(("ledger_contention", f"| ledger: deductions on one hot account, {d['workers']} processes | {d['service']['ops_per_s']} ops/s "
                    f"| raw guarded UPDATE + INSERT: {d['raw']['ops_per_s']} ops/s | {d['ratio_service_to_raw']} | "
                    f">= 0.5: {verdict(d['ratio_service_to_raw'] >= 0.5)}; overdrafts {d['overdrafts']}, ledger "
                    f"{d['ledger_check']}" + (
                        f"; a team member's charge, its budget counted: {d['team']['ops_per_s']} ops/s "
                        f"({d['ratio_team_to_service']} of the service), budgets drained to exactly their limit: "
                        f"{verdict(d['drain']['team']['members_over_budget'] == 0)}" if "team" in d else "")
                    + " |"))
    if (d := load("cap_race")) is not None:
        runs, th = d["runs"], [run["thresholds"] for run in d["runs"]]
        rows.append(("cap_race", f"| spend caps raced: {d['settings']['submissions']} concurrent submissions from "
                    f"{d['settings']['keys']} keys and {d['settings']['members']} members, {len(runs)} runs | overrun "
                    f"{d['overrun_credits']} credits; refused by "
                    + "; ".join(", ".join(f"{cap} {n}" for cap, n in sorted(run["refused_by"].items())) for run in runs)
                    + f"; threshold events {[t['events'] for t in th]} for {[t['alerts'] for t in th]} alerts, "
                    f"duplicates {[t['duplicates'] for t in th]}, latency max {[t['latency_max_ms'] for t in th]} ms "
                    f"| no caps: {d['baseline_uncapped']['per_second']} submissions/s | "
                    f"{d['ratio_capped_vs_uncapped_per_second']} (submissions/s, capped over uncapped) | overrun 0: "
                    f"{verdict(d['verdict']['no_overrun'])}; each threshold once within 1 s: "
                    f"{verdict(d['verdict']['thresholds_once_within_1s'])} |"))
    if (d := load("charge_race")) is not None:
        st = d["settings"]
        rows.append(("charge_race", f"| the money's lock order raced: {st['submissions']} submissions from "
                    f"{st['members']} members and {st['keys']} keys, with {st['cancels']} cancels, {st['cap_changes']} "
                    f"cap changes and {st['role_changes']} role changes, {len(d['runs'])} runs | deadlocks "
                    f"{d['deadlocks']}; 5xx answers {d['answers_5xx']}; seconds {[r['seconds'] for r in d['runs']]} "
                    f"| - | - | no deadlock, no 5xx, ledger exact: "
                    f"{verdict(d['verdict']['no_deadlock_no_5xx_ledger_exact'])} |"))
    if (d := load("usage_query")) is not None:
        idx, base = d["indexed"], d["without_index"]
        rows.append(("usage_query", f"| GET /usage, a month of a workspace with {d['rows']:,} ledger rows "
                    f"({d['entries_in_month']:,} in the month) | request p99: "
                    + ", ".join(f"{g} {idx[g]['request']['p99_ms']} ms" for g in ("day", "type", "member", "key"))
                    + f"; FOCUS export {idx['focus']['request']['p99_ms']} ms | without the usage index, query p50: "
                    + ", ".join(f"{g} {base[g]['query']['p50_ms']} ms" for g in ("day", "type", "member", "key"))
                    + f"; naive Python sum {d['naive_python_sum_ms']['p50_ms']} ms | "
                    + ", ".join(f"{g} {r}" for g, r in d["ratio_p50_without_over_with"].items())
                    + f" | p99 < 200 ms: {verdict(d['target_met'])} |"))
    if (d := load("batches")) is not None:
        rows.append(("batches", f"| a batch of {d['items']:,} TTS jobs: POST /jobs/batch, then POST /jobs/bulk/cancel "
                    f"of it, queued, every refund checked exact | accepted in {d['batch_seconds']} s; cancelled in "
                    f"{d['cancel_seconds']} s | one by one: submit p50 {d['single_p50_ms']} ms "
                    f"({d['singles_for_items_s']} s for all), cancel p50 {d['single_cancel_p50_ms']} ms "
                    f"({d['single_cancels_for_items_s']} s) | {d['speedup']}x (submission) | accepted <= "
                    f"{d['goal_s']:g} s, cancelled <= {d['cancel_goal_s']:g} s: {verdict(d['within_goal'])} |"))
    if (d := load("submit_recovery")) is not None:
        rows.append(("submit_recovery", submit_recovery_row(d)))
    if (d := load("batch_fairness")) is not None:
        without, with_ = d["cases"]
        rows.append(("batch_fairness", f"| interactive TTS jobs of two users (one every {d['every_s']:g} s, "
                    f"{d['interactive']}), a type of {d['capacity']} units, {d['slots']} slots each, {d['hold_s']:g} s "
                    f"jobs, beside a running {d['items']:,}-item batch of one of them | wait p50 "
                    f"{with_['wait_s']['p50']} s, p99 {with_['wait_s']['p99']} s, "
                    f"{with_.get('interactive_queued', '?')} of them ever queued; batch items started meanwhile "
                    f"{with_['batch']['started']}, then {with_['batch']['cancelled_waiting']} bulk-cancelled"
                    f"{_cores(with_)} | without the batch: p50 {without['wait_s']['p50']} s, p99 "
                    f"{without['wait_s']['p99']} s, {without.get('interactive_queued', '?')} queued{_cores(without)} | "
                    f"{d['p99_ratio_with_over_without']} (p99 with / without; p50 "
                    f"{d.get('p50_ratio_with_over_without', '?')}) | <= {d['goal_ratio']}: "
                    f"{verdict(d['within_goal'])} |"))
    if (d := load("render")) is not None:
        rows.append(("render", f"| render, 10 clips, {d['settings']['output_s']} s output | {d['engine_median_s']} s | hand-written "
                    f"ffmpeg command: {d['hand_median_s']} s | {d['ratio']} | <= 1.2: {verdict(d['ratio'] <= 1.2)} |"))
    if (d := load("memory")) is not None:
        rows.append(("memory", f"| peak RSS, idle | API worker {d['api_worker_mb']} MB; Celery main {d['worker_main_mb']} MB, pool "
                    f"{d['worker_pool_mb']} MB | - | - | API <= 150 MB: {verdict(d['api_ok'])}; worker <= 200 MB: "
                    f"{verdict(d['worker_ok'])} |"))
    if (d := load("media_upload")) is not None:
        m = d["median"]
        rows.append(("media_upload", f"| upload -> confirm -> ready, {d['file_bytes'] / 1e6:.0f} MB video | {m['total_s']} s (PUT "
                    f"{m['put_s']} s, confirm->ready {m['processing_s']} s) | - | - | - |"))
    if (d := load("large_upload")) is not None:
        single, parts = d["single"], d["multipart"]
        wide = next(v for k, v in d.items() if k.startswith("multipart_"))
        growth = max(single["server_rss_growth_mib"], parts["server_rss_growth_mib"], wide["server_rss_growth_mib"])
        rows.append(("large_upload", f"| {d['file_bytes'] / 1024**3:.1f} GiB upload through Caddy, local storage | "
                    f"{parts['parts']} parts: {parts['mb_per_s']} MB/s, {wide['mb_per_s']} MB/s in parallel; confirm "
                    f"{parts['confirm_s']} s | one PUT: {single['mb_per_s']} MB/s | {parts['mb_per_s'] / single['mb_per_s']:.2f} "
                    f"| server memory flat (peak growth {growth} MiB): {verdict(growth < 64)} |"))
    if (d := load("cancel_latency")) is not None:
        loc, mod = d["local"], d["modal"]
        rows.append(("cancel_latency", f"| cancel -> the call's processes gone, local backend, {loc['cancels']} cancels "
                    f"({loc['running']} running ffmpeg, load {loc['load_average_mean']:.1f}) | p99 {loc['p99_ms']:.0f} ms "
                    f"after the answer, {loc['from_request_p99_ms']:.0f} ms from the request | fake Modal through the "
                    f"API: FunctionCall.cancel sent p99 {mod['request_to_cancel_sent_ms']['p99']:.0f} ms after the "
                    f"request, before the answer | - | p99 <= 5 s: {verdict(loc['p99_ms'] <= 5000)}; Modal <= 1 s: "
                    f"{verdict(mod['request_to_cancel_sent_ms']['p99'] <= 1000)} |"))
    if (d := load("piece_reads")) is not None:
        ranged = d.get("url_ranged_share_max")
        by_url = (f"; through a signed URL (a Modal call), by range: at most {ranged:.0%}" if ranged is not None
                  else "")
        whole = (f"; downloaded whole: at least {d['url_whole_share_min']:.0%}" if ranged is not None else "")
        rows.append(("piece_reads", f"| bytes a piece reads: {d['pieces']} pieces of a {d['minutes']} min file "
                    f"({d['file_bytes'] / 2**20:.1f} MiB) | local runner as its own uid, through a descriptor: at most "
                    f"{d['descriptor_read_share_max']:.0%} of the file each{by_url} | the whole file copied first: at "
                    f"least {d['copy_read_share_min']:.0%} each{whole} | - | about its span: "
                    f"{verdict(max(d['descriptor_read_share_max'], ranged or 0) < 2.5 * d['piece_share'])} |"))
    if (d := load("long_file_pieces")) is not None:
        w, p = d["whole"], d["pieces"]
        rows.append(("long_file_pieces", f"| transcription of a {d['minutes']} min file, noop GPU at {d['seconds_per_minute']} s "
                    f"per minute of audio, capacity {d['capacity']} | in {p['pieces']} pieces: {p['wall_s']} s (cuts planned "
                    f"in {p['planning_s']} s) | whole: {w['wall_s']} s | {d['speedup']}x faster | - |"))
    if (d := load("piece_planning_memory")) is not None:
        c = max(d["cases"], key=lambda case: case["packets"])
        b, a = c["before"], c["after"]
        rows.append(("piece_planning_memory", f"| planning a compression in pieces: {c['packets']:,} packets ({c['file_mib']} "
                    f"MiB MP4) | Python peak {a['python_peak_kib']:,} KiB, RSS +{a['rss_growth_mib']} MiB (FFmpeg's MP4 index), "
                    f"{a['seconds']} s | every packet in a list: {b['python_peak_kib']:,} KiB, RSS +{b['rss_growth_mib']} MiB, "
                    f"{b['seconds']} s | {b['python_peak_kib'] / max(1, a['python_peak_kib']):.0f}x less Python memory | "
                    f"does not grow with the packets |"))
    if (d := load("speaker_assignment")) is not None:
        rows.append(("speaker_assignment", f"| speakers of {d['words']:,} words from {d['turns']:,} diarization turns "
                    f"(a long file's stitched transcript) | {d['sweep_s']} s | every turn for every word: "
                    f"{d['every_turn_s']} s | {d['speedup']}x faster | - |"))
    if (d := load("edl_latency")) is not None:
        rows.append(("edl_latency", edl_latency_row(d)))
    if (d := load("timeline_limits")) is not None:
        rows.append(("timeline_limits", timeline_limits_row(d)))
    if (d := load("interchange_import")) is not None:
        rows.append(("interchange_import", interchange_import_row(d)))
    if (d := load("interchange_readers")) is not None:
        rows.append(("interchange_readers", interchange_readers_row(d)))
    if (d := load("webhooks")) is not None:
        r, one, burst = d["record_us"], d["to_receiver_ms"]["one_at_a_time"], d["to_receiver_ms"]["burst"]
        rows.append(("webhooks", f"| webhooks: job event recorded -> loopback receiver, {d['worker_processes']} worker "
                    f"processes | one at a time p50 {one['p50']} / p99 {one['p99']} ms; burst of {burst['of']}: p50 "
                    f"{burst['p50']} / p99 {burst['p99']} ms, {burst['deliveries_per_second']} deliveries/s; recording "
                    f"an event costs {r['completed_event_with_one_webhook']} us with a webhook | user without webhooks: "
                    f"{r['completed_event_without_webhooks']} us (an event no webhook takes: {r['submitted_event']} us)"
                    f" | - | - |"))
    if (d := load("push")) is not None and "push" in d:
        rows.append(("push", _push_row(d)))
    return rows


def _push_row(d: dict[str, Any]) -> str:
    p, ws, sse = d["push"], d["push"]["ws"], d["push"]["sse"]
    worst = max(ws.get("p99_ms", float("inf")), sse.get("p99_ms", float("inf")))
    figure = (f"committed -> received: WS p50 {ws.get('p50_ms')} / p99 {ws.get('p99_ms')} ms, SSE p50 "
              f"{sse.get('p50_ms')} / p99 {sse.get('p99_ms')} ms; delivered {ws['delivered'] + sse['delivered']} of "
              f"{ws['expected'] + sse['expected']}; ASGI RSS {p['asgi_rss_kb_per_connection']} KiB/connection, CPU "
              f"{p['asgi_cpu_percent_of_one_core']} % of a core")
    baseline, ratio = "-", "-"
    if (q := d.get("poll")) is not None and "p99_ms" in q:
        baseline = (f"{q['clients']} clients polling /events every {d['poll_interval_s']} s: p50 {q['p50_ms']} / p99 "
                    f"{q['p99_ms']} ms, {q['requests_per_second']} req/s, gunicorn CPU "
                    f"{q['api_cpu_percent_of_one_core']} % of a core")
        ratio = f"{q['p99_ms'] / worst:.0f} (poll p99 / push p99)" if 0 < worst < float("inf") else "-"
    return (f"| push: {d['ws_clients']} WebSocket + {d['sse_clients']} SSE clients, {d['users']} users, "
            f"{d['jobs_per_second']:g} jobs/s x {d['events_per_job']} events, {d['seconds']:g} s | {figure} | {baseline} "
            f"| {ratio} | p99 < 100 ms: {verdict(worst < 100)} |")


# Results shown as sections of their own, not as rows of the table.
SECTIONS_ONLY = ("chaos", "soak", "partition", "partition_unprotected")

HEADER = """# Benchmark results

Written by `make bench`, `make chaos`, `make soak` and `make partition` (bench/report.py) from bench/last_results.json, which
keeps the last result of each script in this folder, dated: a row keeps its figures until that
benchmark is run again. Each script starts its own throwaway stack; where a baseline is shown, it
was measured in the same run on the same servers. A row whose headline figure is more than 15 % worse
than the value it replaced says so in bold in its last column.

"""


def chaos_section(load: Callable[[str], dict[str, Any] | None], measured: Callable[[str], str]) -> str:
    chaos = ""
    if (d := load("chaos")) is not None:
        f = {k: v for k, v in d["figures"].items() if k != "stuck_jobs"}  # named in the drill's own output
        timing = d["timing"]["summary"] if "timing" in d else f"reaper every {d['reaper']['AUTEUR_REAPER_INTERVAL_SECONDS']} s"
        chaos = (f"\n## Chaos drill (`make chaos`)\n\nMeasured {measured('chaos')}. {d['jobs']} jobs from {d['users']} "
                 f"users over {d['clients']} "
                 f"clients, noop GPU with faults `{d['faults']}`; timing {timing}"
                 f". Disruptions, in order: " + "; ".join(x["what"] for x in d["disruptions"]) + ".\n\n"
                 "| figure | value |\n| --- | --- |\n"
                 + "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in f.items())
                 + "\n\n| invariant | result | detail |\n| --- | --- | --- |\n"
                 + "\n".join(f"| {k} | {'pass' if v['pass'] else '**FAIL**'} | {v['detail']} |"
                              for k, v in d["invariants"].items()) + "\n")
    return chaos


def push_section(load: Callable[[str], dict[str, Any] | None]) -> str:
    """What bench/push.py's row measured and what it did not."""
    if (d := load("push")) is None or "push" not in d:
        return ""
    p = d["push"]
    return (
        "\n## Push (`bench/push.py`)\n\n"
        f"Measured: {p['connected']['ws']} WebSocket and {p['connected']['sse']} SSE clients (of {d['ws_clients']} / "
        f"{d['sse_clients']}) connected at once to one uvicorn process on loopback (no Caddy, no TLS), on the "
        "user-wide streams (`/ws/v1/events`, `/api/v1/events/stream`); a driver process records the events through "
        "`job_event_record` (the after-commit append to the user's Redis Stream, the hub, the clients) at "
        f"{p['driver']['events_per_second']} events/s reached; latency runs from the commit's return to the "
        "client's receipt, on one clock. Clients, server, driver, Postgres and Redis share the machine's cores. "
        f"While connected the database held {p['postgres_connections_while_connected']} client connections. "
        "The polling baseline counts only the events its clients saw before the phase ended "
        f"({d['poll']['delivered'] if 'poll' in d else '-'} of {d['poll']['expected'] if 'poll' in d else '-'}), "
        "so its latencies are lower bounds when it falls behind. Not measured: the per-job stream "
        "(`/jobs/{id}/stream`), reconnect and resume under load, several ASGI processes, Caddy in front.\n"
    )


def retention_section(load: Callable[[str], dict[str, Any] | None], measured: Callable[[str], str]) -> str:
    """What the planner chose for each sweep's batch, without and with its index."""
    if (d := load("retention_sweep")) is None:
        return ""
    lines = [f"\n## Retention sweeps (`bench/retention_sweep.py`)\n\nMeasured {measured('retention_sweep')}: "
             f"{d['jobs']} jobs in {d.get('projects', '-')} projects over {d['days']} days, {d['events']} job events, "
             f"batches of {d['batch']} (median of 5, each rolled back), Postgres {d['postgres']}{load_note(d)}. "
             "Before: no index (job "
             "events: the query the sweep ran before its index); after: the sweep's query with its index.\n",
             "| sweep, state | due | before: ms, plan | after: ms, plan | ratio |", "| --- | --- | --- | --- | --- |"]
    for sweep in ("job_events", "idempotency_keys", "job_outputs"):
        for state in ("backlog", "steady", "swept"):
            if (row := d[sweep].get(state)) is None:
                continue
            lines.append(f"| {sweep}, {state} | {row['due']} | {row['before']['ms']} ms: {row['before']['plan']} | "
                         f"{row['after']['ms']} ms: {row['after']['plan']} | {row['ratio']} |")
        lines.append(f"| {sweep}: index | | | `{d[sweep]['index']}` | |")
    if (pending := d.get("pending_deletions")) is not None:
        row = pending["due"]
        lines.append(f"| pending storage deletions ({pending['rows']} rows), 500 due first | {row['due']} | "
                     f"{row['before']['ms']} ms: {row['before']['plan']} | {row['after']['ms']} ms: "
                     f"{row['after']['plan']} | {row['ratio']} |")
        lines.append(f"| pending deletions: index (the model's own) | | | `{pending['index']}` | |")
    steady = d["job_events"]["steady"]
    lines.append(f"\nA whole job-events run in the steady state ({steady['run_deleted']} due): "
                 f"{steady['before']['run_ms']} ms before, {steady['after']['run_ms']} ms after "
                 f"({steady['run_ratio']} x).\n")
    return "\n".join(lines)


def _num(v: Any, sign: bool = False) -> str:
    if v is None:
        return "-"
    text = f"{v:+.1f}" if sign else f"{v:.1f}"
    return text.removesuffix(".0")


def soak_table(d: dict[str, Any]) -> str:
    """bench/soak.py's series: the value after warm-up, at the end, the range, and the growth per hour."""
    lines = ["| series | unit | after warm-up | end | min - max | growth per hour | per hour, % of after warm-up | flag |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in d["series"]:
        lines.append(f"| {r['label']} | {r['unit']} | {_num(r.get('after_warmup'))} | {_num(r.get('end'))} | "
                     f"{_num(r.get('min'))} - {_num(r.get('max'))} | {_num(r.get('per_hour'), sign=True)} | "
                     f"{_num(r.get('pct_per_hour'), sign=True)} | {'**' + r['flag'] + '**' if r['flag'] else '-'} |")
    return "\n".join(lines)


def touched_line(entry: dict[str, Any]) -> str:
    """One table row of what a fault touched."""
    t = entry.get("touched") or {}
    if not t:
        return f"| {entry['fault']} | - | - | - | - |"
    ms = t["answer_ms"]

    def jobs(part: dict[str, Any]) -> str:
        ended = ", ".join(f"{k} {v}" for k, v in sorted(part["ended"].items())) or "-"
        return f"{part['jobs']} ({ended}; {part['attempts_over_1']} with 2+ attempts)"

    answers = ", ".join(f"{k}: {v}" for k, v in sorted(t["answers"].items())) or "-"
    timing = f"{ms['p50']} / {ms['p95']} / {ms['max']} ms" if ms else "-"
    return (f"| {entry['fault']} | {t['submissions']} ({answers}) | {timing} | {jobs(t['running_at_start'])} | "
            f"{jobs(t['accepted_during'])} |")


TOUCHED_HEADER = ("| fault | submissions sent while it held (answers) | answered in p50 / p95 / max | "
                  "jobs running when it began: how they ended | jobs accepted while it held: how they ended |\n"
                  "| --- | --- | --- | --- | --- |")


def partition_section(load: Callable[[str], dict[str, Any] | None], measured: Callable[[str], str]) -> str:
    """bench/partition.py: each run's faults with their recovery, its figures and invariants, and the
    same broker cut without the check for a recorded call."""
    if (d := load("partition")) is None:
        return ""
    out = [f"\n## Partition drill (`make partition`)\n\nMeasured {measured('partition')}: {len(d['runs'])} run(s) in a "
           f"row, each {d['jobs']} jobs from {d['users']} users at {d['rate']:g}/s over {d['clients']} clients, on machines "
           f"made of network namespaces ({', '.join(f'{m}: {sorted(n)}' for m, n in d['machines'].items())}); noop GPU "
           f"(calls held 2-6 s, 500 ms spawns, 200 ms status calls); broker visibility timeout {d['visibility_timeout_s']} s, reaper "
           f"timing x {d['time_scale']:g}. Recovery: from a fault's end until every job running then (started, not ended) had finished.\n"]
    for n, run in enumerate(d["runs"], 1):
        out.append(f"\nRun {n} (seed {run['seed']}): {'every invariant holds' if run['passed'] else '**FAIL**'}.\n\n"
                   "| fault | at submission | held | recovered after | jobs waited for |\n| --- | --- | --- | --- | --- |\n"
                   + "\n".join(f"| {e['fault']} | {e['at_submission']} | {e['held_s']} s | "
                                f"{e.get('recovered_after_s', 'never')} s | {e.get('jobs_waited_for', '-')} |"
                                for e in run["faults"]))
        if any("touched" in e for e in run["faults"]):
            out.append(f"\n\n{TOUCHED_HEADER}\n" + "\n".join(touched_line(e) for e in run["faults"]))
        figures = {k: v for k, v in run["figures"].items() if k != "stuck_jobs"}
        out.append("\n\n| figure | value |\n| --- | --- |\n"
                   + "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in figures.items())
                   + "\n\n| invariant | result | detail |\n| --- | --- | --- |\n"
                   + "\n".join(f"| {k} | {'pass' if v['pass'] else '**FAIL**'} | {v['detail']} |"
                                for k, v in run["invariants"].items()) + "\n")
    if (u := load("partition_unprotected")) is not None:
        run = u["runs"][-1]
        (name, verdict), = run["invariants"].items()
        out.append(f"\nWithout the check for a recorded call (`--unprotected`, measured {measured('partition_unprotected')}, "
                   f"{u['jobs']} jobs, the broker cut only): {name}: {'yes' if verdict['pass'] else 'no'} "
                   f"({verdict['detail']}; {run['figures'].get('gpu_calls')} calls for "
                   f"{run['figures'].get('jobs_with_a_call')} jobs).\n")
    return "".join(out)


def soak_section(load: Callable[[str], dict[str, Any] | None], measured: Callable[[str], str]) -> str:
    if (d := load("soak")) is None:
        return ""
    t = d["totals"]
    flagged = ", ".join(d["flagged"]) or "none"
    return (f"\n## Soak (`make soak`)\n\nMeasured {measured('soak')}: {d['duration_s'] / 60:g} min of load against "
            f"`python -m devstack run` (up in {d['startup_s']} s; noop GPU, DJANGO_DEBUG off, {d['worker_concurrency']} "
            f"worker processes): {d['rate']:g} job submissions/s of the chaos drill's mix from {d['users']} users, one "
            f"SSE observer per user, {d['sse_clients']} SSE and {d['ws_clients']} WebSocket clients coming and going, "
            f"one webhook per user; sampled every {d['interval_s']:g} s{load_note(d)}. Growth is the least-squares "
            f"slope after a {d['warmup_s']:g} s warm-up (values after warm-up and at the end: medians of three "
            f"samples); flagged: {d['flag_rule']}. Flagged: {flagged}. Plots: "
            f"bench/results/soak/*.png.\n\n" + soak_table(d) + "\n\n"
            f"Totals: {t['submissions']} submissions ({t.get('accepted', 0)} accepted, {t.get('refused_402', 0)} "
            f"refused 402), terminal events {t['terminal_events']}, {t['terminal_event_not_received']} not received; "
            f"{t['webhooks_received']} webhooks received ({t['webhook_bad_signatures']} bad signatures, "
            f"{t['webhook_redeliveries']} redeliveries); SSE visits {t.get('sse_visits', 0)}, WebSocket visits "
            f"{t.get('ws_visits', 0)}, stream client failures {t.get('sse_failures', 0) + t.get('ws_failures', 0)}, "
            f"observer reconnects {t.get('observer_reconnects', 0)}; after the drain {t['jobs_in_flight_after_drain']} "
            f"jobs in flight, {t['webhooks_pending_after_drain']} deliveries pending.\n")


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"


class Figure(NamedTuple):
    """A headline figure of a benchmark's result: its label, its path in the result's JSON, and
    whether a higher value is better (throughput, a ratio to a baseline) or worse (ms, MB)."""

    label: str
    path: str
    higher_is_better: bool


def _up(label: str, path: str) -> Figure:
    return Figure(label, path, True)


def _down(label: str, path: str) -> Figure:
    return Figure(label, path, False)


def screening_row(d: dict[str, Any]) -> str:
    """Text screening (bench/screening.py): what screen_fields adds to a submission, and its figures on
    the tests' held-out set."""
    lat, q = d["latency"], d["quality"]
    worst = max(lat["prompt"]["p99_ms"], lat["long"]["p99_ms"], lat["long_cold"]["p99_ms"], lat["hostile_worst"]["p99_ms"])
    target, percent = d["target_p99_ms"], d["target_percent"]
    per_category = ", ".join(f"{name} {c['refused']}/{c['n']}" for name, c in q["per_category"].items())
    quality_met = q["refused_rate"] >= percent / 100 and q["benign_pass_rate"] >= percent / 100
    return (f"| text screening (screen_fields), in-process, {d['threads']} thread, model {d['model_version']}; quality "
            f"on the tests' held-out set ({q['must_refuse']} must-refuse, {q['benign']} benign near-misses) | "
            f"60-character prompt p50 {lat['prompt']['p50_ms']} / p99 {lat['prompt']['p99_ms']} ms; 5,000-character "
            f"text p50 {lat['long']['p50_ms']} / p99 {lat['long']['p99_ms']} ms (every word new: p99 "
            f"{lat['long_cold']['p99_ms']} ms); slowest hostile shape ({lat['hostile_worst']['shape']}) p99 "
            f"{lat['hostile_worst']['p99_ms']} ms; model load p50 {d['model_load_ms']['p50_ms']} ms, a fresh process's "
            f"first screen p50 {d['first_screen_in_fresh_process_ms']['p50_ms']} ms; refused {q['refused_rate']:.1%} "
            f"(right category {q['right_category_rate']:.1%}), benign passed {q['benign_pass_rate']:.1%}; refused by "
            f"category: {per_category}{_screening_extras(d)} | - | - | p99 <= {target} ms added: "
            f"{verdict(worst <= target)}; {percent} % refused / {percent} % benign passed: {verdict(quality_met)} |")


def _screening_extras(d: dict[str, Any]) -> str:
    """The docs' sentences refused (ordinary prose) and the strict policy's figures, when measured."""
    extras = ""
    if "docs_false_refusals" in d:
        docs = d["docs_false_refusals"]
        extras += f"; ordinary prose (docs/ sentences) refused {docs['refused']}/{docs['sentences']}"
    if "quality_strict" in d:
        strict = d["quality_strict"]
        extras += (f"; a workspace's strict policy: refused {strict['refused_rate']:.1%}, benign passed "
                   f"{strict['benign_pass_rate']:.1%}")
    return extras


def input_screening_row(d: dict[str, Any]) -> str:
    """Input media screening (bench/input_screening.py): what screening a request's input pictures adds
    to its submission, with each file's verdict kept and the first time a file is named."""
    kept, sub = d["verdict_kept"], d["submission"]
    first = "; ".join(f"{name.removesuffix('_first')} p50 {d[name]['p50_ms']} / p99 {d[name]['p99_ms']} ms"
                      for name in ("image_first", "video_gop50_first", "video_gop250_first"))
    return (f"| input media screening (a performance cloning's image and video), {d['frames_per_video']} frames a "
            f"video, open_nsfw on 1 thread{load_note(d)} | verdicts kept (every request after a file's first): "
            f"added p50 {kept['p50_ms']} / p99 {kept['p99_ms']} ms; a file's first screening: {first} | the whole "
            f"submission, verdicts kept: p50 {sub['p50_ms']} / p99 {sub['p99_ms']} ms | - | p99 <= 300 ms added "
            f"(verdict kept): {verdict(kept['p99_ms'] <= 300)} |")


def speaker_threshold_row(d: dict[str, Any]) -> str:
    """Speaker verification on CPU (bench/speaker_threshold.py): the threshold in use, its false accepts and
    false rejects, what the threshold rule chooses, the channels it leaves out."""
    def pct(p: dict[str, Any]) -> str:
        return f"{p['count']:,}/{p['n']:,} ({p['rate']:.2%})"

    use, rule = d["in_use"], d["rule_result"]
    left_out = [c for c in d["channels"] if c not in d["rule_channels"]]
    out_frr = "; ".join(f"{c} {d['frr_by_channel'][c]['rate']:.0%}" for c in left_out)
    pairs = ", ".join(f"{p['a']}/{p['b']} {p['score']:.3f}" for p in d["top_impostor_pairs"][:5])
    met = use["far"]["rate"] <= d["target_far"] and use["frr"]["rate"] <= d["target_frr"]
    stretch = ""
    if "stretch" in d:  # (results from before the stretch check was measured have none)
        st = d["stretch"]
        stretch = (f"; stretch check at {st['threshold']:.2f} (each ~4 s stretch against the other file): false "
                   f"rejects {pct(st['frr'])}, lowest {st['genuine']['min']:.3f}")
    return (f"| speaker verification, {d['model']}, {d['speakers']} eSpeak NG variants x {d['samples_per_speaker']} "
            f"samples x {d['readings_per_speaker']} readings x {len(d['channels'])} channels | at {use['threshold']:.2f}: "
            f"false accepts {pct(use['far'])}, false rejects {pct(use['frr'])} ({', '.join(d['rule_channels'])}); "
            f"EER {d['eer']:.2%} at {d['eer_threshold']:.3f}; this run's rule ({d['rule']}): {rule['threshold']:.2f}, "
            f"false accepts {pct(rule['far'])}, false rejects {pct(rule['frr'])}; left out "
            f"of the rule, refused (FRR at {use['threshold']:.2f}): {out_frr}; over every channel the rule would give "
            f"{d['rule_every_channel_result']['threshold']:.2f} with false accepts "
            f"{d['rule_every_channel_result']['far']['rate']:.1%}; highest impostor pairs {pairs}; one embedding p50 "
            f"{d['embed_ms']['p50']} / p99 {d['embed_ms']['p99']} ms (1 thread){stretch} | - | - | FRR <= "
            f"{d['target_frr']:.0%} and FAR <= {d['target_far']:.0%}: {verdict(met)} |")


def edl_latency_row(d: dict[str, Any]) -> str:
    """The EDL row: GET, and the two PUTs with the server's write and the client's BSON encoding apart."""
    head = (f"| EDL of {d['clips']} clips ({d['document_bytes'] // 1024} KiB), stored as subdocuments | service GET "
            f"p50 {d['service']['get']['p50_ms']:.0f} / p99 {d['service']['get']['p99_ms']:.0f} ms; HTTP GET p99 "
            f"{d['http']['get']['p99_ms']:.0f} ms")
    if "put_autosave" not in d.get("http", {}):  # a result from before the two PUTs were measured
        return (f"{head}; service PUT p50 {d['service']['put']['p50_ms']:.0f} / p99 "
                f"{d['service']['put']['p99_ms']:.0f} ms | - | - | service PUT p99 < 100 ms: "
                f"{verdict(d['service']['put']['p99_ms'] < 100)} |")
    parts = []
    for kind, name in (("put_autosave", "autosave PUT (one clip moved)"), ("put_whole", "whole PUT (every clip)")):
        p = d["http"][kind]
        cpu = p.get("cpu_per_put", {})
        parts.append(f"{name} p50 {p['total']['p50_ms']:.0f} / p99 {p['total']['p99_ms']:.0f} ms, of which the "
                     f"server's write p99 {p['server_write']['p99_ms']:.0f} ms; client BSON encode (apart) p99 "
                     f"{p['client_encode']['p99_ms']:.1f} ms; CPU per PUT: API {cpu.get('api_ms', '?')} ms, "
                     f"MongoDB-protocol server {cpu.get('mongodb_server_ms', '?')} ms")
    worst = max(d["http"]["put_autosave"]["total"]["p99_ms"], d["http"]["put_whole"]["total"]["p99_ms"])
    load_at_end = d.get("machine", {}).get("load_average_1m_at_end", "?")
    return (f"{head}; {'; '.join(parts)} (embedded nx-27017; load {load_at_end} at end) | - | - | "
            f"both PUT p99 < 100 ms: {verdict(worst < 100)} |")


# The figures compared with the values they replace; a figure missing from either result is skipped.
HEADLINE_FIGURES: dict[str, tuple[Figure, ...]] = {
    "pipeline_overhead": (_down("submit->inference start p99 ms", "unloaded.submit_to_inference_start_ms.p99"),
                          _down("inference end->completed p99 ms", "unloaded.inference_end_to_completed_ms.p99")),
    "pipeline_throughput": (_up("jobs/s", "jobs_per_second"), _up("ratio to raw", "ratio_to_raw"),
                            _down("worker CPU ms/job", "cpu_ms_per_job.worker"),
                            _down("worker CPU / raw chain CPU", "cpu_ratio_to_raw"),
                            _down("step tasks per job", "step_tasks_per_job"),
                            _down("Redis commands per job", "redis_commands_per_job"),
                            _down("Postgres write transactions per job", "pg_write_transactions_per_job")),
    "api_reads": (_up("req/s", "drf.rps"), _up("ratio to bare", "ratio_rps"), _down("p99 ms", "drf.p99_ms")),
    "ledger_contention": (_up("ops/s", "service.ops_per_s"), _up("ratio to raw", "ratio_service_to_raw")),
    "balance_read": (_down("request p99 us", "request.p99_us"),),
    "screening": (_down("5,000-character text p99 ms", "latency.long.p99_ms"),
                  _down("60-character prompt p99 ms", "latency.prompt.p99_ms"),
                  _up("must-refuse refused", "quality.refused_rate"), _up("benign passed", "quality.benign_pass_rate")),
    "input_screening": (_down("verdict kept p99 ms", "verdict_kept.p99_ms"),),
    "speaker_threshold": (_down("false accepts at the threshold", "in_use.far.rate"),
                          _down("false rejects at the threshold", "in_use.frr.rate"), _down("EER", "eer")),
    "edl_latency": (_down("service PUT p99 ms", "service.put.p99_ms"), _down("service GET p99 ms", "service.get.p99_ms"),
                    _down("HTTP PUT autosave p99 ms", "http.put_autosave.total.p99_ms"),
                    _down("HTTP PUT whole p99 ms", "http.put_whole.total.p99_ms")),
    "render": (_down("ratio to hand-written ffmpeg", "ratio"),),
    "memory": (_down("API worker MB", "api_worker_mb"), _down("worker pool MB", "worker_pool_mb")),
    "webhooks": (_down("one at a time p99 ms", "to_receiver_ms.one_at_a_time.p99"),),
    "probe_sandbox": (_down("probe server p99 ms", "server_ms.p99"),),
    "batches": (_down("batch accepted s", "batch_median_s"), _down("bulk cancel s", "cancel_median_s")),
    "usage_query": (_down("FOCUS export p99 ms", "focus_export_p99_ms"),),
    "media_upload": (_down("upload -> ready s", "median.total_s"),),
}
WORSE_BY = 0.15


def _figure(result: dict[str, Any], path: str) -> float | None:
    value: Any = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def worse_figures(name: str, before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline figures of `name` that are more than 15 % worse in `after` than in `before`."""
    worse = []
    for figure in HEADLINE_FIGURES.get(name, ()):
        old, new = _figure(before, figure.path), _figure(after, figure.path)
        if old is None or new is None or old == 0:
            continue
        change = (new - old) / abs(old)
        if (-change if figure.higher_is_better else change) > WORSE_BY:
            worse.append({"figure": figure.label, "before": old, "after": new, "change": round(change, 3)})
    return worse


def worse_text(worse: list[dict[str, Any]]) -> str:
    return "; ".join(f"{w['figure']} {w['before']:g} -> {w['after']:g} ({w['change']:+.0%})" for w in worse)


def merge_fresh(store: dict[str, Any], results: Path) -> list[str]:
    """Take into `store` each result file in `results` newer than what the store holds for its
    benchmark, dated by the file's modification time, with the headline figures more than 15 %
    worse than those of the result it replaces (`worse_than_replaced`). Returns the names taken."""
    taken = []
    for path in sorted(results.glob("*.json")):
        measured = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        kept = store.get(path.stem)
        if kept is not None and datetime.fromisoformat(kept["measured_at"]) >= measured:
            continue  # a leftover file from before the figure the store holds
        result = json.loads(path.read_text())
        store[path.stem] = {"measured_at": measured.isoformat(timespec="seconds"), "machine": machine(),
                            "result": result}
        if kept is not None and (worse := worse_figures(path.stem, kept["result"], result)):
            store[path.stem]["worse_than_replaced"] = worse
        taken.append(path.stem)
    return taken


def render(store: dict[str, Any], now: datetime) -> str:
    def load(name: str) -> dict[str, Any] | None:
        return store[name]["result"] if name in store else None

    def measured(name: str) -> str:
        return datetime.fromisoformat(store[name]["measured_at"]).strftime(DATE_FORMAT)

    named_rows = table_rows(load)
    shown = list(dict.fromkeys(name for name, _row in named_rows)) + [name for name in SECTIONS_ONLY if name in store]
    machines: dict[str, list[str]] = {}
    for name in shown:
        machines.setdefault(store[name]["machine"], []).append(name)
    machine_lines = "".join(f"- machine: {m}" + (f" ({', '.join(names)})" if len(machines) > 1 else "") + "\n"
                            for m, names in machines.items())
    def mark(name: str) -> str:
        worse = store[name].get("worse_than_replaced")
        return f"; **more than 15 % worse than the value it replaced: {worse_text(worse)}**" if worse else ""

    rows = [row.removesuffix(" |") + f" | {measured(name)}{mark(name)} |" for name, row in named_rows]
    return (HEADER + machine_lines + f"- written: {now.strftime(DATE_FORMAT)}\n\n"
            "| benchmark | figure | baseline (same run) | ratio | target | measured |\n"
            "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n" + chaos_section(load, measured) + push_section(load)
            + retention_section(load, measured) + timeline_limits_section(load, measured) + soak_section(load, measured)
            + partition_section(load, measured))


def main(bench: Path = BENCH) -> str:
    store_path = bench / STORE
    store: dict[str, Any] = json.loads(store_path.read_text()) if store_path.exists() else {}
    taken = merge_fresh(store, bench / "results")
    if taken:
        store_path.write_text(json.dumps(store, indent=2) + "\n")
    text = render(store, datetime.now(UTC))
    (bench / "RESULTS.md").write_text(text)
    print(text)
    for name in taken:
        if worse := store[name].get("worse_than_replaced"):
            print(f"WORSE by more than 15 %: {name}: {worse_text(worse)}")
    return text


if __name__ == "__main__":
    main()
