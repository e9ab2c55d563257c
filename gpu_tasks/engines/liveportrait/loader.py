"""Where LivePortrait's weights live, and loading them once per process for every engine that uses them."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_tasks.engines import weights
from gpu_tasks.engines.liveportrait import CHECKPOINTS, PUBLISHED
from gpu_tasks.engines.weights import Repo
from gpu_tasks.errors import PermanentGpuError

if TYPE_CHECKING:
    from gpu_tasks.engines.liveportrait.networks import Networks

MODEL = "LivePortrait"
FOLDER = "liveportrait"
WEIGHTS = (FOLDER, CHECKPOINTS["spade_generator"])
REPOS = {FOLDER: Repo("KwaiVGI/LivePortrait", files=tuple(CHECKPOINTS.values()))}
# Hyper-parameters beside the checkpoints replace the published ones: the published repository
# has no such file; smaller builds of the same networks carry theirs there.
CONFIG_FILE = "liveportrait/models.json"


@functools.lru_cache(maxsize=1)
def load(path: str) -> Networks:
    """The networks from the weights folder, once per process, on the GPU when there is one."""
    from gpu_tasks.engines.liveportrait import networks

    folder = Path(path)
    config_path = folder / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else PUBLISHED
    device = weights.device()
    half = weights.dtype_for(device) if device == "cuda" else None
    try:
        return networks.load(folder, config, device, half)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as exc:
        # A partial download or another model's files: the fix is the same as for no weights.
        raise PermanentGpuError("model_unavailable", f"LivePortrait weights unusable: {type(exc).__name__}") from exc
