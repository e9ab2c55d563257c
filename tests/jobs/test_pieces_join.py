"""The join of a compression's pieces runs its ffmpeg in the local engines' sandbox, whatever the
backend: the ffmpeg that reads the GPU containers' pieces and the user's source sees none of the
worker's environment, runs as a uid of its own, and reaches no network.

The ffmpeg it runs is a wrapper (AUTEUR_FFMPEG, which a runner keeps) that writes down what it can
see before it becomes the real ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gpu_tasks import sandbox as isolation
from gpu_tasks.engines.ffmpeg import ffmpeg_exe
from gpu_tasks.engines.media import probe
from jobs import gpu_client
from tests.gpu_tasks.helpers import ffmpeg

HERE = isolation.detect()
SECRET = "s3cret-the-worker-holds-0123456789"
# Written down by the ffmpeg the join runs: its environment, ids, arguments and whether it can
# reach a port on loopback; then it becomes the real ffmpeg.
WRAPPER = """#!{python}
import json, os, socket, sys
report = {{"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(), "argv": sys.argv[1:]}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    report["connect"] = "connected"
except OSError as exc:
    report["connect"] = type(exc).__name__
with open(os.path.join({shared!r}, "report-%d.json" % os.getpid()), "w") as out:
    json.dump(report, out)
os.execv({ffmpeg!r}, [{ffmpeg!r}, *sys.argv[1:]])
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder the sandbox's uids may write (the test's tmp_path is the test's alone)."""
    path = Path(tempfile.mkdtemp(prefix="auteur-join-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def piece(path: Path, start: int, seconds: int) -> Path:
    """An H.264 piece as a compression call delivers it: video only."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=160x96:rate=25:duration={seconds}", "-vf", f"setpts=PTS+{start}/TB",
           "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", "-an", str(path))
    return path


@pytest.mark.skipif(not HERE.separate_uid or not HERE.network_isolated,
                    reason=f"needs the uid sandbox with a network namespace; here: {HERE.mode}")
def test_the_join_runs_ffmpeg_without_the_workers_environment_as_its_own_uid_and_offline(
    tmp_path: Path, shared: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [piece(tmp_path / "piece-0.mp4", 0, 2), piece(tmp_path / "piece-1.mp4", 2, 2)]
    source = tmp_path / "source.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x96:rate=25:duration=4", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000:duration=4", "-c:v", "libx264", "-c:a", "aac", str(source))
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the control: Redis is there for the worker
    wrapper = shared / "ffmpeg"
    wrapper.write_text(WRAPPER.format(python=sys.executable, port=port, shared=str(shared), ffmpeg=ffmpeg_exe()))
    wrapper.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    monkeypatch.setenv("AUTEUR_WORKER_SECRET", SECRET)
    monkeypatch.setenv("AUTEUR_FFMPEG", str(wrapper))
    ffmpeg_exe.cache_clear()
    settings.AUTEUR_GPU_LOCAL_DIR = str(tmp_path / "calls")
    gpu_client.reset()

    dest = tmp_path / "out" / "joined.mp4"  # in the store step's own temporary folder
    dest.parent.mkdir()
    try:
        joined = gpu_client.join_pieces(pieces, source, dest, preset_name="480p", timeout_s=60)
    finally:
        ffmpeg_exe.cache_clear()
        gpu_client.reset()

    [report] = [json.loads(path.read_text()) for path in shared.glob("report-*.json")]
    assert "concat" in report["argv"], "the join's own ffmpeg"
    env = report["env"]
    assert "AUTEUR_WORKER_SECRET" not in env and not [name for name, value in env.items() if SECRET in value]
    assert not [name for name in env if name.startswith(("DJANGO_", "AUTEUR_JWT", "DATABASE", "REDIS", "AWS_"))]
    assert HERE.uid_base < report["uid"] <= HERE.uid_base + HERE.uid_count and report["gid"] == report["uid"]
    assert report["connect"] in ("OSError", "ConnectionRefusedError"), report["connect"]  # no interface up

    # What the join is for: both pieces end to end, with the source's audio.
    info = probe(joined if joined is not None else dest)
    assert dest.is_file() and info.has_video and info.has_audio and abs(info.duration_s - 4) < 0.2
    assert not list((tmp_path / "calls").iterdir()), "the join's call was let go of"
