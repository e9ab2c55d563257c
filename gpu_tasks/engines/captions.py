"""Captions in a render: an ASS script burned into the picture, or SRT and WebVTT files delivered
beside the video. The render's caller writes the cues (at output times); this module only places
them.

Payload keys: `captions`: "none" (default) | "burn" | "sidecar"; with "burn", `captions_ass` (the
script); with "sidecar", `captions_srt` and `captions_vtt` (the files' text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines.fonts import filter_value, font_dir
from gpu_tasks.errors import PermanentGpuError

MODES = ("none", "burn", "sidecar")
MAX_TEXT_BYTES = 8 * 1024 * 1024
# Output name -> (payload key, suffix, content type).
SIDECARS = {
    "captions_srt": ("captions_srt", ".srt", "application/x-subrip"),
    "captions_vtt": ("captions_vtt", ".vtt", "text/vtt"),
}


@dataclass(frozen=True)
class RenderCaptions:
    burn: Path | None = None  # the ASS script to draw on the picture
    sidecars: tuple[tuple[str, Path, str], ...] = ()  # (output name, file, content type)


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PermanentGpuError("invalid_input", f"{key} must be the captions' text")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise PermanentGpuError("invalid_input", f"{key} is larger than {MAX_TEXT_BYTES} bytes")
    return value


def prepare(payload: Mapping[str, Any], ctx: EngineContext) -> RenderCaptions:
    """Write the payload's caption files into the scratch dir."""
    mode = payload.get("captions") or "none"
    if mode not in MODES:
        raise PermanentGpuError("invalid_input", f"captions must be one of {MODES}")
    if mode == "burn":
        path = ctx.output_path("captions", ".ass")
        path.write_text(_text(payload, "captions_ass"), encoding="utf-8")
        return RenderCaptions(burn=path)
    sidecars = []
    if mode == "sidecar":
        for name, (key, suffix, content_type) in SIDECARS.items():
            path = ctx.output_path(name, suffix)
            path.write_text(_text(payload, key), encoding="utf-8")
            sidecars.append((name, path, content_type))
    return RenderCaptions(sidecars=tuple(sidecars))


def deliver(captions: RenderCaptions, ctx: EngineContext) -> dict[str, dict[str, Any]]:
    return {name: ctx.deliver(name, path, content_type) for name, path, content_type in captions.sidecars}


def burn_filter(script: Path) -> str:
    """The filter that draws `script` on a picture, with the packaged fonts."""
    return f"subtitles=filename={filter_value(str(script))}:fontsdir={filter_value(str(font_dir()))}"
