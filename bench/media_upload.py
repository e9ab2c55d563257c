"""Upload -> confirm -> ready time for a ~100 MB video through the local storage backend.

    .venv/bin/python bench/media_upload.py [--size-mb 100] [--runs 3]

Starts its own throwaway stack (embedded Postgres, Redis and MongoDB, ephemeral, like `make test`:
the migrations reach MongoDB, the media endpoints never do), then
the real processes `make run` uses:

api     gunicorn with auteur.gunicorn_conf (2 sync workers) on a loopback port: the API and the
        local backend's signed upload/download views, over real HTTP;
worker  one Celery worker consuming the `media` queue (concurrency 1), with Redis as broker.

ffmpeg makes a real H.264/AAC 1280x720 MP4 of about --size-mb MB (a test pattern with noise,
so that it does not compress). Each run, timed from this client (python-requests over loopback):

upload_url  POST /api/v1/projects/{id}/media/upload-url, with no size_bytes: one signed PUT
put         PUT of the whole file to the signed URL (streamed from disk; the view streams it
            to a temp file and renames it into place)
confirm     POST .../confirm (HEAD of the object, conditional UPDATE, enqueue after commit)
processing  from confirm's answer until GET .../media/{id} says `ready` (polled every 20 ms):
            queueing, the worker's PyAV probe (open + decode one frame) and the ffmpeg thumbnail
total       upload_url + put + confirm + processing

The probe and the thumbnail are also timed in-process on the same file, for the breakdown.
Results are printed and written to bench/results/media_upload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from devstack.ports import wait_for_port  # noqa: E402 - needs the path above
from devstack.process_group import stop_group  # noqa: E402
from devstack.stack import URL_VARS, running_stack  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "media_upload.json"
POLL_SECONDS = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_video(path: Path, size_mb: int) -> None:
    import imageio_ffmpeg

    bitrate_mbps = 40
    seconds = max(1, round(size_mb * 8 / bitrate_mbps))
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=40:allf=t+u",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
            "-b:v", f"{bitrate_mbps}M", "-maxrate", f"{bitrate_mbps}M", "-bufsize", f"{2 * bitrate_mbps}M",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=600,
    )


def _one_run(base: str, token: str, project_id: str, path: Path) -> dict[str, float]:
    import requests

    auth = {"Authorization": f"Bearer {token}"}
    api = f"{base}/api/v1/projects/{project_id}/media"
    size = path.stat().st_size
    with requests.Session() as http:
        t0 = time.perf_counter()
        # No size declared: one signed PUT whatever the size (a declared size past the multipart
        # threshold, 64 MiB by default, gets a multipart upload, which bench/large_upload.py times).
        ticket = http.post(f"{api}/upload-url", json={"filename": path.name, "content_type": "video/mp4"},
                           headers=auth, timeout=30)
        ticket.raise_for_status()
        body = ticket.json()
        t1 = time.perf_counter()
        with path.open("rb") as fh:
            put = http.put(body["upload_url"], data=fh, headers=body["headers"], timeout=600)
        put.raise_for_status()
        t2 = time.perf_counter()
        confirm = http.post(f"{api}/{body['media_id']}/confirm", json={}, headers=auth, timeout=30)
        assert confirm.status_code == 202, confirm.text
        t3 = time.perf_counter()
        while True:
            media = http.get(f"{api}/{body['media_id']}", headers=auth, timeout=30).json()["media"]
            if media["status"] != "processing":
                break
            time.sleep(POLL_SECONDS)
        t4 = time.perf_counter()
    assert media["status"] == "ready", media
    assert media["has_thumbnail"], media
    return {
        "upload_url_ms": round((t1 - t0) * 1000, 1),
        "put_s": round(t2 - t1, 3),
        "put_mb_per_s": round(size / 1e6 / (t2 - t1), 1),
        "confirm_ms": round((t3 - t2) * 1000, 1),
        "processing_s": round(t4 - t3, 3),
        "total_s": round(t4 - t0, 3),
    }


def _in_process_breakdown(path: Path) -> dict[str, float]:
    from media.probing.facts import make_thumbnail, probe_file

    t0 = time.perf_counter()
    result = probe_file(path, "video")
    t1 = time.perf_counter()
    assert result.ok, result.rejection_reason
    with tempfile.TemporaryDirectory() as tmp:
        assert make_thumbnail(path, Path(tmp) / "t.jpg", media_type="video", duration_ms=result.duration_ms)
    t2 = time.perf_counter()
    return {"probe_ms": round((t1 - t0) * 1000, 1), "thumbnail_ms": round((t2 - t1) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="auteur-bench-media-"))
    env = {k: v for k, v in os.environ.items() if k not in URL_VARS}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with running_stack(tmp / "stack", env, ephemeral=True) as stack:
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            env.update(stack.urls())
            env.update({
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "bench-only-django-secret-key-0123456789abcdef",
                "AUTEUR_JWT_SECRET": "bench-only-jwt-secret-0123456789abcdef-xyz",
                "AUTEUR_JWT_ISSUER": "https://auth.auteur.test/auth/v1",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "AUTEUR_VAR_DIR": str(tmp / "var"),
                "AUTEUR_PUBLIC_BASE_URL": base,
                "AUTEUR_RATE_LIMIT_USER_PER_MINUTE": "100000",  # the poll loop is not what is measured
                "DJANGO_LOG_LEVEL": "WARNING",
            })
            os.environ.update(env)

            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", verbosity=0)
            from auteur.users.models import User
            from auteur.users.services import user_issue_token
            from projects.models import Project

            user = User.objects.create_user(email="bench@bench.invalid")
            project = Project.objects.create(user=user, name="bench")
            token = user_issue_token(user=user)

            video = tmp / "bench.mp4"
            print(f"generating a ~{args.size_mb} MB video with ffmpeg...", flush=True)
            _make_video(video, args.size_mb)
            size = video.stat().st_size
            print(f"  {size / 1e6:.1f} MB", flush=True)

            bindir = Path(sys.executable).parent
            logs = tmp / "logs"
            logs.mkdir()
            procs.append(subprocess.Popen(
                [str(bindir / "gunicorn"), "auteur.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", "2", "--timeout", "300", "--config", "python:auteur.gunicorn_conf",
                 "--access-logfile", str(logs / "access.log")],
                env=env, cwd=REPO_ROOT, stdout=(logs / "api.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
            procs.append(subprocess.Popen(
                [str(bindir / "celery"), "-A", "auteur", "worker", "-Q", "media", "-c", "1", "--pool", "prefork",
                 "--loglevel", "WARNING", "-n", "bench-media@%h"],
                env=env, cwd=REPO_ROOT, stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
            wait_for_port(port, 60, procs[0])

            # Warm-up: a small file through the same path (worker start-up, imports, connections).
            small = tmp / "warmup.mp4"
            _make_video(small, 1)
            _one_run(base, token, str(project.pk), small)

            runs = []
            for i in range(args.runs):
                result = _one_run(base, token, str(project.pk), video)
                print(f"run {i + 1}/{args.runs}: {result}", flush=True)
                runs.append(result)
            breakdown = _in_process_breakdown(video)

        report: dict[str, Any] = {
            "file_bytes": size,
            "server": "gunicorn (auteur.gunicorn_conf, 2 sync workers) + 1 Celery worker on the media queue",
            "client": "python-requests over loopback",
            "storage": "local backend (signed URLs served by the API, files on local disk)",
            "runs": runs,
            "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "in_process": breakdown,
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count()},
        }
        print(json.dumps(report["median"], indent=2))
        print(f"in-process probe/thumbnail: {breakdown}")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {RESULTS.relative_to(REPO_ROOT)}")
        return 0
    finally:
        for proc in reversed(procs):
            stop_group(proc, 20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
