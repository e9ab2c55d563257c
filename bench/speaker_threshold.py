"""The speaker verification threshold of the local encoder (gpu_tasks/engines/speaker.py, Resemblyzer's
GE2E on CPU), calibrated on the speakers available here: eSpeak NG's English voice variants.

    .venv/bin/python bench/speaker_threshold.py [--quick] [--threshold 0.88]

Speakers: every variant eSpeak NG ships (`en-us+<variant>`, its voices/!v folder: 104 in
espeakng-loader 0.2.4); `--quick` takes the 12 distinct ones of QUICK (about a tenth of the time).
Each variant reads two clone samples (SAMPLES) and two consent readings of other words (READINGS).
Each reading is also degraded, the way a consent recording might arrive: through an 8 kHz telephone
band (300-3,400 Hz), as 64 kb/s AAC, with pink noise at 20 dB SNR, and at speeds 0.9 and 1.1 (FFmpeg's
atempo: the rate of speech, not the pitch). Noise is added with numpy (seeded), the rest by ffmpeg.

Trials: genuine = (a sample of A, a reading of A on any channel): 2 x 2 x 6 per variant;
impostor = (a sample of A, a clean reading of B != A): 2 x 2 per ordered pair. The false-accept
rate over degraded impostor readings is given beside it.

Prints and writes (bench/results/speaker_threshold.json): speakers and trial counts; FAR and FRR at
the threshold in use (speaker.DEFAULT_THRESHOLD, or --threshold), counts and percentages; the
threshold the rule chooses and its FAR; the EER and its threshold; the 10 highest impostor pairs by
name; FRR and the genuine scores per channel; the time of one embedding.

The rule: the highest threshold, rounded down to 0.01, whose FRR over the genuine trials of
RULE_CHANNELS (clean, AAC, both speeds) is at most 2 %; FAR there must be at most 2 %. The verdict
is the threshold in use's: FRR and FAR both at most 2 %. The telephone band and the noise are
measured and printed, not in the rule: over every channel the same rule falls to a threshold that
admits about a fifth of the impostors.
These voices are formant synthesis, far more self-similar than people's: the figures guard the
product's own tests, not real speakers. eSpeak NG voices its whisper variants from random noise, so
their trials change from run to run, and with them a few counts (the rule gave 0.88 in two runs,
0.89 in a third); every other step is deterministic.
"""

from __future__ import annotations

import os

# One BLAS thread (the encoder's LSTM steps are small products that threads only slow): set before
# numpy loads.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402 - after the thread settings above
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gpu_tasks.engines import speaker  # noqa: E402 - needs the path above
from gpu_tasks.engines.ffmpeg import ffmpeg_exe  # noqa: E402
from gpu_tasks.engines.media import decode_audio  # noqa: E402
from gpu_tasks.engines.tts import synthesize, write_wav  # noqa: E402
from gpu_tasks.errors import PermanentGpuError  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "speaker_threshold.json"
MAX_FRR = 0.02
TARGET_FAR = 0.02
SNR_DB = 20.0
QUICK = ("m1", "m3", "m7", "f1", "f3", "f5", "klatt", "Alex", "Annie", "david", "linda", "grandma")
SAMPLES = (
    "Today I walked along the river and watched the boats drift slowly past the old mill.",
    "My sister bakes bread every Sunday morning and the whole house smells of it.",
)
READINGS = (
    "Orange table seven window. I agree to have my voice cloned in this workspace.",
    "Purple garden eleven ladder. I agree to have my voice cloned in this workspace.",
)
# Channel name -> ffmpeg output arguments and file suffix (None: made with numpy, below).
CHANNELS: dict[str, tuple[list[str], str] | None] = {
    "clean": ([], ".wav"),
    "telephone 8 kHz": (["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-c:a", "pcm_s16le"], ".wav"),
    "AAC 64 kb/s": (["-c:a", "aac", "-b:a", "64k"], ".m4a"),
    "pink noise 20 dB SNR": None,
    "speed 0.9": (["-af", "atempo=0.9"], ".wav"),
    "speed 1.1": (["-af", "atempo=1.1"], ".wav"),
}


# The threshold rule reads these: what a recording made for the product goes through (the browser's
# or phone's codec, a speaker's own pace). Through a telephone band or in noise the encoder's scores
# fall far below any threshold that keeps impostors out (the bench prints by how much): such a
# recording is refused, and the speaker records again, rather than the threshold admitting others.
RULE_CHANNELS = ("clean", "AAC 64 kb/s", "speed 0.9", "speed 1.1")


def variants() -> list[str]:
    import espeakng_loader

    return sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir() if p.is_file())


def pink_noise(n: int, seed: int) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1/f (white noise shaped in the frequency domain)."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def with_noise(samples: np.ndarray, seed: int) -> np.ndarray:
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return (samples + pink_noise(samples.size, seed) * rms * 10 ** (-SNR_DB / 20)).astype(np.float32)


def scored(scores: np.ndarray) -> np.ndarray:
    """A trial whose recording was refused (too little speech: no embedding) scores -1, below
    every threshold: it never passes, so it is a false reject when genuine."""
    return np.nan_to_num(scores.astype(np.float64), nan=-1.0)


def percent(count: int, n: int) -> dict[str, Any]:
    return {"count": int(count), "n": int(n), "rate": round(count / n, 5) if n else None}


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[int, int]:
    """(false rejects, false accepts) at `threshold`: a pair passes when its score is >= threshold."""
    return int(np.sum(genuine < threshold)), int(np.sum(impostor >= threshold))


def chosen_threshold(genuine: np.ndarray) -> float:
    """The highest threshold, rounded down to 0.01, that rejects at most MAX_FRR of the genuine trials."""
    ordered = np.sort(genuine)
    allowed = int(np.floor(MAX_FRR * ordered.size))  # this many may fall below the threshold
    return round(float(np.floor(float(ordered[allowed]) * 100)) / 100, 2)


def equal_error(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, its threshold): at the candidate threshold where FAR and FRR are closest, their mean."""
    candidates = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(np.sort(genuine), candidates, side="left") / genuine.size
    far = 1 - np.searchsorted(np.sort(impostor), candidates, side="left") / impostor.size
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(candidates[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"the {len(QUICK)} variants of QUICK only")
    parser.add_argument("--threshold", type=float, default=speaker.DEFAULT_THRESHOLD,
                        help="the threshold whose FAR and FRR are reported (default: speaker.DEFAULT_THRESHOLD)")
    args = parser.parse_args()
    names = list(QUICK) if args.quick else variants()
    speaker.load_encoder()
    ffmpeg = ffmpeg_exe()
    started = time.perf_counter()
    embed_ms: list[float] = []
    refused: list[dict[str, str]] = []
    sample_emb: dict[str, np.ndarray] = {}  # name -> (2, 256)
    reading_emb: dict[str, dict[str, np.ndarray]] = {}  # name -> channel -> (2, 256)
    stretches: dict[str, list[np.ndarray]] = {}  # label -> the embedding of each stretch of its speech
    with tempfile.TemporaryDirectory(prefix="speaker-bench-") as tmp:
        work = Path(tmp)

        def clean_file(text: str, name: str) -> Path:
            pcm, rate = synthesize(text, voice=f"en-us+{name}")
            path = work / f"{zlib.crc32(f'{name}|{text}'.encode()):08x}.wav"
            write_wav(path, pcm, rate)
            return path

        def embed(samples: np.ndarray, label: str) -> np.ndarray:
            t = time.perf_counter()
            try:
                emb, stretches[label] = speaker.embed_stretches(samples)
            except PermanentGpuError as exc:  # too little speech found: the recording is refused
                refused.append({"recording": label, "error": exc.code})
                return np.full(256, np.nan, dtype=np.float32)
            embed_ms.append((time.perf_counter() - t) * 1000)
            return emb

        for done, name in enumerate(names, start=1):
            sample_emb[name] = np.stack([embed(decode_audio(clean_file(s, name)), f"{name} sample {i}")
                                         for i, s in enumerate(SAMPLES, start=1)])
            per_channel: dict[str, list[np.ndarray]] = {c: [] for c in CHANNELS}
            for number, reading in enumerate(READINGS, start=1):
                source = clean_file(reading, name)
                for channel, recipe in CHANNELS.items():
                    if recipe is None:
                        seed = zlib.crc32(f"{name}|{reading}".encode())
                        per_channel[channel].append(embed(with_noise(decode_audio(source), seed),
                                                          f"{name} reading {number} {channel}"))
                        continue
                    out_args, suffix = recipe
                    target = source
                    if out_args:
                        target = source.with_name(f"{source.stem}-{zlib.crc32(channel.encode()):08x}{suffix}")
                        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
                                        *out_args, str(target)], check=True)
                    per_channel[channel].append(embed(decode_audio(target), f"{name} reading {number} {channel}"))
            reading_emb[name] = {c: np.stack(v) for c, v in per_channel.items()}
            if done % 10 == 0 or done == len(names):
                print(f"  {done}/{len(names)} variants, {time.perf_counter() - started:.0f} s", flush=True)

    genuine_by_channel = {
        channel: scored(np.concatenate([(sample_emb[n] @ reading_emb[n][channel].T).ravel() for n in names]))
        for channel in CHANNELS
    }
    genuine = np.concatenate(list(genuine_by_channel.values()))
    # The stretch check: each stretch of a same-voice sample and reading against the other file whole,
    # the lowest of a pair being what the check compares (speaker.STRETCH_THRESHOLD).
    stretch_by_channel: dict[str, np.ndarray] = {}
    for channel in RULE_CHANNELS:
        lowest = []
        for n in names:
            for i in range(len(SAMPLES)):
                for j in range(len(READINGS)):
                    sample_label, reading_label = f"{n} sample {i + 1}", f"{n} reading {j + 1} {channel}"
                    if sample_label not in stretches or reading_label not in stretches:
                        continue
                    lowest.append(min([float(s @ reading_emb[n][channel][j]) for s in stretches[sample_label]]
                                      + [float(s @ sample_emb[n][i]) for s in stretches[reading_label]]))
        stretch_by_channel[channel] = np.array(lowest)
    stretch_genuine = np.concatenate(list(stretch_by_channel.values()))
    impostor_pairs: list[tuple[float, str, str]] = []
    impostor_parts: list[np.ndarray] = []
    impostor_degraded_parts: list[np.ndarray] = []
    for a, b in itertools.permutations(names, 2):
        scores = scored((sample_emb[a] @ reading_emb[b]["clean"].T).ravel())
        impostor_parts.append(scores)
        impostor_pairs.append((float(scores.max()), a, b))
        impostor_degraded_parts.extend(scored((sample_emb[a] @ reading_emb[b][c].T).ravel())
                                       for c in CHANNELS if c != "clean")
    impostor = np.concatenate(impostor_parts)
    impostor_degraded = np.concatenate(impostor_degraded_parts)

    threshold = float(args.threshold)
    in_rule = np.concatenate([genuine_by_channel[c] for c in RULE_CHANNELS])
    rule = chosen_threshold(in_rule)
    rule_every_channel = chosen_threshold(genuine)
    eer, eer_threshold = equal_error(in_rule, impostor)
    eer_all, eer_all_threshold = equal_error(genuine, impostor)
    # Unordered pairs by their highest score either way round.
    highest: dict[tuple[str, str], float] = {}
    for score, a, b in impostor_pairs:
        key = (min(a, b), max(a, b))
        highest[key] = max(score, highest.get(key, -1.0))
    top = sorted(highest.items(), key=lambda kv: -kv[1])[:10]

    def at(t: float) -> dict[str, Any]:
        return {"threshold": t, "far": percent(int(np.sum(impostor >= t)), impostor.size),
                "frr": percent(int(np.sum(in_rule < t)), in_rule.size),
                "frr_every_channel": percent(int(np.sum(genuine < t)), genuine.size),
                "far_degraded_impostors": percent(int(np.sum(impostor_degraded >= t)), impostor_degraded.size)}

    result = {
        "model": speaker.MODEL_NAME,
        "quick": args.quick,
        "speakers": len(names),
        "samples_per_speaker": len(SAMPLES),
        "readings_per_speaker": len(READINGS),
        "channels": list(CHANNELS),
        "rule_channels": list(RULE_CHANNELS),
        "genuine_trials": int(genuine.size),
        "genuine_trials_rule": int(in_rule.size),
        "impostor_trials": int(impostor.size),
        "in_use": at(threshold),
        "rule": (f"highest threshold (rounded down to 0.01) with FRR <= {MAX_FRR:.0%} over the genuine trials of "
                 f"{', '.join(RULE_CHANNELS)}"),
        "rule_result": at(rule),
        "rule_every_channel_result": at(rule_every_channel),
        "eer": round(eer, 5),
        "eer_threshold": round(eer_threshold, 4),
        "eer_every_channel": round(eer_all, 5),
        "eer_every_channel_threshold": round(eer_all_threshold, 4),
        "genuine_scores": {"min": round(float(genuine.min()), 4), "p5": round(float(np.percentile(genuine, 5)), 4),
                           "mean": round(float(genuine.mean()), 4)},
        "impostor_scores": {"p95": round(float(np.percentile(impostor, 95)), 4),
                            "max": round(float(impostor.max()), 4), "mean": round(float(impostor.mean()), 4)},
        "frr_by_channel": {c: percent(int(np.sum(g < threshold)), g.size) for c, g in genuine_by_channel.items()},
        "genuine_by_channel": {c: {"min": round(float(g.min()), 4), "p5": round(float(np.percentile(g, 5)), 4),
                                   "mean": round(float(g.mean()), 4)} for c, g in genuine_by_channel.items()},
        "stretch": {
            "threshold": speaker.STRETCH_THRESHOLD,
            "frr": percent(int(np.sum(stretch_genuine < speaker.STRETCH_THRESHOLD)), stretch_genuine.size),
            "genuine": {"min": round(float(stretch_genuine.min()), 4),
                        "p5": round(float(np.percentile(stretch_genuine, 5)), 4),
                        "mean": round(float(stretch_genuine.mean()), 4)},
            "by_channel": {c: round(float(v.min()), 4) for c, v in stretch_by_channel.items()},
        },
        "refused_recordings": refused,
        "top_impostor_pairs": [{"a": a, "b": b, "score": round(s, 4)} for (a, b), s in top],
        "embed_ms": {"p50": round(statistics.median(embed_ms), 1),
                     "p99": round(float(np.percentile(embed_ms, 99)), 1), "n": len(embed_ms)},
        "target_frr": MAX_FRR,
        "target_far": TARGET_FAR,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores, 1 BLAS thread",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)


def print_summary(r: dict[str, Any]) -> None:
    def pct(p: dict[str, Any]) -> str:
        return f"{p['count']:,}/{p['n']:,} ({p['rate']:.2%})"

    def line(label: str, x: dict[str, Any]) -> str:
        return (f"{label} {x['threshold']:.2f}: false accepts {pct(x['far'])}, false rejects {pct(x['frr'])} "
                f"(every channel: {pct(x['frr_every_channel'])}); false accepts of degraded impostor readings "
                f"{pct(x['far_degraded_impostors'])}")

    print(f"{r['model']}: {r['speakers']} eSpeak NG variants{' (--quick)' if r['quick'] else ''}, "
          f"{r['genuine_trials']:,} genuine trials ({len(r['channels'])} channels; {r['genuine_trials_rule']:,} on "
          f"the rule's: {', '.join(r['rule_channels'])}), {r['impostor_trials']:,} impostor trials; {r['seconds']} s")
    use = r["in_use"]
    use_met = use["frr"]["rate"] <= r["target_frr"] and use["far"]["rate"] <= r["target_far"]
    print(line("in use,", use) + f"; FRR and FAR <= {r['target_far']:.0%}: {'met' if use_met else 'MISSED'}")
    met = r["rule_result"]["far"]["rate"] <= r["target_far"]
    verdict = "met" if met else "MISSED"
    print(line(f"rule ({r['rule']}):", r["rule_result"]) + f"; FAR <= {r['target_far']:.0%}: {verdict}")
    print(line("the same rule over every channel:", r["rule_every_channel_result"]))
    print(f"EER {r['eer']:.2%} at {r['eer_threshold']} (every channel: {r['eer_every_channel']:.2%} at "
          f"{r['eer_every_channel_threshold']})")
    i = r["impostor_scores"]
    print("genuine scores by channel (min / p5 / mean): " + "; ".join(
        f"{c} {g['min']} / {g['p5']} / {g['mean']}" for c, g in r["genuine_by_channel"].items()))
    print(f"impostor scores p95 {i['p95']} / max {i['max']} / mean {i['mean']}")
    st = r["stretch"]
    print(f"stretch check at {st['threshold']:.2f} (each ~4 s stretch of a same-voice pair against the other file, "
          f"{', '.join(r['rule_channels'])}): false rejects {pct(st['frr'])}; lowest {st['genuine']['min']}, "
          f"p5 {st['genuine']['p5']}, mean {st['genuine']['mean']}")
    print(f"FRR per channel at {r['in_use']['threshold']:.2f}: " + "; ".join(
        f"{c} {pct(p)}" for c, p in r["frr_by_channel"].items()))
    print("highest impostor pairs: " + ", ".join(f"{p['a']}/{p['b']} {p['score']}" for p in r["top_impostor_pairs"]))
    if r["refused_recordings"]:
        print(f"refused (too little speech): {', '.join(x['recording'] for x in r['refused_recordings'])}")
    print(f"one embedding (decoded 16 kHz samples in): p50 {r['embed_ms']['p50']} / p99 {r['embed_ms']['p99']} ms")


if __name__ == "__main__":
    main()
