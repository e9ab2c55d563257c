"""`manage.py download_models`: each type's weights into AUTEUR_MODELS_DIR, from the hub repositories
its engines declare. The hub itself cannot be reached here: its download call is recorded instead."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from django.core.management import CommandError, call_command


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> list[dict[str, Any]]:
    settings.AUTEUR_MODELS_DIR = str(tmp_path / "models")
    calls: list[dict[str, Any]] = []

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo": repo_id, **kwargs})
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_a_type_s_repositories_go_into_their_folders(fetched: list[dict[str, Any]], tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("download_models", "transcription", "tts", stdout=out)
    by_repo = {c["repo"]: c for c in fetched}
    assert by_repo["openai/whisper-large-v3"]["local_dir"] == str(tmp_path / "models" / "whisper-large-v3")
    assert "pyannote/speaker-diarization-community-1" in by_repo
    # Of F5-TTS's repository, only the checkpoint the engine loads.
    assert by_repo["SWivid/F5-TTS"]["allow_patterns"] == ["F5TTS_v1_Base/model_1250000.safetensors"]
    assert by_repo["charactr/vocos-mel-24khz"]["allow_patterns"] is None
    assert "openai/whisper-large-v3 ->" in out.getvalue()


def test_a_type_without_weights_downloads_nothing(fetched: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    call_command("download_models", "render", stdout=out)
    assert fetched == [] and "nothing to download" in out.getvalue()


def test_an_unknown_type_is_refused_before_any_download(fetched: list[dict[str, Any]]) -> None:
    with pytest.raises(CommandError, match="teleportation"):
        call_command("download_models", "tts", "teleportation")
    assert fetched == []


def test_lip_syncs_detector_and_restorer_come_from_their_release_files(
    fetched: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published as release assets, not on the hub: streamed to a temporary name, renamed when whole."""
    import requests

    asked: list[str] = []

    class Response:
        def __init__(self, url: str) -> None:
            self.url = url

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def raise_for_status(self) -> None:
            return None

        def iter_content(self, size: int) -> Any:
            yield b"weights of " + self.url.rsplit("/", 1)[-1].encode()

    def get(url: str, **kwargs: Any) -> Response:
        asked.append(url)
        assert kwargs["stream"] is True and kwargs["timeout"]
        return Response(url)

    monkeypatch.setattr(requests, "get", get)
    call_command("download_models", "lip-sync", stdout=io.StringIO())
    assert {c["repo"] for c in fetched} == {"TMElyralab/MuseTalk", "stabilityai/sd-vae-ft-mse", "openai/whisper-tiny"}
    assert asked == [
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
    ]
    detector = tmp_path / "models" / "retinaface-mobilenet0.25" / "detection_mobilenet0.25_Final.pth"
    assert detector.read_bytes() == b"weights of detection_mobilenet0.25_Final.pth"
    assert not list(detector.parent.glob(".*.part"))


def test_a_release_is_fetched_over_https_only(tmp_path: Path) -> None:
    from gpu_tasks.engines.weights import Release, download

    with pytest.raises(ValueError, match="https"):
        download("x", Release("http://example.com/w.pth"), into=tmp_path)
