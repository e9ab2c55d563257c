"""RetinaFace (MobileNet-0.25): the published checkpoint's key layout, loading a file laid out as the
published one, and the anchors, decoding and suppression around the network, checked exactly on
constructed network outputs. No weights are downloaded: the network itself runs with random weights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gpu_tasks.engines import retinaface
from gpu_tasks.engines.retinaface import Face, RetinaFace
from gpu_tasks.errors import PermanentGpuError

# The published network's state dict, as the reference definition builds it: 300 entries (the backbone's
# classifier is not part of the detector), every batch norm with its num_batches_tracked.
KEY_COUNT = 300
SHAPES = {
    "body.stage1.0.0.weight": (8, 3, 3, 3),
    "body.stage1.0.1.running_var": (8,),
    "body.stage1.1.0.weight": (8, 1, 3, 3),
    "body.stage1.1.3.weight": (16, 8, 1, 1),
    "body.stage2.0.3.weight": (128, 64, 1, 1),
    "body.stage3.1.4.num_batches_tracked": (),
    "fpn.output1.0.weight": (64, 64, 1, 1),
    "fpn.output3.0.weight": (64, 256, 1, 1),
    "fpn.merge2.0.weight": (64, 64, 3, 3),
    "ssh1.conv3X3.0.weight": (32, 64, 3, 3),
    "ssh2.conv5X5_1.0.weight": (16, 64, 3, 3),
    "ssh3.conv7x7_3.1.bias": (16,),
    "ClassHead.0.conv1x1.weight": (4, 64, 1, 1),
    "BboxHead.1.conv1x1.bias": (8,),
    "LandmarkHead.2.conv1x1.weight": (20, 64, 1, 1),
}


@pytest.fixture(scope="module")
def network() -> RetinaFace:
    torch.manual_seed(0)
    return RetinaFace().eval()


def test_state_dict_has_the_published_keys_and_shapes(network: RetinaFace) -> None:
    state = network.state_dict()
    assert len(state) == KEY_COUNT
    assert {key: tuple(state[key].shape) for key in SHAPES} == SHAPES
    assert next(iter(state)) == "body.stage1.0.0.weight"
    assert list(state)[-1] == "LandmarkHead.2.conv1x1.bias"
    assert not [key for key in state if key.startswith(("body.fc", "body.avg"))]


def test_a_file_in_the_published_layout_loads_strictly_and_detects_inside_the_frame(
    tmp_path: Path, network: RetinaFace
) -> None:
    path = tmp_path / retinaface.CHECKPOINT
    torch.save({f"module.{key}": value for key, value in network.state_dict().items()}, path)

    model = retinaface.load(str(path), "cpu")

    assert not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in network.state_dict().items())
    height, width = 360, 640
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # A threshold of 0 keeps every anchor as a candidate, so random weights still yield faces to check.
    for max_side in (None, 200):
        faces = retinaface.detect(model, frame, threshold=0.0, max_side=max_side)
        assert 0 < len(faces) <= retinaface.KEEP_TOP_K
        assert all(isinstance(face, Face) and len(face.landmarks) == 5 for face in faces)
        assert all(0 <= f.box[0] < f.box[2] <= width and 0 <= f.box[1] < f.box[3] <= height for f in faces)
        assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_a_missing_or_foreign_weights_file_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PermanentGpuError) as missing:
        retinaface.load(str(tmp_path / retinaface.CHECKPOINT), "cpu")
    assert missing.value.code == "model_unavailable" and not missing.value.retryable

    foreign = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(PermanentGpuError) as unusable:
        retinaface.load(str(foreign), "cpu")
    assert unusable.value.code == "model_unavailable"


def test_anchors_cover_each_stride_with_two_sizes_per_cell() -> None:
    anchors = retinaface.priors(640, 640)
    assert anchors.shape == (16800, 4)  # (80 * 80 + 40 * 40 + 20 * 20) cells, 2 anchors each
    assert anchors[:3].tolist() == [[4, 4, 16, 16], [4, 4, 32, 32], [12, 4, 16, 16]]
    assert anchors[12800].tolist() == [8, 8, 64, 64]  # the first stride-16 cell
    assert anchors[-1].tolist() == [624, 624, 512, 512]


def test_anchor_count_matches_the_network_output_for_sides_not_divisible_by_the_strides(
    network: RetinaFace,
) -> None:
    with torch.inference_mode():
        boxes, logits, landmarks = network(torch.zeros(1, 3, 100, 50))
    count = 2 * (13 * 7 + 7 * 4 + 4 * 2)  # ceil(side / stride) cells per side
    assert retinaface.priors(100, 50).shape[0] == boxes.shape[1] == logits.shape[1] == landmarks.shape[1] == count


def test_decode_of_a_zero_regression_is_the_anchor_itself() -> None:
    anchors = torch.tensor([[36.0, 28.0, 32.0, 16.0], [4.0, 4.0, 16.0, 16.0]])

    assert retinaface.decode(torch.zeros(2, 4), anchors).tolist() == [[20, 20, 52, 36], [-4, -4, 12, 12]]
    assert retinaface.decode_landmarks(torch.zeros(2, 10), anchors).tolist() == [[[36, 28]] * 5, [[4, 4]] * 5]
    # Centre offsets are in tenths of the anchor's size, log size ratios in fifths.
    moved = retinaface.decode(torch.tensor([[1.0, -2.0, 5 * math.log(2), 0.0]]), anchors[:1])
    assert moved[0].tolist() == pytest.approx([7.2, 16.8, 71.2, 32.8])


def test_suppression_counts_end_pixels_and_keeps_the_best_of_each_overlap() -> None:
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [20, 20, 29, 29], [1, 1, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], dtype=np.float32)

    # The first two overlap by 5 x 10 of 150 pixels (1/3): 2/7 without counting the end pixels.
    assert retinaface.suppress_overlaps(boxes[:2], scores[:2], 0.3).tolist() == [0]
    assert retinaface.suppress_overlaps(boxes[:2], scores[:2], 0.34).tolist() == [0, 1]
    assert retinaface.suppress_overlaps(boxes, scores, 0.4).tolist() == [3, 1, 2]


class FixedOutputs(nn.Module):
    """Stands in for the network: returns chosen regressions and logits, and keeps the input it saw."""

    def __init__(self, loc: torch.Tensor, logits: torch.Tensor, landmarks: torch.Tensor) -> None:
        super().__init__()
        self.outputs = (loc[None], logits[None], landmarks[None])
        self.seen = torch.empty(0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.seen = x
        return self.outputs


# On a 64 x 64 input: anchor 57 is the 32-pixel one of the stride-8 cell at row 3, column 4 (centre (36, 28)),
# anchor 56 the 16-pixel one of the same cell, and anchor 0 the 16-pixel one of the top-left cell (centre (4, 4)).
FACE_LOC = [0.5, -0.25, 5 * math.log(1.5), 0.0]  # centre (37.6, 27.2), 48 x 32
FACE_BOX = (13.6, 11.2, 61.6, 43.2)
FACE_OFFSETS = [-2.0, -1.0, 2.0, -1.0, 0.0, 0.5, -1.5, 2.0, 1.5, 2.0]  # times 3.2 pixels from (36, 28)
FACE_POINTS = [(29.6, 24.8), (42.4, 24.8), (36.0, 29.6), (31.2, 34.4), (40.8, 34.4)]
DUPLICATE_LOC = [1.5, -0.5, 5 * math.log(3), 5 * math.log(2)]  # from the 16-pixel anchor: FACE_BOX 0.8 px right


def fixed_outputs(side: int) -> FixedOutputs:
    count = retinaface.priors(side, side).shape[0]
    loc, landmarks = torch.zeros(count, 4), torch.zeros(count, 10)
    logits = torch.zeros(count, 2)
    logits[:, 1] = -4.0  # background everywhere else
    loc[57], landmarks[57], logits[57, 1] = torch.tensor(FACE_LOC), torch.tensor(FACE_OFFSETS), 4.0
    loc[56], logits[56, 1] = torch.tensor(DUPLICATE_LOC), 2.0
    logits[0, 1] = math.log(0.7 / 0.3)  # a separate face, partly outside the frame
    logits[1, 1] = math.log(0.59 / 0.41)  # below the default threshold
    return FixedOutputs(loc, logits, landmarks)


def score(logit: float) -> float:
    return 1 / (1 + math.exp(-logit))


def test_detect_decodes_a_confident_anchor_and_drops_its_lower_scored_duplicate() -> None:
    model = fixed_outputs(64)
    frame = np.zeros((64, 64, 3), dtype=np.uint8)

    faces = retinaface.detect(model, frame)

    assert [f.score for f in faces] == pytest.approx([score(4.0), 0.7])
    face, corner = faces
    assert face.box == pytest.approx(FACE_BOX, abs=1e-4)
    assert [point for pair in face.landmarks for point in pair] == pytest.approx(
        [point for pair in FACE_POINTS for point in pair], abs=1e-4
    )
    assert face.xywh == pytest.approx((13.6, 11.2, 48.0, 32.0), abs=1e-4)
    # The corner anchor's box (-4, -4, 12, 12) is clipped to the frame; its landmarks are not.
    assert corner.box == (0.0, 0.0, 12.0, 12.0)
    assert corner.landmarks == ((4.0, 4.0),) * 5

    everything = retinaface.detect(model, frame, threshold=0.5, nms=0.99)
    assert [f.score for f in everything] == pytest.approx([score(4.0), score(2.0), 0.7, 0.59])
    assert everything[1].box == pytest.approx((14.4, 11.2, 62.4, 43.2), abs=1e-4)
    assert everything[3].box == (0.0, 0.0, 20.0, 20.0)


def test_detect_feeds_bgr_minus_the_means_and_maps_a_shrunk_frame_back() -> None:
    model = fixed_outputs(64)
    frame = np.zeros((128, 128, 3), dtype=np.uint8)
    frame[...] = (10, 20, 30)

    faces = retinaface.detect(model, frame, max_side=64)

    assert model.seen.shape == (1, 3, 64, 64)
    assert model.seen[0, :, 5, 7].tolist() == [30 - 104, 20 - 117, 10 - 123]
    assert faces[0].box == pytest.approx([2 * value for value in FACE_BOX], abs=1e-4)
    assert faces[0].landmarks[2] == pytest.approx((72.0, 59.2), abs=1e-4)
    assert faces[1].box == (0.0, 0.0, 24.0, 24.0)


def test_detect_takes_only_rgb_uint8_frames() -> None:
    with pytest.raises(ValueError):
        retinaface.detect(fixed_outputs(64), np.zeros((64, 64), dtype=np.uint8))
