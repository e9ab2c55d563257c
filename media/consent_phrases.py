"""The phrase a person reads to consent to a voice clone (or to their face's use): eight fresh words,
then a fixed statement.

A challenge is "<w1>, <w2>, ... <w8>. <STATEMENT>". The eight words are drawn with `secrets`
from `CHALLENGE_WORDS`, so a recording made before the challenge was issued cannot match it: with
the list's N words a challenge is one of N^8 (the 227 words give about 2^62.6). The words carry
that freshness; the statement says what is agreed to.

The list (`data/consent_words_en.txt`) is not written by hand: bench/consent_phrases.py reads
candidate words in challenges like these with 20 eSpeak NG voices and keeps the words that the
verification engine's Whisper tiny.en recognises in at least 95 % of readings. It chose the
statement's wording the same way: tiny.en heard "I agree to have my voice cloned in this
workspace." within 25 % WER in 68 % of readings ("cloned" as "long", "blown", "closed"), this one
in all of them. The engine (gpu_tasks.engines.voice_consent) is given the words
and the statement, and takes exactly CHALLENGE_WORD_COUNT distinct words of lower-case letters.

Pure Python, with no Django: the server issues challenges with it, the bench reads phrases with it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from pathlib import Path

STATEMENT = "I give my permission to copy my voice in this workspace."
# What a person reads on camera to consent to their face being used (a likeness consent): the same
# fresh words, then this statement.
LIKENESS_STATEMENT = "I agree to have my face used in this workspace."
CHALLENGE_WORD_COUNT = 8
WORD_LIST = Path(__file__).resolve().parent / "data" / "consent_words_en.txt"
_WORD = re.compile(r"[a-z]+")


def _load(path: Path) -> tuple[str, ...]:
    words = tuple(path.read_text(encoding="ascii").split())
    if any(not _WORD.fullmatch(w) for w in words) or len(set(words)) != len(words):
        raise ValueError(f"{path} must hold distinct words of lower-case letters a-z")
    return words


CHALLENGE_WORDS = _load(WORD_LIST)


def new_challenge_words(n: int = CHALLENGE_WORD_COUNT) -> list[str]:
    """`n` distinct words of CHALLENGE_WORDS, each drawn with `secrets.choice` (a CSPRNG)."""
    if not 1 <= n <= len(CHALLENGE_WORDS):
        raise ValueError(f"n must be from 1 to {len(CHALLENGE_WORDS)}")
    chosen: list[str] = []
    while len(chosen) < n:
        word = secrets.choice(CHALLENGE_WORDS)
        if word not in chosen:  # redraw a repeat: every set of distinct words stays equally likely
            chosen.append(word)
    return chosen


def phrase_text(words: Sequence[str], statement: str = STATEMENT) -> str:
    """What the speaker reads: "w1, w2, ... w8. <statement>"."""
    return f"{', '.join(words)}. {statement}"
