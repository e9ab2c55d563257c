"""The content policy at the door: the texts a request asks a model to act on are screened before
the job is priced, so a refused request is a 422 `content_policy_violation` that made no job and
charged nothing.

Which fields are screened, and against which policy, is declared with the field
(`jobs.inputs.ScreenedText`; `JobSpec.screened`). The answer names every flagged field with all of
its categories, never the text or a score. A refusal is recorded (`ScreeningRefusal`: the account,
the member, the type, the fields and categories, the screener's version) in a transaction of its
own once the request is refused, whatever transaction the refusal came out of.

Order: a submission screens after the checks that cost nothing or a query (the owner checks, plan,
backend, replay, a balance that covers the least price, the account's review hold for a generative
type: jobs.life.standing) and before the request is resolved and priced; a quote, a batch and a
retry alike. Each refusal recorded counts towards the account's review hold.

What a request's resolution adds is screened once it is resolved, before it is priced: a video's
transcript the model is given, a render's captions to burn into the picture (field `captions`, under
the "full" policy), and the pictures of the input files a generative model works from
(jobs.intake.media_screening), all in one answer. A render's sidecar captions (SRT and WebVTT files
beside the video) are not screened: they are the project's own transcript handed back as text, as a
transcription's output is, and no model acts on them; burned ones become part of a picture this
server makes.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction

from auteur.core.untrusted import InputTooComplex
from auteur.users.models import User
from jobs import gpu_client
from jobs.errors import ContentPolicyViolation
from jobs.intake.media_screening import media_flagged, screened_media
from jobs.life.standing import standing_refusal_count
from jobs.models import ScreeningRefusal
from jobs.payloads import TRANSCRIPT_PARAM
from jobs.selectors.requests import content_policy_strict
from jobs.specs import JobSpec

MESSAGE = "The request was refused by the content policy: {fields}."
PIECE_MARK = "#"  # a long text screened in pieces: `transcript#2` is named `transcript`
# Where a resolved render's input_params keep the captions it burns in (an ASS document,
# jobs.selectors.requests); screened as the request's field `captions`.
BURNED_CAPTIONS_PARAM = "captions_ass"


def screened_texts(spec: JobSpec, params: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[str, str]]:
    """{field as the answer names it: (text, policy)} of a request's screened fields that it sets,
    and of the transcript its resolution took for the model (`transcript`, in pieces the screener
    takes: `transcript#1`...; named `transcript` in the answer)."""
    texts = {f"{prefix}{name}": (params[name], policy) for name, policy in spec.screened.items()
             if isinstance(params.get(name), str) and params[name]}
    step = gpu_client.SCREEN_MAX_CHARS
    transcript = params.get(TRANSCRIPT_PARAM)
    if isinstance(transcript, str) and transcript:
        for n, start in enumerate(range(0, len(transcript), step)):
            texts[f"{prefix}transcript{PIECE_MARK}{n}"] = (transcript[start:start + step], "full")
    burned = params.get(BURNED_CAPTIONS_PARAM)
    if isinstance(burned, str) and burned:
        lines = burned_caption_text(burned)
        for n, start in enumerate(range(0, len(lines), step)):
            texts[f"{prefix}captions{PIECE_MARK}{n}"] = (lines[start:start + step], "full")
    return texts


def burned_caption_text(ass: str) -> str:
    """The words a render's burned-in captions show, one cue a line: the ASS document
    jobs.selectors.requests made from the project's transcript, less its styles and override tags."""
    import pysubs2

    return "\n".join(text for event in pysubs2.SSAFile.from_string(ass)
                     if not event.is_comment and (text := event.plaintext.strip()))


def resolved_part(params: Mapping[str, Any]) -> dict[str, Any]:
    """What a request's resolution added to its parameters for a model to read or the picture to
    show (a video's transcript, a render's burned-in captions): screened once the request is
    resolved, its own fields having been before."""
    return {name: params[name] for name in (TRANSCRIPT_PARAM, BURNED_CAPTIONS_PARAM) if name in params}


def resolved_screen(*, spec: JobSpec, params: Mapping[str, Any], account_id: uuid.UUID | None = None) -> None:
    """A resolved request's screening: what its resolution added, and the pictures of its screened media."""
    resolved_requests_screen([("", spec, params)], account_id=account_id)


def resolved_requests_screen(requests: list[tuple[str, JobSpec, Mapping[str, Any]]],
                             account_id: uuid.UUID | None = None) -> None:
    """Many resolved requests (a batch's items) screened at once: what each one's resolution added
    (`resolved_part`) and the pictures of its screened media (jobs.intake.media_screening)."""
    requests_screen([(prefix, spec, {**resolved_part(params), **{name: params[name] for name in spec.screened_media
                                                                  if name in params}})
                     for prefix, spec, params in requests], media=True, account_id=account_id)


def screening_check(*, texts: Mapping[str, tuple[str, str]], job_types: Mapping[str, str],
                    media: Mapping[str, str] | None = None, account_id: uuid.UUID | None = None) -> None:
    """Raise ContentPolicyViolation naming every flagged field unless the policy passes them all.
    `job_types`: each field's job type (a batch's items differ); the refusal is recorded under the
    first flagged field's. `media`: {field: media id} of resolved screened media fields, whose
    pictures are screened (jobs.intake.media_screening). `account_id`: the paying account, whose
    workspace's strict policy (if its owner chose it) refuses more: read only when a field is
    refused by that policy and not by the platform's."""
    named: dict[str, list[str]] = {}
    strict: dict[str, list[str]] = {}
    versions: dict[str, str] = {}

    def add(into: dict[str, list[str]], field: str, found: tuple[str, ...], version: str) -> None:
        if found:
            categories = into.setdefault(field, [])
            categories += [c for c in found if c not in categories]
            versions.setdefault(field, version)

    if texts:
        _check_work(texts)
        # Each distinct (text, policy) once (a batch's items often share a prompt): its verdict is
        # every field's that holds it.
        distinct = {entry: str(n) for n, entry in enumerate(dict.fromkeys(texts.values()))}
        verdict = gpu_client.screen_texts({key: entry for entry, key in distinct.items()})
        for field, entry in texts.items():
            add(named, field.partition(PIECE_MARK)[0], verdict.flagged.get(distinct[entry], ()), verdict.model_version)
            add(strict, field.partition(PIECE_MARK)[0], verdict.strict_flagged.get(distinct[entry], ()),
                verdict.model_version)
    for field, pictures in media_flagged(media or {}, job_types).items():
        add(named, field, pictures.categories, pictures.model_version)
        add(strict, field, pictures.strict_categories, pictures.model_version)
    if strict and account_id is not None and content_policy_strict(account_id):
        for field, categories in strict.items():
            add(named, field, tuple(categories), versions[field])
    if not named:
        return
    listed = ", ".join(f"{field} ({', '.join(categories)})" for field, categories in named.items())
    flagged = [{"field": field, "categories": categories} for field, categories in named.items()]
    refusal = ContentPolicyViolation(MESSAGE.format(fields=listed),
                                     details={"flagged": flagged, "policy_version": gpu_client.POLICY_VERSION})
    named_first = next(iter(named))
    first = next(field for field in job_types if field.partition(PIECE_MARK)[0] == named_first)
    refusal.job_type, refusal.model_version = job_types[first], versions[named_first]
    raise refusal


def _check_work(texts: Mapping[str, tuple[str, str]]) -> None:
    """Bound what screening a request costs before any of it is done: the characters of its
    distinct texts together, and each one's growth under Unicode normalisation (which the
    screener's work follows). 422 `input_too_complex` otherwise."""
    # Each distinct text once, under the first field that holds it.
    distinct = {text: field for field, (text, _policy) in reversed(list(texts.items()))}
    total = sum(len(text) for text in distinct)
    most = settings.AUTEUR_SCREENING_MAX_CHARS_PER_REQUEST
    if total > most:
        raise InputTooComplex(
            f"The request's texts hold {total} characters, more than the {most} one request may have screened: "
            "send them in several requests.",
            details={"cause": "screened_characters", "limit": most, "value": total},
        )
    for text, field in distinct.items():
        grown = len(unicodedata.normalize("NFKC", text))
        if grown > settings.AUTEUR_SCREENING_MAX_EXPANSION * len(text) + 64:
            raise InputTooComplex(
                f"{field.partition(PIECE_MARK)[0]}: its characters grow {grown / len(text):.1f} times when "
                "normalised; write the text out.",
                details={"cause": "screened_expansion", "field": field.partition(PIECE_MARK)[0],
                         "limit": settings.AUTEUR_SCREENING_MAX_EXPANSION},
            )


def request_screen(*, spec: JobSpec, params: Mapping[str, Any], media: bool = False,
                   account_id: uuid.UUID | None = None) -> None:
    """A single request's screening (a submission, a quote, a retry) for the paying account."""
    requests_screen([("", spec, params)], media=media, account_id=account_id)


def requests_screen(requests: list[tuple[str, JobSpec, Mapping[str, Any]]], *, media: bool = False,
                    account_id: uuid.UUID | None = None) -> None:
    """Many requests screened at once, each (the prefix its fields are named with, e.g. `items[3].`,
    its type, its parameters): a batch's items, a bulk retry's jobs. `media`: the parameters are
    resolved (a job's input_params), and the pictures of their screened media are screened too.
    `account_id`: the paying account, whose workspace's policy may be stricter (screening_check)."""
    texts: dict[str, tuple[str, str]] = {}
    files: dict[str, str] = {}
    job_types: dict[str, str] = {}
    for prefix, spec, params in requests:
        own = screened_texts(spec, params, prefix=prefix)
        texts.update(own)
        job_types.update(dict.fromkeys(own, spec.type.value))
        if media:
            named = screened_media(spec, params, prefix=prefix)
            files.update(named)
            job_types.update(dict.fromkeys(named, spec.type.value))
    screening_check(texts=texts, job_types=job_types, media=files, account_id=account_id)


@contextmanager
def refusals_recorded(*, user: User, member_id: uuid.UUID | None) -> Iterator[None]:
    """Record a content policy refusal that leaves the block, after any transaction inside it has
    rolled back, then let it go on to the caller."""
    try:
        yield
    except ContentPolicyViolation as refusal:
        refusal_record(user=user, member_id=member_id, refusal=refusal)
        raise


def refusal_record(*, user: User, member_id: uuid.UUID | None, refusal: ContentPolicyViolation) -> None:
    """Record the refusal and count it towards the account's review hold, in one transaction
    (jobs.life.standing: the hold is decided under the standing's lock)."""
    with transaction.atomic():
        ScreeningRefusal.objects.create(
            user=user, member_id=member_id, type=refusal.job_type, flagged=refusal.details["flagged"],
            model_version=refusal.model_version[:64], policy_version=refusal.details["policy_version"],
        )
        standing_refusal_count(user_id=user.pk,
                               categories={c for field in refusal.details["flagged"] for c in field["categories"]})
