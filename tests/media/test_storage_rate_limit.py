"""The local backend's signed URLs (/storage/*) are rate-limited per client IP, like the API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from media.storage import get_storage
from tests.media.conftest import body_of

pytestmark = pytest.mark.django_db

KEY = "projects/0b4a4b0e-6a59-4c59-9c1b-0d7b8d0d0f00/media/6c3a3f1e-1111-4c59-9c1b-0d7b8d0d0f00/clip.mp4"


def get(url: str, ip: str) -> Any:
    parts = urlsplit(url)
    return Client().get(f"{parts.path}?{parts.query}", REMOTE_ADDR=ip)


def test_the_request_past_the_limit_is_429_with_the_error_envelope(local_storage, settings):
    settings.AUTEUR_RATE_LIMIT_STORAGE_PER_MINUTE = 3
    url = get_storage().presign_get(KEY).url
    forged = url.replace("token=", "token=x")
    # Every request counts, a refused signature too: guessing is as limited as fetching.
    answers = [get(u, "203.0.113.7").status_code for u in (url, forged, url)]
    assert answers == [404, 403, 404]

    refused = get(url, "203.0.113.7")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    error = json.loads(body_of(refused))["error"]
    assert error["code"] == "rate_limited" and error["message"]
    assert 1 <= error["details"]["retry_after_seconds"] <= 60
    assert refused["Retry-After"] == str(error["details"]["retry_after_seconds"])
    # A PUT from the same client is refused before its body or signature is looked at.
    parts = urlsplit(get_storage().presign_put(KEY, "video/mp4", 10).url)
    put = Client().generic("PUT", f"{parts.path}?{parts.query}", data=b"0123456789", content_type="video/mp4",
                           REMOTE_ADDR="203.0.113.7")
    assert put.status_code == 429
    assert not local_storage.exists() or not any(p.is_file() for p in local_storage.rglob("*"))

    # Another client has its own window.
    assert get(url, "198.51.100.9").status_code == 404
