"""Building blocks shared by LivePortrait's networks: conv blocks, the 3D hourglass, SPADE, and the
coordinate grids keypoints live on. Attribute names follow the published checkpoints' keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def coordinate_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z) in [-1, 1]: x to the right, y down, z inwards, the axes
    keypoints and `grid_sample` share."""

    def axis(size: int) -> torch.Tensor:
        return torch.arange(size, dtype=like.dtype, device=like.device) / (size - 1) * 2 - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_gaussians(kp: torch.Tensor, size: tuple[int, int, int], variance: float) -> torch.Tensor:
    """(B, K, D, H, W) Gaussian bumps centred on each of the (B, K, 3) keypoints."""
    grid = coordinate_grid(*size, like=kp)  # (D, H, W, 3)
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


class SameBlock2d(nn.Module):
    """Conv, batch norm and (leaky) ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1,
                 lrelu: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.ac: nn.Module = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock(nn.Module):
    """Conv, batch norm, ReLU, then halve height and width (depth, in 3D, is kept)."""

    def __init__(self, in_features: int, out_features: int, dims: int) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.conv = conv(in_features, out_features, kernel_size=3, padding=1)
        self.norm = norm(out_features, affine=True)
        self.pool: nn.Module = nn.AvgPool2d(kernel_size=(2, 2)) if dims == 2 else nn.AvgPool3d(kernel_size=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock3d(nn.Module):
    """Doubles height and width (nearest), then conv, batch norm, ReLU."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0)))))


class ResBlock3d(nn.Module):
    """Pre-activation residual block on a 3D feature volume."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(features, features, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(features, affine=True)
        self.norm2 = nn.BatchNorm3d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


def _hourglass_width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock(
                in_features if i == 0 else _hourglass_width(block_expansion, max_features, i),
                _hourglass_width(block_expansion, max_features, i + 1),
                dims=3,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # Every level but the deepest also receives the encoder's skip connection.
            widen = 1 if i == num_blocks - 1 else 2
            blocks.append(
                UpBlock3d(
                    widen * _hourglass_width(block_expansion, max_features, i + 1),
                    _hourglass_width(block_expansion, max_features, i),
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters, affine=True)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """A 3D U-Net: `num_blocks` levels down, back up with skips; out_filters channels out."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class SPADE(nn.Module):
    """Instance norm whose scale and shift are predicted per pixel from a conditioning map."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(F.interpolate(segmap, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Residual block of spectral-normalised convs, each after a SPADE norm (the published
    generator uses spectral norm everywhere, so its checkpoint stores weight_orig/u/v)."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1))
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx
