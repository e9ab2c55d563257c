"""The voice-consent challenge: its words, drawn from the committed list, and the phrase read."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from media import consent_phrases
from media.consent_phrases import (
    CHALLENGE_WORD_COUNT,
    CHALLENGE_WORDS,
    STATEMENT,
    new_challenge_words,
    phrase_text,
)


def test_a_challenge_is_eight_distinct_words_of_the_list() -> None:
    for _ in range(200):
        words = new_challenge_words()
        assert len(words) == CHALLENGE_WORD_COUNT == 8
        assert len(set(words)) == 8
        assert set(words) <= set(CHALLENGE_WORDS)


def test_challenges_are_drawn_with_the_secrets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    real_choice = secrets.choice

    def choice(seq: tuple[str, ...]) -> str:
        assert seq is consent_phrases.CHALLENGE_WORDS
        drawn.append(real_choice(seq))
        return drawn[-1]

    monkeypatch.setattr(consent_phrases.secrets, "choice", choice)
    words = new_challenge_words()
    assert words == list(dict.fromkeys(drawn))  # each word a draw of secrets.choice, repeats redrawn


def test_challenges_differ_and_use_much_of_the_list() -> None:
    challenges = {tuple(new_challenge_words()) for _ in range(100)}
    assert len(challenges) == 100
    seen = {w for c in challenges for w in c}
    assert len(seen) > len(CHALLENGE_WORDS) // 2


def test_a_repeat_is_redrawn_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    script = iter(["apple", "apple", *CHALLENGE_WORDS[:20]])
    monkeypatch.setattr(consent_phrases, "CHALLENGE_WORDS", ("apple", *CHALLENGE_WORDS[:20]))
    monkeypatch.setattr(consent_phrases.secrets, "choice", lambda _seq: next(script))
    words = new_challenge_words(3)
    assert words[0] == "apple" and words.count("apple") == 1 and len(set(words)) == 3


@pytest.mark.parametrize("n", [0, -1, len(CHALLENGE_WORDS) + 1])
def test_an_impossible_count_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match="n must be"):
        new_challenge_words(n)


def test_the_phrase_is_the_words_then_the_statement() -> None:
    assert phrase_text(["apple", "river"], "I agree.") == "apple, river. I agree."
    words = ["w" * k for k in range(1, 9)]
    assert phrase_text(words) == "w, ww, www, wwww, wwwww, wwwwww, wwwwwww, wwwwwwww. " + STATEMENT


def test_the_word_list_is_distinct_lower_case_words_enough_for_a_strong_challenge() -> None:
    text = consent_phrases.WORD_LIST.read_text(encoding="ascii")
    lines = text.splitlines()
    assert lines == sorted(lines) and all(re.fullmatch(r"[a-z]+", w) for w in lines)
    assert len(set(lines)) == len(lines) == len(CHALLENGE_WORDS)
    # A challenge is one of N^8: at least 2^61 with N >= 200 (the committed list gives about 2^62.6).
    assert len(CHALLENGE_WORDS) >= 200


def test_a_list_with_a_repeat_or_another_character_is_refused(tmp_path: Path) -> None:
    for bad in ("apple\napple\n", "apple\nRiver\n", "apple\nriver2\n", "apple\ndon't\n"):
        path = tmp_path / "words.txt"
        path.write_text(bad, encoding="ascii")
        with pytest.raises(ValueError, match="distinct words"):
            consent_phrases._load(path)
