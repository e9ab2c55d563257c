"""GFPGAN v1.4 blind face restoration (TencentARC): a U-Net reads a degraded, aligned face crop and
steers a StyleGAN2 decoder, through per-resolution scale and shift maps (spatial feature
transform), to draw the same face sharp.

Licences: GFPGAN's code is Apache-2.0. Its repository gives the published weights no licence of
their own: its LICENSE puts GFPGAN under Apache-2.0 "except for the third-party components listed"
there (StyleGAN2 code from stylegan2-pytorch with NVIDIA's licence, DFDNet code under CC BY-NC-SA
4.0), and its README says "GFPGAN is released under Apache License Version 2.0". The network here
is written for this project from the published architecture, without the compiled StyleGAN2 ops.

Weights: `GFPGANv1.4.pth` from the `TencentARC/GFPGAN` GitHub release `v1.3.4` (the repository's
README and inference script link the same file name under release `v1.3.0`); the state dict is
under `params_ema`. The project's download_models puts it in the models folder; this module only
reads a file that is already there.

The network is the "clean" v1.3/v1.4 architecture (`GFPGANv1Clean` with its published settings:
channel multiplier 2, 512-wide style codes, a separate style code per decoder layer straight
from the encoder, SFT on half of the decoder's channels). Module names follow the published
state dict's keys, so the published file loads by key with `strict=True`. The style MLP and the
U-Net's per-resolution RGB heads are trained but unused at inference; they are kept so the
checkpoint loads strictly.

Inference takes (N, S, S, 3) uint8 RGB crops aligned the way the FFHQ faces were (S = 512 for the
published weights), scales them to [-1, 1], and maps the output back from [-1, 1] to uint8. The
decoder's noise inputs are the fixed noise maps stored in the checkpoint rather than fresh noise
for each call (the reference's helper draws fresh noise), so the same face restores to the same
pixels on every call; across batch sizes a pixel on a rounding boundary may move by one level.

Importing this module imports torch: the network classes subclass `nn.Module`. Import it from
the engine that runs the model, not from code that only declares jobs.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpu_tasks.errors import PermanentGpuError

CHECKPOINT = "GFPGANv1.4.pth"
OUT_SIZE = 512  # side of the square face crops the published weights take and return
BATCH_SIZE = 8  # faces per forward pass: activation memory grows with it, at 512x512 per face
SLOPE = 0.2  # every leaky ReLU in the network


def channels_at(narrow: float, channel_multiplier: int) -> dict[int, int]:
    """Feature channels at each resolution. The U-Net runs at half the decoder's `narrow`, so with
    SFT on half of the decoder's channels each condition map matches the half it modulates."""
    wide = {4: 512, 8: 512, 16: 512, 32: 512}
    return {
        **{size: int(base * narrow) for size, base in wide.items()},
        **{size: int(base * channel_multiplier * narrow)
           for size, base in {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}.items()},
    }  # fmt: skip


class PixelNorm(nn.Module):
    """Scales each style code to unit root-mean-square over its features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """A bias-free conv whose weights are scaled per input channel by the style, then (when
    `demodulate`) renormalised per output channel; `upsample` doubles the input bilinearly first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        # A bias of one starts every style scale near one, so a fresh network passes features through.
        nn.init.constant_(self.modulation.bias, 1.0)
        fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / fan_in**0.5)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        weight = self.weight * self.modulation(style).view(batch, 1, channels, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, self.out_channels, 1, 1, 1)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        height, width = x.shape[2:]
        # One grouped conv runs every sample with its own modulated weights.
        out = F.conv2d(
            x.reshape(1, batch * channels, height, width),
            weight.view(batch * self.out_channels, channels, self.kernel_size, self.kernel_size),
            padding=self.kernel_size // 2,
            groups=batch,
        )
        return out.view(batch, self.out_channels, *out.shape[2:])


class StyleConv(nn.Module):
    """Modulated 3x3 conv, scaled noise, bias and leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool = False) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # The sqrt(2) gain keeps the leaky ReLU's output at the variance the weights were trained for.
        out = self.modulated_conv(x, style) * 2**0.5 + self.weight * noise + self.bias
        return F.leaky_relu(out, SLOPE)


class ToRGB(nn.Module):
    """Features to an RGB residual, added to the previous resolution's image (doubled bilinearly)."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is None:
            return out
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2, mode="bilinear", align_corners=False)
        return out + skip


class ConstantInput(nn.Module):
    """The learned 4x4 map the decoder starts from."""

    def __init__(self, num_channel: int, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, -1, -1, -1)


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2's synthesis network with spatial feature transform: after the first conv of each
    resolution, the second half of the channels is scaled and shifted by maps from the U-Net."""

    def __init__(self, out_size: int, num_style_feat: int, num_mlp: int, channel_multiplier: int,
                 narrow: float) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(num_mlp):
            layers += [nn.Linear(num_style_feat, num_style_feat), nn.LeakyReLU(SLOPE)]
        self.style_mlp = nn.Sequential(*layers)  # maps noise to style codes; unused when restoring

        channels = channels_at(narrow, channel_multiplier)
        log_size = out_size.bit_length() - 1
        self.num_layers = (log_size - 2) * 2 + 1  # style convs, the 4x4 one included
        self.num_latent = log_size * 2 - 2  # style codes: one per style conv and one per RGB head
        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], num_style_feat)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)

        self.noises = nn.Module()
        for index in range(self.num_layers):
            side = 2 ** ((index + 5) // 2)  # 4 for the first conv, then two maps per resolution from 8
            self.noises.register_buffer(f"noise{index}", torch.randn(1, 1, side, side))
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for level in range(3, log_size + 1):
            out_channels = channels[2**level]
            self.style_convs.append(StyleConv(in_channels, out_channels, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat))
            in_channels = out_channels

    def forward(self, latent: torch.Tensor, conditions: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """(B, 3, S, S) image from (B, num_latent, F) style codes and one (scale, shift) pair per
        resolution from 8 up."""
        noise = [getattr(self.noises, f"noise{index}") for index in range(self.num_layers)]
        out = self.style_conv1(self.constant_input(latent.shape[0]), latent[:, 0], noise[0])
        image = self.to_rgb1(out, latent[:, 1])
        for level, (scale, shift) in enumerate(conditions):
            at = 2 * level + 1
            out = self.style_convs[at - 1](out, latent[:, at], noise[at])
            kept, modulated = out.split(out.shape[1] // 2, dim=1)
            out = torch.cat([kept, modulated * scale + shift], dim=1)
            out = self.style_convs[at](out, latent[:, at + 1], noise[at + 1])
            image = self.to_rgbs[level](out, latent[:, at + 2], image)
        return image


class ResBlock(nn.Module):
    """Residual block that halves (`down`) or doubles (`up`) height and width bilinearly."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = {"down": 0.5, "up": 2.0}[mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), SLOPE)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu(self.conv2(out), SLOPE)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return out + self.skip(x)


class GFPGANv1Clean(nn.Module):
    """The restoration network: (B, 3, S, S) face crops in [-1, 1] to restored crops, unclamped.

    `narrow` scales every channel count (the published weights use 1) and `out_size` must be a
    power of two from 8 to 1024, so smaller copies of the same layout can be built for tests."""

    def __init__(self, out_size: int = OUT_SIZE, num_style_feat: int = 512, channel_multiplier: int = 2,
                 narrow: float = 1.0, num_mlp: int = 8) -> None:  # fmt: skip
        super().__init__()
        if out_size < 8 or out_size > 1024 or out_size & (out_size - 1):
            raise ValueError(f"out_size must be a power of two from 8 to 1024, not {out_size}")
        decoder, unet = channels_at(narrow, channel_multiplier), channels_at(narrow * 0.5, channel_multiplier)
        log_size = out_size.bit_length() - 1
        sizes = [2**level for level in range(3, log_size + 1)]  # 8 .. out_size
        if any(decoder[size] != 2 * unet[size] for size in sizes):
            raise ValueError(f"narrow={narrow} rounds the U-Net's channels to other than half the decoder's")
        self.out_size = out_size
        self.num_style_feat = num_style_feat

        self.conv_body_first = nn.Conv2d(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList(
            ResBlock(unet[size], unet[size // 2], mode="down") for size in reversed(sizes)
        )
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, 1, 1)
        self.conv_body_up = nn.ModuleList(ResBlock(unet[size // 2], unet[size], mode="up") for size in sizes)
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[size], 3, 1) for size in sizes)  # trained heads, unused here
        num_latent = log_size * 2 - 2
        self.final_linear = nn.Linear(unet[4] * 4 * 4, num_latent * num_style_feat)
        self.stylegan_decoder = StyleGAN2GeneratorCSFT(out_size, num_style_feat, num_mlp, channel_multiplier, narrow)
        self.condition_scale = nn.ModuleList(self._condition(unet[size]) for size in sizes)
        self.condition_shift = nn.ModuleList(self._condition(unet[size]) for size in sizes)

    @staticmethod
    def _condition(channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(SLOPE), nn.Conv2d(channels, channels, 3, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.conv_body_first(x), SLOPE)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)
        feat = F.leaky_relu(self.final_conv(feat), SLOPE)
        latent = self.final_linear(feat.flatten(1)).view(x.shape[0], -1, self.num_style_feat)
        conditions = []
        for skip, block, scale, shift in zip(
            reversed(skips), self.conv_body_up, self.condition_scale, self.condition_shift, strict=True
        ):
            feat = block(feat + skip)
            conditions.append((scale(feat), shift(feat)))
        return self.stylegan_decoder(latent, conditions)


def _state_dict(loaded: Any) -> Mapping[str, Any]:
    """The weights inside a checkpoint: the EMA copy when it has one, as the published file does."""
    if not isinstance(loaded, Mapping):
        raise ValueError("the checkpoint holds no state dict")
    for key in ("params_ema", "params"):
        if key in loaded:
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping):
        raise ValueError("the checkpoint's parameters are not a state dict")
    return loaded


def load(path: str, device: str | torch.device, *, out_size: int = OUT_SIZE, num_style_feat: int = 512,
         channel_multiplier: int = 2, narrow: float = 1.0, num_mlp: int = 8) -> GFPGANv1Clean:  # fmt: skip
    """The network with the checkpoint at `path`, in eval mode on `device`. The keyword arguments
    are the published sizes; a checkpoint of other sizes fails to load unless they are given."""
    file = Path(path)
    if not file.is_file():
        raise PermanentGpuError("model_unavailable", f"GFPGAN weights not found: {file.name}")
    try:
        state = _state_dict(torch.load(file, map_location="cpu", weights_only=True))
        # Built without storage: every parameter is replaced by the checkpoint's tensor, so
        # drawing random initial weights for the published network's 80 M parameters is wasted.
        with torch.device("meta"):
            model = GFPGANv1Clean(out_size, num_style_feat, channel_multiplier, narrow, num_mlp)
        model.load_state_dict(state, strict=True, assign=True)
    except (KeyError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        # A partial download or another model's file: the fix is the same as for no file.
        raise PermanentGpuError("model_unavailable", f"GFPGAN weights unusable: {type(exc).__name__}") from exc
    return model.to(device=device, dtype=torch.float32).eval()


def restore(model: GFPGANv1Clean, faces: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Restored (N, S, S, 3) uint8 RGB face crops for (N, S, S, 3) uint8 RGB aligned crops at the
    model's `out_size`, BATCH_SIZE faces per forward pass."""
    size = model.out_size
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
        raise ValueError(f"faces must be (N, {size}, {size}, 3) uint8, not {faces.shape} {faces.dtype}")
    device = next(model.parameters()).device
    restored = np.empty_like(faces)
    with torch.inference_mode():
        for start in range(0, len(faces), batch_size):
            batch = torch.from_numpy(faces[start : start + batch_size]).to(device).permute(0, 3, 1, 2)
            # The scaling the weights were trained with: [0, 255] -> [0, 1] -> mean 0.5, std 0.5.
            out = model((batch.float() / 255.0 - 0.5) / 0.5)
            out = (out.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0
            restored[start : start + batch_size] = out.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return restored
