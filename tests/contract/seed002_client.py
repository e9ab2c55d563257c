"""A client of the API written only from its original specification's request and response
shapes (no knowledge of this server's extras): every body it sends and every key it reads is
the specification's. `run(base_url, token, files)` walks through it and returns what it saw.

It imports nothing of the server: it speaks HTTP with `requests`, as an outside client would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

TIMEOUT_S = 30


class Seed002Client:
    def __init__(self, base_url: str, token: str) -> None:
        self.api = base_url.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, self.api + path, json=body, timeout=TIMEOUT_S)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # 4.1 / 4.2
    def verify(self) -> dict[str, Any]:
        return self.call("POST", "/auth/verify")  # { "valid": true, "user_id": "uuid" }

    def me(self) -> dict[str, Any]:
        return self.call("GET", "/users/me")

    # 4.3
    def create_project(self, name: str, resolution: str) -> dict[str, Any]:
        return self.call("POST", "/projects", {"name": name, "resolution": resolution})

    def list_projects(self) -> list[dict[str, Any]]:
        return self.call("GET", "/projects")["projects"]

    def get_project(self, project_id: str) -> dict[str, Any]:
        return self.call("GET", f"/projects/{project_id}")

    def rename_project(self, project_id: str, name: str) -> Any:
        return self.call("PUT", f"/projects/{project_id}", {"name": name})

    # 4.4
    def upload(self, project_id: str, path: Path, content_type: str) -> str:
        """upload-url, PUT the bytes, confirm (again until it is no longer being processed)."""
        ticket = self.call("POST", f"/projects/{project_id}/media/upload-url",
                           {"filename": path.name, "content_type": content_type})
        put = requests.put(ticket["upload_url"], data=path.read_bytes(), headers={"Content-Type": content_type},
                           timeout=TIMEOUT_S)
        put.raise_for_status()
        media_id = str(ticket["media_id"])
        deadline = time.monotonic() + 60
        while True:
            media = self.call("POST", f"/projects/{project_id}/media/{media_id}/confirm")["media"]
            if media.get("status") != "processing" or time.monotonic() > deadline:
                return media_id
            time.sleep(0.3)

    def delete_media(self, project_id: str, media_id: str) -> Any:
        return self.call("DELETE", f"/projects/{project_id}/media/{media_id}")

    # 4.5
    def transcription(self, project_id: str, media_id: str) -> dict[str, Any]:
        return self.call("POST", "/jobs/transcription", {"project_id": project_id, "media_id": media_id})

    def tts(self, text: str, voice_id: str, speed: float) -> dict[str, Any]:
        return self.call("POST", "/jobs/tts", {"text": text, "voice_id": voice_id, "speed": speed})

    def lip_sync(self, video_media_id: str, audio_media_id: str) -> dict[str, Any]:
        return self.call("POST", "/jobs/lip-sync", {"video_media_id": video_media_id, "audio_media_id": audio_media_id})

    def video_generation(self, prompt: str, duration_sec: int) -> dict[str, Any]:
        return self.call("POST", "/jobs/video-generation", {"prompt": prompt, "duration_sec": duration_sec})

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/jobs/{job_id}")

    def wait(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.3)

    # 4.6
    def balance(self) -> int:
        return int(self.call("GET", "/credits")["balance"])

    def history(self) -> list[dict[str, Any]]:
        return self.call("GET", "/credits/history")["transactions"]


def run(base_url: str, token: str, *, video: Path, audio: Path, voice_id: str) -> dict[str, Any]:
    """The specification's walk-through: each step's answer, keyed by step."""
    client = Seed002Client(base_url, token)
    seen: dict[str, Any] = {"verify": client.verify(), "me": client.me(), "balance_before": client.balance()}
    project = client.create_project("My Project", "1920x1080")
    seen["project"] = project
    client.rename_project(project["id"], "New Name")
    seen["project_detail"] = client.get_project(project["id"])
    video_id = client.upload(project["id"], video, "video/mp4")
    audio_id = client.upload(project["id"], audio, "audio/wav")
    accepted = {
        "transcription": client.transcription(project["id"], audio_id),
        "tts": client.tts("Hello world", voice_id, 1.0),
        "lip-sync": client.lip_sync(video_id, audio_id),
        "video-generation": client.video_generation("A cat walking on the moon", 5),
    }
    seen["accepted"] = accepted
    seen["jobs"] = {name: client.wait(a["job_id"]) for name, a in accepted.items()}
    seen["projects"] = client.list_projects()
    seen["balance_after"] = client.balance()
    seen["history"] = client.history()
    return seen
