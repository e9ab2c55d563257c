"""A batch of 5,000 jobs accepted in one request, and then bulk-cancelled, against the same jobs
submitted and cancelled one by one.

    .venv/bin/python bench/batches.py [--items 5000] [--rounds 3] [--singles 300] [--profile]

On one throwaway stack (bench/_stack.py), through Django's test client with a bearer token (what an
API worker spends; no HTTP server):

batch    POST /api/v1/jobs/batch with `--items` TTS items (each text its own, one in ten in a cloned
         voice, so every item is resolved, priced and looked up in the result cache), `--rounds`
         times, each on a fresh account: the request's wall time from the body sent to the 202, and
         what it wrote (jobs, ledger entries, events) checked: every item charged once, the balance
         equal to the ledger.
cancel   each round's batch, still queued, cancelled by POST /api/v1/jobs/bulk/cancel {batch_id}: the
         request's wall time, and the refunds checked exact: every item refunded its cost once, the
         balance back where it started, the ledger consistent (credits.selectors.ledger_check).
singles  `--singles` POST /api/v1/jobs/tts of the same bodies, then POST /api/v1/jobs/{id}/cancel of
         each: the per-job times of the one-by-one paths (the baselines), and what `--items` of
         them would take.

Goals: 5,000 items accepted in <= 2 s; 5,000 queued jobs bulk-cancelled in <= 10 s.
Written to bench/results/batches.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench._stack import RESULTS_DIR, django_stack  # noqa: E402 - needs the path above

RESULTS = RESULTS_DIR / "batches.json"
GOAL_SECONDS = 2.0
CANCEL_GOAL_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print the batch request's top functions")
    args = parser.parse_args()

    with django_stack(AUTEUR_RATE_LIMIT_USER_PER_MINUTE="100000000", AUTEUR_RATE_LIMIT_CANCELS_PER_MINUTE="100000000"):
        from django.test import Client

        from auteur.users.models import User
        from auteur.users.services import user_issue_token
        from credits.models import CreditTransaction
        from credits.selectors import credit_balance_get, ledger_check
        from credits.services.ledger import credit_grant
        from jobs.models import Job, JobEvent
        from media.models import Consent, VoiceClone

        def account(name: str) -> tuple[User, Client, str]:
            user = User.objects.create_user(email=f"{name}@bench.invalid")
            credit_grant(user=user, amount=10_000_000, type="bonus", description="bench")
            # A voice as one is made: with its speaker's consent, as a passed verification records it.
            consent = Consent.objects.create(user=user, kind="voice", status="verified", challenge_id=uuid.uuid4(),
                                             job_id=uuid.uuid4(), sample_sha256="0" * 64,
                                             checks={"phrase": "passed", "speaker": "passed"}, challenge_wer=0.0,
                                             phrase_wer=0.0, similarity=1.0, threshold=0.88, max_wer=0.25)
            voice = VoiceClone.objects.create(user=user, name="Narrator", sample_key=f"voices/{user.pk}/sample.wav",
                                              sample_duration_ms=12_000, consent=consent)
            return user, Client(HTTP_AUTHORIZATION=f"Bearer {user_issue_token(user=user)}"), str(voice.pk)

        def items(count: int, voice: str, tag: str) -> list[dict[str, Any]]:
            return [{"type": "tts", "input": {"text": f"Line {i} of {tag}: the quick brown fox jumps over the dog.",
                                              **({"voice_id": voice} if i % 10 == 0 else {})}}
                    for i in range(count)]

        # Warm: connections, prepared statements, imports.
        _, warm, voice = account("warm")
        assert warm.post("/api/v1/jobs/batch", {"items": items(50, voice, "warm")},
                         content_type="application/json").status_code == 202

        batch_seconds: list[float] = []
        cancel_seconds: list[float] = []
        profile = cProfile.Profile() if args.profile else None
        for round_ in range(args.rounds):
            user, client, voice = account(f"batch{round_}")
            body = json.dumps({"items": items(args.items, voice, f"round {round_}")})
            if profile is not None and round_ == args.rounds - 1:
                profile.enable()
            t0 = time.perf_counter()
            response = client.post("/api/v1/jobs/batch", body, content_type="application/json")
            batch_seconds.append(time.perf_counter() - t0)
            if profile is not None:
                profile.disable()
            assert response.status_code == 202, response.content[:500]
            accepted = response.json()
            assert accepted["item_count"] == args.items and len(accepted["job_ids"]) == args.items
            jobs = Job.objects.filter(batch_id=accepted["id"])
            assert jobs.count() == args.items
            charged = CreditTransaction.objects.filter(user=user, type="usage")
            assert charged.count() == args.items and charged.values("job_id").distinct().count() == args.items
            assert 10_000_000 - credit_balance_get(user=user) == accepted["credits_cost"]
            assert JobEvent.objects.filter(job__batch_id=accepted["id"]).count() == args.items
            t0 = time.perf_counter()
            response = client.post("/api/v1/jobs/bulk/cancel", {"batch_id": accepted["id"]},
                                   content_type="application/json")
            cancel_seconds.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.content[:500]
            done = response.json()
            assert done["canceled"] == args.items and done["credits_refund"] == accepted["credits_cost"], done
            refunds = CreditTransaction.objects.filter(user=user, type="refund")
            assert refunds.count() == args.items and refunds.values("job_id").distinct().count() == args.items
            assert credit_balance_get(user=user) == 10_000_000
            assert not jobs.exclude(status="canceled").exists()
        assert ledger_check() == []

        user, client, voice = account("singles")
        bodies = [item["input"] for item in items(args.singles, voice, "singles")]
        single_seconds, single_cancel_seconds, single_ids = [], [], []
        for body_ in bodies:
            t0 = time.perf_counter()
            response = client.post("/api/v1/jobs/tts", body_, content_type="application/json")
            single_seconds.append(time.perf_counter() - t0)
            assert response.status_code == 202, response.content[:300]
            single_ids.append(response.json()["job_id"])
        # Queued like a batch's items (not yet started: the stack runs no worker).
        Job.objects.filter(pk__in=single_ids).update(status="queued")
        for job_id in single_ids:
            t0 = time.perf_counter()
            response = client.post(f"/api/v1/jobs/{job_id}/cancel", {}, content_type="application/json")
            single_cancel_seconds.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.content[:300]

    per_single = statistics.median(single_seconds)
    result = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "items": args.items,
        "batch_seconds": [round(s, 3) for s in batch_seconds],
        "batch_median_s": round(statistics.median(batch_seconds), 3),
        "batch_max_s": round(max(batch_seconds), 3),
        "batch_per_item_ms": round(statistics.median(batch_seconds) / args.items * 1000, 3),
        "single_p50_ms": round(per_single * 1000, 2),
        "singles_for_items_s": round(per_single * args.items, 1),
        "speedup": round(per_single * args.items / statistics.median(batch_seconds), 1),
        "goal_s": GOAL_SECONDS,
        "cancel_seconds": [round(s, 3) for s in cancel_seconds],
        "cancel_median_s": round(statistics.median(cancel_seconds), 3),
        "single_cancel_p50_ms": round(statistics.median(single_cancel_seconds) * 1000, 2),
        "single_cancels_for_items_s": round(statistics.median(single_cancel_seconds) * args.items, 1),
        "cancel_goal_s": CANCEL_GOAL_SECONDS,
        "within_goal": max(batch_seconds) <= GOAL_SECONDS and max(cancel_seconds) <= CANCEL_GOAL_SECONDS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"batch of {args.items}: {', '.join(f'{s:.3f}' for s in batch_seconds)} s "
          f"(median {result['batch_median_s']} s, {result['batch_per_item_ms']} ms an item; goal <= {GOAL_SECONDS} s)")
    print(f"one by one: p50 {result['single_p50_ms']} ms a job -> {result['singles_for_items_s']} s for "
          f"{args.items}; the batch is {result['speedup']}x faster")
    print(f"bulk cancel of {args.items} queued: {', '.join(f'{s:.3f}' for s in cancel_seconds)} s (goal <= "
          f"{CANCEL_GOAL_SECONDS} s); one by one: p50 {result['single_cancel_p50_ms']} ms a job -> "
          f"{result['single_cancels_for_items_s']} s")
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(r"(jobs|credits|auteur|projects|media)/", 40)
    return 0 if result["within_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
