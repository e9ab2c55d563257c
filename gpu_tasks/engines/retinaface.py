"""RetinaFace with a MobileNet-0.25 backbone: a face detector that also finds turned (three-quarter and
profile) faces, which OpenCV's frontal-face cascade in `faces.py` misses. It is here for lip sync, which
must find the speaker's face in every frame however the head is turned.

The network is written from biubug6/Pytorch_Retinaface (MIT licence; its author publishes the weights with
it) with the published parameter names, so the published checkpoint `mobilenet0.25_Final.pth` (about
1.7 MB, saved from DataParallel: every key starts with `module.`) loads into `RetinaFace` by key, strictly.
Putting that file in the models folder is `download_models`' job; this module only reads it.

`detect` takes an RGB uint8 frame and returns `Face`s (box, score, five landmarks) in that frame's
pixels, best first. The network itself reads BGR with the per-channel means (104, 117, 123) subtracted
and no other scaling, at any size: `detect` converts, and can shrink large frames first.

Importing this module imports torch: import it where a detector is built, not at a worker's start-up.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gpu_tasks.errors import PermanentGpuError

CHECKPOINT = "mobilenet0.25_Final.pth"
DDP_PREFIX = "module."  # the published checkpoint was saved from DataParallel

# Anchors: on the feature maps of strides 8, 16 and 32, two square anchors per cell of these sides
# in the network input's pixels, centred on the cell.
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
ANCHORS = 2
VARIANCES = (0.1, 0.2)  # the regressions' scales for centres and for log sizes, as trained
MEAN_BGR = (104.0, 117.0, 123.0)  # subtracted from the 0-255 BGR input, as trained

DETECT_SIDE = 640  # frames are searched at most this long on their long side (cost grows with the area)
PRE_NMS_TOP_K = 5000  # the best-scored candidates kept for suppression
KEEP_TOP_K = 750  # the most faces one frame yields


@dataclass(frozen=True)
class Face:
    """A face in a frame's pixels. `box` is (x0, y0, x1, y1), clipped to the frame; `landmarks` are the
    (x, y) of the two eyes, the nose tip and the two mouth corners, each pair with the one on the image's
    left first for an upright frontal face, and not clipped (a turned face's far eye may lie outside)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        """The box as (x, y, width, height), the form `faces.largest_face` returns."""
        x0, y0, x1, y1 = self.box
        return x0, y0, x1 - x0, y1 - y0


def _conv_bn(inp: int, out: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(leaky, inplace=True)
    )


def _conv_bn_no_relu(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out))


def _conv_bn_1x1(inp: int, out: int, leaky: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(leaky, inplace=True)
    )


def _conv_dw(inp: int, out: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """A depthwise 3x3 then a pointwise 1x1 convolution, each with batch norm and leaky ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(leaky, inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.LeakyReLU(leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNet V1's convolutions up to stride 32, returning the stride 8, 16 and 32 features with 8, 16
    and 32 times `width` channels (`width` is 8 in the 0.25 network)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, width, 2, leaky=0.1),
            _conv_dw(width, 2 * width, 1),
            _conv_dw(2 * width, 4 * width, 2),
            _conv_dw(4 * width, 4 * width, 1),
            _conv_dw(4 * width, 8 * width, 2),
            _conv_dw(8 * width, 8 * width, 1),
        )
        self.stage2 = nn.Sequential(
            _conv_dw(8 * width, 16 * width, 2), *(_conv_dw(16 * width, 16 * width, 1) for _ in range(5))
        )
        self.stage3 = nn.Sequential(_conv_dw(16 * width, 32 * width, 2), _conv_dw(32 * width, 32 * width, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stride8 = self.stage1(x)
        stride16 = self.stage2(stride8)
        return stride8, stride16, self.stage3(stride16)


class FPN(nn.Module):
    """Brings the three backbone outputs to `out_channels` and adds each coarser level, upsampled, into
    the finer one."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = _conv_bn_1x1(in_channels[0], out_channels, leaky)
        self.output2 = _conv_bn_1x1(in_channels[1], out_channels, leaky)
        self.output3 = _conv_bn_1x1(in_channels[2], out_channels, leaky)
        self.merge1 = _conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = _conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output1, output2, output3 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        output2 = self.merge2(output2 + F.interpolate(output3, size=output2.shape[-2:], mode="nearest"))
        output1 = self.merge1(output1 + F.interpolate(output2, size=output1.shape[-2:], mode="nearest"))
        return output1, output2, output3


class SSH(nn.Module):
    """The context module: 3x3, 5x5 and 7x7 receptive fields (stacked 3x3 convolutions) side by side."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        if out_channel % 4:
            raise ValueError("SSH needs a channel count divisible by 4")
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = _conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = _conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = _conv_bn_no_relu(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = _conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = _conv_bn_no_relu(out_channel // 4, out_channel // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5 = self.conv5X5_1(x)
        branches = (self.conv3X3(x), self.conv5X5_2(branch5), self.conv7x7_3(self.conv7X7_2(branch5)))
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """A 1x1 convolution predicting `values` numbers per anchor, as (B, H * W * anchors, values) in the
    anchors' order: row, column, then anchor."""

    def __init__(self, in_channels: int, anchors: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """The detector: backbone, FPN, one SSH per level and per-level heads. `forward` takes (B, 3, H, W)
    BGR minus `MEAN_BGR` and returns, for every anchor of `priors(H, W)`, the box regression (B, N, 4),
    the background/face logits (B, N, 2) and the landmark regression (B, N, 10).

    The defaults are the published MobileNet-0.25 network; `width` (the backbone's first channel count)
    and `channels` (the FPN's and heads') build the same layout at another size."""

    def __init__(self, width: int = 8, channels: int = 64) -> None:
        super().__init__()
        self.body = MobileNetV1(width)
        self.fpn = FPN((8 * width, 16 * width, 32 * width), channels)
        self.ssh1 = SSH(channels, channels)
        self.ssh2 = SSH(channels, channels)
        self.ssh3 = SSH(channels, channels)
        self.ClassHead = nn.ModuleList(Head(channels, ANCHORS, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(Head(channels, ANCHORS, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(Head(channels, ANCHORS, 10) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        features = (self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2]))
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return boxes, logits, landmarks


def load(path: str, device: str | torch.device) -> RetinaFace:
    """The published network from its checkpoint file, in eval mode on `device`."""
    file = Path(path)
    if not file.is_file():
        raise PermanentGpuError("model_unavailable", f"RetinaFace weights not found at {file}")
    model = RetinaFace()
    try:
        state: Any = torch.load(file, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ValueError(f"{file.name} holds no state dict")
        model.load_state_dict({str(key).removeprefix(DDP_PREFIX): value for key, value in state.items()}, strict=True)
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        # A partial download or another model's file: the fix is the same as for no file.
        raise PermanentGpuError("model_unavailable", f"RetinaFace weights unusable: {type(exc).__name__}") from exc
    return model.to(device).eval()


@functools.lru_cache(maxsize=8)
def priors(height: int, width: int) -> torch.Tensor:
    """(N, 4) anchors (cx, cy, w, h) in the pixels of a height x width input, in the order the heads
    predict them: level, row, column, anchor. A feature map has ceil(side / stride) cells per side, as the
    stride-2 convolutions (padding 1) give. Shared between calls: never modify it in place."""
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float32) + 0.5) * step,
            (torch.arange(cols, dtype=torch.float32) + 0.5) * step,
            indexing="ij",
        )
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        sides = torch.tensor(sizes, dtype=torch.float32).reshape(1, -1, 1).expand(rows * cols, -1, 2)
        levels.append(torch.cat([centres, sides], dim=-1).reshape(-1, 4))
    return torch.cat(levels)


def decode(loc: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(N, 4) boxes (x0, y0, x1, y1) from (N, 4) regressions: centre offsets in units of the anchor's size
    times VARIANCES[0], log size ratios times VARIANCES[1]."""
    centres = anchors[:, :2] + loc[:, :2] * VARIANCES[0] * anchors[:, 2:]
    sizes = anchors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def decode_landmarks(pre: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(N, 5, 2) points from (N, 10) regressions: offsets from the anchor's centre in units of its size
    times VARIANCES[0]."""
    return anchors[:, None, :2] + pre.reshape(-1, 5, 2) * VARIANCES[0] * anchors[:, None, 2:]


def suppress_overlaps(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first: a box is dropped when it
    overlaps a better-scored kept one by more than `iou`. Areas count the end pixel (+1 per side), as the
    published detector was evaluated."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        width = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        overlap = width * height
        order = rest[overlap / (areas[best] + areas[rest] - overlap) <= iou]
    return np.asarray(kept, dtype=np.int64)


def _network_input(frame_rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = frame_rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width)) if max_side else 1.0
    if scale >= 1.0:
        return frame_rgb
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized: np.ndarray = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
    return resized


def detect(
    model: nn.Module,
    frame_rgb: np.ndarray,
    *,
    threshold: float = 0.6,
    nms: float = 0.4,
    max_side: int | None = DETECT_SIDE,
) -> list[Face]:
    """The faces in an (H, W, 3) RGB uint8 frame scoring at least `threshold`, best first, after dropping
    each one that overlaps a better one by more than `nms` (intersection over union).

    `max_side`: search a copy at most this long on its long side (None: the frame as it is); boxes and
    landmarks come back in the frame's own pixels either way. A face is found from about 16 pixels
    across in the searched image."""
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame_rgb.shape} {frame_rgb.dtype}")
    height, width = frame_rgb.shape[:2]
    image = _network_input(frame_rgb, max_side)
    rows, cols = image.shape[:2]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32

    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    mean = torch.tensor(MEAN_BGR, device=device)
    batch = (pixels.flip(-1).float() - mean).permute(2, 0, 1)[None].to(dtype)
    anchors = priors(rows, cols).to(device)
    with torch.inference_mode():
        loc, logits, pre = model(batch)
        if loc.shape[1] != anchors.shape[0]:
            raise ValueError(f"the model predicts {loc.shape[1]} anchors, a {rows}x{cols} input has {anchors.shape[0]}")
        scores = logits[0].float().softmax(dim=-1)[:, 1]
        candidates = torch.nonzero(scores >= threshold).squeeze(1)
        candidates = candidates[scores[candidates].argsort(descending=True)][:PRE_NMS_TOP_K]
        boxes = decode(loc[0, candidates].float(), anchors[candidates]).cpu().numpy()
        points = decode_landmarks(pre[0, candidates].float(), anchors[candidates]).cpu().numpy()
        confidences = scores[candidates].cpu().numpy()

    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(points).all(axis=(1, 2))
    boxes, points, confidences = boxes[finite], points[finite], confidences[finite]
    kept = suppress_overlaps(boxes, confidences, nms)[:KEEP_TOP_K]
    scale = np.array([width / cols, height / rows])
    faces = []
    for index in kept:
        x0, y0 = np.clip(boxes[index, :2] * scale, 0, (width, height))
        x1, y1 = np.clip(boxes[index, 2:] * scale, 0, (width, height))
        if x1 <= x0 or y1 <= y0:
            continue  # wholly outside the frame
        landmarks = tuple((float(x), float(y)) for x, y in points[index] * scale)
        faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(confidences[index]), landmarks))
    return faces
