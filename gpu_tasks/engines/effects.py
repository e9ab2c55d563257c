"""Clip effects as ffmpeg filters: the render's per-clip video and audio chains call these.

The vocabulary (types, parameters, bounds) is ``gpu_tasks.effect_vocabulary``; the payload is
re-checked against it here, since a render may be asked for by anything that reaches the GPU
backend. What each effect does in the output:

- ``speed``: the clip plays ``duration * rate`` of its source in ``duration`` (setpts for the
  picture; a chain of atempo filters, each within 0.5-2, for the sound, so the pitch is kept).
- ``crop``: a part of the source frame (fractions of it), before the picture is fitted.
- ``fit``: how the picture fills the project resolution: ``contain`` (aspect kept, black bars),
  ``cover`` (aspect kept, the overflow cropped, centred), ``stretch`` (aspect changed).
- ``volume``: gain in dB (several add up).
- ``fade_in`` / ``fade_out``: from/to black (picture) and silence (sound), linear, at the clip's
  own start/end only. A clip split by cuts carries ``first``/``last``; a fade is drawn in the
  piece that holds that edge, shortened to the piece when the piece is shorter than the fade.
- ``text``: drawtext with the pinned font (``gpu_tasks.engines.fonts``), centred horizontally at
  the top, centre or bottom, with a soft shadow; ``start_ms``/``duration_ms`` are relative to
  the clip (to the end of the clip without a duration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_tasks.effect_vocabulary import effect_problems, repeated_singles, with_defaults
from gpu_tasks.engines.fonts import filter_value, font_file
from gpu_tasks.errors import PermanentGpuError

ATEMPO_MIN, ATEMPO_MAX = 0.5, 2.0
TEXT_MARGIN = 0.05  # of the frame height, between a top/bottom text and the edge
DEFAULT_FONT_SIZE = 0.06  # of the frame height


@dataclass(frozen=True)
class Fade:
    duration_ms: int
    video: bool
    audio: bool


@dataclass(frozen=True)
class Crop:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Text:
    text: str
    position: str
    font_size: int | None
    color: str
    start_ms: int
    duration_ms: int | None


@dataclass(frozen=True)
class ClipEffects:
    rate: float = 1.0
    gain_db: float = 0.0
    fit: str = "contain"
    crop: Crop | None = None
    fade_in: tuple[Fade, ...] = ()
    fade_out: tuple[Fade, ...] = ()
    texts: tuple[Text, ...] = ()


NO_EFFECTS = ClipEffects()


@dataclass(frozen=True)
class Stretch:
    """The part of a clip that one filter chain renders, in timeline milliseconds."""

    offset_ms: int  # from the clip's start to the stretch's start
    duration_ms: int
    starts_clip: bool  # the stretch holds the clip's start: its fade-ins apply
    ends_clip: bool  # ... its end: its fade-outs apply


def parse_effects(raw: Any, where: str) -> ClipEffects:
    """A clip's ``effects`` list, checked; PermanentGpuError(invalid_input) names the first problem."""
    if raw is None or raw == []:
        return NO_EFFECTS
    if not isinstance(raw, list):
        raise PermanentGpuError("invalid_input", f"{where}: effects must be a list")
    for i, effect in enumerate(raw):
        for name, message in effect_problems(effect):
            field = f"effects[{i}]" + (f".{name}" if name else "")
            raise PermanentGpuError("invalid_input", f"{where}: {field}: {message}")
    for i, message in repeated_singles(raw):
        raise PermanentGpuError("invalid_input", f"{where}: effects[{i}]: {message}")
    fields: dict[str, Any] = {"fade_in": [], "fade_out": [], "texts": []}
    for effect in map(with_defaults, raw):
        kind = effect["type"]
        if kind in ("fade_in", "fade_out"):
            target = effect["target"]
            fields[kind].append(Fade(effect["duration_ms"], target != "audio", target != "video"))
        elif kind == "volume":
            fields["gain_db"] = fields.get("gain_db", 0.0) + float(effect["gain_db"])
        elif kind == "speed":
            fields["rate"] = float(effect["rate"])
        elif kind == "crop":
            fields["crop"] = Crop(*(float(effect[k]) for k in ("x", "y", "width", "height")))
        elif kind == "fit":
            fields["fit"] = effect["mode"]
        elif kind == "text":
            fields["texts"].append(Text(**{k: v for k, v in effect.items() if k != "type"}))
    for key in ("fade_in", "fade_out", "texts"):
        fields[key] = tuple(fields[key])
    return ClipEffects(**fields)


def _n(x: float) -> str:
    return f"{x:.6g}"


def source_ms(fx: ClipEffects, timeline_ms: float) -> float:
    """How much source a stretch of the timeline plays."""
    return timeline_ms * fx.rate


def video_source(fx: ClipEffects) -> str:
    """From the decoded source to the clip's own timing and framing (before the frame-rate grid)."""
    chain = ["setpts=PTS-STARTPTS" if fx.rate == 1 else f"setpts=(PTS-STARTPTS)/{_n(fx.rate)}"]
    if fx.crop is not None:
        c = fx.crop
        # floor() keeps x + width within the frame whatever the rounding.
        chain.append(
            f"crop=w=floor(iw*{_n(c.width)}):h=floor(ih*{_n(c.height)}):x=floor(iw*{_n(c.x)}):y=floor(ih*{_n(c.y)})"
        )
    return ",".join(chain)


def video_fit(fx: ClipEffects, width: int, height: int) -> str:
    """The picture scaled to the project resolution, as its fit mode says."""
    if fx.fit == "stretch":
        return f"scale={width}:{height}"
    if fx.fit == "cover":
        return f"scale={width}:{height}:force_original_aspect_ratio=increase,crop={width}:{height}"
    return (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black"
    )


def video_overlays(fx: ClipEffects, stretch: Stretch, height: int) -> str:
    """Text and fades over a normalised piece (timestamps from 0); "" or ",filter,...\"."""
    chain = [_drawtext(t, stretch, height) for t in fx.texts]
    chain += _fades("fade", fx, stretch, video=True)
    return "".join(f",{f}" for f in chain if f)


def audio_tempo(fx: ClipEffects) -> str:
    """The sound played at the clip's rate, pitch kept; "" or "atempo=...,\"."""
    if fx.rate == 1:
        return ""
    factors, rest = [], fx.rate
    while rest > ATEMPO_MAX:
        factors.append(ATEMPO_MAX)
        rest /= ATEMPO_MAX
    while rest < ATEMPO_MIN:
        factors.append(ATEMPO_MIN)
        rest /= ATEMPO_MIN
    factors.append(rest)
    return "".join(f"atempo={_n(f)}," for f in factors)


def audio_level(fx: ClipEffects, stretch: Stretch) -> str:
    """Gain and fades over a trimmed piece of sound (timestamps from 0); "" or "filter,...,\"."""
    chain = [f"volume={_n(fx.gain_db)}dB"] if fx.gain_db else []
    chain += _fades("afade", fx, stretch, video=False)
    return "".join(f"{f}," for f in chain)


def _fades(name: str, fx: ClipEffects, stretch: Stretch, *, video: bool) -> list[str]:
    out = []
    length = stretch.duration_ms
    if stretch.starts_clip:
        for fade in fx.fade_in:
            if fade.video if video else fade.audio:
                out.append(f"{name}=t=in:st=0:d={_n(fade.duration_ms / 1000)}")
    if stretch.ends_clip:
        for fade in fx.fade_out:
            if fade.video if video else fade.audio:
                d = min(fade.duration_ms, length)
                out.append(f"{name}=t=out:st={_n((length - d) / 1000)}:d={_n(d / 1000)}")
    return out


def _drawtext(text: Text, stretch: Stretch, height: int) -> str:
    start = text.start_ms - stretch.offset_ms  # in the piece's own time
    end = None if text.duration_ms is None else start + text.duration_ms
    if start >= stretch.duration_ms or (end is not None and end <= 0):
        return ""
    size = text.font_size or max(8, round(height * DEFAULT_FONT_SIZE))
    margin = round(height * TEXT_MARGIN)
    y = {"top": str(margin), "center": "(h-text_h)/2", "bottom": f"h-text_h-{margin}"}[text.position]
    enable = f"gte(t,{_n(start / 1000)})" if end is None else f"between(t,{_n(start / 1000)},{_n(end / 1000)})"
    shadow = max(1, size // 16)
    options = {
        "fontfile": str(font_file()),
        "expansion": "none",
        "text": text.text,
        "fontsize": str(size),
        "fontcolor": "0x" + text.color[1:],
        "shadowcolor": "black@0.6",
        "shadowx": str(shadow),
        "shadowy": str(shadow),
        "x": "(w-text_w)/2",
        "y": y,
        "enable": enable,
    }
    return "drawtext=" + ":".join(f"{k}={filter_value(v)}" for k, v in options.items())

