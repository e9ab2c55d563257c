"""Implicit keypoints: reading head pose in degrees, rotation matrices, and the transforms that move
a source face's keypoints by a driving face's motion."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The pose heads classify each angle into bins 3 degrees wide; their expectation, shifted so the
# middle of the range is 0, is the angle in degrees.
BIN_DEGREES, BIN_OFFSET = 3.0, 97.5


@dataclass(frozen=True)
class Motion:
    """What the motion extractor reads from a batch of B faces, N keypoints each."""

    kp: torch.Tensor  # (B, N, 3) canonical keypoints
    pitch: torch.Tensor  # (B, 1) degrees
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor  # (B, 3)
    exp: torch.Tensor  # (B, N, 3) expression offsets
    scale: torch.Tensor  # (B, 1)

    def rotation(self) -> torch.Tensor:
        return rotation_matrix(self.pitch, self.yaw, self.roll)

    def first(self) -> Motion:
        return self.select(slice(0, 1))

    def select(self, index: slice) -> Motion:
        return Motion(*(getattr(self, name)[index] for name in Motion.__dataclass_fields__))


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, bins) pose logits -> (B, 1) degrees."""
    bins = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    return ((torch.softmax(logits, dim=1) * bins).sum(dim=1) * BIN_DEGREES - BIN_OFFSET)[:, None]


def motion_of(raw: dict[str, torch.Tensor]) -> Motion:
    """The motion extractor's raw outputs in float32, poses in degrees, keypoints as (B, N, 3)."""
    out = {name: value.float() for name, value in raw.items()}
    batch = out["kp"].shape[0]
    return Motion(
        kp=out["kp"].reshape(batch, -1, 3),
        pitch=bins_to_degrees(out["pitch"]),
        yaw=bins_to_degrees(out["yaw"]),
        roll=bins_to_degrees(out["roll"]),
        t=out["t"],
        exp=out["exp"].reshape(batch, -1, 3),
        scale=out["scale"],
    )


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) matrix R such that row-vector keypoints rotate as `kp @ R` (pitch about x, yaw
    about y, roll about z, applied x first), from (B, 1) angles in degrees."""
    x, y, z = (angle.reshape(-1) * (math.pi / 180) for angle in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def matrix(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    rot_x = matrix(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    rot_y = matrix(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rot_z = matrix(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def posed(kp: torch.Tensor, rotation: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor,
          t: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """s * (kp R + exp) + t, with t applied in the image plane only (depth stays put)."""
    out = (kp @ rotation + exp) * scale[:, :, None]
    return torch.cat([out[..., :2] + t[:, None, :2], out[..., 2:]], dim=-1)


def source_keypoints(source: Motion) -> torch.Tensor:
    return posed(source.kp, source.rotation(), source.exp, source.scale, source.t)


def driven_keypoints(source: Motion, driving: Motion, first: Motion, *, relative: bool) -> torch.Tensor:
    """(B, N, 3) keypoints of the source face moved by each driving frame.

    Relative motion applies each frame's change since the first driving frame to the source's own
    pose, expression and scale, so the source keeps its identity's proportions and resting pose;
    absolute motion copies the driving pose and expression as they are.
    """
    batch = driving.kp.shape[0]
    if relative:
        rotation = driving.rotation() @ first.rotation().transpose(1, 2) @ source.rotation()
        exp = source.exp + (driving.exp - first.exp)
        scale = source.scale * (driving.scale / first.scale)
        t = source.t + (driving.t - first.t)
    else:
        rotation, exp, scale, t = driving.rotation(), driving.exp, source.scale.expand(batch, -1), driving.t
    return posed(source.kp.expand(batch, -1, -1), rotation, exp, scale, t)


# Expression keypoints that carry the eyes in the published 21-keypoint model, and how far one
# unit of LivePortrait's eyeball-direction control moves them (its editor offers -30..30 units).
LEFT_EYE, LEFT_LID, RIGHT_EYE, RIGHT_LID = 11, 13, 15, 16
EYEBALL_RANGE = 30.0
GAZE_TRAILING, GAZE_LEADING = 0.0007, 0.001  # the eye on the side the eyes turn to moves more
GAZE_UP = -0.001  # image y points down
LID_FOLLOW = 0.0003  # the lids rise and fall a little with the gaze


def eyeball_offsets(x: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """(B, N, 3) expression offsets that turn the eyes by (B,) amounts in eyeball-direction units:
    `x` positive to the image's right, `y` positive up. Looking down lowers the upper lids too,
    which is how LivePortrait's own eyeball editor moves them."""
    offsets = torch.zeros(x.shape[0], count, 3, dtype=x.dtype, device=x.device)
    right = x > 0
    offsets[:, LEFT_EYE, 0] = x * torch.where(right, GAZE_TRAILING, GAZE_LEADING)
    offsets[:, RIGHT_EYE, 0] = x * torch.where(right, GAZE_LEADING, GAZE_TRAILING)
    # The editor's vertical move: the gaze itself plus a blink of half the opposite amount.
    offsets[:, LEFT_EYE, 1] = offsets[:, RIGHT_EYE, 1] = y * GAZE_UP + (-y / 2) * GAZE_UP
    offsets[:, LEFT_LID, 1] = offsets[:, RIGHT_LID, 1] = (-y / 2) * LID_FOLLOW
    return offsets
