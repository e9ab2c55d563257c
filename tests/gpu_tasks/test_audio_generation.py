"""The Stable Audio engine end to end on a tiny random-weight pipeline of the same architecture.

The test builds every part the published pipeline has (a StableAudioDiTModel, an Oobleck
autoencoder, a T5 encoder, the seconds projection model and a T5-style tokenizer), shrunk to a
1024 Hz stereo model whose latent window holds 2 s, saves it where the engine looks for weights,
and runs `run()` as a worker would. The sound is noise; the tests check the engine around it:
the WAV's exact length, rate and channels, determinism, progress, and the error codes.

The scheduler is the published model's: the cosine DPM-Solver SDE with its scheduler config,
drawing its noise through `torchsde` (installed for the tests), which the engine swaps for the
guarded one (`audio_generation.guarded_scheduler`).
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import audio_generation
from gpu_tasks.engines.weights import MODELS_DIR_ENV
from gpu_tasks.errors import PermanentGpuError, classify_exception
from tests.gpu_tasks.helpers import declared_folder, streams

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLE_RATE = 1024
WINDOW_S = 2
PROMPT = "rain on a tin roof"
WORDS = ["a", "an", "the", "of", "on", "in", "rain", "tin", "roof", "bark", "hammer", "wood", "low", "quality"]


# stabilityai/stable-audio-open-1.0's scheduler/scheduler_config.json.
PUBLISHED_SCHEDULER: dict[str, Any] = {
    "sigma_min": 0.3, "sigma_max": 500, "sigma_data": 1.0, "sigma_schedule": "exponential",
    "prediction_type": "v_prediction", "solver_order": 2, "solver_type": "midpoint", "final_sigmas_type": "zero",
    "lower_order_final": True, "euler_at_final": False, "rho": 7.0,
}  # fmt: skip


def build_tiny_model(root: Path) -> None:
    """A random-weight Stable Audio pipeline of tiny size, saved where the engine looks under `root`."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{word: i + 3 for i, word in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=16
    )
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4)
    )
    projection = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=16, min_value=0, max_value=32)
    # 32 latent frames of 64 samples (hop 2 * 4 * 8) at 1024 Hz: a 2 s window.
    dit = StableAudioDiTModel(
        sample_size=32, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        num_key_value_attention_heads=1, cross_attention_dim=16, cross_attention_input_dim=16, time_proj_dim=16,
        global_states_input_dim=32,
    )  # fmt: skip
    vae = AutoencoderOobleck(
        encoder_hidden_size=8, downsampling_ratios=[2, 4, 8], channel_multiples=[1, 2, 2], decoder_channels=8,
        decoder_input_channels=4, audio_channels=2, sampling_rate=SAMPLE_RATE,
    )  # fmt: skip
    scheduler = CosineDPMSolverMultistepScheduler(**PUBLISHED_SCHEDULER)
    pipe = StableAudioPipeline(
        vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer, transformer=dit,
        scheduler=scheduler,
    )  # fmt: skip
    pipe.save_pretrained(root / declared_folder("audio-generation"))  # type: ignore[attr-defined]  # set up at runtime


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root)
    return root


@pytest.fixture(scope="module")
def weights_in(models_root: Path) -> Iterator[Path]:
    """The tiny model in AUTEUR_MODELS_DIR, loaded afresh by the first run and kept for the rest."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODELS_DIR_ENV, str(models_root))
        audio_generation.load.cache_clear()
        yield models_root
    audio_generation.load.cache_clear()


def generate(tmp_path: Path, progress: list[float] | None = None, **fields: Any) -> dict[str, Any]:
    """run() on a 1 s, 2-step request with seed 7 unless `fields` say otherwise."""
    payload = {"prompt": PROMPT, "duration_sec": 1, "steps": 2, "seed": 7, "output_dir": str(tmp_path / "out")}
    payload.update(fields)
    reports = progress if progress is not None else []
    ctx = EngineContext(workdir=tmp_path / "work", payload=payload, progress=reports.append)
    return audio_generation.run(payload, ctx)


def invalid(tmp_path: Path, **payload: Any) -> PermanentGpuError:
    with pytest.raises(PermanentGpuError) as caught:
        generate(tmp_path, **payload)
    assert not (tmp_path / "out").exists()  # nothing delivered
    return caught.value


def test_writes_a_stereo_wav_of_exactly_the_asked_duration(weights_in: Path, tmp_path: Path) -> None:
    progress: list[float] = []
    result = generate(tmp_path, progress, duration_sec=2, steps=3, guidance=4.5, negative_prompt=" low quality ")
    audio = result["outputs"]["audio"]
    with wave.open(audio["path"]) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, SAMPLE_RATE)
        assert wav.getnframes() == 2 * SAMPLE_RATE
    decoded = streams(Path(audio["path"]))["audio"]
    assert (decoded["rate"], decoded["channels"], decoded["duration_s"]) == (SAMPLE_RATE, 2, 2.0)
    assert Path(audio["path"]).parent == tmp_path / "out"
    assert audio["content_type"] == "audio/wav" and audio["size_bytes"] == Path(audio["path"]).stat().st_size
    assert audio["metadata"] == {
        "model": "Stable Audio Open 1.0", "prompt": PROMPT, "negative_prompt": "low quality", "seed": 7, "steps": 3,
        "guidance": 4.5, "duration_sec": 2, "sample_rate": SAMPLE_RATE,
    }  # fmt: skip
    assert {k: v for k, v in result.items() if k != "outputs"} == {
        "duration_ms": 2000, "sample_rate": SAMPLE_RATE, "channels": 2, "model": "Stable Audio Open 1.0", "seed": 7,
        "steps": 3, "guidance": 4.5,
    }  # fmt: skip
    # Loaded, one report per denoising step, then delivered.
    assert len(progress) == 3 + 2 and progress == sorted(progress) and progress[-1] == 100.0


def test_same_seed_gives_the_same_audio_and_another_seed_differs(weights_in: Path, tmp_path: Path) -> None:
    def wav_bytes(name: str, seed: int) -> bytes:
        return Path(generate(tmp_path / name, seed=seed)["outputs"]["audio"]["path"]).read_bytes()

    first = wav_bytes("a", 7)
    assert wav_bytes("b", 7) == first
    assert wav_bytes("c", 8) != first


def test_runs_without_guidance_or_negative_prompt(weights_in: Path, tmp_path: Path) -> None:
    result = generate(tmp_path, guidance=0, seed=None)
    with wave.open(result["outputs"]["audio"]["path"]) as wav:
        assert wav.getnframes() == SAMPLE_RATE
    assert result["guidance"] == 0.0 and isinstance(result["seed"], int)  # a fresh seed, recorded
    assert result["outputs"]["audio"]["metadata"]["negative_prompt"] is None


def test_defaults_are_the_models_usual_settings() -> None:
    request = audio_generation.validate({"prompt": "  birdsong at dawn  "})
    assert (request.prompt, request.negative_prompt) == ("birdsong at dawn", None)
    assert (request.duration_sec, request.steps, request.guidance) == (10, 100, 7.0)


def test_a_duration_longer_than_the_models_window_is_invalid_input(weights_in: Path, tmp_path: Path) -> None:
    error = invalid(tmp_path, duration_sec=WINDOW_S + 1)
    assert error.code == "invalid_input" and f"at most {WINDOW_S}" in error.message


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt": None}, {"prompt": "   "}, {"prompt": 5}, {"prompt": "x" * 1001}, {"negative_prompt": 3},
        {"duration_sec": 0}, {"duration_sec": 48}, {"duration_sec": 1.5}, {"duration_sec": True},
        {"steps": 0}, {"steps": 201}, {"steps": "3"}, {"guidance": -0.5}, {"guidance": 20.5}, {"guidance": "7"},
        {"seed": -1}, {"seed": "7"},
    ],
)  # fmt: skip
def test_bad_input_is_invalid_input(weights_in: Path, tmp_path: Path, bad: dict[str, Any]) -> None:
    assert invalid(tmp_path, **bad).code == "invalid_input"


def test_missing_weights_are_model_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "empty"))
    error = invalid(tmp_path)
    assert error.code == "model_unavailable" and "download_models audio-generation" in error.message


def test_cuda_out_of_memory_ends_as_gpu_oom(weights_in: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from diffusers import StableAudioPipeline

    def out_of_memory(*_args: Any, **_kwargs: Any) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(StableAudioPipeline, "__call__", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError) as caught:
        generate(tmp_path)
    assert classify_exception(caught.value).code == "gpu_oom"
    assert not (tmp_path / "out").exists()


def _denoise(scheduler: Any, steps: int, *, last_sigma: float | None = None) -> Any:
    """Step `scheduler` through `steps` steps on fixed random tensors, as the pipeline does."""
    import torch

    scheduler.set_timesteps(steps)
    if last_sigma is not None:
        scheduler.sigmas[-2] = torch.tensor(last_sigma)  # where another GPU's float32 exp lands
    torch.manual_seed(0)
    sample = torch.randn(1, 64, 16) * scheduler.init_noise_sigma
    generator = torch.Generator().manual_seed(5)
    for t in scheduler.timesteps:
        sample = scheduler.step(torch.randn(1, 64, 16), t, sample, generator=generator).prev_sample
    return sample


def test_the_published_sampler_reaches_sigma_zero_where_the_stock_one_recurses() -> None:
    """The last sigma before 0 a float32 ULP above sigma_min makes the stock
    Brownian tree recurse until Python's limit; the guarded scheduler finishes, and with any other
    schedule it gives exactly the stock scheduler's samples (a seed keeps its audio)."""
    import torch
    from diffusers import CosineDPMSolverMultistepScheduler

    stock = CosineDPMSolverMultistepScheduler(**PUBLISHED_SCHEDULER)
    guarded = audio_generation.guarded_scheduler(CosineDPMSolverMultistepScheduler(**PUBLISHED_SCHEDULER))
    assert type(guarded) is not CosineDPMSolverMultistepScheduler and isinstance(guarded, type(stock))
    for steps in (8, 100):
        assert torch.equal(_denoise(stock, steps), _denoise(guarded, steps))
    just_above = float(torch.nextafter(torch.tensor(0.3), torch.tensor(1.0)))
    with pytest.raises(RecursionError):
        _denoise(stock, 8, last_sigma=just_above)
    assert torch.isfinite(_denoise(guarded, 8, last_sigma=just_above)).all()
    # Any other scheduler is left as it is.
    from diffusers import EDMDPMSolverMultistepScheduler

    other = EDMDPMSolverMultistepScheduler()
    assert audio_generation.guarded_scheduler(other) is other
