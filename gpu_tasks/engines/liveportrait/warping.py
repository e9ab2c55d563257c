"""The warping network (W): a dense 3D flow from the source keypoints to the driving ones, estimated
by a hourglass over per-keypoint motions, applied to the source feature volume."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gpu_tasks.engines.liveportrait.blocks import Hourglass, SameBlock2d, coordinate_grid, keypoint_gaussians

KP_VARIANCE = 0.01  # width of the keypoint heatmaps in the [-1, 1] volume


class DenseMotionNetwork(nn.Module):
    """Blends one rigid shift per keypoint (plus the identity, for the background) into a dense
    flow with a softmax mask, and predicts where the warped features are occluded."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int,
                 feature_channel: int, reshape_depth: int, compress: int,
                 estimate_occlusion_map: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map
            else None
        )

    def sparse_motions(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, D, H, W, 3): for each keypoint, where each driving position samples the source."""
        batch, _, depth, height, width = feature.shape
        identity = coordinate_grid(depth, height, width, like=kp_source)[None, None]
        shifted = identity - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
        return torch.cat([identity.expand(batch, 1, -1, -1, -1, -1), shifted], dim=1)

    def deformed_features(self, feature: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, C, D, H, W): the feature volume moved by each of the motions."""
        batch, channels, depth, height, width = feature.shape
        count = self.num_kp + 1
        repeated = (
            feature[:, None].expand(-1, count, -1, -1, -1, -1).reshape(batch * count, channels, depth, height, width)
        )
        sampled = F.grid_sample(repeated, motions.reshape(batch * count, depth, height, width, 3), align_corners=False)
        return sampled.view(batch, count, channels, depth, height, width)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> dict[str, Any]:
        batch, _, depth, height, width = feature.shape
        feature = F.relu(self.norm(self.compress(feature)))
        motions = self.sparse_motions(feature, kp_driving, kp_source)
        deformed = self.deformed_features(feature, motions)
        size = (depth, height, width)
        heatmap = keypoint_gaussians(kp_driving, size, KP_VARIANCE) - keypoint_gaussians(kp_source, size, KP_VARIANCE)
        background = torch.zeros(batch, 1, *size, dtype=heatmap.dtype, device=heatmap.device)
        heatmap = torch.cat([background, heatmap], dim=1)[:, :, None]
        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(batch, -1, *size))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask[:, :, None]).sum(dim=1).permute(0, 2, 3, 4, 1)
        out: dict[str, Any] = {"mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction.reshape(batch, -1, height, width)))
        return out


class WarpingNetwork(nn.Module):
    """Warps the (B, C, D, 64, 64) source volume to the driving keypoints -> (B, 2^n * E, 64, 64)."""

    def __init__(self, num_kp: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 reshape_channel: int, estimate_occlusion_map: bool,
                 dense_motion_params: dict[str, Any]) -> None:  # fmt: skip
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel, estimate_occlusion_map=estimate_occlusion_map,
            **dense_motion_params,
        )  # fmt: skip
        width = block_expansion * 2**num_down_blocks
        self.third = SameBlock2d(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> torch.Tensor:
        motion = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        out = F.grid_sample(feature_3d, motion["deformation"], align_corners=False)
        batch, channels, depth, height, width = out.shape
        out = self.fourth(self.third(out.view(batch, channels * depth, height, width)))
        occlusion = motion.get("occlusion_map")
        return out * occlusion if occlusion is not None else out
