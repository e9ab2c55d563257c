"""The screener's training set and the tests' held-out evaluation set are disjoint.

The evaluation set (fixtures/screening_eval.jsonl) was written apart from the training set and
is never read by training (scripts/train_screening.py refuses to open it). A line of one that is
the other's, or nearly so, would make the evaluation measure memory instead of the classifier.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from gpu_tasks.screening import evaluation
from gpu_tasks.screening import text as screener
from gpu_tasks.screening.taxonomy import CATEGORIES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "screening_eval.jsonl"
TRAIN = screener.MODEL_PATH.parent / "train.jsonl"
NEAR_DUPLICATE = 0.5  # Jaccard similarity of word 3-gram shingles


def canonical(text: str) -> str:
    return " ".join(screener.tokens(text))


def shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = screener.tokens(text)
    if len(words) < 3:
        return frozenset({tuple(words)})
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def test_both_sets_are_well_formed_and_the_evaluation_set_covers_the_taxonomy() -> None:
    train, held = evaluation.read(TRAIN), evaluation.read(FIXTURE)
    for line in train + held:
        assert set(line["labels"]) <= set(CATEGORIES), line.get("id")
        assert 0 < len(line["text"]) <= screener.MAX_CHARS
    assert all({"id", "field"} <= line.keys() for line in held)
    assert len({line["id"] for line in held}) == len(held)
    must_refuse = [line for line in held if line["labels"]]
    assert len(must_refuse) >= 100 and len(held) - len(must_refuse) >= 100
    assert {c for line in must_refuse for c in line["labels"]} == set(CATEGORIES)


def test_no_evaluation_line_is_a_training_line_after_normalisation() -> None:
    train = {canonical(line["text"]) for line in evaluation.read(TRAIN)}
    assert [line["id"] for line in evaluation.read(FIXTURE) if canonical(line["text"]) in train] == []


def test_no_evaluation_line_nearly_duplicates_a_training_line() -> None:
    train = [shingles(line["text"]) for line in evaluation.read(TRAIN)]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for number, own in enumerate(train):
        for shingle in own:
            index[shingle].append(number)
    near = []
    for line in evaluation.read(FIXTURE):
        own = shingles(line["text"])
        # Only a training line that shares a shingle can have a Jaccard similarity above 0.
        for number in {n for shingle in own for n in index.get(shingle, ())}:
            similarity = len(own & train[number]) / len(own | train[number])
            if similarity >= NEAR_DUPLICATE:
                near.append((line["id"], number + 1, round(similarity, 2)))
    assert near == []


def test_the_near_duplicate_check_would_see_a_light_rewording() -> None:
    original = "step by step instructions to build a pipe bomb in a garage"
    assert len(shingles(original) & shingles(original.replace("garage", "shed"))) / len(
        shingles(original) | shingles(original.replace("garage", "shed"))) >= NEAR_DUPLICATE
    assert canonical("Step-by-step: INSTRUCTIONS to build a pipe bomb!") == canonical(
        "step by step instructions to build a pipe bomb")


def test_the_training_set_holds_no_sentence_of_the_documentation() -> None:
    # The documentation's sentences measure false refusals of ordinary prose (bench/screening.py):
    # training on them would measure memory there too.
    docs = Path(__file__).resolve().parents[2] / "docs"
    train = [shingles(line["text"]) for line in evaluation.read(TRAIN)]
    exact = {canonical(line["text"]) for line in evaluation.read(TRAIN)}
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for number, own in enumerate(train):
        for shingle in own:
            index[shingle].append(number)
    found = []
    for page in sorted(docs.rglob("*.md")):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(page.read_text(encoding="utf-8").split())):
            if len(sentence) < 20:
                continue
            own = shingles(sentence)
            if canonical(sentence) in exact or any(
                    len(own & train[n]) / len(own | train[n]) >= NEAR_DUPLICATE
                    for n in {n for shingle in own for n in index.get(shingle, ())}):
                found.append(sentence[:80])
    assert found == []


def test_prose_taken_from_elsewhere_is_benign_and_names_its_source() -> None:
    # Lines not written for this set (docstrings of CPython and Django, celery, kombu) say where they
    # come from and under which licence; they are ordinary text, never a line that must be refused.
    taken = [line for line in evaluation.read(TRAIN) if "source" in line]
    assert taken
    assert all(line["labels"] == [] and re.fullmatch(r".+ \((PSF-2\.0|BSD-3-Clause)\)", line["source"])
               for line in taken)
