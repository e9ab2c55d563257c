"""Voice consent verification: did the speaker read the issued phrase, in the voice of the sample?

Payload: `{"recording_media": input_ref, "sample_media": input_ref, "phrase_words": [8 words],
"statement": str}`. The recording (audio, or a video's audio stream) is the speaker reading
"<w1>, <w2>, ... <w8>. <statement>"; the sample is the audio a voice is to be cloned from.
Result: `{"phrase": {"challenge_wer", "phrase_wer", "transcript_words"}, "speaker": {"similarity"},
"models": {"transcription", "speaker"}}`. The transcript itself is never returned: only how far it
is from the phrase, and how many words it had.

Phrase check: the local transcription engine's Whisper tiny.en transcribes the recording in
English with no initial prompt and without conditioning on its own earlier text, so nothing
biases it toward the phrase: a wrong reading cannot be "heard" as the right one. Both the
phrase and the transcript are normalised (`normalise_words`), and `substring_wer` measures the
phrase against the best-matching stretch of the transcript, so words said before or after it
("okay, here goes") cost nothing. Two figures: `challenge_wer` (the eight issued words alone,
which carry the challenge's freshness) and `phrase_wer` (the words and then the statement, which
keeps the statement required). `passes` holds the rule: both at most `MAX_WER`.

Speaker check: `gpu_tasks.engines.speaker` embeds the recording and the sample; `passes` compares
their cosine similarity with the threshold the caller gives.

The recording is read for at most `MAX_RECORDING_S` seconds (its declared media limit, checked at
submission), the sample for at most `MAX_SAMPLE_S`: the work is bounded whatever the files hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gpu_tasks.contract import EngineContext, input_limit_s
from gpu_tasks.errors import PermanentGpuError
from gpu_tasks.input_bounds import MediaLimit

MAX_WER = 0.25
MAX_RECORDING_S = 60
# A voice sample longer than this is embedded from its first MAX_SAMPLE_S seconds.
MAX_SAMPLE_S = 60
CHALLENGE_WORD_COUNT = 8
MAX_WORD_CHARS = 32
MAX_STATEMENT_CHARS = 200
MAX_STATEMENT_WORDS = 40
SAMPLE_RATE = 16000
LEAD_SILENCE_S = 0.5
MEDIA_LIMITS = {"recording_media": MediaLimit(max_seconds=MAX_RECORDING_S)}

_WORD = re.compile(r"[a-z']+")
_CHALLENGE_WORD = re.compile(r"[a-z]+")


def normalise_words(text: str) -> list[str]:
    """The words of `text` as the phrase rule compares them: lower case runs of letters and
    apostrophes, so punctuation, capitals and digits never count as a difference of their own
    (the challenge words and the statement hold no digits)."""
    return _WORD.findall(text.lower())


def substring_wer(ref: Sequence[str], hyp: Sequence[str]) -> float:
    """The word error rate of `ref` against the contiguous stretch of `hyp` that matches it best:
    min over windows w of hyp of Levenshtein(ref, w) / len(ref), with substitutions, deletions and
    insertions each costing 1.

    One Levenshtein table with a free start and a free end in `hyp` (row 0 all zeros: the window
    may start anywhere; the answer is the last row's minimum: it may end anywhere), kept one row
    at a time: O(len(ref) x len(hyp)) time, O(len(hyp)) memory. An empty `ref` is 0.0 (nothing to
    miss); any `ref` against an empty `hyp` is 1.0 (every word deleted).
    """
    if not ref:
        return 0.0
    previous = [0] * (len(hyp) + 1)
    for i, word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, heard in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
        previous = current
    return min(previous) / len(ref)


def validate(payload: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The challenge words and the statement's words, or PermanentGpuError("invalid_input")."""
    words = payload.get("phrase_words")
    if not isinstance(words, list) or len(words) != CHALLENGE_WORD_COUNT:
        raise PermanentGpuError("invalid_input", f"phrase_words must be a list of {CHALLENGE_WORD_COUNT} words")
    for word in words:
        if not isinstance(word, str) or len(word) > MAX_WORD_CHARS or not _CHALLENGE_WORD.fullmatch(word):
            raise PermanentGpuError(
                "invalid_input", f"each phrase word must be 1 to {MAX_WORD_CHARS} lower-case letters a-z"
            )
    if len(set(words)) != len(words):
        raise PermanentGpuError("invalid_input", "the phrase words must be distinct")
    statement = payload.get("statement")
    if not isinstance(statement, str) or len(statement) > MAX_STATEMENT_CHARS:
        raise PermanentGpuError("invalid_input", f"statement must be text of at most {MAX_STATEMENT_CHARS} characters")
    statement_words = normalise_words(statement)
    if not 1 <= len(statement_words) <= MAX_STATEMENT_WORDS:
        raise PermanentGpuError("invalid_input", f"statement must have 1 to {MAX_STATEMENT_WORDS} words")
    return list(words), statement_words


def phrase_figures(words: Sequence[str], statement_words: Sequence[str], heard: Sequence[str]) -> dict[str, Any]:
    """The phrase check's figures for the transcript's normalised words `heard`."""
    return {
        "challenge_wer": substring_wer(words, heard),
        "phrase_wer": substring_wer([*words, *statement_words], heard),
        "transcript_words": len(heard),
    }


def heard_words(samples: Any) -> list[str]:
    """The normalised words Whisper tiny.en hears in `samples` (16 kHz mono float32), unprompted.

    Decoded as the transcription engine decodes (beam 5, no voice-activity filter), but with no
    initial prompt and without conditioning on earlier text. LEAD_SILENCE_S of silence goes first:
    tiny.en often misses the opening word of audio whose speech starts at once (in
    bench/consent_phrases.py's readings it heard the first challenge word in 62 % of them, the
    others in 80-85 %; with the silence, 69 %), and silence tells it nothing about what was said.
    """
    import numpy as np

    from gpu_tasks.engines import transcription

    model = transcription.load_model(transcription.ENGLISH)
    lead = np.zeros(round(LEAD_SILENCE_S * SAMPLE_RATE), dtype=np.float32)
    segments, _info = model.transcribe(
        np.concatenate([lead, np.asarray(samples, dtype=np.float32)]),
        language=transcription.ENGLISH,
        beam_size=5,
        initial_prompt=None,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return normalise_words(" ".join(segment.text for segment in segments))


def _read_limit(ref: Any, most: float) -> float:
    priced = input_limit_s(ref)
    return most if priced is None else min(priced, most)


def run_local(payload: Mapping[str, Any], ctx: EngineContext) -> dict[str, Any]:
    words, statement_words = validate(payload)
    from gpu_tasks.engines import speaker, transcription
    from gpu_tasks.engines.media import decode_audio

    recording_ref, sample_ref = payload.get("recording_media"), payload.get("sample_media")
    recording = ctx.input_path(recording_ref, "recording_media", streams=("audio",))
    sample = ctx.input_path(sample_ref, "sample_media", streams=("audio",))
    speech = decode_audio(recording, SAMPLE_RATE, max_s=_read_limit(recording_ref, MAX_RECORDING_S))
    ctx.progress(5.0)
    heard = heard_words(speech)
    ctx.progress(60.0)
    recording_voice, recording_stretches = speaker.embed_stretches(speech)
    ctx.progress(80.0)
    # The sample as a voice keeps it: its first `sample_max_s` (the caller's setting) at most.
    kept = min(_read_limit(sample_ref, MAX_SAMPLE_S), _sample_window(payload))
    sample_voice, sample_stretches = speaker.embed_stretches(decode_audio(sample, SAMPLE_RATE, max_s=kept))
    # Each stretch of either file against the other file whole: a second speaker in one shows.
    stretch = min([speaker.similarity(s, sample_voice) for s in recording_stretches]
                  + [speaker.similarity(s, recording_voice) for s in sample_stretches])
    return {
        "phrase": phrase_figures(words, statement_words, heard),
        "speaker": {"similarity": float(speaker.similarity(recording_voice, sample_voice)),
                    "stretch_similarity": float(stretch)},
        "models": {"transcription": transcription.MODEL_NAME, "speaker": speaker.MODEL_NAME},
    }


def _sample_window(payload: Mapping[str, Any]) -> float:
    """How much of the sample the voice keeps (`sample_max_s`, 1..MAX_SAMPLE_S; MAX_SAMPLE_S when not said)."""
    value = payload.get("sample_max_s", MAX_SAMPLE_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= MAX_SAMPLE_S:
        raise PermanentGpuError("invalid_input", f"sample_max_s must be a number of seconds from 1 to {MAX_SAMPLE_S}")
    return float(value)


def _figure(figures: Mapping[str, Any], part: str, name: str, low: float, high: float) -> float:
    section = figures.get(part)
    value = section.get(name) if isinstance(section, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentGpuError("invalid_result", f"the verification's {part}.{name} is not a number")
    if not low <= value <= high:
        raise PermanentGpuError("invalid_result", f"the verification's {part}.{name} is out of range")
    return float(value)


def passes(figures: Mapping[str, Any], speaker_threshold: float, stretch_threshold: float) -> dict[str, Any]:
    """The verdict on a verification's figures (a result of `run_local`, or of the Modal engine):
    the phrase passes when challenge_wer <= MAX_WER and phrase_wer <= MAX_WER; the speaker passes
    when the similarity is at least `speaker_threshold` and every stretch of either file is at least
    `stretch_threshold` from the other (`stretch_similarity`). The figures come from a GPU container, so
    they are checked first: a WER is a number from 0 to 1 (`substring_wer` never exceeds 1: the
    empty window costs len(ref)), a similarity one from -1 to 1; anything else is
    PermanentGpuError("invalid_result")."""
    challenge_wer = _figure(figures, "phrase", "challenge_wer", 0.0, 1.0)
    phrase_wer = _figure(figures, "phrase", "phrase_wer", 0.0, 1.0)
    # A unit vectors' cosine, with room for float rounding.
    similarity = _figure(figures, "speaker", "similarity", -1.0 - 1e-6, 1.0 + 1e-6)
    stretch = _figure(figures, "speaker", "stretch_similarity", -1.0 - 1e-6, 1.0 + 1e-6)
    phrase_ok = challenge_wer <= MAX_WER and phrase_wer <= MAX_WER
    speaker_ok = similarity >= speaker_threshold and stretch >= stretch_threshold
    return {
        "passed": phrase_ok and speaker_ok,
        "checks": {"phrase": "passed" if phrase_ok else "failed", "speaker": "passed" if speaker_ok else "failed"},
    }
