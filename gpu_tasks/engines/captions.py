"""Captions in a render: an ASS script burned into the picture, or SRT and WebVTT files delivered
beside the video. The render's caller writes the cues (at output times); this module only places
them.

Payload keys: `captions`: "none" (default) | "burn" | "sidecar"; with "burn", `captions_ass` (the
script); with "sidecar", `captions_srt` and `captions_vtt` (the files' text).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines.fonts import fonts_dir
from gpu_tasks.errors import PermanentGpuError

MODES = ("none", "burn", "sidecar")
MAX_TEXT_BYTES = 8 * 1024 * 1024
# Output name -> (payload key, suffix, content type).
SIDECARS = {
    "captions_srt": ("captions_srt", ".srt", "application/x-subrip"),
    "captions_vtt": ("captions_vtt", ".vtt", "text/vtt"),
}


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PermanentGpuError("invalid_input", f"{key} must be the captions' text")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise PermanentGpuError("invalid_input", f"{key} is larger than {MAX_TEXT_BYTES} bytes")
    return value


def _mode(payload: Mapping[str, Any]) -> str:
    mode = payload.get("captions") or "none"
    if mode not in MODES:
        raise PermanentGpuError("invalid_input", f"captions must be one of {MODES}")
    return str(mode)


def prepare(payload: Mapping[str, Any], ctx: EngineContext) -> Path | None:
    """Check the payload's captions before anything is rendered; the ASS script to burn in, written
    into the scratch dir, or None."""
    mode = _mode(payload)
    for key, _, _ in SIDECARS.values() if mode == "sidecar" else ():
        _text(payload, key)
    if mode != "burn":
        return None
    path = ctx.output_path("captions", ".ass")
    path.write_text(_text(payload, "captions_ass"), encoding="utf-8")
    return path


def deliver(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, dict[str, Any]]:
    """The sidecar files, delivered as outputs (none unless `captions` is "sidecar")."""
    refs = {}
    for name, (key, suffix, content_type) in SIDECARS.items() if _mode(payload) == "sidecar" else ():
        path = ctx.output_path(name, suffix)
        path.write_text(_text(payload, key), encoding="utf-8")
        refs[name] = ctx.deliver(name, path, content_type)
    return refs


def _escape(value: str) -> str:
    """A filter option value, escaped for the option and then for the filtergraph around it."""
    for ch in "\\':":
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":
        value = value.replace(ch, "\\" + ch)
    return value


def burn_filter(script: Path) -> str:
    """The filter that draws `script` on a picture, with the packaged fonts."""
    return f"subtitles=filename={_escape(str(script))}:fontsdir={_escape(str(fonts_dir()))}"
