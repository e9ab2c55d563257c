"""The scans that plan a long file's pieces (its keyframes, its silences) decode the upload, so they
run as its probe does: in a child of the worker's media server, sandboxed and under the probe's
limits. A child taken over reaches neither the worker's secrets nor the network; a file that never
ends costs the child its time limit and fails the job `invalid_media`, never the worker's step."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from gpu_tasks import sandbox as isolation
from jobs.gpu_client import PermanentGpuError
from jobs.life.pieces import _scan
from media.probing import sandbox as probe_sandbox

HERE = isolation.detect()


@pytest.fixture(autouse=True)
def fresh_server():
    probe_sandbox.stop_server()
    yield
    probe_sandbox.stop_server()


@pytest.mark.skipif(HERE.mode == "none", reason="no sandbox on this machine")
def test_a_scan_taken_over_reaches_no_secret_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTEUR_WORKER_SECRET", "s3cret")
    upload = tmp_path / "upload.mp4"
    upload.write_text(f"{os.getpid()}\n")
    upload.chmod(0o600)  # the worker's own file: the child reads it through the descriptor it is given
    port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    outcome = _scan("tests.media.probe_attacks:escape_scan", upload, port=port)
    assert set(outcome["environ"]) <= {"PATH", "LANG"}
    assert outcome["worker_environ"] == "PermissionError"
    assert outcome["loopback"] in ("OSError", "ConnectionRefusedError")
    if HERE.separate_uid:
        assert outcome["uid"] == HERE.probe_uid != os.getuid()


def test_a_file_that_never_ends_fails_the_scan_within_its_time_limit(tmp_path):
    fifo = Path(tmp_path / "never.mp4")
    os.mkfifo(fifo)  # nobody writes: reading it never ends
    with override_settings(AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS=1.0), pytest.raises(PermanentGpuError) as failed:
        _scan("gpu_tasks.pieces:scan_keyframe_bounds", fifo, target_ms=60_000)
    assert failed.value.code == "invalid_media" and "(time)" in failed.value.message


def test_a_file_that_is_not_a_video_is_refused_by_the_scan_as_the_job_s_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(PermanentGpuError) as failed:
        _scan("gpu_tasks.pieces:scan_keyframe_bounds", text, target_ms=60_000)
    assert failed.value.code == "invalid_media"
