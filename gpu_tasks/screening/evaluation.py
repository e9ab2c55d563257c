"""The screener's figures on a labelled set: `{"field", "text", "labels"}` per line, no label for a
benign line. The tests' held-out set (tests/gpu_tasks/fixtures/screening_eval.jsonl) is read by the
tests and by bench/screening.py, never by training.

- refused: a must-refuse line for which some category is named;
- right category: a must-refuse line for which one of its own labels is named;
- benign passed: a benign line for which nothing is named.

Every line is screened as a field of the "full" policy. A line over the screener's MAX_CHARS
counts as refused: the API refuses it by its length before screening.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_tasks.screening import text as screener
from gpu_tasks.screening.taxonomy import CATEGORIES


@dataclass
class Tally:
    lines: int = 0
    refused: int = 0
    right: int = 0

    def rate(self, count: int) -> float:
        return count / self.lines if self.lines else 0.0


@dataclass
class Figures:
    must_refuse: Tally = field(default_factory=Tally)
    benign_lines: int = 0
    benign_passed: int = 0
    per_category: dict[str, Tally] = field(default_factory=lambda: {c: Tally() for c in CATEGORIES})
    misses: list[str] = field(default_factory=list)  # ids (never texts) of the lines answered wrongly

    @property
    def refused_rate(self) -> float:
        return self.must_refuse.rate(self.must_refuse.refused)

    @property
    def right_category_rate(self) -> float:
        return self.must_refuse.rate(self.must_refuse.right)

    @property
    def benign_pass_rate(self) -> float:
        return self.benign_passed / self.benign_lines if self.benign_lines else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "must_refuse": self.must_refuse.lines, "refused": self.must_refuse.refused,
            "right_category": self.must_refuse.right, "benign": self.benign_lines, "benign_passed": self.benign_passed,
            "refused_rate": round(self.refused_rate, 6), "right_category_rate": round(self.right_category_rate, 6),
            "benign_pass_rate": round(self.benign_pass_rate, 6),
            "per_category": {c: {"n": t.lines, "refused": t.refused, "right_category": t.right,
                                 "refused_rate": round(t.rate(t.refused), 6),
                                 "right_category_rate": round(t.rate(t.right), 6)}
                             for c, t in self.per_category.items()},
        }

    def table(self) -> str:
        lines = [f"{'category':18s} {'n':>4s} {'refused':>8s} {'right':>8s}"]
        for name, tally in self.per_category.items():
            lines.append(f"{name:18s} {tally.lines:4d} {tally.rate(tally.refused):8.1%} {tally.rate(tally.right):8.1%}")
        lines.append(f"{'all must-refuse':18s} {self.must_refuse.lines:4d} {self.refused_rate:8.1%} "
                     f"{self.right_category_rate:8.1%}")
        lines.append(f"{'benign passed':18s} {self.benign_lines:4d} {self.benign_pass_rate:8.1%}")
        return "\n".join(lines)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(lines: Iterable[Mapping[str, Any]], scale: float = 1.0) -> Figures:
    """The screener's figures on labelled lines; `scale`: the share of each threshold refused at
    (1.0: the platform's policy; taxonomy.STRICT_SCALE: a workspace's strict one)."""
    figures = Figures()
    for number, line in enumerate(lines, 1):
        labels = set(line["labels"])
        text = line["text"]
        named = set(CATEGORIES) if len(text) > screener.MAX_CHARS else set(screener.refused_at(text, (scale,))[0])
        name = str(line.get("id", number))
        if not labels:
            figures.benign_lines += 1
            figures.benign_passed += not named
            if named:
                figures.misses.append(f"{name}: benign line refused as {sorted(named)}")
            continue
        figures.must_refuse.lines += 1
        figures.must_refuse.refused += bool(named)
        figures.must_refuse.right += bool(named & labels)
        for category in labels:
            tally = figures.per_category[category]
            tally.lines += 1
            tally.refused += bool(named)
            tally.right += category in named
        if not named & labels:
            figures.misses.append(f"{name}: {sorted(labels)} named as {sorted(named) or 'nothing'}")
    return figures
