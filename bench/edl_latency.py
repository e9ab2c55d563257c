"""EDL GET and PUT latency for a 2,000-clip timeline, through the services and through the HTTP API.

    .venv/bin/python bench/edl_latency.py [--clips 2000] [--iterations 50]

Starts its own throwaway stack (embedded Postgres, Redis and the nx-27017 MongoDB-protocol server,
ephemeral, like `make test`), creates a project whose media rows are `ready`, saves a timeline of
`--clips` clips spread over 4 video tracks and 2 audio tracks plus a 300-segment word-level
transcript, then times, after a few untimed warm-up rounds:

service  edl_get / edl_replace (head read, validation with its one media query, guarded replace,
         history snapshot, pruning), and edl_validate on its own;
http     GET / PUT /api/v1/projects/{id}/edl through Django's test client (APIClient): the whole
         middleware stack, JWT authentication, rate limiting in Redis, JSON parsing and
         rendering, but no network socket and no WSGI server. GET's answer is not parsed by the
         client; PUT's is, since the next PUT edits it. Two kinds of PUT, each over the version
         the previous one returned:
           autosave  one clip moved (an editor's autosave);
           whole     every clip moved (the whole document changes).
         Only the request is timed (not the bench's JSON of the body nor its parse of the answer).
         For each PUT, apart from its total: the client-side BSON encoding of what the write sends
         (the stored document for a whole replace, the $set of the changed parts for a partial
         write: what pymongo encodes in the API process before it sends the write; timed apart, on
         the same value, right after the PUT), how many of the timed PUTs were partial writes, and
         the server's part (the edl write command's round trip, from pymongo's command
         monitoring: sending, the server's work, the reply; the encoding is done before it
         starts). The server's part is what depends on the MongoDB server (nx-27017 here, a
         stand-in for MongoDB).

Results are printed and written to bench/results/edl_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pymongo import monitoring  # noqa: E402

from bench._stack import django_stack  # noqa: E402 - needs the path above


class _WriteTimes(monitoring.CommandListener):
    """The round trip of each write command to the edl collection (update: a replace or a $set)."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.samples: list[float] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "edl":
            self.pending.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self.pending:
            self.pending.discard(event.request_id)
            self.samples.append(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.pending.discard(event.request_id)

RESULTS = REPO_ROOT / "bench" / "results" / "edl_latency.json"
WARMUP = 5
VIDEO_TRACKS, AUDIO_TRACKS = 4, 2
SEGMENTS, WORDS_PER_SEGMENT = 300, 8


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def _time(fn: Callable[[], Any], iterations: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def _mongodb_server() -> Any:
    """The embedded MongoDB-protocol server's process (a child of this one), for its CPU time."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if any("nx_27017" in part or "nx_server.py" in part for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise SystemExit("the embedded MongoDB-protocol server (nx-27017) is not a child of this process")


def _cpu_seconds(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _paused(fn: Callable[..., Any], **kwargs: Any) -> Any:
    from auteur.core.collector import collector_paused

    with collector_paused():
        return fn(**kwargs)


def _timeline(doc: dict[str, Any], media: dict[str, list[str]], clips: int) -> dict[str, Any]:
    """`clips` back-to-back clips over the video and audio tracks, and a word-level transcript."""
    tracks: list[dict[str, Any]] = [
        {"id": f"v{i}", "type": "video", "name": f"Video {i + 1}", "clips": []} for i in range(VIDEO_TRACKS)]
    tracks += [{"id": f"a{i}", "type": "audio", "name": f"Audio {i + 1}", "clips": []} for i in range(AUDIO_TRACKS)]
    for n in range(clips):
        track = tracks[n % len(tracks)]
        pool = media[track["type"]]
        start = len(track["clips"]) * 2000
        track["clips"].append({
            "id": f"clip-{n}",
            "media_file_id": pool[n % len(pool)],
            "track_id": track["id"],
            "start_ms": start,
            "duration_ms": 1500,
            "in_point_ms": 500,
            "out_point_ms": 2000,
            "effects": [{"type": "fade_in", "duration_ms": 100}] if n % 10 == 0 else [],
            "deleted": n % 50 == 0,
        })
    segments = []
    for s in range(SEGMENTS):
        base = s * 4000
        words: list[dict[str, Any]] = [{"word": f"word{w}", "start_ms": base + w * 400, "end_ms": base + w * 400 + 350,
                  "confidence": 0.93} for w in range(WORDS_PER_SEGMENT)]
        segments.append({"id": f"seg-{s}", "speaker": f"Speaker {s % 2 + 1}", "start_ms": base,
                         "end_ms": base + 3500, "text": " ".join(w["word"] for w in words), "words": words,
                         "deleted": False, "edited_text": None})
    return {**doc, "tracks": tracks,
            "transcript": {"generated_at": "2026-01-31T12:00:00.000Z", "segments": segments}}


def _trim(doc: dict[str, Any], n: int) -> dict[str, Any]:
    clip = doc["tracks"][0]["clips"][1 + n % 100]
    clip["in_point_ms"] = 500 + n % 200
    clip["duration_ms"] = clip["out_point_ms"] - clip["in_point_ms"]
    return doc


def _move_one(doc: dict[str, Any], n: int) -> dict[str, Any]:
    """An autosave: one clip moved along its track (into the 500 ms gap after it, and back)."""
    clip = doc["tracks"][n % len(doc["tracks"])]["clips"][1 + n % 50]
    clip["start_ms"] = clip["start_ms"] // 1000 * 1000 + (100 if clip["start_ms"] % 1000 == 0 else 0)
    return doc


def _move_all(doc: dict[str, Any], n: int) -> dict[str, Any]:
    """Every clip moved (by 100 ms, and back on the next save): the whole document changes."""
    for track in doc["tracks"]:
        for clip in track["clips"]:
            clip["start_ms"] = clip["start_ms"] // 1000 * 1000 + (100 if n % 2 == 0 else 0)
    return doc


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import bson
    from rest_framework.test import APIClient

    from auteur.core.collector import startup_objects_frozen
    from auteur.users.models import User
    from auteur.users.services import user_issue_token
    from media.models import MediaFile
    from projects.edl import versions
    from projects.edl.selectors import edl_get
    from projects.edl.services import edl_replace
    from projects.edl.store import disconnect, history_collection
    from projects.edl.validation import edl_validate
    from projects.models import Project

    # Command monitoring on the store's client: registered before it connects.
    writes = _WriteTimes()
    monitoring.register(writes)
    disconnect()
    last_stored: dict[str, Any] = {}
    stored_form = versions.stored_form

    def remembering(doc: dict[str, Any]) -> dict[str, Any]:
        last_stored["doc"] = stored = stored_form(doc)
        return stored

    versions.stored_form = remembering  # what each save stores
    version_update = versions.version_update

    def remembering_update(head: versions.Head, digest: Any, stored: dict[str, Any]) -> dict[str, Any] | None:
        last_stored["update"] = update = version_update(head, digest, stored)
        return update

    versions.version_update = remembering_update  # what it sends: a $set, or None for a replace
    codec: bson.CodecOptions[dict[str, Any]] = bson.CodecOptions(
        tz_aware=True, uuid_representation=bson.binary.UuidRepresentation.STANDARD)

    server = _mongodb_server()
    user = User.objects.create_user(email="bench@bench.invalid")
    project = Project.objects.create(user=user, name="EDL bench")
    media: dict[str, list[str]] = {"video": [], "audio": []}
    for kind in ("video", "audio"):
        for i in range(20):
            row = MediaFile.objects.create(
                project=project, user=user, name=f"{kind}{i}", type=kind, mime_type=f"{kind}/x", status="ready",
                duration_ms=600_000, file_size_bytes=1, storage_key=f"bench/{uuid.uuid4()}",
            )
            media[kind].append(str(row.pk))

    # As in every serving process (gunicorn's workers, Celery's pool), the objects of the loaded
    # application are out of the collector's passes (auteur/core/collector.py).
    startup_objects_frozen()
    doc = edl_replace(project=project, expected_version=1,
                      data=_timeline(edl_get(project=project), media, args.clips))
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    clip_count = sum(len(t["clips"]) for t in doc["tracks"])
    print(f"timeline: {clip_count} clips, {SEGMENTS} segments, {size / 1024:.0f} KiB of JSON", flush=True)

    counter = iter(range(10**9))
    current = edl_get(project=project)
    service_state: dict[str, Any] = {"doc": current}

    def service_put() -> None:
        # Saves over the version the previous save returned, as an editor does (no GET in between).
        doc = service_state["doc"]
        service_state["doc"] = edl_replace(project=project, expected_version=doc["version"],
                                           data=_trim(doc, next(counter)))

    service = {
        "get": _stats(_time(lambda: edl_get(project=project), args.iterations)),
        "put": _stats(_time(service_put, args.iterations)),
        # As edl_replace runs it: with the collector paused (auteur/core/collector.py).
        "validate_only": _stats(_time(lambda: _paused(edl_validate, project=project, data=current), args.iterations)),
    }

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")
    path = f"/api/v1/projects/{project.pk}/edl"
    state: dict[str, Any] = {"doc": client.get(path).json()}

    def http_get() -> None:
        # The server's answer, not the test client's parse of it (a JSON parse of 650 KiB, ~6 ms,
        # which an editor pays in its own process).
        response = client.get(path)
        assert response.status_code == 200, response.content[:300]

    def http_put(change: Callable[[dict[str, Any], int], dict[str, Any]]) -> Callable[[], None]:
        def put() -> None:
            body = json.dumps(change(state["doc"], next(counter)))
            response = client.put(path, body, content_type="application/json",
                                  HTTP_IF_MATCH=f'"{state["doc"]["version"]}"')
            assert response.status_code == 200, response.content[:300]
            state["doc"] = response.json()
        return put

    def http_put_parts(change: Callable[[dict[str, Any], int], dict[str, Any]]) -> dict[str, Any]:
        """PUT's total, and apart: the write command's round trip and the client-side encoding.
        Only the request is timed: the bench's own JSON of the body and parse of the answer (what
        an editor does in its own process) are neither in the total nor in the API's CPU."""
        encodes: list[float] = []
        totals: list[float] = []
        partial = [0]
        bench_cpu = [0.0]

        def put(timed: bool) -> None:
            c0 = time.process_time()
            body = json.dumps(change(state["doc"], next(counter)))
            bench_cpu[0] += time.process_time() - c0
            t0 = time.perf_counter()
            response = client.put(path, body, content_type="application/json",
                                  HTTP_IF_MATCH=f'"{state["doc"]["version"]}"')
            elapsed = time.perf_counter() - t0
            assert response.status_code == 200, response.content[:300]
            c0 = time.process_time()
            state["doc"] = response.json()
            update = last_stored.get("update")
            t0 = time.perf_counter()
            bson.encode(last_stored["doc"] if update is None else update, codec_options=codec)
            encoded = time.perf_counter() - t0
            bench_cpu[0] += time.process_time() - c0
            if timed:
                totals.append(elapsed)
                encodes.append(encoded)
                partial[0] += update is not None

        for _ in range(WARMUP):
            put(False)
        writes.samples.clear()
        bench_cpu[0] = 0.0
        api_cpu, server_cpu = time.process_time(), _cpu_seconds(server)
        for _ in range(args.iterations):
            put(True)
        # CPU per PUT, which the machine's load does not inflate as it does wall time: the API
        # process's (the bench's own work left out) and the MongoDB-protocol server's.
        api_ms = (time.process_time() - api_cpu - bench_cpu[0]) * 1000 / args.iterations
        cpu = {"api_ms": round(api_ms, 2),
               "mongodb_server_ms": round((_cpu_seconds(server) - server_cpu) * 1000 / args.iterations, 2)}
        assert len(writes.samples) == args.iterations, len(writes.samples)
        return {"total": _stats(totals), "server_write": _stats(writes.samples), "cpu_per_put": cpu,
                "client_encode": _stats(encodes), "partial_writes": partial[0],
                "stored_bson_bytes": len(bson.encode(last_stored["doc"], codec_options=codec))}

    http = {"get": _stats(_time(http_get, args.iterations)),
            "put": _stats(_time(http_put(_trim), args.iterations)),
            "put_autosave": http_put_parts(_move_one),
            "put_whole": http_put_parts(_move_all)}
    history = history_collection().count_documents({"project_id": str(project.pk)})
    return {
        "clips": clip_count,
        "segments": SEGMENTS,
        "words": SEGMENTS * WORDS_PER_SEGMENT,
        "document_bytes": size,
        "iterations": args.iterations,
        "warmup": WARMUP,
        "service": service,
        "http": http,
        "http_client": "Django test client (rest_framework.test.APIClient), in process, no socket",
        "history_snapshots_kept": history,
        "final_version": edl_get(project=project)["version"],
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "mongodb": "nx-27017 (embedded MongoDB wire-protocol server over SQLite), loopback",
            "postgres": "embedded, fsync=off",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args(argv)

    # 2 x (warm-up + iterations) requests in well under a minute: not what is measured.
    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000"):
        report = _measure(args)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['clips']} clips, {report['document_bytes'] / 1024:.0f} KiB, "
          f"{args.iterations} iterations after {WARMUP} warm-up")
    rows = [
        ("service edl_get", report["service"]["get"]),
        ("service edl_replace", report["service"]["put"]),
        ("service edl_validate alone", report["service"]["validate_only"]),
        ("HTTP GET  (test client)", report["http"]["get"]),
        ("HTTP PUT  (test client)", report["http"]["put"]),
    ]
    for kind in ("put_autosave", "put_whole"):
        parts = report["http"][kind]
        rows += [(f"HTTP PUT {kind[4:]}", parts["total"]), ("  of which server write", parts["server_write"]),
                 ("  client BSON encode (apart)", parts["client_encode"])]
        print(f"  {kind}: CPU per PUT: API process {parts['cpu_per_put']['api_ms']} ms, "
              f"MongoDB-protocol server {parts['cpu_per_put']['mongodb_server_ms']} ms; "
              f"{parts['partial_writes']} of {args.iterations} partial writes ($set)")
    for name, s in rows:
        print(f"  {name:<28} p50 {s['p50_ms']:>8.2f} ms   p99 {s['p99_ms']:>8.2f} ms")
    print(f"  written to {RESULTS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
