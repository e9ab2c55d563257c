"""The FLUX text-to-image engine end to end on a tiny random-weight FLUX pipeline built here.

The pipeline has FLUX.1-schnell's architecture (a FluxTransformer2DModel without a guidance
embedding, a four-level AutoencoderKL, CLIP and T5 text encoders, the flow-matching Euler
scheduler with dynamic shifting) at toy widths, with word-level tokenizers built from a small
vocabulary. Its VAE downsamples by 8 like the real one, so the
tests ask for production sizes (256x256 and up: the engine's real bounds) and still run in
seconds. The images are noise; the tests check sizes, seeds, progress and the error codes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import image_generation
from gpu_tasks.engines.weights import MODELS_DIR_ENV
from gpu_tasks.errors import PermanentGpuError, classify_exception
from tests.gpu_tasks.helpers import declared_folder

FOLDER = declared_folder("image-generation")
WORDS = "a an the of with in on over under red green blue cat dog tree sky sea photo painting city at night"


def word_tokenizer(max_length: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "<s>", *WORDS.split()])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>",
        model_max_length=max_length,
    )  # fmt: skip


def build_tiny_model(root: Path) -> None:
    """A random-weight FLUX pipeline of tiny size, saved where the engine looks under `root`."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    vocab_size = len(WORDS.split()) + 4
    pipe = FluxPipeline(
        transformer=FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
            guidance_embeds=False,
        ),
        vae=AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
            latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
            shift_factor=0.1159, scaling_factor=0.3611,
        ),
        text_encoder=CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=77, projection_dim=32, pad_token_id=0, eos_token_id=1, bos_token_id=3,
        )),
        tokenizer=word_tokenizer(77),
        text_encoder_2=T5EncoderModel(T5Config(
            vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4, pad_token_id=0,
            eos_token_id=1, decoder_start_token_id=0,  # type: ignore[call-arg]  # a PretrainedConfig kwarg
        )),
        tokenizer_2=word_tokenizer(512),
        scheduler=FlowMatchEulerDiscreteScheduler(
            shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
            max_image_seq_len=4096,
        ),
    )  # fmt: skip
    pipe.save_pretrained(root / FOLDER)  # type: ignore[attr-defined]  # DiffusionPipeline's, set up at runtime


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A models directory holding the tiny pipeline under the engine's folder name."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root)
    image_generation.load.cache_clear()
    yield root
    image_generation.load.cache_clear()


def generate(root: Path, workdir: Path, **payload: Any) -> tuple[dict[str, Any], list[float]]:
    progress: list[float] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODELS_DIR_ENV, str(root))
        result = image_generation.run(
            payload, EngineContext(workdir=workdir, payload=payload, progress=progress.append)
        )
    return result, progress


def pixels(ref: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(ref["data"]))
    image.load()
    return image


@pytest.fixture(scope="module")
def two_images(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[float]]:
    """Two 320x256 images from seed 7, asked with a negative prompt and a guidance schnell ignores."""
    return generate(
        models_root, tmp_path_factory.mktemp("work"), prompt="a red cat under the sky at night",
        negative_prompt="blurry", width=320, height=256, num_images=2, seed=7, steps=2, guidance=3.5,
    )  # fmt: skip


def test_images_are_pngs_of_the_asked_size_with_their_parameters(two_images: tuple[dict[str, Any], Any]) -> None:
    result, _ = two_images
    assert set(result["outputs"]) == {"image_1", "image_2"}
    for index, name in enumerate(["image_1", "image_2"]):
        ref = result["outputs"][name]
        assert ref["content_type"] == "image/png"
        image = pixels(ref)
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (320, 256))
        assert ref["metadata"] == {
            "model": "FLUX.1-schnell", "prompt": "a red cat under the sky at night", "negative_prompt": "blurry",
            "seed": 7 + index, "steps": 2, "guidance": 0.0, "width": 320, "height": 256,
        }  # fmt: skip
    assert pixels(result["outputs"]["image_1"]).tobytes() != pixels(result["outputs"]["image_2"]).tobytes()
    assert {k: v for k, v in result.items() if k not in ("outputs", "notes")} == {
        "width": 320, "height": 256, "num_images": 2, "model": "FLUX.1-schnell", "seed": 7, "steps": 2,
        "guidance": 0.0,
    }  # fmt: skip
    assert len(result["notes"]) == 2
    assert "negative_prompt ignored" in result["notes"][0]
    assert "guidance 3.5 ignored" in result["notes"][1]


def test_progress_rises_with_every_step_and_ends_at_100(two_images: tuple[Any, list[float]]) -> None:
    _, progress = two_images
    assert progress == sorted(progress)
    assert progress[-1] == 100.0
    assert len(progress) >= 2 * 2 + 2  # one report per denoising step of each image, plus load and finish


def test_an_images_recorded_seed_alone_reproduces_it_and_another_seed_differs(
    models_root: Path, two_images: tuple[dict[str, Any], Any], tmp_path: Path
) -> None:
    first, second = (pixels(two_images[0]["outputs"][n]).tobytes() for n in ("image_1", "image_2"))
    common = {"prompt": "a red cat under the sky at night", "width": 320, "height": 256, "steps": 2}
    again, _ = generate(models_root, tmp_path / "a", seed=7, **common)
    second_alone, _ = generate(models_root, tmp_path / "b", seed=8, **common)
    other, _ = generate(models_root, tmp_path / "c", seed=9, **common)
    assert again["notes"] == []
    assert pixels(again["outputs"]["image_1"]).tobytes() == first
    assert pixels(second_alone["outputs"]["image_1"]).tobytes() == second
    assert pixels(other["outputs"]["image_1"]).tobytes() not in (first, second)


def test_defaults_are_schnells_four_steps_without_guidance_at_1024_square() -> None:
    request = image_generation.validate({"prompt": "a cat", "seed": 3})
    assert (request.width, request.height, request.num_images, request.steps, request.guidance) == (
        1024, 1024, 1, 4, 0.0,
    )  # fmt: skip
    assert (request.negative_prompt, request.seed) == (None, 3)
    assert image_generation.validate({"prompt": "a cat"}).seed >= 0


def test_missing_weights_are_model_unavailable_and_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(PermanentGpuError) as info:
        generate(tmp_path / "empty-models", tmp_path / "work", prompt="a cat", width=256, height=256)
    assert info.value.code == "model_unavailable"
    assert not (tmp_path / "work" / "outputs").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": None}, {"prompt": ""}, {"prompt": "   "}, {"prompt": "x" * 2001}, {"prompt": 5},
        {"negative_prompt": 5}, {"negative_prompt": "x" * 2001},
        {"width": 250}, {"width": 192}, {"width": 1600}, {"height": "256"}, {"height": True},
        {"num_images": 0}, {"num_images": 5}, {"num_images": 1.0},
        {"seed": -1}, {"seed": "7"}, {"steps": 0}, {"steps": 51}, {"steps": 2.5},
        {"guidance": -0.5}, {"guidance": 20.5}, {"guidance": float("nan")}, {"guidance": "1"},
    ],
)  # fmt: skip
def test_bad_input_is_invalid_input(models_root: Path, tmp_path: Path, change: dict[str, Any]) -> None:
    payload = {"prompt": "a cat", "width": 256, "height": 256, **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    with pytest.raises(PermanentGpuError) as info:
        generate(models_root, tmp_path, **payload)
    assert info.value.code == "invalid_input"


def test_cuda_out_of_memory_ends_as_gpu_oom(models_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv(MODELS_DIR_ENV, str(models_root))
    pipe = image_generation.load(str(models_root / FOLDER))

    def out_of_memory(*_args: Any, **_kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(type(pipe), "__call__", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        generate(models_root, tmp_path, prompt="a cat", width=256, height=256, seed=1)
    assert classify_exception(info.value).code == "gpu_oom"
    assert not (tmp_path / "outputs").exists()


def test_placement_keeps_what_fits_on_the_gpu_and_offloads_the_rest() -> None:
    gib = 1024**3
    flux = {"transformer": 22 * gib, "text_encoder_2": 9 * gib, "text_encoder": gib // 4, "vae": gib // 6}
    assert image_generation.placement(flux, 79 * gib) == "resident"  # H100 80GB
    assert image_generation.placement(flux, 39 * gib) == "model_offload"  # A100 40GB
    assert image_generation.placement(flux, 22 * gib) == "sequential_offload"  # A10G, L4
