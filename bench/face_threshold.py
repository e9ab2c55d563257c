"""The face match threshold of the likeness check (gpu_tasks/engines/face_embed.py: RetinaFace, five-point
alignment, SFace), measured over LFW's pairs of faces.

    .venv/bin/python bench/face_threshold.py --lfw DIR [--pairs FILE] [--threshold 0.363] [--limit N]

It needs what this machine does not have, and says so: the real weights (`manage.py download_models
likeness-consent` puts SFace and RetinaFace under AUTEUR_MODELS_DIR) and LFW (Labeled Faces in the Wild:
its images as DIR/<name>/<name>_0001.jpg and its pairs.txt, 10 folds of 300 same-person pairs
"name i j" then 300 different-person pairs "name i other j", by default DIR/pairs.txt). Without either
it prints "not measured here" and what is missing, writes nothing, and exits with status 2:
`face_embed.DEFAULT_THRESHOLD` then stays upstream's figure (0.363, opencv_zoo's, from LFW), not one
measured here.

Each image: the largest usable face RetinaFace finds (LFW centres its subject in 250x250), aligned and
embedded as the engine does; a pair where either image shows no usable face is counted and not scored.
`--limit N`: the first N pairs of each kind. Prints and writes (bench/results/face_threshold.json): the
pair counts; false accepts (different people at or above a threshold) and false rejects (the same
person below it) at the threshold in use and at 0.20 to 0.60 by 0.05; the EER and its threshold; the
threshold of best accuracy and that accuracy; the time of one face (detection, alignment, embedding).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gpu_tasks.engines import face_embed, weights  # noqa: E402 - needs the path above
from gpu_tasks.errors import PermanentGpuError  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "face_threshold.json"
GRID = tuple(round(0.20 + 0.05 * i, 2) for i in range(9))
NOT_MEASURED = 2  # the exit status when weights or data are missing


Pair = tuple[str, int, str, int]


def read_pairs(path: Path) -> tuple[list[Pair], list[Pair]]:
    """(same-person pairs, different-person pairs) of an LFW pairs file; its "folds pairs" header skipped."""
    same: list[Pair] = []
    different: list[Pair] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            same.append((fields[0], int(fields[1]), fields[0], int(fields[2])))
        elif len(fields) == 4:
            different.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
        elif fields and not (len(fields) == 2 and all(f.isdigit() for f in fields)):
            raise ValueError(f"{path}: not an LFW pairs line: {line!r}")
    return same, different


def image_path(lfw: Path, name: str, number: int) -> Path:
    return lfw / name / f"{name}_{number:04d}.jpg"


def rates(same: np.ndarray, different: np.ndarray, threshold: float) -> dict[str, Any]:
    """False accepts (different people at or above `threshold`) and false rejects (the same person below it)."""
    accepts, rejects = int((different >= threshold).sum()), int((same < threshold).sum())
    return {"threshold": threshold,
            "far": {"count": accepts, "n": int(different.size), "rate": accepts / max(1, different.size)},
            "frr": {"count": rejects, "n": int(same.size), "rate": rejects / max(1, same.size)}}


def equal_error(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(EER, its threshold): at the candidate threshold where FAR and FRR are closest, their mean."""
    candidates = np.unique(np.concatenate([same, different]))
    frr = np.searchsorted(np.sort(same), candidates, side="left") / same.size
    far = 1 - np.searchsorted(np.sort(different), candidates, side="left") / different.size
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2), float(candidates[best])


def best_accuracy(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold): the candidate threshold that classifies the most pairs right."""
    candidates = np.unique(np.concatenate([same, different]))
    right = [(int((same >= t).sum() + (different < t).sum()), float(t)) for t in candidates]
    count, threshold = max(right)
    return count / (same.size + different.size), threshold


def missing(lfw: Path | None, pairs: Path | None) -> list[str]:
    """What this run lacks, in words (nothing: it can measure)."""
    lacks = []
    models = ((face_embed.FOLDER, face_embed.FILE), (face_embed.DETECTOR_FOLDER, face_embed.DETECTOR_FILE))
    for folder, marker in models:
        why = weights.missing_weights(folder, marker, face_embed.JOB_TYPE)
        if why:
            lacks.append(why)
    if lfw is None or not lfw.is_dir():
        lacks.append(f"no LFW images folder ({lfw or 'give --lfw DIR'})")
    elif pairs is None or not pairs.is_file():
        lacks.append(f"no LFW pairs file ({pairs})")
    return lacks


def measure(lfw: Path, pairs_file: Path, threshold: float, limit: int | None) -> dict[str, Any]:
    from PIL import Image

    same_pairs, different_pairs = read_pairs(pairs_file)
    if limit is not None:
        same_pairs, different_pairs = same_pairs[:limit], different_pairs[:limit]
    embedder = face_embed.load()
    vectors: dict[tuple[str, int], np.ndarray | None] = {}
    face_ms: list[float] = []

    def vector(name: str, number: int) -> np.ndarray | None:
        key = (name, number)
        if key not in vectors:
            with Image.open(image_path(lfw, name, number)) as opened:
                frame = np.array(opened.convert("RGB"), dtype=np.uint8)
            started = time.perf_counter()
            faces = face_embed.detect(embedder, frame)
            vectors[key] = (face_embed.embed_faces(embedder, [face_embed.align(frame, faces[0].landmarks)])[0]
                            if faces else None)
            face_ms.append((time.perf_counter() - started) * 1000)
        return vectors[key]

    def scores(pairs: list[Pair]) -> tuple[np.ndarray, int]:
        scored, unscored = [], 0
        for a, i, b, j in pairs:
            first, second = vector(a, i), vector(b, j)
            if first is None or second is None:
                unscored += 1
                continue
            scored.append(face_embed.similarity(first, second))
        return np.asarray(scored, dtype=np.float64), unscored

    same, same_unscored = scores(same_pairs)
    different, different_unscored = scores(different_pairs)
    if not same.size or not different.size:
        raise SystemExit("face_threshold: no pair of either kind could be scored (no faces found)")
    eer, eer_threshold = equal_error(same, different)
    accuracy, accuracy_threshold = best_accuracy(same, different)
    return {
        "model": f"{face_embed.MODEL_NAME} on {face_embed.DETECTOR_NAME} landmarks",
        "data": "LFW pairs",
        "pairs": {"same": int(same.size), "different": int(different.size),
                  "unscored_no_face": same_unscored + different_unscored},
        "in_use": rates(same, different, threshold),
        "grid": [rates(same, different, t) for t in GRID],
        "eer": eer, "eer_threshold": eer_threshold,
        "best_accuracy": accuracy, "best_accuracy_threshold": accuracy_threshold,
        "same_scores": {"p5": float(np.percentile(same, 5)), "median": float(np.median(same))},
        "different_scores": {"median": float(np.median(different)), "p95": float(np.percentile(different, 95))},
        "face_ms": {q: round(float(np.percentile(face_ms, int(q[1:]))), 1) for q in ("p50", "p99")},
        "machine": f"{platform.platform()}, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, help="LFW's images: DIR/<name>/<name>_0001.jpg")
    parser.add_argument("--pairs", type=Path, help="LFW's pairs.txt (default: DIR/pairs.txt)")
    parser.add_argument("--threshold", type=float, default=face_embed.DEFAULT_THRESHOLD,
                        help="the threshold whose FAR and FRR are reported (default: face_embed.DEFAULT_THRESHOLD)")
    parser.add_argument("--limit", type=int, help="the first N pairs of each kind")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pairs = args.pairs or (args.lfw / "pairs.txt" if args.lfw else None)
    lacks = missing(args.lfw, pairs)
    if lacks or pairs is None:
        print(f"face_threshold: not measured here (the threshold in use, {face_embed.DEFAULT_THRESHOLD}, is "
              "upstream's LFW figure):")
        for why in lacks:
            print(f"  - {why}")
        return NOT_MEASURED
    try:
        result = measure(args.lfw, pairs, args.threshold, args.limit)
    except PermanentGpuError as exc:
        print(f"face_threshold: not measured here: {exc.code}: {exc.message}")
        return NOT_MEASURED
    use = result["in_use"]
    print(f"{result['model']}, {result['pairs']['same']} same-person and {result['pairs']['different']} "
          f"different-person pairs of LFW ({result['pairs']['unscored_no_face']} without a usable face, not scored)")
    for row in (use, *result["grid"]):
        print(f"  at {row['threshold']:.3f}: false accepts {row['far']['count']}/{row['far']['n']} "
              f"({row['far']['rate']:.2%}), false rejects {row['frr']['count']}/{row['frr']['n']} "
              f"({row['frr']['rate']:.2%})")
    print(f"  EER {result['eer']:.2%} at {result['eer_threshold']:.3f}; best accuracy {result['best_accuracy']:.2%} "
          f"at {result['best_accuracy_threshold']:.3f}; one face p50 {result['face_ms']['p50']} / p99 "
          f"{result['face_ms']['p99']} ms")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
