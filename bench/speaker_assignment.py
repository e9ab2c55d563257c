"""Speaker assignment of a long transcript (gpu_tasks.engines.transcript.assign_speakers), against
the pass over every turn for every word it replaced, in the same run: two hours of speech, 20,000
words and 2,000 diarization turns (a long file's stitched words and its whole-file turns).
Writes bench/results/speaker_assignment.json. `every_turn` is also the oracle the sweep is tested
against (tests/gpu_tasks/test_transcript.py)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_tasks.engines.transcript import Turn, Word, assign_speakers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def every_turn(words: list[Word], turns: list[Turn]) -> list[Word]:
    """The former rule, as written before: each word tried against every turn."""
    names: dict[str, str] = {}
    out = []
    for w in words:
        best, most = None, 0.0
        for t in turns:
            overlap = min(w.end_s, t.end_s) - max(w.start_s, t.start_s)
            if overlap > most:
                best, most = t.speaker, overlap
        if best is None:
            mid = (w.start_s + w.end_s) / 2
            best = min(turns, key=lambda t: min(abs(mid - t.start_s), abs(mid - t.end_s))).speaker
        names.setdefault(best, f"Speaker {len(names) + 1}")
        out.append(replace(w, speaker=names[best]))
    return out


def main() -> None:
    words = [Word("w", i * 0.36, i * 0.36 + 0.3) for i in range(20_000)]
    turns = [Turn(i * 3.6, i * 3.6 + 3.5, f"SPEAKER_0{i % 3}") for i in range(2_000)]
    start = time.perf_counter()
    swept = assign_speakers(words, turns)
    sweep_s = time.perf_counter() - start
    start = time.perf_counter()
    baseline = every_turn(words, turns)
    baseline_s = time.perf_counter() - start
    assert swept == baseline, "the sweep labels every word as the former rule did"
    report = {"words": len(words), "turns": len(turns), "sweep_s": round(sweep_s, 3),
              "every_turn_s": round(baseline_s, 3), "speedup": round(baseline_s / sweep_s, 1)}
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "speaker_assignment.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
