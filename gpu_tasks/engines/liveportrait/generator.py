"""The SPADE generator (G): decodes warped features into the animated face, conditioned on them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_tasks.engines.liveportrait.blocks import SPADEResnetBlock

MIDDLE_BLOCKS = 6


class SPADEDecoder(nn.Module):
    """(B, C, 64, 64) warped features -> (B, 3, 256 * upscale, 256 * upscale) in [0, 1].

    `spade_hidden` is the SPADE layers' hidden width (fixed at 128 in the published model).
    """

    def __init__(self, upscale: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 out_channels: int, spade_hidden: int) -> None:  # fmt: skip
        super().__init__()
        channels = min(max_features, block_expansion * 2**num_down_blocks)
        self.fc = nn.Conv2d(channels, 2 * channels, kernel_size=3, padding=1)
        for i in range(MIDDLE_BLOCKS):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * channels, 2 * channels, channels, spade_hidden))
        self.up_0 = SPADEResnetBlock(2 * channels, channels, channels, spade_hidden)
        self.up_1 = SPADEResnetBlock(channels, out_channels, channels, spade_hidden)
        self.up = nn.Upsample(scale_factor=2)
        self.conv_img: nn.Module
        if upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, kernel_size=3, padding=1)
        else:
            # A sub-pixel conv doubles the output to 512x512.
            self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 4, kernel_size=3, padding=1), nn.PixelShuffle(2))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(MIDDLE_BLOCKS):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_1(self.up(self.up_0(self.up(x), feature)), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
