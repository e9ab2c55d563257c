"""Building LivePortrait's networks from a config, loading their state dicts by key, and the
inference steps the engines chain: read motion, extract appearance, stitch, retarget, warp and decode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gpu_tasks.engines.liveportrait import CHECKPOINTS, RETARGETING_KEYS
from gpu_tasks.engines.liveportrait.appearance import AppearanceFeatureExtractor
from gpu_tasks.engines.liveportrait.generator import SPADEDecoder
from gpu_tasks.engines.liveportrait.keypoints import Motion, motion_of
from gpu_tasks.engines.liveportrait.motion import MotionExtractor
from gpu_tasks.engines.liveportrait.stitching import StitchingRetargetingNetwork
from gpu_tasks.engines.liveportrait.warping import WarpingNetwork

if TYPE_CHECKING:
    import numpy as np

DDP_PREFIX = "module."  # the retargeting checkpoint was saved from DistributedDataParallel


@dataclass(frozen=True)
class Networks:
    appearance: AppearanceFeatureExtractor
    motion: MotionExtractor
    warping: WarpingNetwork
    generator: SPADEDecoder
    stitching: StitchingRetargetingNetwork
    lip: StitchingRetargetingNetwork
    eye: StitchingRetargetingNetwork
    input_size: int  # side of the square face crops the networks take
    device: str
    half: torch.dtype | None  # autocast dtype for the conv nets on a GPU; None on a CPU

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.half is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.half)

    def read_motion(self, images: torch.Tensor) -> Motion:
        with torch.inference_mode(), self.autocast():
            return motion_of(self.motion(images.to(self.device)))

    def appearance_of(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast():
            return self.appearance(image.to(self.device)).float()

    def stitch(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """Driving keypoints nudged so the animated crop's border lines up with the source's."""
        batch, count = kp_driving.shape[:2]
        features = torch.cat([kp_source.expand(batch, -1, -1).reshape(batch, -1), kp_driving.reshape(batch, -1)], 1)
        with torch.inference_mode():
            delta = self.stitching(features)
        shift = delta[:, 3 * count : 3 * count + 2]
        moved = kp_driving + delta[:, : 3 * count].reshape(batch, count, 3)
        return torch.cat([moved[..., :2] + shift[:, None], moved[..., 2:]], dim=-1)

    def retarget_eyes(self, kp_source: torch.Tensor, eye_ratios: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) keypoint offsets that open or close the eyes to `eye_ratios` (B, 3):
        the source's two eye-openness ratios and the wanted one."""
        batch, count = kp_source.shape[:2]
        with torch.inference_mode():
            return self.eye(torch.cat([kp_source.reshape(batch, -1), eye_ratios], dim=1)).reshape(batch, count, 3)

    def render(self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """(B, 3, 2S, 2S) in [0, 1] for S-pixel crops: the source volume warped to each driving keypoint set."""
        batch = kp_driving.shape[0]
        with torch.inference_mode(), self.autocast():
            warped = self.warping(feature.expand(batch, -1, -1, -1, -1), kp_driving, kp_source.expand(batch, -1, -1))
            return self.generator(warped).float()


def _state_dict(path: Path) -> dict[str, Any]:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path.name} holds no state dict")
    return dict(loaded)


def _loaded(module: nn.Module, state: Mapping[str, Any], device: str) -> Any:
    module.load_state_dict({key.removeprefix(DDP_PREFIX): value for key, value in state.items()}, strict=True)
    return module.to(device).eval()


def build(config: Mapping[str, Any]) -> dict[str, nn.Module]:
    """Every network, randomly initialised, keyed by its config and checkpoint name."""
    retargeting = config["stitching_retargeting_module"]
    return {
        "appearance_feature_extractor": AppearanceFeatureExtractor(**config["appearance_feature_extractor"]),
        "motion_extractor": MotionExtractor(**config["motion_extractor"]),
        "warping_module": WarpingNetwork(**config["warping_module"]),
        "spade_generator": SPADEDecoder(**config["spade_generator"]),
        **{name: StitchingRetargetingNetwork(**retargeting[name]) for name in RETARGETING_KEYS},
    }


def save(modules: Mapping[str, nn.Module], folder: Path) -> None:
    """State dicts in the published files and layout (the inverse of `load`)."""
    for name, relative in CHECKPOINTS.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        if name == "stitching_retargeting_module":
            state = {key: modules[part].state_dict() for part, key in RETARGETING_KEYS.items()}
            torch.save(state, folder / relative)
        else:
            torch.save(modules[name].state_dict(), folder / relative)


def load(folder: Path, config: Mapping[str, Any], device: str, half: torch.dtype | None) -> Networks:
    modules = build(config)
    for name, relative in CHECKPOINTS.items():
        if name != "stitching_retargeting_module":
            _loaded(modules[name], _state_dict(folder / relative), device)
    retargeting = _state_dict(folder / CHECKPOINTS["stitching_retargeting_module"])
    for part, key in RETARGETING_KEYS.items():
        _loaded(modules[part], retargeting[key], device)
    return Networks(
        appearance=modules["appearance_feature_extractor"],  # type: ignore[arg-type]
        motion=modules["motion_extractor"],  # type: ignore[arg-type]
        warping=modules["warping_module"],  # type: ignore[arg-type]
        generator=modules["spade_generator"],  # type: ignore[arg-type]
        stitching=modules["stitching"],  # type: ignore[arg-type]
        lip=modules["lip"],  # type: ignore[arg-type]
        eye=modules["eye"],  # type: ignore[arg-type]
        input_size=int(config["input_size"]),
        device=device,
        half=half,
    )


def batches(count: int, size: int) -> Iterator[slice]:
    for start in range(0, count, size):
        yield slice(start, min(count, start + size))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    pixels: np.ndarray = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return pixels
