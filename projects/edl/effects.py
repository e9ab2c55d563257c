"""A clip's ``effects`` checked against the effect vocabulary, each problem with its field path.

The vocabulary (types, parameters, bounds, defaults) is declared once in
``gpu_tasks.effect_vocabulary``, which the render engine reads too. Here are the rules that need
the clip: at most one speed, crop and fit effect each (two would contradict each other), a fade
no longer than the clip, a text overlay that starts within it, and the clip's length at its
speed: ``duration_ms == round((out_point_ms - in_point_ms) / rate)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpu_tasks.effect_vocabulary import EFFECTS, KNOWN_TYPES, effect_problems, repeated_singles
from projects.edl.cuts import clip_speed
from projects.edl.field_checks import Errors

__all__ = ["EFFECTS", "KNOWN_TYPES", "check_clip_effects", "clip_speed", "expected_duration_ms"]


def expected_duration_ms(clip: Mapping[str, Any]) -> int:
    """The clip's length on the timeline: its source span played at its speed (cuts.clip_speed)."""
    return round((clip["out_point_ms"] - clip["in_point_ms"]) / clip_speed(clip))


def check_clip_effects(clip: dict[str, Any], path: str, errors: Errors) -> bool:
    """Every effect of `clip` (at `path`), reported to `errors`; False if any was invalid.

    Entries already refused by the generic field checks (None in the normalised clip) are skipped.
    """
    effects = clip.get("effects") or []
    before = len(errors.items)
    for k, effect in enumerate(effects):
        if effect is None:
            continue
        epath = f"{path}.effects[{k}]"
        for name, message in effect_problems(effect):
            errors.add(epath if name is None else f"{epath}.{name}", message)
    for k, message in repeated_singles(effects):
        errors.add(f"{path}.effects[{k}].type", message)
    duration = clip.get("duration_ms")
    valid = len(errors.items) == before and None not in effects
    if valid and isinstance(duration, int):
        for k, effect in enumerate(effects):
            _check_against_clip(effect, duration, f"{path}.effects[{k}]", errors)
    return valid


def _check_against_clip(effect: Mapping[str, Any], duration: int, path: str, errors: Errors) -> None:
    kind = effect["type"]
    if kind in ("fade_in", "fade_out") and effect["duration_ms"] > duration:
        errors.add(f"{path}.duration_ms", f"Must be at most the clip's duration ({duration} ms).")
    elif kind == "text" and effect.get("start_ms", 0) >= duration:
        errors.add(f"{path}.start_ms", f"Must be before the clip's end ({duration} ms).")
