"""The motion extractor (M): a ConvNeXt-V2 backbone whose heads read, from any face crop, the
canonical keypoints, head pose (as bins), translation, scale and expression offsets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an (N, C, H, W) tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation over (N, H, W, C): ConvNeXt-V2's inter-channel competition."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        relative = spatial / (spatial.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * relative) + self.beta + x


class Block(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, 4x pointwise MLP with GELU and GRN, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dwconv(x).permute(0, 2, 3, 1)
        out = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(out)))))
        return x + out.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """Four stages (a 4x stem, then 2x downsamplings), global average pool, one linear head per output."""

    def __init__(self, depths: list[int], dims: list[int], num_kp: int, num_bins: int, in_chans: int = 3) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*(Block(dims[i]) for _ in range(depths[i]))) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        features = self.norm(x.mean([-2, -1]))
        return {
            "kp": self.fc_kp(features),
            "pitch": self.fc_pitch(features),
            "yaw": self.fc_yaw(features),
            "roll": self.fc_roll(features),
            "t": self.fc_t(features),
            "exp": self.fc_exp(features),
            "scale": self.fc_scale(features),
        }


class MotionExtractor(nn.Module):
    """The backbone sits under `detector`, as the published checkpoint's keys expect."""

    def __init__(self, num_kp: int, depths: list[int], dims: list[int], num_bins: int) -> None:
        super().__init__()
        self.detector = ConvNeXtV2(depths=depths, dims=dims, num_kp=num_kp, num_bins=num_bins)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        result: dict[str, torch.Tensor] = self.detector(x)
        return result
