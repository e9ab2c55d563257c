"""The appearance feature extractor (F): a source crop -> a 3D feature volume the warping moves."""

from __future__ import annotations

import torch
from torch import nn

from gpu_tasks.engines.liveportrait.blocks import DownBlock, ResBlock3d, SameBlock2d


class AppearanceFeatureExtractor(nn.Module):
    """(B, 3, 256, 256) in [0, 1] -> (B, reshape_channel, reshape_depth, 64, 64).

    The 2D features' `max_features` channels are read as `reshape_channel` x `reshape_depth`, so
    the two must multiply to `max_features`.
    """

    def __init__(self, image_channel: int, block_expansion: int, num_down_blocks: int, max_features: int,
                 reshape_channel: int, reshape_depth: int, num_resblocks: int) -> None:  # fmt: skip
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise ValueError("reshape_channel * reshape_depth must equal max_features")
        self.reshape_channel, self.reshape_depth = reshape_channel, reshape_depth
        self.first = SameBlock2d(image_channel, block_expansion)
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], dims=2) for i in range(num_down_blocks))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        batch, _, height, width = out.shape
        return self.resblocks_3d(out.view(batch, self.reshape_channel, self.reshape_depth, height, width))
