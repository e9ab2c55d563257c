"""What screening a generated image adds to its job's store step (jobs.life.moderation).

    .venv/bin/python bench/output_screening.py [--runs 50] [--side 1024]

decode  the image decoded in the probe's sandbox to one 224 x 224 frame
        (media.probing.facts.screen_frames through gpu_tasks.confined, the probe's default limits);
score   open_nsfw on that frame (gpu_tasks.screening.image), one thread.
Both on a `--side` x `--side` PNG of noise (the costliest picture of that size to decode), after
one warm-up call each (the sandbox's server start and the model load are once per worker process;
`load_ms` times the model load apart). Nothing here needs a server. Written to
bench/results/output_screening.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import base64
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import RESULTS_DIR, load_average
from bench._stack import percentile as pct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from gpu_tasks import confined
    from gpu_tasks.screening import image
    from media.probing.sandbox import ProbeLimits

    limits = ProbeLimits()
    bounds = dataclasses.replace(limits.confined(), max_result_bytes=1024**2)

    def decode(path: Path) -> list[bytes]:
        answer = confined.call("media.probing.facts:screen_frames", limits=bounds, path=path,
                               max_pixels=limits.max_pixels, count=1, every_s=1.0, crop=image.SIDE)
        return [base64.b64decode(frame) for frame in answer["frames"]]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.png"
        pixels = (np.random.default_rng(0).random((args.side, args.side, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(path)
        began = time.perf_counter()
        image.screen_frames(decode(path))  # the server's start and the model's load
        first_ms = (time.perf_counter() - began) * 1000
        decode_ms, score_ms = [], []
        for _ in range(args.runs):
            began = time.perf_counter()
            frames = decode(path)
            decode_ms.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            image.screen_frames(frames)
            score_ms.append((time.perf_counter() - began) * 1000)
    image._session = None
    began = time.perf_counter()
    image.nsfw_scores([frames[0]])
    load_ms = (time.perf_counter() - began) * 1000 - score_ms[-1]

    results = {
        "image": f"{args.side}x{args.side} PNG (noise)", "runs": args.runs, "load_average": load_average(),
        "decode_ms": {"p50": round(pct(decode_ms, 50), 1), "p99": round(pct(decode_ms, 99), 1)},
        "score_ms": {"p50": round(pct(score_ms, 50), 1), "p99": round(pct(score_ms, 99), 1)},
        "first_call_ms": round(first_ms, 1), "load_ms": round(load_ms, 1),
    }
    print(json.dumps(results, indent=2))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "output_screening.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
