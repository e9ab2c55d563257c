"""Which words a voice-consent challenge may use, and which statement it ends with: chosen by what
the local phrase check (gpu_tasks.engines.voice_consent: Whisper tiny.en, unprompted) hears.

    nice -n 19 .venv/bin/python bench/consent_phrases.py [--rounds 2] [--jobs 2] [--check 10] [--write]
    nice -n 19 .venv/bin/python bench/consent_phrases.py --compare-statements --rounds 1

Each round, for each of 20 eSpeak NG variants (the local TTS engine, gpu_tasks.engines.tts), the
candidate words (bench/data/consent_word_candidates.txt) are shuffled and read in challenges of
eight, in the form the server issues ("w1, w2, ... w8. <statement>",
media.consent_phrases.phrase_text). Round r speaks at SPEEDS[r % 2]. Each recording goes through
the engine's own decoding and `heard_words`. A word counts as recognised in a reading when its
normalised form is among the words heard (the eight words of a challenge are distinct, so another
word's slot cannot supply it). A reading in which Whisper skipped the whole list (at most
DROPPED_AT_MOST of its words heard) is counted apart, as a dropped list: the verification fails it
whatever its words are. A word is kept when it was recognised in at least --keep-percent (95) of
the other readings that held it.

The statement is media.consent_phrases.STATEMENT; --compare-statements reads the candidate
STATEMENTS in turn instead (challenge k of variant v in round r ends with STATEMENTS[(k + r + v) %
5]) and reports each one's WER, which is how STATEMENT was chosen ("cloned" was heard as "long",
"blown" and "closed"). The candidate words are a first run's survivors and new words: that run
read 445 common nouns and adjectives (no homophones, numbers or spelling variants) with
--compare-statements (1,646 readings: 21 to 31 of each word, before LEAD_SILENCE_S was added to the
engine), and the 203 recognised in at least 90 % of theirs were kept as candidates, beside 350
words it had not read. Those 553 were read in two rounds; 402 more were then read in two rounds with
--append, which reads only the candidates the trials file has no reading of and adds to it.

Then the check: --check new challenges per variant drawn from the kept words, read with the
statement, scored by the engine's rule (voice_consent.passes): how many right readings pass, and
how many readings of another challenge would pass for this one.

--write writes the kept words to media/data/consent_words_en.txt. Every reading is appended to
bench/results/consent_phrases_trials*.jsonl as it is made (--from-trials re-scores a run without
speaking again), the figures go to bench/results/consent_phrases.json. One Whisper thread per job.
"""

from __future__ import annotations

import os

os.environ.setdefault("AUTEUR_WHISPER_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gpu_tasks.engines import voice_consent  # noqa: E402 - needs the path above
from gpu_tasks.engines.media import decode_audio  # noqa: E402
from gpu_tasks.engines.tts import synthesize, write_wav  # noqa: E402
from media.consent_phrases import STATEMENT, phrase_text  # noqa: E402

CANDIDATES = REPO_ROOT / "bench" / "data" / "consent_word_candidates.txt"
WORD_LIST = REPO_ROOT / "media" / "data" / "consent_words_en.txt"
RESULTS = REPO_ROOT / "bench" / "results" / "consent_phrases.json"
TRIALS = REPO_ROOT / "bench" / "results" / "consent_phrases_trials.jsonl"
VARIANTS = [
    "en-us", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7",
    "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5", "en-us+klatt", "en-us+klatt2",
    "en-us+Annie", "en-us+david", "en-us+john", "en-us+linda", "en-us+steph",
]  # fmt: skip
SPEEDS = (0.9, 1.0)
STATEMENTS = [
    "I agree to have my voice cloned in this workspace.",
    "I agree that this workspace may copy my voice.",
    "I give my permission to copy my voice in this workspace.",
    "I consent to the cloning of my voice in this workspace.",
    "Yes, I allow this workspace to make a copy of my voice.",
]
TARGET_WORDS = 200
DROPPED_AT_MOST = 2


def heard(text: str, voice: str, speed: float, scratch: Path) -> list[str]:
    pcm, rate = synthesize(text, speed=speed, voice=voice)
    path = scratch / "reading.wav"
    write_wav(path, pcm, rate)
    return voice_consent.heard_words(decode_audio(path, voice_consent.SAMPLE_RATE, max_s=voice_consent.MAX_RECORDING_S))


def challenges(words: list[str], rng: random.Random) -> list[list[str]]:
    """`words` shuffled into challenges of eight; the last one filled up with words from the others."""
    order = words[:]
    rng.shuffle(order)
    n = voice_consent.CHALLENGE_WORD_COUNT
    groups = [order[i:i + n] for i in range(0, len(order), n)]
    if len(groups[-1]) < n:
        last = groups[-1]
        last += rng.sample([w for w in order if w not in last], n - len(last))
    return groups


def speak_round(words: list[str], r: int, variants: list[str], compare_statements: bool) -> Path:
    """Round `r`: every variant reads every word once; its readings go to a trials file of its own."""
    scratch = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    path = TRIALS.with_name(f"{TRIALS.stem}.{r}.jsonl")
    with path.open("w") as out:
        for v, voice in enumerate(variants):
            started = time.perf_counter()
            rng = random.Random(1000 * r + v)  # noqa: S311 - a shuffle, not a secret
            for k, group in enumerate(challenges(words, rng)):
                statement = STATEMENTS[(k + r + v) % len(STATEMENTS)] if compare_statements else STATEMENT
                hyp = heard(phrase_text(group, statement), voice, SPEEDS[r % len(SPEEDS)], scratch)
                out.write(json.dumps({"round": r, "voice": voice, "words": group, "statement": statement,
                                      "heard": hyp}) + "\n")
            out.flush()
            print(f"round {r} {voice}: {time.perf_counter() - started:.0f} s", flush=True)
    return path


def speak_rounds(
    words: list[str], rounds: int, variants: list[str], jobs: int, compare_statements: bool, append: bool
) -> None:
    TRIALS.parent.mkdir(parents=True, exist_ok=True)
    for old in TRIALS.parent.glob(f"{TRIALS.stem}.*.jsonl"):
        old.unlink()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        read = functools.partial(speak_round, words, variants=variants, compare_statements=compare_statements)
        parts = list(pool.map(read, range(rounds)))
    before = TRIALS.read_text() if append else ""
    TRIALS.write_text(before + "".join(part.read_text() for part in parts))
    for part in parts:
        part.unlink()


def score(trials: list[dict[str, Any]], keep_percent: float) -> dict[str, Any]:
    """Each word's recognition rate over the readings in which the list was heard at all.

    A reading in which Whisper skipped the list (at most DROPPED_AT_MOST of its eight words heard,
    most often none: it went from the first words straight to the statement) fails whichever
    words it holds: it says nothing of the words, and is counted as a dropped reading instead.
    """
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    statement_wer: dict[str, list[float]] = defaultdict(list)
    by_voice: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    dropped = 0
    for trial in trials:
        heard_set = set(trial["heard"])
        found = sum(word in heard_set for word in trial["words"])
        by_voice[trial["voice"]][0] += found
        by_voice[trial["voice"]][1] += len(trial["words"])
        statement_wer[trial["statement"]].append(
            voice_consent.substring_wer(voice_consent.normalise_words(trial["statement"]), trial["heard"])
        )
        if found <= DROPPED_AT_MOST:
            dropped += 1
            continue
        for word in trial["words"]:
            hits[word][0] += word in heard_set
            hits[word][1] += 1
    rates = {w: h / n for w, (h, n) in hits.items()}
    kept = sorted(w for w, rate in rates.items() if rate * 100 >= keep_percent)
    statements = {
        s: {"trials": len(v), "mean_wer": round(statistics.fmean(v), 4), "max_wer": round(max(v), 4),
            "within_max_wer_percent": round(100 * sum(x <= voice_consent.MAX_WER for x in v) / len(v), 1)}
        for s, v in statement_wer.items()
    }  # fmt: skip
    worst = sorted(rates.items(), key=lambda item: item[1])[:25]
    counted = [n for _, n in hits.values()]
    return {
        "trials": len(trials),
        "dropped_lists": dropped,
        "dropped_lists_percent": round(100 * dropped / len(trials), 2),
        "words_tried": len(rates),
        "trials_per_word": {"min": min(counted), "max": max(counted)},
        "keep_percent": keep_percent,
        "words_kept": len(kept),
        "recognised_percent_all": round(100 * sum(h for h, _ in hits.values()) / sum(counted), 2),
        "recognised_percent_kept": round(
            100 * sum(hits[w][0] for w in kept) / max(1, sum(hits[w][1] for w in kept)), 2
        ),
        "kept_distribution": {f">= {p} %": sum(r * 100 >= p for r in rates.values()) for p in (100, 98, 95, 90, 80)},
        "recognised_percent_by_voice": {v: round(100 * h / n, 1) for v, (h, n) in by_voice.items()},
        "worst_words": {w: round(100 * r, 1) for w, r in worst},
        "statements": statements,
        "kept": kept,
    }


def passed(figures: dict[str, Any]) -> bool:
    """The engine's own phrase rule (`voice_consent.passes`), the speaker check left out."""
    verdict = voice_consent.passes({"phrase": figures, "speaker": {"similarity": 1.0, "stretch_similarity": 1.0}},
                                   0.0, 0.0)
    return bool(verdict["checks"]["phrase"] == "passed")


def check(kept: list[str], statement: str, per_variant: int, variants: list[str]) -> dict[str, Any]:
    """Right readings that pass the rule, and readings of another challenge that would pass."""
    scratch = Path(tempfile.mkdtemp(prefix="consent-check-"))
    rng = random.Random(7)  # noqa: S311 - a sample, not a secret
    statement_words = voice_consent.normalise_words(statement)
    right = wrong = trials = 0
    right_wers: list[float] = []
    for voice in variants:
        for _ in range(per_variant):
            issued, other = rng.sample(kept, 8), rng.sample(kept, 8)
            hyp = heard(phrase_text(issued, statement), voice, SPEEDS[0], scratch)
            figures = voice_consent.phrase_figures(issued, statement_words, hyp)
            right_wers.append(figures["challenge_wer"])
            right += passed(figures)
            wrong += passed(voice_consent.phrase_figures(other, statement_words, hyp))
            trials += 1
    return {"statement": statement, "readings": trials, "right_passed": right,
            "right_passed_percent": round(100 * right / trials, 1), "other_challenge_passed": wrong,
            "challenge_wer_mean": round(statistics.fmean(right_wers), 4),
            "challenge_wer_max": round(max(right_wers), 4)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="rounds read at once, one process each")
    parser.add_argument("--compare-statements", action="store_true", help="cycle through STATEMENTS")
    parser.add_argument("--variants", type=int, default=len(VARIANTS))
    parser.add_argument("--keep-percent", type=float, default=95.0)
    parser.add_argument("--check", type=int, default=10, help="challenges per variant in the check (0: none)")
    parser.add_argument("--from-trials", action="store_true", help="re-score the last run's trials")
    parser.add_argument("--append", action="store_true",
                        help="read only the candidates the trials file has no reading of, and add to it")
    parser.add_argument("--write", action="store_true", help="write the kept words to " + str(WORD_LIST))
    args = parser.parse_args()
    variants = VARIANTS[: args.variants]
    candidates = CANDIDATES.read_text().split()
    started = time.perf_counter()
    if args.append:
        read = {w for line in TRIALS.read_text().splitlines() if line.strip() for w in json.loads(line)["words"]}
        candidates = [w for w in candidates if w not in read]
        print(f"reading the {len(candidates)} candidates the trials file has no reading of", flush=True)
    if not args.from_trials:
        speak_rounds(candidates, args.rounds, variants, args.jobs, args.compare_statements, args.append)
    trials = [json.loads(line) for line in TRIALS.read_text().splitlines() if line.strip()]
    result = score(trials, args.keep_percent)
    best = min(result["statements"], key=lambda s: result["statements"][s]["mean_wer"])
    if not args.compare_statements:
        best = STATEMENT
    if args.check:
        result["check"] = check(result["kept"], best, args.check, variants)
    result.update(variants=variants, speeds=list(SPEEDS), target_words=TARGET_WORDS,
                  seconds=round(time.perf_counter() - started))  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    shown = {k: v for k, v in result.items() if k != "kept"}
    print(json.dumps(shown, indent=2))
    met = result["words_kept"] >= TARGET_WORDS
    print(f"kept {result['words_kept']} of {result['words_tried']} words "
          f"(>= {args.keep_percent:g} % of {result['trials_per_word']['min']}+ trials each): "
          f"{'meets' if met else 'misses'} the target of {TARGET_WORDS}; statement: {best!r}")  # fmt: skip
    if args.write:
        WORD_LIST.parent.mkdir(parents=True, exist_ok=True)
        WORD_LIST.write_text("".join(f"{w}\n" for w in result["kept"]))
        print(f"wrote {len(result['kept'])} words to {WORD_LIST.relative_to(REPO_ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
