"""The probe against files built to fool it: a lying header, a picture too large to decode, a
file that costs more memory or time than a probe may spend, a probe that keeps killing its worker."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import av
import pytest

from media.models import MediaFile
from media.probing import service as probing
from media.probing.facts import OVER_LIMITS, SIZE_UNREADABLE, probe_file
from tests.media.conftest import (
    ffmpeg,
    local_put,
    lying_mkv,
    media_path,
    request_upload,
    run_probe,
    upload_local,
)

pytestmark = pytest.mark.django_db


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims `width` x `height`, with a token IDAT: decoding it would first
    allocate the whole picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def header_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        assert container.duration is not None
        return container.duration / 1_000_000


# ----------------------------------------------------------------------------- duration


def test_a_header_that_understates_the_length_is_measured_from_the_packets(
    auth_client, project, local_storage, tmp_path
):
    path = lying_mkv(tmp_path / "one-second.mkv", seconds=90, header_s=1.0)
    assert header_seconds(path) == pytest.approx(1.0)  # what the header (and the old probe) says
    media = upload_local(auth_client, project, path, "video/x-matroska")
    assert media.status == "ready"
    assert media.duration_ms == pytest.approx(90_000, abs=1_000)


def test_a_header_that_overstates_the_length_is_not_believed_either(tmp_path):
    path = lying_mkv(tmp_path / "short.mkv", seconds=3, header_s=3600.0)
    assert header_seconds(path) == pytest.approx(3600.0)
    result = probe_file(path, "video")
    assert result.ok and result.duration_ms == pytest.approx(3_000, abs=1_000)


def test_encoder_padding_does_not_lengthen_an_honest_file(tmp_path):
    """MP3 frames end past the stated length (encoder delay and padding): the muxer's figure stands,
    so a file of exactly 10 s is not priced as 10.05 s."""
    path = tmp_path / "ten.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=10", "-c:a", "libmp3lame", str(path))
    assert probe_file(path, "audio").duration_ms == 10_000


def test_a_still_image_has_no_duration(samples):
    result = probe_file(samples.png, "image")
    assert result.ok and result.duration_ms is None


# ----------------------------------------------------------------------------- picture size


def test_a_png_claiming_100000_by_100000_pixels_is_refused_without_decoding(auth_client, project, local_storage,
                                                                             tmp_path):
    media = upload_local(auth_client, project, png_header(tmp_path / "bomb.png", 100_000, 100_000), "image/png")
    assert media.status == "rejected" and media.rejection_reason == SIZE_UNREADABLE
    assert media.thumbnail_key == ""


def test_a_picture_above_the_pixel_cap_is_refused_from_its_stream_parameters(
    auth_client, project, local_storage, tmp_path, settings
):
    """The video's frames are garbage past its header: had the probe decoded a frame before the
    size check, the reason would be 'not decodable'."""
    settings.AUTEUR_MEDIA_MAX_PIXELS = 320 * 240
    path = tmp_path / "large.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x480:rate=5:duration=2", "-c:v", "libx264", str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    media = upload_local(auth_client, project, path, "video/x-matroska")
    assert media.status == "rejected"
    assert media.rejection_reason == "the picture is too large: 640x480 is more than 76,800 pixels"


# ----------------------------------------------------------------------------- limits of the child


@pytest.fixture
def big_png(tmp_path: Path) -> Path:
    """6000x6000 (36 Mpx, under the pixel cap): about 110 MB once decoded."""
    path = tmp_path / "big.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=6000x6000", "-frames:v", "1", str(path))
    return path


def test_a_probe_that_needs_more_memory_than_allowed_rejects_the_file(
    auth_client, project, local_storage, big_png, settings
):
    settings.AUTEUR_MEDIA_PROBE_MEMORY_MB = 200
    media = upload_local(auth_client, project, big_png, "image/png")
    assert media.status == "rejected" and media.rejection_reason == OVER_LIMITS
    assert media.thumbnail_key == ""


def test_the_same_file_within_the_default_limits_is_ready(auth_client, project, local_storage, big_png):
    media = upload_local(auth_client, project, big_png, "image/png")
    assert media.status == "ready" and media.metadata["width"] == 6000


def test_a_probe_that_runs_past_its_time_limit_rejects_the_file(
    auth_client, project, local_storage, samples, settings
):
    settings.AUTEUR_MEDIA_PROBE_TIMEOUT_SECONDS = 0.001  # a forked child cannot open the file in that
    media = upload_local(auth_client, project, samples.video, "video/mp4")
    assert media.status == "rejected" and media.rejection_reason == OVER_LIMITS


class WorkerLost(BaseException):
    """What a worker killed mid-probe looks like to the code after it: nothing runs on."""


def test_a_probe_redelivered_past_its_attempts_rejects_the_file_without_probing(
    auth_client, project, local_storage, samples, settings, monkeypatch
):
    settings.AUTEUR_MEDIA_PROBE_MAX_ATTEMPTS = 3
    ticket = request_upload(auth_client, project, samples.video, "video/mp4")
    assert local_put(ticket["upload_url"], samples.video.read_bytes(), "video/mp4").status_code == 200
    confirm = auth_client.post(media_path(project.pk, ticket["media_id"], "/confirm"), {}, format="json")
    assert confirm.status_code == 202
    runs: list[Path] = []

    def killed(path: Path, *_args: object, **_kwargs: object) -> None:
        runs.append(path)
        raise WorkerLost

    monkeypatch.setattr(probing, "probe_isolated", killed)
    for _ in range(3):  # each delivery kills its worker; the broker hands the message out again
        with pytest.raises(WorkerLost):
            run_probe(ticket["media_id"])
    assert MediaFile.objects.get(pk=ticket["media_id"]).status == "processing"
    assert run_probe(ticket["media_id"]) == "rejected"
    media = MediaFile.objects.get(pk=ticket["media_id"])
    assert media.rejection_reason == "the file could not be examined in 3 attempts"
    assert len(runs) == 3  # the fourth delivery did not probe
