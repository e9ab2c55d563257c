"""Timeline imports at the limits, hostile timelines, and another user's requests meanwhile.

    .venv/bin/python bench/interchange_import.py [--imports 12] [--attacks 3] [--bystander-seconds 15]

Starts its own throwaway stack and gunicorn with 3 sync workers (a pod's), as an API pod runs.

1. The largest file the import's limits accept, in every format (bench/interchange_files.py): an
   editor's export of one-second clips over 20 media files, as many clips as the timeline takes
   (5,000) or as fit the 5 MiB an import reads, whichever binds first. Each is imported
   `--imports` times over HTTP into a project holding its media (read in a confined child, matched,
   saved as a new version), one at a time; wall time per import, p50 and p99.
2. Every hostile shape of every format (nested references expanding to 10**5 or 10**6 clips, cycles,
   nesting 60,000 deep, flat files past the clip limit): each sent `--attacks` times; every answer
   must be a 422, and how long it took.
3. A bystander (another user) lists its projects every 200 ms: alone first, then while one client
   imports the largest files of every format back to back, then while one client sends the hostile
   files; its p99 in each, and the ratio to alone (same server, same run).

Prints the figures and writes bench/results/interchange_import.json.
"""

from __future__ import annotations

import argparse
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

from bench import interchange_files as files
from bench._stack import RESULTS_DIR, django_stack, free_port, gunicorn_argv, load_average, percentile

RESULTS = RESULTS_DIR / "interchange_import.json"
API_WORKERS, BYSTANDER_EVERY_S, TARGET_P99_S = 3, 0.2, 1.0
MEDIA = 20
HOSTILE = {
    "fcp7xml sequences used 10x, 5 levels": ("fcp7xml", lambda: files.fcp7_nested(5).encode()),
    "fcp7xml a track named by its id 1,000 times": ("fcp7xml", lambda: files.fcp7_track_references(1000, 100).encode()),
    "fcp7xml a sequence that contains itself": ("fcp7xml", lambda: files.fcp7_cycle().encode()),
    "fcp7xml elements 60,000 deep": ("fcp7xml", lambda: files.fcp7_deep(60_000).encode()),
    "fcpxml compound clips used 10x, 6 levels": ("fcpxml", lambda: files.fcpx_nested(6).encode()),
    "fcpxml a compound clip that contains itself": ("fcpxml", lambda: files.fcpx_cycle().encode()),
    "fcpxml 6,000 clips flat": ("fcpxml", lambda: files.fcpx_flat(6000).encode()),
    "otio brackets 60,000 deep": ("otio", lambda: files.otio_deep(60_000).encode()),
    "otio stacks 5,000 deep": ("otio", lambda: files.otio_deep_stacks(5000).encode()),
    "otio 6,000 clips": ("otio", lambda: files.otio_clips(6000).encode()),
    "aaf composition mobs used 10x, 5 levels": ("aaf", lambda: files.aaf_nested(5)),
    "aaf a composition mob that plays itself": ("aaf", files.aaf_cycle),
    "edl 20,000 events": ("edl", lambda: files.cmx_events(20_000).encode()),
}


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50_s": round(statistics.median(samples), 3), "p99_s": round(percentile(samples, 99), 3),
            "max_s": round(max(samples), 3), "n": len(samples)}


def largest(fmt: str, max_clips: int, max_bytes: int) -> tuple[int, bytes]:
    """The most clips (at most `max_clips`) whose file in `fmt` fits `max_bytes`: (clips, file)."""
    data = files.write(files.timeline_of(max_clips, media=MEDIA), fmt)
    if len(data) <= max_bytes:
        return max_clips, data
    low, high = 1, max_clips  # the file grows with its clips: the largest that fits, by bisection
    best = (1, files.write(files.timeline_of(1, media=MEDIA), fmt))
    while low <= high:
        middle = (low + high) // 2
        data = files.write(files.timeline_of(middle, media=MEDIA), fmt)
        if len(data) <= max_bytes:
            best, low = (middle, data), middle + 1
        else:
            high = middle - 1
    return best


def _setup() -> dict[str, Any]:
    from auteur.users.models import User
    from media.models import MediaFile
    from projects.models import Project

    importer = User.objects.create_user(email="importer@bench.invalid")
    bystander = User.objects.create_user(email="bystander@bench.invalid")
    project = Project.objects.create(user=importer, name="Imports at the limits")
    for i in range(3):
        Project.objects.create(user=bystander, name=f"Bystander {i}")
    for i in range(MEDIA):
        MediaFile.objects.create(project=project, user=importer, name=f"m{i}.mov", type="video", mime_type="video/mp4",
                                 status="ready", duration_ms=24 * 3600 * 1000, file_size_bytes=1,
                                 storage_key=f"bench/{uuid.uuid4()}")
    return {"importer": importer, "bystander": bystander, "project": project}


class Bystander:
    """Another user listing its projects every BYSTANDER_EVERY_S, in a thread, until stopped."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import requests

        while not self.stop.is_set():
            t = time.perf_counter()
            response = requests.get(self.url, headers=self.headers, timeout=120)
            self.samples.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text[:300]
            time.sleep(BYSTANDER_EVERY_S)

    def during(self, work: Callable[[], Any] | None = None, seconds: float = 0) -> list[float]:
        self.thread.start()
        try:
            if work is not None:
                work()
            else:
                time.sleep(seconds)
        finally:
            self.stop.set()
            self.thread.join(120)
        return self.samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--imports", type=int, default=12)
    parser.add_argument("--attacks", type=int, default=3)
    parser.add_argument("--bystander-seconds", type=float, default=15)
    parser.add_argument("--formats", default=",".join(files.EXTENSIONS), help="comma-separated (default: all)")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f in files.EXTENSIONS]

    import requests

    load_start = load_average()
    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000") as stack:
        from auteur.users.services import user_issue_token
        from devstack.ports import wait_for_port
        from projects.edl.documents import edl_limits
        from projects.edl.interchange.formats import max_import_bytes

        who = _setup()
        limits = edl_limits()
        port = free_port()
        proc = stack.spawn("api", gunicorn_argv(port, workers=API_WORKERS))
        wait_for_port(port, 60, proc)
        base = f"http://127.0.0.1:{port}/api/v1"
        importer = {"Authorization": f"Bearer {user_issue_token(user=who['importer'])}"}
        bystander = {"Authorization": f"Bearer {user_issue_token(user=who['bystander'])}"}
        import_url = f"{base}/projects/{who['project'].pk}/timeline/import"

        def post(fmt: str, data: bytes) -> tuple[float, int, dict[str, Any]]:
            t = time.perf_counter()
            response = requests.post(import_url, headers=importer, timeout=120,
                                     files={"file": (f"t.{files.EXTENSIONS[fmt]}", data)})
            return time.perf_counter() - t, response.status_code, response.json()

        largest_files = {fmt: largest(fmt, limits.max_clips, max_import_bytes()) for fmt in formats}
        for fmt, (clips, data) in largest_files.items():  # warm each worker's confined server, and check
            for _ in range(API_WORKERS):
                _, status, body = post(fmt, data)
                assert status == 200 and body["clips"] == clips, (fmt, status, str(body)[:300])
        hostile = {name: (fmt, make()) for name, (fmt, make) in HOSTILE.items() if fmt in formats}

        imports: dict[str, Any] = {}
        for fmt, (clips, data) in largest_files.items():
            times = [post(fmt, data)[0] for _ in range(args.imports)]
            imports[fmt] = {"clips": clips, "bytes": len(data), **_stats(times)}
            print(f"import {fmt:8} {clips:>5} clips {len(data) / 1024:>7.0f} KiB: p50 {imports[fmt]['p50_s']:.3f} s,"
                  f" p99 {imports[fmt]['p99_s']:.3f} s", flush=True)

        attacks: dict[str, Any] = {}
        for name, (fmt, data) in hostile.items():
            answers = [post(fmt, data) for _ in range(args.attacks)]
            codes = sorted({body["error"]["code"] for _, status, body in answers if status == 422})
            assert all(status == 422 for _, status, _ in answers), (name, [a[:2] for a in answers])
            attacks[name] = {"bytes": len(data), "codes": codes, **_stats([a[0] for a in answers])}
            print(f"attack {name:46} {len(data) / 1024:>7.1f} KiB: 422 {','.join(codes)}; "
                  f"max {attacks[name]['max_s']:.3f} s", flush=True)

        projects_url = f"{base}/projects"
        alone = Bystander(projects_url, bystander).during(seconds=args.bystander_seconds)

        def import_all() -> None:
            until = time.monotonic() + args.bystander_seconds
            while time.monotonic() < until:
                for fmt, (_, data) in largest_files.items():
                    post(fmt, data)

        def attack_all() -> None:
            until = time.monotonic() + args.bystander_seconds
            while time.monotonic() < until:
                for fmt, data in hostile.values():
                    post(fmt, data)

        during_imports = Bystander(projects_url, bystander).during(import_all)
        during_attacks = Bystander(projects_url, bystander).during(attack_all)
        bystanders = {"alone": _stats(alone), "during_imports": _stats(during_imports),
                      "during_attacks": _stats(during_attacks)}
        for key in ("during_imports", "during_attacks"):
            bystanders[f"{key}_p99_ratio"] = round(bystanders[key]["p99_s"] / max(bystanders["alone"]["p99_s"], 1e-6),
                                                   2)
        print(f"bystander GET /projects p99: alone {bystanders['alone']['p99_s']:.3f} s, during imports "
              f"{bystanders['during_imports']['p99_s']:.3f} s ({bystanders['during_imports_p99_ratio']} x), during "
              f"attacks {bystanders['during_attacks']['p99_s']:.3f} s ({bystanders['during_attacks_p99_ratio']} x)",
              flush=True)

    report = {"imports": imports, "attacks": attacks, "bystander": bystanders, "gunicorn_workers": API_WORKERS,
              "target_p99_s": TARGET_P99_S, "max_clips": limits.max_clips, "max_bytes": max_import_bytes(),
              "worst_import_p99_s": max(f["p99_s"] for f in imports.values()),
              "load_average": {"start": load_start, "end": load_average()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst import p99 {report['worst_import_p99_s']} s (target < {TARGET_P99_S} s); load average "
          f"{load_start} at start, {report['load_average']['end']} at end; written to bench/results/{RESULTS.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
