"""Speaker embeddings on CPU: who is speaking, as a unit 256-vector, to compare two recordings.

The network is the GE2E speaker encoder of Resemblyzer 0.1.4 (Resemble AI; Apache-2.0, the
package's classifier and LICENSE file): a 3-layer LSTM over 40 mel bands (hidden size 256), a
linear layer 256 -> 256, ReLU and L2 normalisation, run here with numpy on the checkpoint's own
parameter names, every one required (`pretrained.pt` from the package's wheel). Only those weights
are used (requirements/weights.txt installs the wheel with `--no-deps`): the package's own code is
never imported, because its `__init__` imports librosa and webrtcvad, which are not installed.
`importlib.util.find_spec` locates the wheel's folder without running it.

No torch: the worker image (requirements/base.txt) has none, and this check runs on the worker
whatever the GPU backend. The checkpoint is PyTorch's legacy format (a pickle whose tensors point
into raw storages after it); `read_checkpoint` reads it with an unpickler that admits only
OrderedDict, tensors and storages (what torch.load's weights_only admits of it), so a crafted file
runs no code. The tests hold the reader to torch.load and the network to torch's nn.LSTM. One
embedding of a 5 s recording takes about 70 ms on one BLAS thread (torch's LSTM: about 30 ms).

The preprocessing is Resemblyzer's recipe, re-implemented with numpy:
16 kHz mono float32; the volume raised to -30 dBFS (never lowered); non-speech dropped (Silero VAD,
the ONNX model faster-whisper ships, instead of webrtcvad); a power mel spectrogram (400-sample
periodic Hann window, hop 160, centred with zero padding, 40 Slaney mel bands: librosa's defaults,
pinned by a golden test); partial windows of 160 frames (1.6 s) at 1.3 per second, the last kept
when it covers at least 75 % of a window; the mean of the partial embeddings, L2-normalised.

Public names (the voice-consent engine's): `MODEL_NAME`, `embed_samples`, `embed_file`,
`similarity`, `DEFAULT_THRESHOLD`, `MIN_SPEECH_S`.

Importing this module imports numpy: import it where an embedding is made, not at a worker's start-up.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import os
import pickle
import struct
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gpu_tasks.errors import PermanentGpuError

MODEL_NAME = "Resemblyzer GE2E 0.1.4 (CPU)"
WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"

# Two recordings are the same speaker when the cosine of their embeddings is at least this.
# Rule (bench/speaker_threshold.py): the highest threshold, rounded down to 0.01, that falsely rejects
# at most 2 % of the genuine trials of 104 eSpeak NG voice variants, clean, as 64 kb/s AAC and read
# 10 % slower or faster, in every run (eSpeak voices its whisper variants from random noise: 0.89
# sits on the 2 % line, 1.98-2.28 % between runs; 0.88 gives 1.26-1.44 %). At 0.88 it falsely
# accepts 1.15 % of the other-variant trials, the highest of them near-copies such as steph2/steph3.
# A recording through a telephone band or in noise scores far lower and is refused (the speaker
# records again): no threshold admits those and keeps other voices out. Formant voices are far more
# self-similar than people's: this guards the product's own tests, not real speakers.
DEFAULT_THRESHOLD = 0.88

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms step
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial embedding
PARTIALS_PER_S = 1.3
MIN_LAST_COVERAGE = 0.75
TARGET_DBFS = -30.0

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


HIDDEN = 256
LAYERS = 3
# The checkpoint's parameters that the network uses, with their shapes; `similarity_weight` and
# `similarity_bias` (the training loss's scale) are the only others it may hold.
PARAMETERS: dict[str, tuple[int, ...]] = {
    **{name: shape for layer in range(LAYERS) for name, shape in (
        (f"lstm.weight_ih_l{layer}", (4 * HIDDEN, N_MELS if layer == 0 else HIDDEN)),
        (f"lstm.weight_hh_l{layer}", (4 * HIDDEN, HIDDEN)),
        (f"lstm.bias_ih_l{layer}", (4 * HIDDEN,)),
        (f"lstm.bias_hh_l{layer}", (4 * HIDDEN,)),
    )},
    "linear.weight": (HIDDEN, HIDDEN),
    "linear.bias": (HIDDEN,),
}  # fmt: skip
UNUSED_PARAMETERS = frozenset({"similarity_weight", "similarity_bias"})


class SpeakerEncoder:
    """GE2E: the last LSTM layer's final hidden state -> linear -> ReLU -> unit vector, on the
    checkpoint's parameters (PyTorch's LSTM: gates in the order input, forget, cell, output)."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        extra = set(state) - set(PARAMETERS) - UNUSED_PARAMETERS
        missing = set(PARAMETERS) - set(state)
        if extra or missing:
            raise ValueError(f"the checkpoint's parameters: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, shape in PARAMETERS.items():
            if state[name].shape != shape:
                raise ValueError(f"{name} has shape {state[name].shape}, not {shape}")
        # Gates reordered from PyTorch's (input, forget, cell, output) to (input, forget, output,
        # cell): the three sigmoids are then one contiguous block, one call per step.
        order = np.r_[0 : 2 * HIDDEN, 3 * HIDDEN : 4 * HIDDEN, 2 * HIDDEN : 3 * HIDDEN]
        self.layers = [
            (
                np.ascontiguousarray(state[f"lstm.weight_ih_l{n}"][order], dtype=np.float32),
                np.ascontiguousarray(state[f"lstm.weight_hh_l{n}"][order], dtype=np.float32),
                (state[f"lstm.bias_ih_l{n}"] + state[f"lstm.bias_hh_l{n}"])[order].astype(np.float32)[:, None],
            )
            for n in range(LAYERS)
        ]
        self.linear_weight = np.ascontiguousarray(state["linear.weight"], dtype=np.float32)
        self.linear_bias = state["linear.bias"].astype(np.float32)[:, None]

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, N_MELS) -> (batch, 256) unit vectors."""
        # Column-major states, (features, batch) at each step: W @ h with W's rows contiguous is the
        # faster product for a batch of a few partial windows.
        x = np.ascontiguousarray(np.transpose(np.asarray(mels, dtype=np.float32), (1, 2, 0)))  # (steps, mels, batch)
        steps, batch = x.shape[0], x.shape[2]
        h = np.zeros((HIDDEN, batch), dtype=np.float32)
        for w_ih, w_hh, bias in self.layers:
            inputs = np.matmul(w_ih, x) + bias  # every step's input projection at once: (steps, 4H, batch)
            h = np.zeros((HIDDEN, batch), dtype=np.float32)
            c = np.zeros_like(h)
            out = np.empty((steps, HIDDEN, batch), dtype=np.float32)
            gates = np.empty((4 * HIDDEN, batch), dtype=np.float32)
            sig, cell = gates[: 3 * HIDDEN], gates[3 * HIDDEN :]
            i, f, o = gates[:HIDDEN], gates[HIDDEN : 2 * HIDDEN], gates[2 * HIDDEN : 3 * HIDDEN]
            for t in range(steps):  # in place: the step is a few small array operations
                np.matmul(w_hh, h, out=gates)
                gates += inputs[t]
                sig *= 0.5  # sigmoid(x) = (1 + tanh(x / 2)) / 2, which cannot overflow
                np.tanh(sig, out=sig)
                sig += 1.0
                sig *= 0.5
                np.tanh(cell, out=cell)
                c *= f
                c += i * cell
                np.tanh(c, out=h)
                h *= o
                out[t] = h
            x = out
        embeds = np.maximum(self.linear_weight @ h + self.linear_bias, 0.0).T
        return embeds / np.maximum(np.linalg.norm(embeds, axis=1, keepdims=True), 1e-12)


# -- PyTorch's legacy checkpoint format, read without torch ---------------------------------------------
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
}  # fmt: skip


class _Storage:
    def __init__(self, dtype: np.dtype[Any], size: int) -> None:
        self.dtype, self.size = dtype, size
        self.data: np.ndarray | None = None


class _TensorRef:
    """A tensor the pickle names: a contiguous run of its storage, read once the storages are."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def array(self) -> np.ndarray:
        count = int(np.prod(self.shape))
        contiguous = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        data = self.storage.data
        if data is None or self.stride != contiguous or not 0 <= self.offset <= self.storage.size - count:
            raise ValueError("a tensor that is not a contiguous run of its storage")
        return data[self.offset : self.offset + count].reshape(self.shape).copy()


def _rebuild_tensor(storage: Any, offset: Any, shape: Any, stride: Any, *_rest: Any) -> _TensorRef:
    if not (isinstance(storage, _Storage) and isinstance(offset, int) and isinstance(shape, tuple)
            and isinstance(stride, tuple) and all(isinstance(n, int) and n >= 0 for n in shape + stride)):
        raise pickle.UnpicklingError("a malformed tensor")
    return _TensorRef(storage, offset, shape, stride)


class _CheckpointUnpickler(pickle.Unpickler):
    """Admits OrderedDict, tensors and storage types, and nothing else: a crafted file runs no code."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", storage type, key, location, number of elements, view metadata: none)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[1] in _STORAGE_DTYPES
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0 and pid[5] is None):
            raise pickle.UnpicklingError("a malformed storage reference")
        dtype, size = _STORAGE_DTYPES[pid[1]], pid[4]
        storage = self.storages.setdefault(pid[2], _Storage(dtype, size))
        if storage.dtype != dtype or storage.size != size:
            raise pickle.UnpicklingError("one storage named with two types or sizes")
        return storage


def read_checkpoint(path: Path, group: str) -> dict[str, np.ndarray]:
    """The tensors of `checkpoint[group]` (a dict of name -> tensor) in a checkpoint that torch.save
    wrote in its legacy format: three small pickles (magic number, protocol, system info), the object
    pickle, the list of storage keys, then each storage as its element count (int64) and raw data.
    Storages of other groups (an optimizer's state) are skipped, not read."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as file:
        length = os.fstat(file.fileno()).st_size
        magic, protocol, info = (_CheckpointUnpickler(file, {}).load() for _ in range(3))
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL or not isinstance(info, dict) \
                or info.get("little_endian") is not True:
            raise pickle.UnpicklingError("not a little-endian legacy PyTorch checkpoint")
        root = _CheckpointUnpickler(file, storages).load()
        keys = _CheckpointUnpickler(file, {}).load()
        if not (isinstance(root, dict) and isinstance(root.get(group), dict) and isinstance(keys, list)
                and sorted(keys) == sorted(storages)):
            raise pickle.UnpicklingError(f"no {group!r} in the checkpoint, or storages missing")
        tensors = {name: ref for name, ref in root[group].items() if isinstance(ref, _TensorRef)}
        wanted = {id(ref.storage) for ref in tensors.values()}
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", file.read(8))
            if count != storage.size:
                raise pickle.UnpicklingError("a storage of another size than its reference says")
            size = count * storage.dtype.itemsize
            if size > length - file.tell():
                # Before any read: a size the file cannot hold (2**60 elements, say) would otherwise be
                # allocated by read() first, a MemoryError rather than a refusal.
                raise EOFError("a truncated checkpoint")
            if id(storage) in wanted:
                raw = file.read(size)
                if len(raw) != size:
                    raise EOFError("a truncated checkpoint")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
            else:
                file.seek(size, 1)
    return {name: ref.array() for name, ref in tensors.items()}


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
        return SpeakerEncoder(read_checkpoint(path, "model_state"))
    except (OSError, EOFError, pickle.UnpicklingError, struct.error, KeyError, TypeError, ValueError,
            AttributeError, IndexError) as exc:  # a truncated, foreign or altered file
        raise PermanentGpuError("model_unavailable", "the speaker encoder's weights do not load") from exc


def load_encoder() -> SpeakerEncoder:
    """The process-wide encoder (loaded once: about 10 ms, 17 MB read, 6 MB kept)."""
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
def _hann() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) power mel spectrogram (not log), frames = 1 + len // HOP: each frame centred
    on its hop (N_FFT // 2 zeros padded at both ends), Hann-windowed, |FFT|^2 through the filterbank."""
    padded = np.pad(np.asarray(samples, dtype=np.float32).reshape(-1), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    spectrum = np.fft.rfft(frames * _hann(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return power @ mel_filterbank().T


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
    return _unit(embed_partials(samples).mean(axis=0))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


# A stretch: this many consecutive partial windows (1.6 s each, one every 0.77 s), about 4 s of speech.
STRETCH_PARTIALS = 4
# Every stretch of a consent recording and of the sample must be this close to the other file as a
# whole: a file that holds a second speaker (another voice's speech beside the reader's phrase)
# shows them in a stretch. Rule: the lowest stretch of 16 eSpeak NG voices against their own other
# file (0.859 at least) less a margin; a stretch of another variant scores 0.645 on average.
STRETCH_THRESHOLD = 0.80


def embed_stretches(samples: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The speaker of the whole of `samples` (as `embed_samples`), and of each stretch of about 4 s of
    its speech in turn (a last one shorter than half a stretch joins the one before): a file holding
    two speakers shows the second in its stretches, however the whole averages them."""
    partials = embed_partials(samples)
    groups = [partials[i:i + STRETCH_PARTIALS] for i in range(0, len(partials), STRETCH_PARTIALS)]
    if len(groups) > 1 and len(groups[-1]) * 2 < STRETCH_PARTIALS:
        groups[-2:] = [np.concatenate(groups[-2:])]
    return _unit(partials.mean(axis=0)), [_unit(group.mean(axis=0)) for group in groups]


def embed_partials(samples: np.ndarray) -> np.ndarray:
    """(n, 256): the unit embedding of each partial window of the speech in `samples`, in order."""
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
    return np.asarray(load_encoder()(np.stack([mel[a:b] for a, b in slices])), dtype=np.float32)


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
