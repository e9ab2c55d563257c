"""A completed job's `output_data`, per job type, described as exactly as the REST API: JSON Schema (2020-12).

`GET /api/v1/jobs/{id}` (and the webhooks' `JobDetail`) serve `output_data` as one object whose
shape depends on the job's `type`; this document gives each type's shape under `$defs`, named by
the type (`$defs/transcription`, ...). Served at `GET /api/schema/outputs/`; the TypeScript client's
`JobOutputs` is generated from it.

Each shape is closed: a key the server stores and this document does not name fails the check
that runs, in the tests (AUTEUR_CHECK_EVENT_SCHEMA), wherever a job's output_data is written
(jobs.life.status, jobs.life.transcript_edl). Every backend produces the same keys (the
noop backend's canned results included); the few that only some produce are optional and say so.
"""

from __future__ import annotations

import functools
from typing import Any

from jobs.events.schema import closed_object as _object
from jobs.events.schema import schema_errors, schema_validator
from jobs.specs import JobType

_UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
_INT: dict[str, Any] = {"type": "integer"}
_TEXT: dict[str, Any] = {"type": "string"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_MS: dict[str, Any] = {"type": "integer", "minimum": 0, "description": "Milliseconds."}
_NUMBER: dict[str, Any] = {"type": "number"}
_BOOL: dict[str, Any] = {"type": "boolean"}


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


_MEDIA_IDS = _described({"type": "array", "items": _UUID, "minItems": 1},
                        "The media files the job made, in the order of its outputs (GET /api/v1/media/{id}).")
_MODEL = _described(_TEXT, "The model (or engine) that made the result.")
_SEED = _described(_INT, "The seed used: the same seed and input give the same output.")
_PIECES = _described(_COUNT, "How many pieces a long file was split into (only when it was).")
_FAILED = {"code": _TEXT, "message": _TEXT}

_WORD = _object({"word": _TEXT, "start_ms": _MS, "end_ms": _MS,
                 "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1}})
_SEGMENT = _object({"id": _TEXT, "speaker": {"type": ["string", "null"]}, "start_ms": _MS, "end_ms": _MS,
                    "text": _TEXT, "words": {"type": "array", "items": {"$ref": "#/$defs/Word"}}})
# The transcript proper, as `output_data.transcript` shows it.
_TRANSCRIPT_FIELDS: dict[str, Any] = {
    "language": _described({"type": ["string", "null"]}, "The spoken language's code (`und` when unknown)."),
    "duration_ms": _MS,
    "text": _described(_TEXT, "The segments' texts joined by spaces (empty when nothing was said)."),
    "segments": {"type": "array", "items": {"$ref": "#/$defs/Segment"}},
    "model": _MODEL,
    "diarization": _object(
        {"performed": _BOOL},
        {"speakers": _described(_COUNT, "How many speakers were told apart."),
         "reason": _described(_TEXT, "Why no speakers were told apart.")},
        description="Whether speakers were told apart (the local backend has no diarization model)."),
    "alignment": _object(
        {"mode": {"enum": ["none", "script"]}},
        {name: _COUNT for name in ("script_words", "matched", "substituted", "interpolated",
                                   "recognised_words_dropped")},
        description="`script`: the words are the request's script, timed against what was heard."),
}
TRANSCRIPT = _object(_TRANSCRIPT_FIELDS, description="A transcript: words, speakers and timings.")
EDL = _object(
    {"status": {"enum": ["written", "unchanged", "off", "superseded", "pending", "failed"]}},
    {"version": _described(_INT, "The timeline's version the transcript was written in (`written`)."), **_FAILED},
    description="What became of the transcript in the project's timeline: `pending` until it is written; "
                "`off` when the project does not write transcripts; `superseded` when a later transcription of "
                "the same file was written first; `failed` with `code` and `message`.")
TIMELINE = _object(
    {"status": {"enum": ["pending", "replaced", "unchanged", "failed"]}},
    {"version": _described(_INT, "The timeline's version with the new file (`replaced`)."),
     "clips": _described(_COUNT, "How many clips now play the new file (`replaced`)."), **_FAILED},
    description="`replace_in_timeline`: whether the timeline's clips of the source now play the compressed file.")

_VIDEO = {"duration_ms": _MS, "width": _COUNT, "height": _COUNT, "output_media_ids": _MEDIA_IDS}
_VIDEO_MODEL = {**_VIDEO, "fps": _described(_NUMBER, "Frames per second of the output."), "frames": _COUNT,
                "model": _MODEL}
_AUDIO = {"duration_ms": _MS, "sample_rate": _COUNT, "output_media_ids": _MEDIA_IDS}

OUTPUT_DATA: dict[str, dict[str, Any]] = {
    JobType.TRANSCRIPTION: _object(
        {**_TRANSCRIPT_FIELDS,
         "transcript": {"$ref": "#/$defs/Transcript"},
         "caption_key": _described(_TEXT, "Where the captions made from the transcript are stored.")},
        {"edl": {"$ref": "#/$defs/Edl"}, "pieces": _PIECES},
        description="The transcript, at the top level and under `transcript` (the same fields)."),
    JobType.TTS: _object(
        {**_AUDIO, "voice_cloned": _described(_BOOL, "Whether the voice was cloned from a sample."),
         "engine": _TEXT},
        {"voice": _described(_TEXT, "The built-in voice used (the local backend's engine only).")}),
    JobType.LIP_SYNC: _object(
        {**_VIDEO_MODEL, "faces_found": _COUNT, "face_detector": _TEXT,
         "restoration": _described(_TEXT, "The face restoration applied to the mouth region, or `none`.")}),
    JobType.VIDEO_GENERATION: _object({**_VIDEO_MODEL, "seed": _SEED, "steps": _COUNT}),
    JobType.PERFORMANCE_CLONING: _object(_VIDEO_MODEL),
    JobType.GAZE_REDIRECTION: _object(_VIDEO_MODEL),
    JobType.AUDIO_GENERATION: _object(
        {**_AUDIO, "channels": _COUNT, "model": _MODEL, "seed": _SEED, "steps": _COUNT, "guidance": _NUMBER}),
    JobType.VIDEO_QUERY: _object(
        {"answer": _TEXT,
         "timestamps_ms": _described({"type": "array", "items": _MS}, "The times of the frames the answer cites."),
         "frames": _described(_COUNT, "How many frames the model looked at."),
         "range_ms": _described({"type": "array", "items": _MS, "minItems": 2, "maxItems": 2},
                                "The span of the video looked at: [start, end]."),
         "transcript_truncated": _described(_BOOL, "Whether the file's transcript was cut to fit the model."),
         "model": _MODEL},
        {"seed": _SEED}),
    JobType.RENDER: _object(
        {**_VIDEO, "frame_rate": _NUMBER, "clips": _COUNT,
         "duration_before_ms": _described(_MS, "The timeline's length before its cuts."),
         "removed_ms": _described(_MS, "How much the cuts removed."),
         "cuts": _described(_COUNT, "How many spans were cut.")},
        description="`output_media_ids`: the video, then, with sidecar captions, the SRT and WebVTT files."),
    JobType.COMPRESSION: _object(
        {**_VIDEO, "preset": {"enum": ["1080p", "720p", "480p"]}, "input_size_bytes": _COUNT,
         "output_size_bytes": _COUNT},
        {"pieces": _PIECES, "timeline": {"$ref": "#/$defs/Timeline"}}),
    JobType.IMAGE_GENERATION: _object(
        {"width": _COUNT, "height": _COUNT, "num_images": _COUNT, "model": _MODEL, "seed": _SEED, "steps": _COUNT,
         "guidance": _NUMBER, "notes": _described({"type": "array", "items": _TEXT},
                                                  "What the request asked for that the model changed or ignored."),
         "output_media_ids": _MEDIA_IDS},
        description="Image i of `num_images` used `seed + i - 1`."),
    JobType.VOICE_CONSENT: _object(
        {"passed": _described(_BOOL, "Whether every check passed: the consent is verified and can make a voice."),
         "checks": _object({name: {"enum": ["passed", "failed"]} for name in ("phrase", "speaker")},
                           description="`phrase`: the recording says the challenge's phrase. `speaker`: its "
                                       "speaker is the sample's."),
         "consent_id": _described(_UUID, "The consent, named when a voice is made (POST /voices).")}),
    JobType.LIKENESS_CONSENT: _object(
        {"passed": _described(_BOOL, "Whether every check passed: the consent is verified and covers the subject "
                                     "file's face."),
         "checks": _object({name: {"enum": ["passed", "failed"]} for name in ("phrase", "face", "speaking")},
                           description="`phrase`: the recording says the challenge's phrase. `face`: the face on "
                                       "camera is the subject's. `speaking`: that face's mouth moves with the "
                                       "words heard."),
         "consent_id": _described(_UUID, "The consent (GET /consents/{id}).")}),
}


def output_schema() -> dict[str, Any]:
    """The whole document: each type's output_data under `$defs/<type>`, and what they share."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/api/schema/outputs/",
        "title": "Auteur job outputs",
        "description": __doc__,
        "$defs": {"Transcript": TRANSCRIPT, "Segment": _SEGMENT, "Word": _WORD, "Edl": EDL, "Timeline": TIMELINE,
                  **{str(kind): schema for kind, schema in OUTPUT_DATA.items()}},
    }


@functools.lru_cache(maxsize=16)
def _validator(job_type: str) -> Any:
    return schema_validator(output_schema(), job_type)


def output_errors(output_data: Any, job_type: str) -> list[str]:
    """What in `output_data` (as the API serves it) breaks the type's shape (empty when it validates)."""
    return schema_errors(_validator(str(job_type)), output_data)


def output_data_check(*, job_type: str, output_data: dict[str, Any]) -> None:
    """Refuse to store an output_data that the published shape does not describe: on in the tests
    (AUTEUR_CHECK_EVENT_SCHEMA), so every job the suite completes, on any backend and any path (a
    GPU call, pieces, the result cache, a follow-up's record), is checked as the API will serve it."""
    from django.conf import settings

    if not settings.AUTEUR_CHECK_EVENT_SCHEMA:
        return
    from jobs.selectors.jobs import job_output_data

    errors = output_errors(job_output_data(job_type=job_type, output_data=output_data), job_type)
    if errors:
        raise ValueError(f"a {job_type} job's output_data breaks the published output schema: {errors}")
