"""Where model engines find their weights, and what every model engine shares.

Weights live under `AUTEUR_MODELS_DIR` (the Modal Volume at /models in production; on the
local backend, the worker's setting of the same name), one folder per model. Engines load them
with the hub switched off: a missing folder is `model_unavailable`, never a download on a
user's clock. `manage.py download_models` (or Modal's `download_models`) puts them there.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import Bound

if TYPE_CHECKING:
    import torch

MODELS_DIR_ENV = "AUTEUR_MODELS_DIR"
DEFAULT_MODELS_DIR = "/models"
MAX_SEED = 2**31 - 1
SEED_BOUND = Bound("integer", 0, MAX_SEED)  # seed_of() checks it


def models_dir() -> Path:
    return Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)


def missing_weights(folder: str, marker: str, job_type: str, root: Path | None = None) -> str | None:
    """Why `folder` under the models directory (`root`) cannot be loaded, or None when it holds
    `marker` (a file every copy of the model has)."""
    root = root or models_dir()
    if (root / folder / marker).is_file():
        return None
    return f"weights for {folder} not found in {root}; run manage.py download_models {job_type}"


def weights_path(folder: str, marker: str, job_type: str) -> Path:
    """The model's folder, or `model_unavailable` naming what to run to put it there."""
    missing = missing_weights(folder, marker, job_type)
    if missing is not None:
        raise PermanentGpuError("model_unavailable", missing)
    return models_dir() / folder


def weights_of(job_type: str) -> Path:
    """The folder of the model `job_type` runs, as its declaration names it (gpu_tasks/types.py)."""
    from gpu_tasks.types import get_spec

    declared = get_spec(job_type).weights
    if declared is None:
        raise PermanentGpuError("internal", f"{job_type} declares no weights folder")
    return weights_path(declared.folder, declared.marker, job_type)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device_name: str) -> torch.dtype:
    """Half precision on a GPU (the models' published dtype), full precision on a CPU."""
    import torch

    return torch.bfloat16 if device_name == "cuda" else torch.float32


def seed_of(payload: Any) -> int:
    """The payload's seed, or a fresh one; either way it is recorded with the output."""
    seed = payload.get("seed")
    if seed is None:
        return random.SystemRandom().randint(0, MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise PermanentGpuError("invalid_input", f"seed must be an integer from 0 to {MAX_SEED}")
    return seed


def generator(seed: int, device_name: str) -> torch.Generator:
    import torch

    return torch.Generator(device=device_name).manual_seed(seed)


@dataclass(frozen=True)
class Repo:
    """A hub repository to fetch into a model's folder: whole, or only `files` (glob patterns)."""

    id: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Release:
    """A weights file published as a release asset at an https `url` (not on the hub), fetched into
    a model's folder under its own name."""

    url: str

    @property
    def id(self) -> str:
        return self.url

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def repo_of(value: str | Repo | Release) -> Repo | Release:
    """An engine's REPOS entry: a repository id, a Repo naming the files it needs of it, or a Release."""
    return value if isinstance(value, Repo | Release) else Repo(value)


def download(folder: str, repo: str | Repo | Release, *, into: Path | None = None, token: str | None = None) -> Path:
    """Fetch a model repository (or release file) into its folder under the models directory.

    The one place allowed to reach the hub: an operator runs it once per model (manage.py
    download_models, or the Modal app's download_models), never an engine on a user's clock.
    """
    source = repo_of(repo)
    target = (into or models_dir()) / folder
    if isinstance(source, Release):
        _fetch_release(source, target)
    else:
        from huggingface_hub import snapshot_download

        snapshot_download(source.id, local_dir=str(target), token=token, allow_patterns=list(source.files) or None)
    readable_by_all(target)
    return target


def _fetch_release(release: Release, target: Path) -> None:
    """The release file into `target`, streamed to a temporary name and renamed when complete (a
    broken transfer leaves no half file an engine would try to load)."""
    import requests

    if not release.url.startswith("https://"):
        raise ValueError(f"a release is fetched over https only: {release.url}")
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".{release.filename}.part"
    with requests.get(release.url, stream=True, timeout=(10, 120)) as response:
        response.raise_for_status()
        with partial.open("wb") as out:
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)
    partial.replace(target / release.filename)


def readable_by_all(root: Path) -> None:
    """Let every uid read `root` (folders o+rx, files o+r): the local engines run as uids of their
    own (gpu_tasks.sandbox), and weights are no secret; nothing becomes writable."""
    for folder, _, files in os.walk(root):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)  # noqa: S103 - read and pass through, never write
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
