"""The clip effects a timeline may carry, declared once: their parameters, bounds and defaults.

Both sides read this table: the EDL's validation (``projects.edl.effects``, which adds field paths
and the rules that need the clip) and the render engine (``gpu_tasks.engines.effects``, which
re-checks its payload and turns each effect into ffmpeg filters). No imports beyond the standard
library: the Django side shares it, as it shares ``gpu_tasks.input_policy``.

Adding an effect is one entry in ``EFFECTS`` here and one filter builder in the render's module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
MAX_TEXT_LENGTH = 500
MAX_EFFECT_MS = 3_600_000


@dataclass(frozen=True)
class Param:
    """One parameter of an effect: its kind ("int", "number", "string", "choice", "color") and bounds."""

    kind: str
    required: bool = True
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable here, or None."""
        if self.kind == "int":
            if type(value) is not int:  # True and False are ints to Python
                return "Must be an integer."
        elif self.kind == "number":
            if type(value) not in (int, float) or not math.isfinite(value):
                return "Must be a number."
        elif self.kind == "choice":
            if value not in self.choices:
                return f"Must be one of: {', '.join(self.choices)}."
            return None
        elif self.kind == "color":
            if not isinstance(value, str) or COLOR_RE.fullmatch(value) is None:
                return 'Must be a colour as "#rrggbb".'
            return None
        elif self.kind == "string":
            if not isinstance(value, str):
                return "Must be a string."
            if not value.strip():
                return "May not be empty."
            if len(value) > (self.high or MAX_TEXT_LENGTH):
                return f"Must be at most {int(self.high or MAX_TEXT_LENGTH)} characters."
            if any(ord(ch) < 32 and ch != "\n" for ch in value):
                return "May not contain control characters other than line breaks."
            return None
        if self.low is not None and value < self.low:
            return f"Must be at least {_num(self.low)}."
        if self.high is not None and value > self.high:
            return f"Must be at most {_num(self.high)}."
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _crop_inside(effect: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for start, size in (("x", "width"), ("y", "height")):
        if effect[start] + effect[size] > 1:
            problems.append((size, f"{start} + {size} must be at most 1 (the whole frame)."))
    return problems


@dataclass(frozen=True)
class EffectSpec:
    name: str
    params: dict[str, Param]
    single: bool = False  # at most one per clip: two would contradict each other
    check: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None  # across parameters
    summary: str = ""
    defaults: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {k: p.default for k, p in self.params.items() if not p.required})


_FADE = {
    "duration_ms": Param("int", low=1, high=MAX_EFFECT_MS),
    "target": Param("choice", required=False, default="both", choices=("both", "video", "audio")),
}
_FRACTION = Param("number", low=0, high=1)
_SIZE = Param("number", low=0.05, high=1)

EFFECTS: dict[str, EffectSpec] = {
    spec.name: spec
    for spec in (
        EffectSpec("fade_in", _FADE, summary="from black and silence at the clip's start"),
        EffectSpec("fade_out", _FADE, summary="to black and silence at the clip's end"),
        EffectSpec("volume", {"gain_db": Param("number", low=-60, high=24)}, summary="gain in dB"),
        EffectSpec("speed", {"rate": Param("number", low=0.25, high=4)}, single=True, summary="pitch kept"),
        EffectSpec(
            "crop",
            {"x": _FRACTION, "y": _FRACTION, "width": _SIZE, "height": _SIZE},
            single=True,
            check=_crop_inside,
            summary="a part of the source frame, in fractions of it",
        ),
        EffectSpec(
            "fit",
            {"mode": Param("choice", choices=("contain", "cover", "stretch"))},
            single=True,
            summary="how the picture fills the project resolution",
        ),
        EffectSpec(
            "text",
            {
                "text": Param("string", high=MAX_TEXT_LENGTH),
                "position": Param("choice", required=False, default="bottom", choices=("top", "center", "bottom")),
                "font_size": Param("int", required=False, default=None, low=6, high=400),
                "color": Param("color", required=False, default="#ffffff"),
                "start_ms": Param("int", required=False, default=0, low=0, high=MAX_EFFECT_MS),
                "duration_ms": Param("int", required=False, default=None, low=1, high=MAX_EFFECT_MS),
            },
            summary="a line of text drawn over the picture",
        ),
    )
}
KNOWN_TYPES = tuple(sorted(EFFECTS))


def effect_problems(effect: Any) -> list[tuple[str | None, str]]:
    """(parameter or None for the effect itself, message) for each problem of one effect."""
    if not isinstance(effect, Mapping):
        return [(None, "Must be an object.")]
    kind = effect.get("type")
    if "type" not in effect:
        return [("type", "This field is required.")]
    spec = EFFECTS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        return [("type", f"Unknown effect type {kind!r}; known types: {', '.join(KNOWN_TYPES)}.")]
    problems: list[tuple[str | None, str]] = [
        (str(k), "Unknown field.") for k in sorted(effect.keys() - spec.params.keys() - {"type"}, key=str)
    ]
    for name, param in spec.params.items():
        if name not in effect:
            if param.required:
                problems.append((name, "This field is required."))
            continue
        value = effect[name]
        message = "May not be null." if value is None else param.problem(value)
        if message is not None:
            problems.append((name, message))
    if not problems and spec.check is not None:
        problems.extend(spec.check(effect))
    return problems


def repeated_singles(effects: list[Any]) -> list[tuple[int, str]]:
    """(index, message) for each second effect of a kind a clip may have only once."""
    seen: dict[str, int] = {}
    problems = []
    for i, effect in enumerate(effects):
        kind = effect.get("type") if isinstance(effect, Mapping) else None
        if not isinstance(kind, str) or kind not in EFFECTS or not EFFECTS[kind].single:
            continue
        if kind in seen:
            problems.append((i, f"At most one {kind} effect per clip (also at effects[{seen[kind]}])."))
        else:
            seen[kind] = i
    return problems


def with_defaults(effect: Mapping[str, Any]) -> dict[str, Any]:
    """A valid effect with its omitted optional parameters filled in."""
    return {**EFFECTS[effect["type"]].defaults, **effect}

