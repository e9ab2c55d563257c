"""Screening of what a user asks a model for, before the job is priced: its texts.

`screen_fields({field: (text, policy)})` names, for each field, the taxonomy's categories
(`taxonomy.CATEGORIES`) its text is refused for. A policy says which categories count:

- "full": every refused category (a prompt, TTS text, a question);
- "negative": only `taxonomy.NEGATIVE_CATEGORIES`. A negative prompt lists what the model must
  avoid, so "nudity, gore" there asks for neither; a slur or a threat is an offence wherever it is.

A workspace whose owner chose the strict policy refuses more: each category at STRICT_SCALE of its
threshold, and a negative prompt in every category. The same scores decide both (`strict_flagged`).

The screener is `text.py`'s embedded classifier; its model is loaded on the first call of the
process (numpy is imported then, not by importing this package). A text over `text.MAX_CHARS`
characters, or an unknown policy, is a ValueError: the caller's input bounds refuse both first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gpu_tasks.screening.taxonomy import CATEGORIES, NEGATIVE_CATEGORIES, POLICY_VERSION, STRICT_SCALE

POLICIES = ("full", "negative")
_COUNTED: dict[str, frozenset[str]] = {
    "full": frozenset(name for name, c in CATEGORIES.items() if c.refused),
    "negative": frozenset(NEGATIVE_CATEGORIES),
}

__all__ = ["CATEGORIES", "NEGATIVE_CATEGORIES", "POLICIES", "POLICY_VERSION", "STRICT_SCALE", "Screening",
           "screen_fields"]


@dataclass(frozen=True)
class Screening:
    flagged: dict[str, tuple[str, ...]]  # field -> categories refused, only fields with >= 1
    model_version: str
    # field -> the categories a workspace's strict policy refuses besides `flagged`'s (STRICT_SCALE
    # of each threshold; a negative prompt in every category), only fields with >= 1.
    strict_flagged: dict[str, tuple[str, ...]] = field(default_factory=dict)


def screen_fields(texts: Mapping[str, tuple[str, str]]) -> Screening:
    """texts: field name -> (text, policy). "full": every refused category counts; "negative"
    (a negative prompt lists what the model must avoid): only NEGATIVE_CATEGORIES count. Each text
    is scored once for both the platform's policy and a strict one."""
    from gpu_tasks.screening import text as screener

    for name, (value, policy) in texts.items():
        if policy not in POLICIES:
            raise ValueError(f"{name}: unknown screening policy {policy!r}")
        if len(value) > screener.MAX_CHARS:  # every bound first: no work on a request that is refused anyway
            raise ValueError(f"{name}: a text of {len(value)} characters is over the screener's {screener.MAX_CHARS}")
    flagged, strict_flagged = {}, {}
    for name, (value, policy) in texts.items():
        standard, strict = screener.refused_at(value, (1.0, STRICT_SCALE))
        categories = tuple(c for c in standard if c in _COUNTED[policy])
        if categories:
            flagged[name] = categories
        more = tuple(c for c in dict.fromkeys((*standard, *strict)) if c not in categories)
        if more:
            strict_flagged[name] = more
    return Screening(flagged=flagged, model_version=screener.model().version, strict_flagged=strict_flagged)
