"""GFPGAN v1.4 face restoration on a tiny random-weight copy of the network (the same classes at a
64-pixel crop size and a thirty-second of the channels), and the published checkpoint's key layout
built without storage at the published size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.engines import gfpgan
from gpu_tasks.errors import PermanentGpuError

# The state dict of the published GFPGANv1.4.pth (`params_ema`): every name and shape here was
# checked against the reference implementation built at the published sizes.
PUBLISHED_KEYS = 285
PUBLISHED_VALUES = 87_143_276  # parameters and the stored noise maps
PUBLISHED_SHAPES = {
    "conv_body_first.weight": (32, 3, 1, 1),
    "conv_body_down.0.conv1.weight": (32, 32, 3, 3),
    "conv_body_down.6.skip.weight": (256, 256, 1, 1),
    "final_conv.weight": (256, 256, 3, 3),
    "final_linear.weight": (8192, 4096),
    "conv_body_up.6.conv2.weight": (32, 64, 3, 3),
    "toRGB.0.weight": (3, 256, 1, 1),
    "condition_scale.6.2.weight": (32, 32, 3, 3),
    "condition_shift.0.0.bias": (256,),
    "stylegan_decoder.style_mlp.15.weight": (512, 512),
    "stylegan_decoder.constant_input.weight": (1, 512, 4, 4),
    "stylegan_decoder.style_conv1.modulated_conv.weight": (1, 512, 512, 3, 3),
    "stylegan_decoder.style_convs.0.weight": (1,),
    "stylegan_decoder.style_convs.13.modulated_conv.modulation.weight": (64, 512),
    "stylegan_decoder.to_rgb1.bias": (1, 3, 1, 1),
    "stylegan_decoder.to_rgbs.6.modulated_conv.weight": (1, 3, 64, 1, 1),
    "stylegan_decoder.noises.noise14": (1, 1, 512, 512),
}


def tiny_network() -> gfpgan.GFPGANv1Clean:
    """Random weights with every parameter nudged off its initial value, so the noise strengths and
    biases (zero at initialisation) take part."""
    import torch

    torch.manual_seed(0)
    network = gfpgan.GFPGANv1Clean(out_size=64, num_style_feat=16, channel_multiplier=2, narrow=1 / 32, num_mlp=2)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return network.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny network's weights in the published file's layout."""
    import torch

    path = tmp_path_factory.mktemp("gfpgan") / gfpgan.CHECKPOINT
    torch.save({"params_ema": tiny_network().state_dict()}, path)
    return path


def load_tiny(path: Path) -> gfpgan.GFPGANv1Clean:
    return gfpgan.load(str(path), "cpu", out_size=64, num_style_feat=16, channel_multiplier=2, narrow=1 / 32, num_mlp=2)


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> gfpgan.GFPGANv1Clean:
    return load_tiny(checkpoint)


def faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)


def test_restores_a_batch_of_crops_to_uint8_crops_of_the_same_shape(model) -> None:
    restored = gfpgan.restore(model, faces(3))
    assert restored.shape == (3, 64, 64, 3) and restored.dtype == np.uint8
    assert len(np.unique(restored)) > 10, "the output is an image, not a constant"
    assert not np.array_equal(restored[0], restored[1]), "each face is restored from its own pixels"


def test_the_same_face_restores_to_the_same_pixels_in_a_batch_or_alone(model) -> None:
    batch = faces(5, seed=1)
    restored = gfpgan.restore(model, batch)
    assert np.array_equal(restored, gfpgan.restore(model, batch)), "no fresh noise: the same call, the same pixels"
    # Convolutions pick their summation order by batch shape, so floats differ in the last bits
    # (about 1e-6) and a value on a rounding boundary may move by one level.
    for other in (gfpgan.restore(model, batch, batch_size=2),
                  np.concatenate([gfpgan.restore(model, batch[i : i + 1]) for i in range(len(batch))])):  # fmt: skip
        moved = np.abs(restored.astype(np.int16) - other)
        assert moved.max() <= 1 and np.count_nonzero(moved) <= moved.size // 1000


def test_load_reads_every_weight_by_key_into_an_eval_network(model) -> None:
    import torch

    assert not model.training
    expected = tiny_network().state_dict()
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())


@pytest.mark.parametrize("wrap", ["params_ema", "params", None])
def test_load_takes_the_ema_weights_the_training_weights_or_a_bare_state_dict(tmp_path, wrap) -> None:
    import torch

    state = tiny_network().state_dict()
    torch.save(state if wrap is None else {wrap: state}, tmp_path / "weights.pth")
    network = load_tiny(tmp_path / "weights.pth")
    assert torch.equal(network.final_linear.weight, state["final_linear.weight"])


def test_a_missing_checkpoint_is_model_unavailable(tmp_path) -> None:
    with pytest.raises(PermanentGpuError) as info:
        gfpgan.load(str(tmp_path / gfpgan.CHECKPOINT), "cpu")
    assert info.value.code == "model_unavailable" and not info.value.retryable
    assert str(tmp_path) not in info.value.message


def test_a_checkpoint_of_other_sizes_is_model_unavailable(checkpoint) -> None:
    with pytest.raises(PermanentGpuError) as info:
        gfpgan.load(str(checkpoint), "cpu")  # the published sizes: no key or shape matches strictly
    assert info.value.code == "model_unavailable"


def test_faces_of_another_size_or_type_are_refused(model) -> None:
    with pytest.raises(ValueError, match="uint8"):
        gfpgan.restore(model, np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        gfpgan.restore(model, faces(1).astype(np.float32))


def test_the_network_has_the_published_checkpoints_keys_and_shapes() -> None:
    import torch

    with torch.device("meta"):  # shapes only: no memory for the 87 M values
        network = gfpgan.GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, narrow=1.0)
    shapes = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    assert len(shapes) == PUBLISHED_KEYS
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == PUBLISHED_VALUES
    assert {key: shapes.get(key) for key in PUBLISHED_SHAPES} == PUBLISHED_SHAPES
    assert sum(key.startswith("stylegan_decoder.noises.") for key in shapes) == 15
