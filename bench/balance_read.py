"""What a Redis cache of credit balances would save: the balance read as it is (PostgreSQL) against
the same value read from Redis, and the whole `GET /api/v1/credits` request around it.

    .venv/bin/python bench/balance_read.py [--reads 5000] [--requests 1000] [--rounds 4]

Three loops on one throwaway stack (bench/_stack.py), in alternating slices (--rounds) so that the
machine's load weighs on each alike:

postgres  credits.selectors.credit_balance_get: the prepared single-row read the API serves today.
redis     GET of one key holding the balance, through redis-py on the stack's Redis: the cheapest
          read a cache could serve (no serialisation, no invalidation, no fallback counted).
request   GET /api/v1/credits through Django's test client with a bearer token: authentication,
          throttling, the read, the response (no HTTP server: what a worker process spends).

It prints per-read latencies (p50, p99, in microseconds), what the cached read would save per
request, and that saving as a share of the request. Written to bench/results/balance_read.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import django_stack  # noqa: E402 - needs the path above

RESULTS = REPO_ROOT / "bench" / "results" / "balance_read.json"


def timed(fn: Callable[[], Any], count: int) -> list[float]:
    """Each call's wall time, in microseconds."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_us": round(statistics.median(ordered), 1),
            "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1), "n": len(ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=5000, help="balance reads per loop, over all rounds")
    parser.add_argument("--requests", type=int, default=1000, help="GET /credits per run, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000"):
        import redis
        from django.conf import settings
        from django.test import Client

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.selectors import credit_balance_get
        from credits.services.ledger import credit_grant

        user = User.objects.create_user(email="balance@bench.invalid")
        credit_grant(user=user, amount=1234, type="bonus", description="bench")
        cache = redis.Redis.from_url(settings.REDIS_URL)
        key = f"bench:balance:{user.pk}"
        cache.set(key, credit_balance_get(user=user))
        client = Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}")

        def request() -> None:
            response = client.get("/api/v1/credits")
            assert response.status_code == 200 and response.json()["balance"] == 1234, response.content

        loops: dict[str, tuple[Callable[[], Any], int]] = {
            "postgres": (lambda: credit_balance_get(user=user), args.reads),
            "redis": (lambda: int(cache.get(key) or 0), args.reads),
            "request": (request, args.requests),
        }
        for fn, _ in loops.values():  # warm: connections, prepared statements, imports
            timed(fn, 50)
        samples: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.rounds):
            for name, (fn, count) in loops.items():
                samples[name] += timed(fn, max(1, count // args.rounds))

    figures = {name: summary(values) for name, values in samples.items()}
    saved = figures["postgres"]["p50_us"] - figures["redis"]["p50_us"]
    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        **figures,
        "saved_per_request_us": round(saved, 1),
        "saved_share_of_request": round(saved / figures["request"]["p50_us"], 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'read':<10} {'p50 us':>9} {'p99 us':>9} {'n':>6}")
    for name in loops:
        f = figures[name]
        print(f"{name:<10} {f['p50_us']:>9} {f['p99_us']:>9} {f['n']:>6}")
    print(f"a cached balance would save {result['saved_per_request_us']} us of a {figures['request']['p50_us']} us "
          f"GET /credits (p50): {result['saved_share_of_request']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
