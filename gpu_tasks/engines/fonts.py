"""The font that text drawn into a picture uses: text overlays and burned-in captions.

It comes from a pinned pip package (``font-roboto``, Apache-2.0: Roboto covers Latin, Greek
and Cyrillic), so a render looks the same on every machine and never depends on the fonts a
system happens to have. ffmpeg's drawtext takes the file; libass (the subtitles filter) takes the
folder and the family name.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from gpu_tasks.errors import PermanentGpuError

FONT_FAMILY = "Roboto"
_PACKAGE = "font_roboto"
_REGULAR = "Roboto-Regular.ttf"
_BOLD = "Roboto-Bold.ttf"


def font_dir() -> Path:
    """The folder holding the font files (for libass's ``fontsdir``)."""
    try:
        folder = Path(str(files(_PACKAGE) / "files"))
    except ModuleNotFoundError as exc:  # a deployment without requirements/base.txt
        raise PermanentGpuError("internal", f"the {_PACKAGE} package is not installed") from exc
    return folder


def font_file(*, bold: bool = False) -> Path:
    """The TrueType file of the regular (or bold) face."""
    path = font_dir() / (_BOLD if bold else _REGULAR)
    if not path.is_file():
        raise PermanentGpuError("internal", f"font file {path.name} is missing from {_PACKAGE}")
    return path


def filter_value(value: str) -> str:
    """`value` escaped for an option of a filter inside a -filter_complex graph.

    Two levels parse it: the option parser (``:``, ``'`` and ``\\`` are special) and then the graph
    parser (also ``[ ] , ;``); each level's escaping is applied in turn.
    """
    option_level = value.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")
    graph_level = option_level.replace("\\", "\\\\").replace("'", "\\'")
    for ch in "[],;":
        graph_level = graph_level.replace(ch, "\\" + ch)
    return graph_level
