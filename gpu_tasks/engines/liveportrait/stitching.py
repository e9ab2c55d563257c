"""The stitching and retargeting MLPs (S, R): keypoint offsets that keep the animated face aligned
with the source crop's border (stitching) or set how open the eyes and lips are (retargeting)."""

from __future__ import annotations

import itertools

import torch
from torch import nn


class StitchingRetargetingNetwork(nn.Module):
    """Linear layers with ReLU between them, under `mlp` as the published checkpoint's keys expect."""

    def __init__(self, input_size: int, hidden_sizes: list[int], output_size: int) -> None:
        super().__init__()
        sizes = [input_size, *hidden_sizes]
        layers: list[nn.Module] = []
        for size_in, size_out in itertools.pairwise(sizes):
            layers += [nn.Linear(size_in, size_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(x)
        return out
