"""Speaker embeddings on CPU: who is speaking, as a unit 256-vector, to compare two recordings.

The network is the GE2E speaker encoder of Resemblyzer 0.1.4 (Resemble AI; Apache-2.0, the
package's classifier and LICENSE file): a 3-layer LSTM over 40 mel bands (hidden size 256), a
linear layer 256 -> 256, ReLU and L2 normalisation, written here under the checkpoint's parameter
names so that `pretrained.pt` from the package's wheel loads by key, strictly. Only those weights
are used (requirements/weights.txt installs the wheel with `--no-deps`): the package's own code is
never imported, because its `__init__` imports librosa and webrtcvad, which are not installed.
`importlib.util.find_spec` locates the wheel's folder without running it.

The preprocessing is Resemblyzer's recipe, re-implemented with numpy and torch:
16 kHz mono float32; the volume raised to -30 dBFS (never lowered); non-speech dropped (Silero VAD,
the ONNX model faster-whisper ships, instead of webrtcvad); a power mel spectrogram (400-sample
periodic Hann window, hop 160, centred with zero padding, 40 Slaney mel bands: librosa's defaults,
pinned by a golden test); partial windows of 160 frames (1.6 s) at 1.3 per second, the last kept
when it covers at least 75 % of a window; the mean of the partial embeddings, L2-normalised.

Public names (the voice-consent engine's): `MODEL_NAME`, `embed_samples`, `embed_file`,
`similarity`, `DEFAULT_THRESHOLD`, `MIN_SPEECH_S`.

Importing this module imports torch: import it where an embedding is made, not at a worker's start-up.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gpu_tasks.errors import PermanentGpuError

MODEL_NAME = "Resemblyzer GE2E 0.1.4 (CPU)"
WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"

# Two recordings are the same speaker when the cosine of their embeddings is at least this.
# Rule (bench/speaker_threshold.py): the highest threshold, rounded down to 0.01, that falsely rejects
# at most 2 % of the genuine trials of 104 eSpeak NG voice variants, clean, as 64 kb/s AAC and read
# 10 % slower or faster; it falsely accepts 1.2 % of the other-variant trials (the false accepts are
# near-copies such as steph2/steph3). A recording through a telephone band or in noise scores far
# lower and is refused (the speaker records again): no threshold admits it and keeps others out.
# Formant voices are far more self-similar than people's: this guards the product's own tests, not
# real speakers.
DEFAULT_THRESHOLD = 0.88

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms step
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial embedding
PARTIALS_PER_S = 1.3
MIN_LAST_COVERAGE = 0.75
TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1

# Less speech than one partial window (after non-speech is dropped) says too little about a voice.
MIN_SPEECH_S = 1.6
# Work bounds: the VAD reads at most the first MAX_INPUT_S of audio, and at most MAX_SPEECH_S of the
# speech it finds is embedded (46 partial windows); more says no more about who speaks.
MAX_INPUT_S = 120.0
MAX_SPEECH_S = 36.0

# Silero VAD: speech segments padded by 100 ms and merged across pauses under 200 ms, close to
# Resemblyzer's own trimming (webrtcvad in 30 ms windows, silences over about 210 ms cut).
VAD_THRESHOLD = 0.5
VAD_PAD_MS = 100
VAD_MIN_SILENCE_MS = 200


class SpeakerEncoder(nn.Module):
    """GE2E: the last LSTM layer's final hidden state -> linear -> ReLU -> unit vector."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.relu = nn.ReLU()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:  # (batch, frames, N_MELS) -> (batch, 256)
        _, (hidden, _) = self.lstm(mels)
        embeds = self.relu(self.linear(hidden[-1]))
        return embeds / torch.linalg.vector_norm(embeds, dim=1, keepdim=True).clamp_min(1e-12)


def weights_path() -> Path | None:
    """`pretrained.pt` in the installed wheel's folder, found without importing the package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / WEIGHTS_FILE


_load_lock = threading.Lock()


@functools.cache
def _cached_encoder() -> SpeakerEncoder:
    path = weights_path()
    if path is None or not path.is_file():
        raise PermanentGpuError(
            "model_unavailable", "the speaker encoder's weights are missing (pip install -r requirements/weights.txt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity_")}
        encoder = SpeakerEncoder()
        encoder.load_state_dict(state, strict=True)
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:  # a truncated, foreign or altered file
        raise PermanentGpuError("model_unavailable", "the speaker encoder's weights do not load") from exc
    encoder.eval()
    return encoder


def load_encoder() -> SpeakerEncoder:
    """The process-wide encoder (loaded once, about 0.1 s and 17 MB)."""
    with _load_lock:  # one load even when two threads ask first
        return _cached_encoder()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
    mel = hz / (200.0 / 3)
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), (200.0 / 3) * mel)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangles on the Slaney mel scale from 0 Hz to Nyquist, each
    divided by its width in Hz (Slaney's area normalisation): librosa.filters.mel's defaults."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    bank = np.zeros((N_MELS, fft_hz.size))
    for i in range(N_MELS):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        bank[i] = np.maximum(0, np.minimum(rising, falling))
    bank *= (2.0 / (mel_hz[2 : N_MELS + 2] - mel_hz[:N_MELS]))[:, None]
    out = bank.astype(np.float32)
    out.setflags(write=False)
    return out


@functools.cache
def _mel_tensor() -> torch.Tensor:
    return torch.tensor(mel_filterbank())


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) power mel spectrogram (not log), frames = 1 + len // HOP."""
    spectrum = torch.stft(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), N_FFT, HOP, N_FFT,
        window=torch.hann_window(N_FFT, periodic=True), center=True, pad_mode="constant", return_complex=True,
    )  # fmt: skip
    power = spectrum.abs() ** 2
    return (_mel_tensor() @ power).T.numpy()


def _raise_volume(samples: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0.0:
        return samples
    change_db = TARGET_DBFS - 20 * np.log10(rms)
    if change_db <= 0:  # never lowered: a loud recording keeps its level
        return samples
    return (samples * 10 ** (change_db / 20)).astype(np.float32)


def speech_only(samples: np.ndarray) -> np.ndarray:
    """The speech in `samples` (16 kHz), its pauses longer than VAD_MIN_SILENCE_MS dropped."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=VAD_THRESHOLD, min_silence_duration_ms=VAD_MIN_SILENCE_MS, speech_pad_ms=VAD_PAD_MS
    )
    spans = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    if not spans:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([samples[s["start"] : s["end"]] for s in spans]).astype(np.float32, copy=False)


def partial_slices(n_samples: int) -> list[tuple[int, int]]:
    """Frame ranges of the partial windows over `n_samples` of speech (Resemblyzer's
    compute_partial_slices): a window every round(16000 / 1.3 / 160) = 77 frames, the last dropped
    when it covers less than MIN_LAST_COVERAGE of a window and is not the only one."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIALS_PER_S) / HOP))
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)]
    coverage = (n_samples - slices[-1][0] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_LAST_COVERAGE and len(slices) > 1:
        slices.pop()
    return slices


def embed_samples(samples: np.ndarray) -> np.ndarray:
    """The unit 256-vector of the speaker in `samples` (float32 mono PCM at 16 kHz).

    PermanentGpuError("invalid_media") when it holds less than MIN_SPEECH_S of speech."""
    wav = np.asarray(samples, dtype=np.float32).reshape(-1)[: int(MAX_INPUT_S * SAMPLE_RATE)]
    if not np.all(np.isfinite(wav)):
        raise PermanentGpuError("invalid_media", "the audio holds samples that are not numbers")
    speech = speech_only(_raise_volume(wav))[: int(MAX_SPEECH_S * SAMPLE_RATE)]
    if speech.size < MIN_SPEECH_S * SAMPLE_RATE:
        raise PermanentGpuError(
            "invalid_media",
            f"too little speech to recognise a voice: {speech.size / SAMPLE_RATE:.1f} s, "
            f"at least {MIN_SPEECH_S} s needed",
        )
    slices = partial_slices(speech.size)
    needed = slices[-1][1] * HOP
    if needed > speech.size:
        speech = np.pad(speech, (0, needed - speech.size))
    mel = mel_spectrogram(speech)
    batch = torch.from_numpy(np.stack([mel[a:b] for a, b in slices]))
    encoder = load_encoder()
    with torch.inference_mode():
        partials = encoder(batch).numpy()
    mean = partials.mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def embed_file(path: Path) -> np.ndarray:
    """`embed_samples` of a media file's first audio stream (any format FFmpeg's libraries read),
    decoded to 16 kHz mono; its first MAX_INPUT_S seconds."""
    from gpu_tasks.engines.media import decode_audio

    return embed_samples(decode_audio(Path(path), SAMPLE_RATE, max_s=MAX_INPUT_S))


def similarity(a: Any, b: Any) -> float:
    """The cosine of two embeddings (unit vectors from this module: their dot product), in [-1, 1]."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"embeddings of different sizes: {x.size} and {y.size}")
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    if norms == 0.0:
        raise ValueError("an embedding of zero length")
    return float(np.clip(np.dot(x, y) / norms, -1.0, 1.0))
