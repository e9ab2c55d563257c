"""The content policy's categories: one table that the screener, its training script, the API's
refusals and the docs all read.

Every category here is refused in text a model acts on (a prompt, TTS text, a question). A negative
prompt lists what the model must avoid, so naming an adult or a gory scene there is the opposite of
asking for one; only the categories whose words are an offence in themselves (`negative`) count in
it. `POLICY_VERSION` changes whenever a category, its meaning or that rule changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

POLICY_VERSION = "2026-11-29"
# A workspace's strict policy (its owner's choice; nothing can relax the platform's): every category
# is refused at this share of the score that refuses it under the platform's policy, in text and in
# pictures, and a negative prompt is screened in every category.
STRICT_SCALE = 0.5


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    refused: bool = True  # refused in text a model acts on
    negative: bool = False  # refused in a negative prompt too


_TABLE = (
    Category("sexual", "Explicit sexual content or nudity between adults."),
    Category("violence_graphic", "Gore, torture, mutilation or a graphic depiction of death or injury."),
    Category("hate", "Dehumanising or demeaning a group of people for a protected trait, or slurs used to attack.",
             negative=True),
    Category("harassment", "Threats, intimidation or insults aimed at a person.", negative=True),
    Category("self_harm", "Encouraging or instructing suicide, self-injury or an eating disorder."),
    Category("illegal_activity", "Instructions for weapons, explosives, hard-drug synthesis, fraud or other serious "
             "crime."),
    Category("sexual_minors", "Any sexual content involving a minor; never allowed, in any field.", negative=True),
)

CATEGORIES: Mapping[str, Category] = MappingProxyType({c.name: c for c in _TABLE})
NEGATIVE_CATEGORIES: tuple[str, ...] = tuple(c.name for c in _TABLE if c.refused and c.negative)
