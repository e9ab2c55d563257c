"""Writes tests/gpu_tasks/fixtures/mel_golden.npz: librosa's mel filterbank and mel spectrogram with the
speaker encoder's parameters (gpu_tasks/engines/speaker.py re-implements both without librosa).

librosa is not a dependency of the project: run this once in a throwaway environment,

    python3 -m venv /tmp/lr && /tmp/lr/bin/pip install librosa==0.11.0
    /tmp/lr/bin/python scripts/make_mel_golden.py

The test suite reads the file and never runs this script. The signal is a formula (no random
numbers), which tests/gpu_tasks/test_speaker.py rebuilds.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 40
OUT = Path(__file__).resolve().parent.parent / "tests/gpu_tasks/fixtures/mel_golden.npz"


def signal() -> np.ndarray:
    """0.25 s: a 440 Hz tone plus a chirp from 200 Hz rising 3 kHz a second."""
    t = np.arange(4000) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * (200 + 3000 * t) * t)).astype(np.float32)


def main() -> None:
    # Resemblyzer's call: librosa.feature.melspectrogram(y, sr, n_fft, hop_length, n_mels), its defaults
    # for the rest (Hann window, centred, zero padding, power 2, Slaney mel scale and normalisation).
    filterbank = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    spectrogram = librosa.feature.melspectrogram(
        y=signal(), sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS
    ).astype(np.float32).T
    np.savez_compressed(OUT, filterbank=filterbank, spectrogram=spectrogram,
                        librosa_version=np.array(librosa.__version__))
    print(f"{OUT}: filterbank {filterbank.shape}, spectrogram {spectrogram.shape}, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
