"""A multi-gigabyte upload through Caddy and the local storage backend: one PUT against parts.

    .venv/bin/python bench/large_upload.py [--size-gib 2] [--part-mib 64] [--parallel 4]

Starts a throwaway stack and `make run`'s front (devstack/front.py: Caddy on a loopback port,
the API's gunicorn and the storage gunicorn behind it), makes a file of --size-gib GiB (a WAV of
noise-like samples), then uploads it three ways, each timed from this client (python-requests
over loopback, the body streamed from disk):

single        upload-url (size undeclared: one PUT takes up to 5 GiB) -> one PUT -> confirm
multipart     upload-url (size declared: parts of --part-mib MiB) -> per part: its SHA-256 (this
              client's CPU), its signed URL, its PUT, one part at a time -> confirm (which
              concatenates the parts into the object)
multipart_N   the same with --parallel parts in flight at once

Memory: the resident size of Caddy and of the storage gunicorn (with its threads) is sampled every
0.1 s during each upload; the figure is the peak over the idle size before it, which stays flat
(a few MiB) whatever the file's size, since both stream the body to disk.

The files are not probed (no worker runs): what is measured is the upload. Results are printed
and written to bench/results/large_upload.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _stack import RESULTS_DIR, django_stack, free_port, load_average, wait_until

CHUNK = 1024 * 1024


def make_wav(path: Path, size: int) -> None:
    """A PCM WAV of `size` bytes in all: 16-bit stereo at 44.1 kHz, samples that do not repeat soon."""
    import wave

    frames = (size - 44) // 4 * 4
    block = hashlib.sha256(b"auteur").digest() * (CHUNK // 32)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        written = 0
        while written < frames:
            piece = block[: min(len(block), frames - written)]
            out.writeframesraw(piece)
            written += len(piece)


class Peak:
    """The peak resident size of some processes (and their children) while it runs."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]
        self.base = self.rss()
        self.peak = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        import psutil

        total = 0
        for proc in self.procs:
            for p in (proc, *proc.children(recursive=True)):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def file_part(path: Path, offset: int, size: int) -> Any:
    """A part of the file as a streamed body (requests sends an iterator chunked; this object has a
    length, so it is sent with Content-Length)."""

    class Body:
        def __len__(self) -> int:
            return size

        def __iter__(self) -> Any:
            with path.open("rb") as fh:
                fh.seek(offset)
                left = size
                while left:
                    chunk = fh.read(min(CHUNK, left))
                    left -= len(chunk)
                    yield chunk

    return Body()


def sha256_of(path: Path, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in file_part(path, offset, size):
        digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def upload_single(http: Any, api: str, auth: dict[str, str], path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    ticket = http.post(f"{api}/upload-url", json={"filename": path.name, "content_type": "audio/wav"},
                       headers=auth, timeout=30).json()
    with path.open("rb") as fh:
        put = http.put(ticket["upload_url"], data=fh, headers=ticket["headers"], timeout=3600)
    put.raise_for_status()
    t1 = time.perf_counter()
    confirm = http.post(f"{api}/{ticket['media_id']}/confirm", json={}, headers=auth, timeout=600)
    assert confirm.status_code == 202, confirm.text
    t2 = time.perf_counter()
    return {"upload_s": round(t1 - t0, 2), "confirm_s": round(t2 - t1, 2)}


def upload_parts(http_factory: Any, api: str, auth: dict[str, str], path: Path, parallel: int) -> dict[str, float]:
    size = path.stat().st_size
    http = http_factory()
    t0 = time.perf_counter()
    ticket = http.post(f"{api}/upload-url", json={"filename": path.name, "content_type": "audio/wav",
                                                   "size_bytes": size}, headers=auth, timeout=30).json()
    plan = ticket["multipart"]
    parts_url = api.rsplit("/api/v1", 1)[0] + plan["parts_url"]
    local = threading.local()
    hashing = [0.0]

    def send(number: int) -> None:
        session = getattr(local, "http", None) or http_factory()
        local.http = session
        offset = (number - 1) * plan["part_size"]
        length = min(plan["part_size"], size - offset)
        h0 = time.perf_counter()
        sha = sha256_of(path, offset, length)
        hashing[0] += time.perf_counter() - h0
        signed = session.post(parts_url, json={"parts": [{"number": number, "sha256": sha}]}, headers=auth,
                              timeout=30).json()["parts"][0]
        put = session.put(signed["url"], data=file_part(path, offset, length),
                          headers={**signed["headers"], "Content-Length": str(length)}, timeout=3600)
        put.raise_for_status()

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(send, range(1, plan["part_count"] + 1)))
    t1 = time.perf_counter()
    confirm = http.post(f"{api}/{ticket['media_id']}/confirm", json={}, headers=auth, timeout=600)
    assert confirm.status_code == 202, confirm.text
    t2 = time.perf_counter()
    return {"upload_s": round(t1 - t0, 2), "confirm_s": round(t2 - t1, 2), "parts": plan["part_count"],
            "client_hashing_s": round(hashing[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with django_stack(AUTEUR_PUBLIC_BASE_URL=base, AUTEUR_MULTIPART_PART_BYTES=str(args.part_mib * 1024**2),
                      AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE="100000", AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000",
                      AUTEUR_QUOTA_STORAGE_BYTES=str(200 * 1024**3)) as stack:
        import requests

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from devstack.front import front_processes
        from projects.models import Project

        user = User.objects.create_user(email="bench@bench.invalid")
        project = Project.objects.create(user=user, name="bench")
        auth = {"Authorization": f"Bearer {user_issue_token(user=user)}"}
        front = front_processes(stack.env, stack.tmp / "var", host="127.0.0.1", port=port)
        procs = {p.name: stack.spawn(p.name, p.argv, **p.env) for p in front.processes}
        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(up, 60, "the front")
        path = stack.tmp / "interview.wav"
        size = int(args.size_gib * 1024**3)
        print(f"making a {size / 1024**3:.1f} GiB WAV...", flush=True)
        make_wav(path, size)
        api = f"{base}/api/v1/projects/{project.pk}/media"
        results: dict[str, Any] = {"file_bytes": path.stat().st_size, "part_mib": args.part_mib}
        watched = [procs["proxy"].pid, procs["storage"].pid]
        runs = (("single", lambda: upload_single(requests.Session(), api, auth, path)),
                ("multipart", lambda: upload_parts(requests.Session, api, auth, path, 1)),
                (f"multipart_{args.parallel}", lambda: upload_parts(requests.Session, api, auth, path, args.parallel)))
        for name, run in runs:
            with Peak(watched) as peak:
                figures = run()
            figures["mb_per_s"] = round(results["file_bytes"] / 1e6 / figures["upload_s"], 1)
            figures["server_rss_idle_mib"] = round(peak.base / 1024**2, 1)
            figures["server_rss_growth_mib"] = round((peak.peak - peak.base) / 1024**2, 1)
            results[name] = figures
            print(f"{name:>12}: {figures}", flush=True)
        results.update(machine=platform.machine(), cpus=__import__("os").cpu_count(), load=load_average())
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "large_upload.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
