from __future__ import annotations

import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import imageio_ffmpeg
import pytest
from django.test import Client, TestCase
from rest_framework.test import APIClient

from auteur.celery import app as celery_app
from auteur.core.storage_settings import local_media_storage, s3_media_storage
from auteur.users.models import User
from media.models import MediaFile
from media.storage import get_storage
from media.tasks import probe
from projects.models import Project
from tests.factories import ProjectFactory


def lying_mkv(path: Path, *, seconds: int, header_s: float) -> Path:
    """A Matroska video (32x32 at 1 fps, with silent FLAC audio) of `seconds` whose header says it
    lasts `header_s`: the Segment Info Duration element (EBML id 0x4489, an 8-byte float in ms)
    rewritten in place, as a hand edit or a live recorder's muxer can leave it."""
    ffmpeg(
        "-f", "lavfi", "-i", f"color=c=gray:s=32x32:r=1:d={seconds}", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", str(path),
    )  # fmt: skip
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")
    assert at > 0, "no 8-byte Duration element in the Matroska header"
    data[at + 3 : at + 11] = struct.pack(">d", header_s * 1000)
    path.write_bytes(bytes(data))
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Samples:
    video: Path  # 2 s, 320x240 at 25 fps, H.264 + AAC 44.1 kHz mono
    wav: Path  # 4 s sine, 44.1 kHz mono
    short_wav: Path  # 1 s
    png: Path  # 64x48
    text: Path  # not media at all


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    d = tmp_path_factory.mktemp("samples")
    s = Samples(d / "clip.mp4", d / "tone.wav", d / "short.wav", d / "pattern.png", d / "notes.txt")
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "1", "-shortest", str(s.video),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4", str(s.wav))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "1", str(s.short_wav))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", str(s.png))
    s.text.write_text("This is a shopping list, not a video.\n" * 50)
    return s


@pytest.fixture
def local_storage(settings: Any, tmp_path: Path) -> Path:
    """The local backend, rooted in a fresh directory; returns the root."""
    root = tmp_path / "storage"
    settings.MEDIA_ROOT = str(root)
    settings.STORAGES = {**settings.STORAGES, settings.MEDIA_STORAGE_ALIAS: local_media_storage()}
    settings.AUTEUR_PUBLIC_BASE_URL = "http://testserver"
    return root


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Tasks run in-process when sent (delay / delay_on_commit), as a worker would run them."""
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def project(user: User) -> Project:
    return ProjectFactory.create(user=user, name="My film")


@pytest.fixture
def make_project() -> Callable[[User], Project]:
    def make(owner: User) -> Project:
        return ProjectFactory.create(user=owner, name=f"{owner.email}'s project")

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_TEST_ACCESS_KEY = "AKIATESTONLY0KEYID00"
S3_TEST_SECRET_KEY = "test-only-secret-access-key-0123456789abcdef"


def use_s3(settings: Any, *, bucket: str, endpoint_url: str) -> None:
    """Configure the media storage as production does with a bucket (auteur/core/storage_settings.py)."""
    settings.AWS_ACCESS_KEY_ID = S3_TEST_ACCESS_KEY
    settings.AWS_SECRET_ACCESS_KEY = S3_TEST_SECRET_KEY
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.STORAGES = {
        **settings.STORAGES,
        settings.MEDIA_STORAGE_ALIAS: s3_media_storage(
            bucket=bucket, endpoint_url=endpoint_url, region="us-east-1", access_key=S3_TEST_ACCESS_KEY,
            secret_key=S3_TEST_SECRET_KEY, addressing_style="path",
            url_ttl_seconds=settings.AUTEUR_SIGNED_URL_TTL_SECONDS,
        ),
    }


@pytest.fixture
def s3_storage(settings: Any, moto_endpoint: str) -> str:
    """S3 (moto's server, over real HTTP) as the configured backend; returns the bucket."""
    import uuid

    import boto3

    bucket = f"auteur-test-{uuid.uuid4().hex[:12]}"
    use_s3(settings, bucket=bucket, endpoint_url=moto_endpoint)
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id=S3_TEST_ACCESS_KEY, aws_secret_access_key=S3_TEST_SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    return bucket


# ----------------------------------------------------------------------------- API helpers


def upload_url_path(project_id: Any) -> str:
    return f"/api/v1/projects/{project_id}/media/upload-url"


def media_path(project_id: Any, media_id: Any = None, suffix: str = "") -> str:
    base = f"/api/v1/projects/{project_id}/media"
    return f"{base}/{media_id}{suffix}" if media_id else base


def request_upload(
    client: APIClient, project: Project, path: Path, content_type: str, filename: str | None = None
) -> dict[str, Any]:
    response = client.post(
        upload_url_path(project.pk),
        {"filename": filename or path.name, "content_type": content_type, "size_bytes": path.stat().st_size},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return dict(response.json())


def local_put(url: str, body: bytes, content_type: str, **extra: Any) -> Any:
    """PUT to a local signed URL through Django (no bearer token: the URL is the credential)."""
    parts = urlsplit(url)
    return Client().generic("PUT", f"{parts.path}?{parts.query}", data=body, content_type=content_type, **extra)


def local_get(url: str, **extra: Any) -> Any:
    parts = urlsplit(url)
    return Client().get(f"{parts.path}?{parts.query}", **extra)


def body_of(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


def upload_local(
    client: APIClient, project: Project, path: Path, content_type: str, filename: str | None = None
) -> MediaFile:
    """upload-url -> PUT -> confirm -> probe (the task body, run here): the file's final record."""
    ticket = request_upload(client, project, path, content_type, filename)
    assert local_put(ticket["upload_url"], path.read_bytes(), content_type).status_code == 200
    response = client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert response.status_code == 202, response.json()
    run_probe(ticket["media_id"])
    return MediaFile.objects.get(pk=ticket["media_id"])


def run_probe(media_id: Any) -> str | None:
    """The task body, as the media worker runs it; its after-commit work (the signal) runs too."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return probe(str(media_id))


def stored(key: str) -> bool:
    return get_storage().head(key) is not None
