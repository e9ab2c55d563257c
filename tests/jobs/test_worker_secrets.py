"""Worker processes keep their /proc to themselves: a media parser that shares the worker's uid
(no uid sandbox on the machine) cannot read the worker's environment, where every secret is."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from celery import current_app

from tests.jobs.conftest import start_worker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NOBODY = 65534
# A process of the given uid that says it is up, then waits; non-dumpable when told so. (The uid
# change itself makes it non-dumpable: it is made dumpable again, as a process started by that
# user is, unless told otherwise.)
TARGET = """
import ctypes, os, sys, time
os.setgroups([]); os.setresgid({uid}, {uid}, {uid}); os.setresuid({uid}, {uid}, {uid})
ctypes.CDLL(None).prctl(4, 0 if {non_dumpable} else 1, 0, 0, 0)
print("up", flush=True)
time.sleep(60)
"""


def environ_read_by_a_sibling_of_its_uid(non_dumpable: bool) -> str:
    """Start a process of uid `nobody` holding a secret, and have another process of that uid
    (a parser taken over, say) read its /proc environ. What the read came to."""
    env = {"PATH": os.environ.get("PATH", ""), "THE_SECRET": "s3cret"}
    target = subprocess.Popen([sys.executable, "-c", TARGET.format(uid=NOBODY, non_dumpable=non_dumpable)],
                              env=env, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "up"
        reader = os.fork()
        if reader == 0:  # pragma: no cover - exits only
            code = 3
            try:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
                with open(f"/proc/{target.pid}/environ", "rb") as fh:
                    code = 0 if b"s3cret" in fh.read() else 2
            except PermissionError:
                code = 1
            finally:
                os._exit(code)
        return {0: "read", 1: "refused", 2: "empty", 3: "error"}[os.waitstatus_to_exitcode(os.waitpid(reader, 0)[1])]
    finally:
        target.kill()
        target.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play two processes of another uid")
def test_a_non_dumpable_process_keeps_its_environ_from_processes_of_its_own_uid():
    assert environ_read_by_a_sibling_of_its_uid(non_dumpable=False) == "read"  # what a parser could do
    assert environ_read_by_a_sibling_of_its_uid(non_dumpable=True) == "refused"


def test_the_worker_makes_itself_non_dumpable_at_its_start(start_worker):  # noqa: F811
    worker = start_worker(include="tests.jobs.worker_probe", consumer=False)
    deadline = time.monotonic() + 30
    replies: list[dict[str, dict[str, int]]] = []
    while not replies and time.monotonic() < deadline:
        replies = current_app.control.broadcast("dumpable", destination=[worker.name], reply=True, timeout=5) or []
    [reply] = replies
    assert reply[worker.name] == {"dumpable": 0}
