"""Screening of what a user asks a model for, before the job is priced: text today.

`screen_fields({field: (text, policy)})` names, for each field, the taxonomy's categories
(`taxonomy.CATEGORIES`) its text is refused for. A policy says which categories count:

- "full": every refused category (a prompt, TTS text, a question);
- "negative": only `taxonomy.NEGATIVE_CATEGORIES`. A negative prompt lists what the model must
  avoid, so "nudity, gore" there asks for neither; a slur or a threat is an offence wherever it is.

The screener is `text.py`'s embedded classifier; its model is loaded on the first call of the
process (numpy is imported then, not by importing this package). A text over `text.MAX_CHARS`
characters, or an unknown policy, is a ValueError: the caller's input bounds refuse both first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gpu_tasks.screening.taxonomy import CATEGORIES, NEGATIVE_CATEGORIES, POLICY_VERSION

POLICIES = ("full", "negative")
_COUNTED: dict[str, frozenset[str]] = {
    "full": frozenset(name for name, c in CATEGORIES.items() if c.refused),
    "negative": frozenset(NEGATIVE_CATEGORIES),
}

__all__ = ["CATEGORIES", "NEGATIVE_CATEGORIES", "POLICIES", "POLICY_VERSION", "Screening", "screen_fields"]


@dataclass(frozen=True)
class Screening:
    flagged: dict[str, tuple[str, ...]]  # field -> categories refused, only fields with >= 1
    model_version: str


def screen_fields(texts: Mapping[str, tuple[str, str]]) -> Screening:
    """texts: field name -> (text, policy). "full": every refused category counts; "negative"
    (a negative prompt lists what the model must avoid): only NEGATIVE_CATEGORIES count."""
    from gpu_tasks.screening import text as screener

    for field, (value, policy) in texts.items():
        if policy not in POLICIES:
            raise ValueError(f"{field}: unknown screening policy {policy!r}")
        if len(value) > screener.MAX_CHARS:  # every bound first: no work on a request that is refused anyway
            raise ValueError(f"{field}: a text of {len(value)} characters is over the screener's {screener.MAX_CHARS}")
    flagged = {}
    for field, (value, policy) in texts.items():
        categories = tuple(c for c in screener.refused_categories(value) if c in _COUNTED[policy])
        if categories:
            flagged[field] = categories
    return Screening(flagged=flagged, model_version=screener.model().version)
