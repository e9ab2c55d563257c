"""Timeline computations at the EDL limits, and another user's request while they are asked for.

    .venv/bin/python bench/timeline_limits.py [--iterations 30] [--baseline-words 4000] [--http-seconds 20]

Starts its own throwaway stack (as bench/edl_latency.py). The timelines are the costliest shape
(bench/timelines.py): every other word deleted, a deleted pause in every gap, clips back to back
on every track.

1. In this process, as the API runs them (the cyclic collector paused during each, as the API
   pauses it: auteur/core/collector.py), each computation `--iterations` times after two
   untimed rounds, wall and CPU time (the machine is shared: CPU time is what the code costs):
   - `cuts`: the transcript's deletions as indexed spans (projects/edl/cuts.py);
   - `render_refusal`: what a render submission computes before it refuses a timeline that the
     cuts split into more pieces than the engine takes (limits, effects, cuts, the piece count);
   - `render_snapshot`: a render the engine takes (`max_render_pieces` pieces) with burned-in
     captions: limits, effects, cuts, pieces, the cut tracks and the ASS file;
   - `captions_json`, `captions_srt`: GET projects/{id}/captions's computation;
   - `captions_dense_srt`: the same, on as many one-letter words in one segment, none deleted
     (every cue as full as its lines allow: the costliest for laying cues out);
   - `fillers`: remove-fillers's computation, with `min_pause_ms` 100 (every gap a long pause).
   On two timelines: the largest the default limits accept (the count limits, scaled down
   together until the document fits `max_bytes`: the byte limit binds first), and one at the
   count limits themselves (what a deployment that raises `AUTEUR_EDL_MAX_BYTES` accepts).
   Then, on a smaller timeline of `--baseline-words` words (every count scaled down alike), the
   former quadratic code (bench/quadratic_timeline.py) and the new code, in the same run: the
   ratio. The former render submission had no piece limit: it cut every clip (`render_refusal`'s
   former figure is that), where the new one counts the pieces and refuses.
2. Over HTTP: gunicorn with 3 sync workers (a pod's), the largest timeline the default limits
   accept saved through the service (validated, as a PUT). 4 clients of user A ask for its JSON
   captions without pause while user B lists its projects every 200 ms; B's latency is compared
   with B's alone on the same server just before. The rate limit is raised, so A's load is
   heavier than the 100 requests a minute a user gets.

Prints the figures and writes bench/results/timeline_limits.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, django_stack, free_port, gunicorn_argv, load_average, percentile
from bench.timelines import Counts, dense_transcript, duration_ms, largest_within, timeline

RESULTS = RESULTS_DIR / "timeline_limits.json"
WARMUP = 2
PADDING_MS = 40
TARGET_P99_MS = 100
CAPTION_CLIENTS, API_WORKERS, BYSTANDER_EVERY_S = 4, 3, 0.2
MIN_PAUSE_MS = 100


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples) * 1000, 1), "p99_ms": round(percentile(samples, 99) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1)}


def _time(fn: Callable[[], Any], iterations: int, warmup: int = WARMUP) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(iterations):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"wall": _stats(wall), "cpu": _stats(cpu), "iterations": iterations}


def _render_tracks(counts: Counts, pieces: int, media: dict[str, list[str]]) -> list[dict[str, Any]]:
    """`pieces` short clips, each over a kept word and the padding beside it (no cut inside), spread
    over the whole timeline: the most a render takes, with every cut of the transcript around it."""
    step = duration_ms(counts) // max(1, counts.words)  # one word per step; even ones are kept
    kept_words = range(0, counts.words, 2)
    stride = max(1, len(kept_words) // pieces)
    clips = []
    for n, k in enumerate(kept_words[::stride][:pieces]):
        start = k * step - PADDING_MS + 1 if k else 0
        clips.append({"id": f"r{n}", "media_file_id": media["video"][0], "start_ms": start, "duration_ms": 300,
                      "in_point_ms": 0, "out_point_ms": 300, "effects": [], "deleted": False})
    return [{"id": "v", "type": "video", "name": "", "clips": clips}]


def _computations(doc: dict[str, Any], counts: Counts, media: dict[str, list[str]]) -> dict[str, Callable[[], Any]]:
    from auteur.core.collector import collector_paused
    from jobs import gpu_client
    from projects.captions import render_caption_files, timeline_caption_file
    from projects.edl.cuts import count_pieces, cut_tracks, transcript_cuts
    from projects.edl.documents import edl_limits
    from projects.edl.effects import check_tracks_effects
    from projects.edl.fillers import mark_fillers
    from projects.edl.validation import check_edl_limits

    max_pieces = min(edl_limits().max_render_pieces, gpu_client.render_max_pieces())
    transcript = doc["transcript"]
    total = duration_ms(counts)
    stored = {**doc, "settings": {**doc["settings"], "duration_ms": total}}
    render_doc = {**stored, "tracks": _render_tracks(counts, max_pieces, media)}

    def render(edl: dict[str, Any], *, build: bool) -> Any:
        # What jobs/selectors/requests.py _timeline computes, without its two queries.
        check_edl_limits(edl)
        check_tracks_effects(edl["tracks"])
        with collector_paused():
            cuts = transcript_cuts(edl["transcript"], padding_ms=PADDING_MS)
            pieces = count_pieces(edl["tracks"], cuts)
            if not build:
                return pieces
            assert pieces <= max_pieces, pieces
            snapshot = {"settings": {**edl["settings"]}, "tracks": cut_tracks(edl["tracks"], cuts)}
            snapshot["settings"]["duration_ms"] = cuts.edited_duration(total)
            return render_caption_files(snapshot, edl["transcript"], "burn", padding_ms=PADDING_MS, cuts=cuts)

    def cuts_alone() -> Any:
        with collector_paused():  # as the render computes them
            return transcript_cuts(transcript, padding_ms=PADDING_MS)

    dense = {**stored, "transcript": dense_transcript(counts.words)}
    dense["settings"] = {**stored["settings"], "duration_ms": counts.words * 100}

    return {
        "cuts": cuts_alone,
        "render_refusal": lambda: render(stored, build=False),
        "render_snapshot": lambda: render(render_doc, build=True),
        "captions_json": lambda: timeline_caption_file(stored, "json", padding_ms=PADDING_MS),
        "captions_srt": lambda: timeline_caption_file(stored, "srt", padding_ms=PADDING_MS),
        "captions_dense_srt": lambda: timeline_caption_file(dense, "srt", padding_ms=PADDING_MS),
        "fillers": lambda: mark_fillers(transcript, language=None, min_pause_ms=MIN_PAUSE_MS),
    }


def _former(doc: dict[str, Any], counts: Counts) -> dict[str, Callable[[], Any]]:
    """The same computations by the former code, where it differed (the render's checks did not)."""
    from bench import quadratic_timeline as old

    transcript = doc["transcript"]
    stored = {**doc, "settings": {**doc["settings"], "duration_ms": duration_ms(counts)}}
    dense = {**stored, "transcript": dense_transcript(counts.words)}
    dense["settings"] = {**stored["settings"], "duration_ms": counts.words * 100}

    def spans() -> Any:
        return old.removed_spans(transcript, padding_ms=PADDING_MS)

    return {
        "cuts": spans,
        "render_refusal": lambda: old.cut_tracks(stored["tracks"], spans()),
        "captions_json": lambda: old.timeline_caption_file(stored, "json", padding_ms=PADDING_MS),
        "captions_srt": lambda: old.timeline_caption_file(stored, "srt", padding_ms=PADDING_MS),
        "captions_dense_srt": lambda: old.timeline_caption_file(dense, "srt", padding_ms=PADDING_MS),
        "fillers": lambda: old.mark_fillers(transcript, language=None, min_pause_ms=MIN_PAUSE_MS),
    }


def _describe(counts: Counts, doc: dict[str, Any]) -> dict[str, Any]:
    from bench.timelines import size

    return {"words": counts.words, "pauses": counts.pauses, "segments": counts.segments, "clips": counts.clips,
            "tracks": counts.tracks, "document_bytes": size(doc)}


def _in_process(args: argparse.Namespace, media: dict[str, list[str]]) -> dict[str, Any]:
    from projects.edl.documents import edl_limits

    limits = edl_limits()
    at_counts = Counts(limits.max_words, limits.max_pauses, limits.max_segments, limits.max_clips, limits.max_tracks)
    out: dict[str, Any] = {"limits": {k: getattr(limits, k) for k in (
        "max_bytes", "max_tracks", "max_clips", "max_segments", "max_words", "max_pauses", "max_render_pieces")}}
    for name in ("largest_accepted", "count_limits"):
        # One timeline alive at a time, as in a worker serving one request: the collector's full
        # passes, which the computations' allocations trigger, scan what is alive.
        gc.collect()
        if name == "largest_accepted":
            counts, doc = largest_within(at_counts, media, limits.max_bytes)
        else:
            counts, doc = at_counts, timeline(at_counts, media)
        print(f"{name}: {_describe(counts, doc)}", flush=True)
        figures = {key: _time(fn, args.iterations) for key, fn in _computations(doc, counts, media).items()}
        for key, f in figures.items():
            print(f"  {key:<16} CPU p50 {f['cpu']['p50_ms']:>7} / p99 {f['cpu']['p99_ms']:>7} ms;"
                  f" wall p99 {f['wall']['p99_ms']:>7} ms", flush=True)
        out[name] = {"timeline": _describe(counts, doc), "figures": figures}
        del doc
    gc.collect()
    # The former code, on a timeline small enough for it to finish, and the new one on the same.
    # Clips and tracks scaled too: the former code cut every clip of every track at every span.
    small_counts = at_counts.scaled(args.baseline_words / at_counts.words, clips=True)
    small = timeline(small_counts, media)
    print(f"baseline: {_describe(small_counts, small)}", flush=True)
    new, old = _computations(small, small_counts, media), _former(small, small_counts)
    baseline: dict[str, Any] = {"timeline": _describe(small_counts, small), "figures": {}}
    for key, fn in old.items():
        former = _time(fn, args.baseline_iterations, warmup=0)
        current = _time(new[key], args.baseline_iterations)
        ratio = round(former["cpu"]["p50_ms"] / max(current["cpu"]["p50_ms"], 0.01))
        baseline["figures"][key] = {"former": former, "new": current, "ratio_cpu_p50": ratio}
        print(f"  {key:<16} former CPU p50 {former['cpu']['p50_ms']:>9} ms, new {current['cpu']['p50_ms']:>7} ms:"
              f" {ratio} x", flush=True)
    out["baseline"] = baseline
    return out


def _http(args: argparse.Namespace, stack: Any, media: dict[str, list[str]], users: dict[str, Any]) -> dict[str, Any]:
    import requests

    from auteur.users.services import user_issue_token
    from devstack.ports import wait_for_port
    from projects.edl.documents import edl_limits
    from projects.edl.selectors import edl_get
    from projects.edl.services import edl_replace

    limits = edl_limits()
    project = users["project"]
    counts, doc = largest_within(Counts(limits.max_words, limits.max_pauses, limits.max_segments, limits.max_clips,
                                        limits.max_tracks), media, limits.max_bytes)
    t0 = time.perf_counter()
    edl_replace(project=project, expected_version=edl_get(project=project)["version"], data=doc)
    save_s = time.perf_counter() - t0
    # Reading the document back, which each captions request does first: on this stack, from the
    # embedded MongoDB-protocol server (another process, on the same cores).
    reads = []
    for _ in range(5):
        t0 = time.perf_counter()
        edl_get(project=project)
        reads.append(time.perf_counter() - t0)
    port = free_port()
    proc = stack.spawn("api", gunicorn_argv(port, workers=API_WORKERS))
    wait_for_port(port, 60, proc)
    base = f"http://127.0.0.1:{port}/api/v1"
    attacker = {"Authorization": f"Bearer {user_issue_token(user=users['a'])}"}
    bystander = {"Authorization": f"Bearer {user_issue_token(user=users['b'])}"}
    captions_url = f"{base}/projects/{project.pk}/captions?format=json"
    first = requests.get(captions_url, headers=attacker, timeout=600)
    assert first.status_code == 200, first.text[:300]
    for _ in range(3):
        assert requests.get(f"{base}/projects", headers=bystander, timeout=60).status_code == 200

    def bystand(seconds: float) -> list[float]:
        samples, until = [], time.monotonic() + seconds
        while time.monotonic() < until:
            t = time.perf_counter()
            response = requests.get(f"{base}/projects", headers=bystander, timeout=600)
            samples.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text[:300]
            time.sleep(BYSTANDER_EVERY_S)
        return samples

    alone = bystand(args.http_seconds / 2)
    stop = threading.Event()
    captions: list[float] = []

    def attack() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            response = requests.get(captions_url, headers=attacker, timeout=600)
            captions.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text[:300]

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(CAPTION_CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    loaded = bystand(args.http_seconds)
    stop.set()
    for thread in threads:
        thread.join(600)
    result = {
        "timeline": _describe(counts, doc), "save_s": round(save_s, 2), "edl_get": _stats(reads),
        "gunicorn_workers": API_WORKERS,
        "caption_clients": CAPTION_CLIENTS, "captions_json": _stats(captions), "captions_requests": len(captions),
        "bystander_alone": _stats(alone), "bystander_loaded": _stats(loaded),
        "bystander_p99_ratio": round(percentile(loaded, 99) / max(percentile(alone, 99), 1e-6), 1),
    }
    print(f"HTTP: {result['timeline']['words']} words saved in {result['save_s']} s, read back in "
          f"{result['edl_get']['p50_ms']} ms (p50); captions p50 "
          f"{result['captions_json']['p50_ms']} / p99 {result['captions_json']['p99_ms']} ms over "
          f"{len(captions)} requests; bystander GET /projects p99 {result['bystander_alone']['p99_ms']} ms alone, "
          f"{result['bystander_loaded']['p99_ms']} ms meanwhile (max {result['bystander_loaded']['max_ms']} ms)",
          flush=True)
    return result


def _setup() -> tuple[dict[str, list[str]], dict[str, Any]]:
    from auteur.users.models import User
    from media.models import MediaFile
    from projects.models import Project

    a = User.objects.create_user(email="attacker@bench.invalid")
    b = User.objects.create_user(email="bystander@bench.invalid")
    project = Project.objects.create(user=a, name="Timeline at the limits")
    for i in range(3):
        Project.objects.create(user=b, name=f"Bystander {i}")
    media: dict[str, list[str]] = {"video": [], "audio": []}
    for kind in media:
        for i in range(4):
            row = MediaFile.objects.create(
                project=project, user=a, name=f"{kind}{i}", type=kind, mime_type=f"{kind}/x", status="ready",
                duration_ms=24 * 3600 * 1000, file_size_bytes=1, storage_key=f"bench/{uuid.uuid4()}",
            )
            media[kind].append(str(row.pk))
    return media, {"a": a, "b": b, "project": project}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--baseline-words", type=int, default=4000)
    parser.add_argument("--baseline-iterations", type=int, default=3)
    parser.add_argument("--http-seconds", type=float, default=20)
    args = parser.parse_args(argv)

    load_start = load_average()
    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000") as stack:
        media, users = _setup()
        gc.collect()
        report = {"in_process": _in_process(args, media), "http": _http(args, stack, media, users),
                  "target_p99_ms": TARGET_P99_MS, "padding_ms": PADDING_MS, "min_pause_ms": MIN_PAUSE_MS}
    report["load_average"] = {"start": load_start, "end": load_average()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {load_start} at start, {report['load_average']['end']} at end; "
          f"written to {RESULTS.relative_to(RESULTS.parent.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
