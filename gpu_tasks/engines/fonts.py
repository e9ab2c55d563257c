"""The fonts the render draws text with (burned-in captions, text overlays).

They come from pinned pip packages, never from the system: the same font on every machine, the
worker's and Modal's CPU image alike. Noto Sans covers Latin, Greek and Cyrillic.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from gpu_tasks.errors import PermanentGpuError

DEFAULT_FAMILY = "Noto Sans"


@cache
def font_file(family: str = DEFAULT_FAMILY) -> Path:
    """The regular-weight file of an installed font family."""
    import fontpkg

    try:
        return Path(fontpkg.path(family, nearest=True))
    except fontpkg.FontpkgError as exc:
        raise PermanentGpuError("invalid_input", f"font {family!r} is not installed") from exc


def fonts_dir(family: str = DEFAULT_FAMILY) -> Path:
    """The folder holding the family's files (libass's `fontsdir`)."""
    return font_file(family).parent
