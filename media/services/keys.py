"""Storage keys of media objects and the filenames in them: one rule for every writer."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from pathlib import PurePosixPath

from media.models import MediaFile

MAX_FILENAME_LENGTH = 255
SAFE_STEM_LENGTH = 80
# The folder of upload keys; a sanitized filename has no "/", so no other key can be one.
UPLOAD_DIR = "upload"
# Every thumbnail is a JPEG (media.probing.service.save_thumbnail).
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
# The first segment of every key in the public store, and of no key in the private one (whose keys
# start with projects/ or voices/): a deletion is sent to the store its key names.
PUBLIC_DIR = "pub"
# Random bytes naming a publication's folder: its URL cannot be guessed from another's.
PUBLIC_TOKEN_BYTES = 24


def normalize_content_type(content_type: str) -> str:
    """``Video/MP4; codecs=avc1`` -> ``video/mp4``: parameters are not part of the decision."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def filename_extension(filename: str) -> str:
    name = PurePosixPath(filename.replace("\\", "/")).name
    return name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


def safe_filename(filename: str, *, fallback_ext: str = "bin") -> str:
    """A filename fit for a storage key, whatever the client sent.

    Only the last path component survives; accents are folded to ASCII; anything outside
    ``[A-Za-z0-9._-]`` becomes ``_`` (runs collapsed); no leading dot or dash; the stem is capped.
    """
    name = PurePosixPath(filename.replace("\\", "/")).name
    ext = filename_extension(name)
    stem = name[: -(len(ext) + 1)] if ext else name
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = "".join(c if (c.isalnum() or c in "._-") else "_" for c in stem)
    stem = re.sub(r"_{2,}", "_", stem)
    stem = stem.strip("._- ")[:SAFE_STEM_LENGTH].strip("._-") or "file"
    ext = "".join(c for c in ext.lower() if c.isascii() and c.isalnum())[:10] or fallback_ext
    return f"{stem}.{ext}"


def media_prefix(*, project_id: uuid.UUID | str, media_id: uuid.UUID | str) -> str:
    return f"projects/{project_id}/media/{media_id}"


def media_key(*, project_id: uuid.UUID | str, media_id: uuid.UUID | str, filename: str) -> str:
    """Where a file's bytes live once they can no longer change (a confirmed upload, a job output)."""
    return f"{media_prefix(project_id=project_id, media_id=media_id)}/{safe_filename(filename)}"


def upload_key(*, project_id: uuid.UUID | str, media_id: uuid.UUID | str, filename: str) -> str:
    """Where a client's signed PUT writes: a key of its own, which confirm moves away from.

    A signed PUT URL cannot be revoked before it expires (S3 has no way to), so the bytes that
    are probed and priced must live under a key that no such URL names.
    """
    return f"{media_prefix(project_id=project_id, media_id=media_id)}/{UPLOAD_DIR}/{safe_filename(filename)}"


def confirmed_key_for(media: MediaFile) -> str:
    """The key confirm moves an upload to: ``media_key``'s form, with the same sanitized name."""
    name = PurePosixPath(media.storage_key).name
    return f"{media_prefix(project_id=media.project_id, media_id=media.pk)}/{name}"


def thumbnail_key_for(media: MediaFile) -> str:
    # A sanitized filename has no "/", so this can never be the key of an upload.
    return f"{media_prefix(project_id=media.project_id, media_id=media.pk)}/thumbnails/thumbnail.jpg"


def caption_key_for(media: MediaFile) -> str:
    return f"{media_prefix(project_id=media.project_id, media_id=media.pk)}/captions.json"


def object_keys(media: MediaFile) -> list[str]:
    """Every object a media row names (the upload, its thumbnail, its captions)."""
    return [k for k in (media.storage_key, media.thumbnail_key, media.caption_key) if k]


# Where GPU calls PUT their large outputs (media.services.gpu_outputs): one folder per call
# (a random token) under its job's, one key per output name. No media key starts so.
STAGING_DIR = "gpu-outputs"
STAGING_KEY = re.compile(
    rf"^{STAGING_DIR}/(?P<job>[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})"
    r"/(?P<call>[0-9a-f]{32})/(?P<name>[a-z][a-z0-9_]{0,39})\Z"
)


def staging_folder(*, job_id: uuid.UUID | str, token: str) -> str:
    return f"{STAGING_DIR}/{job_id}/{token}"


# Where the outputs of a job that output screening withheld are kept for staff (jobs.life.moderation):
# one folder per job, one key per output name, so a redelivered store writes the same keys. No
# media key starts so, and no row a user can list names one.
QUARANTINE_DIR = "quarantine"


def quarantine_folder(*, job_id: uuid.UUID | str) -> str:
    return f"{QUARANTINE_DIR}/{job_id}"


def quarantine_key(*, job_id: uuid.UUID | str, name: str) -> str:
    return f"{quarantine_folder(job_id=job_id)}/{name}"


def is_staging_key(key: str) -> bool:
    """Whether `key` is where a GPU call may PUT an output (a signed target, not a file's upload)."""
    return STAGING_KEY.match(key) is not None


def is_public_key(key: str) -> bool:
    """Whether the key (or a folder's prefix) names the public store."""
    return key == PUBLIC_DIR or key.startswith(f"{PUBLIC_DIR}/")


def public_keys_for(media: MediaFile) -> tuple[str, str]:
    """(public key, public thumbnail key) for a new publication of ``media``: in a fresh folder
    ``pub/<random token>/``, named after the file's sanitized name. Nothing of the private key
    (project and file ids) shows; the thumbnail key is "" when the file has none."""
    folder = f"{PUBLIC_DIR}/{secrets.token_urlsafe(PUBLIC_TOKEN_BYTES)}"
    name = safe_filename(media.name, fallback_ext=filename_extension(media.storage_key) or "bin")
    key = f"{folder}/{name}"
    return key, public_thumbnail_key(key, media)


def public_thumbnail_key(public_key: str, media: MediaFile) -> str:
    """The thumbnail's key beside a publication's ``public_key``; "" when the file has none."""
    # A sanitized filename has no "/": the thumbnail's subfolder is no name a file can have.
    return f"{public_folder(public_key)}/thumbnail/thumbnail.jpg" if media.thumbnail_key else ""


def public_folders(media: MediaFile) -> list[str]:
    """The folders of the file's publication and of one in progress: what its deletion removes."""
    return [public_folder(key) for key in (media.public_key, media.publishing_key) if key]


# The types a public copy is served with: media a browser plays or shows, and never a type it would
# run (HTML, SVG, XML, scripts), since a public URL may be on the API's own origin (the local
# backend's /public/). Any other type is served as application/octet-stream.
PUBLIC_CONTENT_TYPES = re.compile(r"(video|audio)/[a-z0-9][a-z0-9.+-]{0,60}|image/(jpeg|png|gif|webp|avif)")


def public_content_type(content_type: str) -> str:
    """The Content-Type a public copy gets: the file's own when it is plain media, else binary."""
    normalized = normalize_content_type(content_type)
    return normalized if PUBLIC_CONTENT_TYPES.fullmatch(normalized) else "application/octet-stream"


def public_folder(public_key: str) -> str:
    """The folder of a publication (``pub/<token>``), which its deletion removes whole."""
    return "/".join(public_key.split("/")[:2])
