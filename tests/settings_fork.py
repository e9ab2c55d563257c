"""Settings loaded in a fresh process of their own, the way `manage.py` and the servers load them,
for a fraction of the CPU of a new interpreter each time.

A test that checks what the settings do with an environment (refuse a weak secret, read a
NAME_FILE, build STORAGES) needs a process whose settings module runs from scratch under that
environment: auteur/settings/ reads os.environ once, at import. Starting a new interpreter for
each costs about a second of CPU, nearly all of it importing the same third-party packages.

So one server process per test process imports those packages once (never Django's settings,
never this project's modules), and forks a child for each load. The child replaces its whole
environment, runs `django.setup()` and prints the expression asked for, exactly as
`python -c "import django; django.setup(); ..."` would; the caller gets the child's exit status,
stdout and stderr as a CompletedProcess. The server has no threads, so forking it is safe.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Imported by the server before it forks: packages only (nothing that reads settings when imported).
# Each of them imports without settings (an import that read them would fail here, unconfigured).
PRELOAD = (
    "django.apps", "django.db.models", "django.contrib.admin", "rest_framework.serializers", "environ",
    "celery", "kombu", "redis", "psycopg", "stripe", "aiohttp", "mongoengine", "jwt", "cryptography.x509",
    "storages.backends.s3", "boto3",
)
TIMEOUT_SECONDS = 60


def _child(request: dict[str, Any], out: str, err: str) -> None:
    """In the forked child: never returns."""
    status = 0
    try:
        stdout_fd, stderr_fd = os.open(out, os.O_WRONLY), os.open(err, os.O_WRONLY)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        code = compile(request["code"], "<string>", "exec")
        exec(code, {"__name__": "__main__"})
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def serve() -> None:
    """The server: one JSON request a line on stdin, one JSON answer a line on stdout."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    answers = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        with tempfile.TemporaryDirectory() as tmp:
            out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            Path(out).touch()
            Path(err).touch()
            pid = os.fork()
            if pid == 0:
                _child(request, out, err)
            _, wait_status = os.waitpid(pid, 0)
            answer = {"returncode": os.waitstatus_to_exitcode(wait_status),
                      "stdout": Path(out).read_text(errors="replace"), "stderr": Path(err).read_text(errors="replace")}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class _Server:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        # Its own environment holds nothing of the settings': each child gets the caller's whole.
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        proc = subprocess.Popen([sys.executable, "-c", "from tests.settings_fork import serve; serve()"],
                                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        atexit.register(self.close)
        return proc

    def run(self, code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps({"code": code, "env": env, "cwd": str(cwd)}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_SECONDS)
            if not ready:
                self.close()
                raise subprocess.TimeoutExpired(["settings_fork", code], TIMEOUT_SECONDS)
            answer = json.loads(self.proc.stdout.readline())
        return subprocess.CompletedProcess(["settings_fork", code], answer["returncode"], answer["stdout"],
                                           answer["stderr"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


_server = _Server()


def run_python(code: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """What `python -c CODE` with exactly `env` (and cwd) gives, in a fork of the preloaded server."""
    return _server.run(code, env, cwd)
