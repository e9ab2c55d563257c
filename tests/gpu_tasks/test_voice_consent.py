"""The voice-consent engine: the phrase rule's arithmetic by hand, and the engine on real speech
(eSpeak NG voices through the local TTS engine, Whisper tiny.en, the Resemblyzer speaker encoder)."""

from __future__ import annotations

import itertools
import math
import random
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gpu_tasks.contract import EngineContext
from gpu_tasks.engines import speaker, transcription, voice_consent
from gpu_tasks.engines.tts import synthesize, write_wav
from gpu_tasks.engines.voice_consent import normalise_words, passes, substring_wer
from gpu_tasks.errors import PermanentGpuError
from media.consent_phrases import CHALLENGE_WORDS, STATEMENT, phrase_text
from tests.gpu_tasks.helpers import ffmpeg

# Two challenges of words from the committed list, read by eSpeak NG voices at speed 0.9 (as the
# speech_wav fixture is). The sample is the right voice reading other text, as a voice's sample is.
ISSUED = ["coffee", "island", "camera", "dragon", "pencil", "station", "mountain", "tiger"]
OTHER = ["chocolate", "village", "monkey", "garage", "teacher", "lemon", "castle", "winter"]
RIGHT_VOICE, OTHER_VOICE = "en-us+m5", "en-us+f3"
SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog near the river bank, and then it rests in the shade."


def brute_force_wer(ref: list[str], hyp: list[str]) -> float:
    """min over every window of hyp of the plain Levenshtein distance, divided by len(ref)."""

    def levenshtein(a: list[str], b: list[str]) -> int:
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            new = [i]
            for j, y in enumerate(b, 1):
                new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (x != y)))
            row = new
        return row[-1]

    windows = [hyp[i:j] for i in range(len(hyp) + 1) for j in range(i, len(hyp) + 1)]
    return min(levenshtein(ref, w) for w in windows) / len(ref)


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c d", "a b c d", 0.0),
        ("a b c d", "okay here goes a b c d", 0.0),  # said before the phrase: free
        ("a b c d", "a b c d thank you", 0.0),  # said after it: free
        ("a b c d", "a x c d", 0.25),  # one substitution
        ("a b c d", "a c d", 0.25),  # one deletion
        ("a b c d", "a b x c d", 0.25),  # one insertion inside the phrase
        ("a b c d", "a b x y c d", 0.5),  # two insertions
        ("a b c d", "b c", 0.5),  # two words lost at the ends are deletions, not free
        ("a b c d", "x y z", 1.0),  # nothing right: every word substituted or deleted
        ("a b c d", "", 1.0),  # nothing heard: every word deleted
        ("", "a b", 0.0),  # nothing to miss
        ("a b", "a b a b a b", 0.0),  # a repeating transcript: the best window
        ("a b c d e f g h", "um a b c x e f g h the end", 0.125),
    ],
)
def test_substring_wer_by_hand(ref: str, hyp: str, expected: float) -> None:
    assert substring_wer(ref.split(), hyp.split()) == pytest.approx(expected)


def test_substring_wer_is_the_best_window_of_a_plain_levenshtein() -> None:
    rng = random.Random(3)
    for _ in range(300):
        ref = [rng.choice("abcd") for _ in range(rng.randint(1, 6))]
        hyp = [rng.choice("abcde") for _ in range(rng.randint(0, 8))]
        assert substring_wer(ref, hyp) == pytest.approx(brute_force_wer(ref, hyp)), (ref, hyp)


def test_normalise_words_keeps_lower_case_letters_and_apostrophes() -> None:
    assert normalise_words("Orange, WINDOW... it's 42 don't-stop!\nRiver") == [
        "orange", "window", "it's", "don't", "stop", "river",
    ]  # fmt: skip
    assert normalise_words("") == []
    assert normalise_words(phrase_text(ISSUED, STATEMENT)) == ISSUED + normalise_words(STATEMENT)


@pytest.mark.parametrize(
    ("challenge_wer", "phrase_wer", "similarity", "phrase", "voice"),
    [
        (0.0, 0.0, 0.95, "passed", "passed"),
        (0.25, 0.25, 0.89, "passed", "passed"),  # each bound is inclusive
        (0.375, 0.2, 0.95, "failed", "passed"),  # the fresh words misheard: a statement cannot carry them
        (0.125, 0.3, 0.95, "failed", "passed"),  # the statement left out
        (0.0, 0.0, 0.8899, "passed", "failed"),
        (1.0, 1.0, -1.0, "failed", "failed"),
    ],
)
def test_passes_states_the_rule(
    challenge_wer: float, phrase_wer: float, similarity: float, phrase: str, voice: str
) -> None:
    figures = {"phrase": {"challenge_wer": challenge_wer, "phrase_wer": phrase_wer, "transcript_words": 20},
               "speaker": {"similarity": similarity, "stretch_similarity": similarity}}  # fmt: skip
    verdict = passes(figures, 0.89, 0.8)
    assert verdict == {"passed": phrase == voice == "passed", "checks": {"phrase": phrase, "speaker": voice}}


@pytest.mark.parametrize(
    "figures",
    [
        {},
        {"phrase": {"challenge_wer": 0.0, "phrase_wer": 0.0}, "speaker": {}},
        {"phrase": {"challenge_wer": float("nan"), "phrase_wer": 0.0}, "speaker": {"similarity": 0.9}},
        {"phrase": {"challenge_wer": -0.1, "phrase_wer": 0.0}, "speaker": {"similarity": 0.9}},
        {"phrase": {"challenge_wer": 0.0, "phrase_wer": 1.5}, "speaker": {"similarity": 0.9}},
        {"phrase": {"challenge_wer": 0.0, "phrase_wer": 0.0}, "speaker": {"similarity": 2.0}},
        {"phrase": {"challenge_wer": 0.0, "phrase_wer": 0.0}, "speaker": {"similarity": True}},
        {"phrase": {"challenge_wer": "0", "phrase_wer": 0.0}, "speaker": {"similarity": 0.9}},
        {"phrase": [0.0, 0.0], "speaker": {"similarity": 0.9}},
    ],
)
def test_passes_refuses_figures_the_engine_does_not_produce(figures: dict[str, Any]) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        passes(figures, 0.89, 0.8)
    assert refused.value.code == "invalid_result"


def say(path: Path, text: str, voice: str) -> Path:
    pcm, rate = synthesize(text, speed=0.9, voice=voice)
    write_wav(path, pcm, rate)
    return path


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("consent")
    right = say(folder / "right.wav", phrase_text(ISSUED, STATEMENT), RIGHT_VOICE)
    # The right reading as the audio stream of a video, as a phone's camera records it.
    video = folder / "right.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x120:r=25", "-i", str(right), "-shortest",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video))  # fmt: skip
    return {
        "right": right,
        "right_video": video,
        "sample": say(folder / "sample.wav", SAMPLE_TEXT, RIGHT_VOICE),
        "other_voice": say(folder / "other_voice.wav", phrase_text(ISSUED, STATEMENT), OTHER_VOICE),
        "other_words": say(folder / "other_words.wav", phrase_text(OTHER, STATEMENT), RIGHT_VOICE),
        "silence": silence(folder / "silence.wav"),
    }


def silence(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "4", str(path))
    return path


def payload(recording: Path, sample: Path, **overrides: Any) -> dict[str, Any]:
    return {"recording_media": {"path": str(recording)}, "sample_media": {"path": str(sample)},
            "phrase_words": ISSUED, "statement": STATEMENT, **overrides}  # fmt: skip


def verify(tmp_path: Path, body: Mapping[str, Any]) -> dict[str, Any]:
    return voice_consent.run_local(body, EngineContext(workdir=tmp_path / "work", payload=body))


def test_the_challenge_words_are_on_the_list() -> None:
    assert set(ISSUED) | set(OTHER) <= set(CHALLENGE_WORDS)
    assert not set(ISSUED) & set(OTHER)


def test_the_right_voice_reading_the_phrase_passes_both_checks(tmp_path: Path, readings: dict[str, Path]) -> None:
    progress: list[float] = []
    body = payload(readings["right_video"], readings["sample"])
    result = voice_consent.run_local(body, EngineContext(workdir=tmp_path, payload=body, progress=progress.append))
    assert set(result) == {"phrase", "speaker", "models"}
    assert set(result["phrase"]) == {"challenge_wer", "phrase_wer", "transcript_words"}
    assert result["phrase"]["transcript_words"] >= len(ISSUED)
    assert result["models"] == {"transcription": transcription.MODEL_NAME, "speaker": speaker.MODEL_NAME}
    # No word of the transcript leaves the engine: only numbers, and the models' names.
    assert all(isinstance(v, int | float) for part in ("phrase", "speaker") for v in result[part].values())
    assert set(result["speaker"]) == {"similarity", "stretch_similarity"}
    assert passes(result, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD) == {
        "passed": True, "checks": {"phrase": "passed", "speaker": "passed"},
    }, result  # fmt: skip
    assert progress and progress == sorted(progress)


def test_another_voice_reading_the_phrase_fails_the_speaker_check(
    tmp_path: Path, readings: dict[str, Path]
) -> None:
    result = verify(tmp_path, payload(readings["other_voice"], readings["sample"]))
    verdict = passes(result, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD)
    assert verdict == {"passed": False, "checks": {"phrase": "passed", "speaker": "failed"}}, result


def test_the_right_voice_reading_another_challenge_fails_the_phrase_check(
    tmp_path: Path, readings: dict[str, Path]
) -> None:
    result = verify(tmp_path, payload(readings["other_words"], readings["sample"]))
    verdict = passes(result, speaker.DEFAULT_THRESHOLD, speaker.STRETCH_THRESHOLD)
    assert verdict == {"passed": False, "checks": {"phrase": "failed", "speaker": "passed"}}, result
    assert result["phrase"]["challenge_wer"] >= 0.75


def test_only_the_priced_length_of_the_recording_is_heard(tmp_path: Path, readings: dict[str, Path]) -> None:
    """A recording is read for at most its priced length (max_duration_ms) and MAX_RECORDING_S:
    the right reading followed by another challenge's, priced at the first reading's length,
    is heard as the first alone."""
    both = tmp_path / "both.wav"
    ffmpeg("-i", str(readings["right"]), "-i", str(readings["other_words"]),
           "-filter_complex", "[0:a][1:a]concat=n=2:v=0:a=1", "-ar", "16000", str(both))  # fmt: skip
    with wave.open(str(readings["right"])) as first:
        first_ms = first.getnframes() * 1000 // first.getframerate()
    body = payload(both, readings["sample"])
    body["recording_media"]["max_duration_ms"] = first_ms
    body["phrase_words"] = OTHER
    result = verify(tmp_path, body)
    assert result["phrase"]["challenge_wer"] >= 0.75, result
    assert voice_consent.MEDIA_LIMITS["recording_media"].max_seconds == voice_consent.MAX_RECORDING_S == 60
    assert voice_consent._read_limit({"path": "x", "max_duration_ms": 90_000}, voice_consent.MAX_RECORDING_S) == 60
    assert voice_consent._read_limit({"path": "x"}, voice_consent.MAX_RECORDING_S) == 60


def test_a_recording_without_speech_is_invalid_media(tmp_path: Path, readings: dict[str, Path]) -> None:
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(readings["silence"], readings["sample"]))
    assert refused.value.code == "invalid_media"


def test_a_video_without_sound_is_invalid_media(tmp_path: Path, readings: dict[str, Path]) -> None:
    mute = tmp_path / "mute.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:r=10:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(mute))
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(mute, readings["sample"]))
    assert refused.value.code == "invalid_media"


@pytest.mark.parametrize(
    "overrides",
    [
        {"phrase_words": None},
        {"phrase_words": " ".join(ISSUED)},
        {"phrase_words": ISSUED[:7]},
        {"phrase_words": [*ISSUED, "taxi"]},
        {"phrase_words": [*ISSUED[:7], "camera"]},  # a repeat
        {"phrase_words": [*ISSUED[:7], "Taxi"]},
        {"phrase_words": [*ISSUED[:7], "taxi2"]},
        {"phrase_words": [*ISSUED[:7], ""]},
        {"phrase_words": [*ISSUED[:7], "a" * 33]},
        {"phrase_words": [*ISSUED[:7], 8]},
        {"statement": None},
        {"statement": 5},
        {"statement": "!!! ..."},
        {"statement": "x" * 201},
        {"statement": "yes " * 41},
    ],
)
def test_a_malformed_challenge_is_invalid_input_before_any_media_is_read(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    missing = tmp_path / "never-read.wav"
    with pytest.raises(PermanentGpuError) as refused:
        verify(tmp_path, payload(missing, missing, **overrides))
    assert refused.value.code == "invalid_input"


def test_the_engine_takes_the_word_count_the_server_issues() -> None:
    from media import consent_phrases

    assert consent_phrases.CHALLENGE_WORD_COUNT == voice_consent.CHALLENGE_WORD_COUNT
    assert all(len(w) <= voice_consent.MAX_WORD_CHARS for w in CHALLENGE_WORDS)
    assert len(STATEMENT) <= voice_consent.MAX_STATEMENT_CHARS
    for words in itertools.islice(itertools.combinations(CHALLENGE_WORDS, 8), 3):
        assert voice_consent.validate({"phrase_words": list(words), "statement": STATEMENT})[0] == list(words)
    assert math.isclose(voice_consent.MAX_WER, 0.25)
