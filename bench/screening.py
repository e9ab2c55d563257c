"""What text screening costs a submission and how well it screens: gpu_tasks.screening.screen_fields
in-process, on one thread.

    .venv/bin/python bench/screening.py [--runs 1000] [--long-runs 300] [--loads 5]

Latency (milliseconds, wall time of one call):
prompt     a 60-character prompt, one field (an image or video prompt);
long       a 5,000-character text, one field (the longest TTS text the API takes);
long_cold  the same text with the word cache emptied before each call: every word seen for the
           first time, the worst case for a text of that length;
hostile    the slowest of the shapes tests/gpu_tasks/test_screening.py sends (one 5,000-character
           token, 2,500 sentences, characters NFKC expands 18-fold...), each `--long-runs // 10` times.
Model load: the model file read and expanded (`text.Model.load`), `--loads` times in process, and
the first screen of a fresh interpreter (import, load and one call) as many times.

Quality: the figures of the tests' held-out set (tests/gpu_tasks/fixtures/screening_eval.jsonl)
per category, as tests/gpu_tasks/test_screening_eval.py computes them; and false refusals of
ordinary prose: the sentences of 20 to 300 characters of this repository's documentation (docs/,
fenced code left out, split after `.`, `!` or `?`), none of them harmful and none in the training
data, each screened as a field of the "full" policy. Nothing here needs a server.
Written to bench/results/screening.json.
"""

from __future__ import annotations

import os

# One thread, as a gunicorn worker screens: set before numpy loads.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402 - after the thread settings above
import collections  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gpu_tasks.screening import STRICT_SCALE, evaluation, screen_fields  # noqa: E402 - needs the path above
from gpu_tasks.screening import text as screener  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "screening.json"
DOCS = REPO_ROOT / "docs"
FIXTURE = REPO_ROOT / "tests" / "gpu_tasks" / "fixtures" / "screening_eval.jsonl"
TARGET_P99_MS = 300
TARGET_PERCENT = 95

# Neutral texts of the benchmark's own (in neither data set).
PROMPT = "a lighthouse on a rocky coast at dawn, seagulls, golden light"
_SENTENCE = ("the morning train pulled into the station and passengers stepped onto the platform carrying bags "
             "coffee cups and umbrellas while announcements echoed under the glass roof and pigeons searched for "
             "crumbs near the benches")
HOSTILE = {
    "one 5,000-character token": "ab" * (screener.MAX_CHARS // 2),
    "one word repeated": "kill " * (screener.MAX_CHARS // 5),
    "no spaces, CJK": "".join(chr(0x4E00 + i % 2000) for i in range(screener.MAX_CHARS)),
    "2,500 sentences": "a." * (screener.MAX_CHARS // 2),
    "1,250 short sentences": "No. " * (screener.MAX_CHARS // 4),
    "NFKC 18-fold expansion": "\ufdfa" * screener.MAX_CHARS,
    "zero-width in every word": " ".join("k\u200bi\u200bl\u200bl" for _ in range(screener.MAX_CHARS // 8)),
}


def long_text() -> str:
    rng = random.Random(0)  # noqa: S311 - a fixed text, not security
    words = _SENTENCE.split()
    text = ""
    while len(text) < screener.MAX_CHARS:
        text += " ".join(rng.choice(words) for _ in range(12)) + ". "
    return text[:screener.MAX_CHARS]


def docs_sentences() -> list[str]:
    """The documentation's prose sentences of 20 to 300 characters, in file order."""
    sentences = []
    for page in sorted(DOCS.rglob("*.md")):
        prose = re.sub(r"```.*?```", " ", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        for paragraph in re.split(r"\n\s*\n", prose):
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())) if 20 <= len(s) <= 300]
    return sentences


def docs_false_refusals() -> dict[str, Any]:
    sentences = docs_sentences()
    by_category: collections.Counter[str] = collections.Counter()
    refused = 0
    for sentence in sentences:
        named = screener.refused_categories(sentence)
        refused += bool(named)
        by_category.update(named)
    return {"sentences": len(sentences), "refused": refused,
            "refused_rate": round(refused / len(sentences), 6) if sentences else 0.0,
            "by_category": dict(sorted(by_category.items()))}


def timed(fn: Callable[[], Any], count: int, before: Callable[[], Any] | None = None) -> list[float]:
    """Each call's wall time in milliseconds (`before` runs untimed ahead of each)."""
    out = []
    for _ in range(count):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1e3)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3), "n": len(ordered)}


def fresh_process_first_screen_ms() -> float:
    """Import, load and one screen in a new interpreter, as a worker's first submission pays it."""
    code = ("import time; t = time.perf_counter(); from gpu_tasks.screening import screen_fields; "
            f"screen_fields({{'prompt': ({PROMPT!r}, 'full')}}); print((time.perf_counter() - t) * 1e3)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return float(run.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="calls for the 60-character prompt")
    parser.add_argument("--long-runs", type=int, default=300, help="calls for the 5,000-character text, each way")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()

    load_ms = timed(screener.Model.load, args.loads)
    first_screen_ms = [fresh_process_first_screen_ms() for _ in range(args.loads)]
    text = long_text()
    prompt_fields = {"prompt": (PROMPT, "full")}
    long_fields = {"text": (text, "full")}
    assert screen_fields(prompt_fields).flagged == {} and screen_fields(long_fields).flagged == {}
    timed(lambda: screen_fields(prompt_fields), 50)  # warm: the model, the word cache
    latency: dict[str, dict[str, Any]] = {
        "prompt": summary(timed(lambda: screen_fields(prompt_fields), args.runs)),
        "long": summary(timed(lambda: screen_fields(long_fields), args.long_runs)),
        "long_cold": summary(timed(lambda: screen_fields(long_fields), args.long_runs,
                                   before=screener._char_buckets.cache_clear)),
    }
    hostile = {name: summary(timed(functools.partial(screen_fields, {"text": (shape, "full")}),
                                   max(10, args.long_runs // 10), before=screener._char_buckets.cache_clear))
               for name, shape in HOSTILE.items()}
    worst = max(hostile, key=lambda name: hostile[name]["p99_ms"])
    latency["hostile_worst"] = {"shape": worst, **hostile[worst]}

    figures = evaluation.evaluate(evaluation.read(FIXTURE))
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "threads": os.environ["OMP_NUM_THREADS"],
        "model_version": screen_fields({}).model_version,
        "model_bytes": screener.MODEL_PATH.stat().st_size,
        "model_load_ms": summary(load_ms),
        "first_screen_in_fresh_process_ms": summary(first_screen_ms),
        "latency": latency,
        "hostile": hostile,
        "quality": figures.as_dict(),
        # A workspace's strict policy: every threshold at STRICT_SCALE of the platform's.
        "quality_strict": evaluation.evaluate(evaluation.read(FIXTURE), scale=STRICT_SCALE).as_dict(),
        "docs_false_refusals": docs_false_refusals(),
        "target_p99_ms": TARGET_P99_MS,
        "target_percent": TARGET_PERCENT,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model {result['model_version']} ({result['model_bytes']:,} bytes): load p50 "
          f"{result['model_load_ms']['p50_ms']} ms; first screen of a fresh process p50 "
          f"{result['first_screen_in_fresh_process_ms']['p50_ms']} ms")
    print(f"{'case':<16} {'p50 ms':>9} {'p99 ms':>9} {'n':>6}")
    for name, f in latency.items():
        print(f"{name:<16} {f['p50_ms']:>9} {f['p99_ms']:>9} {f['n']:>6}")
    print(f"(slowest hostile shape: {worst})\n\n{figures.table()}\n(target {TARGET_PERCENT} % / {TARGET_PERCENT} %)")
    docs = result["docs_false_refusals"]
    print(f"documentation sentences refused: {docs['refused']} of {docs['sentences']} "
          f"({docs['refused_rate']:.1%}) {docs['by_category']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
