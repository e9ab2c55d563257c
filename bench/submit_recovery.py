"""Drill: a client killed while it submits recovers its job by its key, charged once.

    .venv/bin/python bench/submit_recovery.py [--points 1000] [--api-workers 2]

On a throwaway stack, the API under gunicorn as `make run` serves it. Each point is one
submission (TTS, with an `Idempotency-Key`) by a client process that is killed (SIGKILL) at a
random moment of it:

- `sending`: the client writes the request in two parts with a pause between, and is killed
  somewhere in them (the server may get a cut request, or all of it);
- `waiting`: killed after the whole request was sent, before the answer, at a random moment up
  to 1.5 times the median answer time measured first (the server may have charged or not);
- `reading`: killed once the answer began to arrive.

Then it recovers as the TypeScript client does (clients/typescript `submitJob`): it looks the key
up (`GET /jobs?idempotency_key=`) and, only when that finds nothing, sends the same request
with the same key again. A lookup made while the killed request is still being served finds
nothing and the resend races it: the key makes that one job either way.

Checked at the end, for every point: the key made exactly one job; the recovery found it (by
the lookup or by the resend's answer); it was charged exactly once (one usage entry of its
cost, no refund); the account's balance is what it was less those charges, and the ledger's
own audit (credits.selectors.ledger_check) finds nothing. Nothing runs the jobs (no worker):
what is drilled is the submission. Writes bench/results/submit_recovery.json.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, api_answers, django_stack, free_port, gunicorn_argv, wait_until

# The client: connects, says so, then writes the request in two parts (a pause between), reads
# the answer and says when it began; the drill kills it at the point it drew.
CLIENT = r"""
import socket, sys, time
port, split, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
request = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", port))
sys.stdout.write("connected\n"); sys.stdout.flush()
s.sendall(request[:split]); time.sleep(pause); s.sendall(request[split:])
sys.stdout.write("sent\n"); sys.stdout.flush()
s.recv(1)
sys.stdout.write("reading\n"); sys.stdout.flush()
time.sleep(60)
"""
PHASES = ("sending", "waiting", "reading")


def request_bytes(token: str, key: str, project: str) -> bytes:
    body = json.dumps({"project_id": project, "text": "A line to say, once."}).encode()
    head = (f"POST /api/v1/jobs/tts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


def call(port: int, method: str, path: str, token: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def answer_time(port: int, token: str, project: str, n: int = 20) -> float:
    """The median seconds of a whole submission, from the first byte sent to the answer read."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        status, _ = call(port, "POST", "/api/v1/jobs/tts", token,
                         json.dumps({"project_id": project, "text": "Warm up."}).encode(),
                         {"Idempotency-Key": f"warm-{uuid.uuid4()}"})
        assert status == 202, status
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def killed_submission(port: int, request: bytes, phase: str, answer_s: float, rng: random.Random) -> str:
    """Run one client and kill it in `phase`; what it had got to when it died."""
    split = rng.randrange(1, len(request))
    pause = rng.uniform(0.0005, 0.005) if phase == "sending" else 0.0
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(split), str(pause)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(request.decode())
    client.stdin.close()
    reached = client.stdout.readline().strip()  # connected
    if phase == "sending":
        time.sleep(rng.uniform(0, pause))
    else:
        reached = client.stdout.readline().strip()  # sent
        if phase == "waiting":
            time.sleep(rng.uniform(0, 1.5 * answer_s))
        else:
            reached = client.stdout.readline().strip() or reached  # reading
    client.kill()
    client.wait()
    return reached


def recover(port: int, token: str, key: str, request_body: bytes) -> tuple[str, str]:
    """The job the key made, found as the TypeScript client finds it: (job id, how)."""
    status, found = call(port, "GET", f"/api/v1/jobs?idempotency_key={key}", token)
    assert status == 200, (status, found)
    if found["jobs"]:
        return found["jobs"][0]["id"], "lookup"
    status, accepted = call(port, "POST", "/api/v1/jobs/tts", token, request_body, {"Idempotency-Key": key})
    assert status in (200, 202), (status, accepted)
    return accepted["job_id"], "resent" if status == 202 else "resent, answered with the killed one's job"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - the drill's points, reproducible by seed

    with django_stack(AUTEUR_GPU_BACKEND="noop", AUTEUR_RATE_LIMIT_USER_PER_MINUTE="1000000") as stack:
        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.models import CreditTransaction, TransactionType
        from credits.selectors import credit_balance_get, ledger_check
        from credits.services.ledger import credit_grant
        from jobs.models import Job
        from projects.models import Project

        user = User.objects.create_user(email="drill@bench.invalid")
        credit_grant(user=user, amount=100 * args.points, type="bonus", description="drill")
        token, project = user_issue_token(user=user), str(Project.objects.create(user=user, name="d").pk)
        port = free_port()
        stack.spawn("api", gunicorn_argv(port, workers=args.api_workers))
        wait_until(lambda: api_answers(port), 60, "the API", every=0.05)
        answer_s = answer_time(port, token, project)
        start_balance = credit_balance_get(user=user)

        points: list[dict[str, Any]] = []
        started = time.monotonic()
        for i in range(args.points):
            key = f"drill-{i}-{uuid.uuid4().hex[:8]}"
            request = request_bytes(token, key, project)
            phase = rng.choice(PHASES)
            reached = killed_submission(port, request, phase, answer_s, rng)
            job_id, how = recover(port, token, key, request.split(b"\r\n\r\n", 1)[1])
            points.append({"key": key, "phase": phase, "reached": reached, "job": job_id, "how": how})
        elapsed = time.monotonic() - started
        time.sleep(1)  # a killed request still in a worker: its transaction ends

        problems: list[str] = []
        charged = 0
        for point in points:
            jobs = list(Job.objects.filter(user=user, idempotency_key=point["key"]))
            if [str(j.pk) for j in jobs] != [point["job"]]:
                problems.append(f"{point['key']}: jobs {[str(j.pk) for j in jobs]}, recovered {point['job']}")
                continue
            usage = list(CreditTransaction.objects.filter(job_id=jobs[0].pk, type=TransactionType.USAGE))
            refunds = CreditTransaction.objects.filter(job_id=jobs[0].pk, type=TransactionType.REFUND).count()
            if len(usage) != 1 or refunds or -usage[0].amount != jobs[0].credits_cost:
                problems.append(f"{point['key']}: {len(usage)} charges, {refunds} refunds")
            charged += jobs[0].credits_cost
        balance = credit_balance_get(user=user)
        if balance != start_balance - charged:
            problems.append(f"balance {balance}, expected {start_balance - charged}")
        audit = ledger_check()
        report = {
            "points": args.points, "seed": args.seed, "seconds": round(elapsed, 1),
            "median_answer_ms": round(answer_s * 1000, 1),
            "by_phase": dict(collections.Counter(p["phase"] for p in points)),
            "recovered_by": dict(collections.Counter(p["how"] for p in points)),
            "jobs_per_key_other_than_one": sum(1 for p in problems if "jobs" in p),
            "double_charges": sum(1 for p in problems if "charges" in p),
            "balance_consistent": balance == start_balance - charged,
            "ledger_check_problems": len(audit),
            "problems": problems[:20],
        }
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "submit_recovery.json").write_text(json.dumps(report, indent=2))
    if problems:
        raise SystemExit(f"{len(problems)} problems")


if __name__ == "__main__":
    main()
