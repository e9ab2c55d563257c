"""Signed URLs of the compose deployment work from outside it: the storage signs them for the
object store's public name (AWS_S3_PUBLIC_ENDPOINT_URL), and the Caddyfile's media site passes them
on to the S3 endpoint with the Host header the client sent, which is what the signature covers.

A real request, end to end on loopback: the media storage (media.storage.s3, as production
configures it) signs a PUT and a GET for http://media.localhost:PORT; a client sends them to the
Caddy `make run` runs, with this repository's Caddyfile as compose configures it; Caddy passes
them to an S3 endpoint made of moto's server behind a front that checks each URL's SigV4
signature (moto's server checks none for a presigned URL) over the request as it arrived, Host
included, as MinIO does. The front is checked against AWS's own published example.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from auteur.core.storage_settings import public_endpoint_url, s3_media_storage
from devstack.front import CADDYFILE
from media.storage import get_storage

CADDY = Path(sys.executable).parent / "caddy"
REGION = "us-east-1"
ACCESS_KEY = "AKIATESTONLY0MEDIA00"
SECRET_KEY = "test-only-media-site-secret-0123456789abcdef"
MEDIA_BUCKET, PUBLIC_BUCKET = "auteur-media", "auteur-public"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- SigV4, as a store checks it


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def presigned_signature(method: str, raw_path: str, query: list[tuple[str, str]], headers: dict[str, str],
                        secret_key: str) -> str:
    """The signature a presigned request (SigV4, query parameters) must carry, computed from the
    request as received: its method, its path as sent, its query less the signature, and the values
    of the headers it names as signed (Host among them). AWS's "Authenticating Requests: Using
    Query Parameters" is the specification."""
    params = dict(query)
    signed = params["X-Amz-SignedHeaders"].split(";")
    lower = {name.lower(): value for name, value in headers.items()}
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted((k, v) for k, v in query if k != "X-Amz-Signature"))
    canonical_headers = "".join(f"{name}:{' '.join(lower.get(name, '').split())}\n" for name in signed)
    canonical_request = "\n".join(
        [method, raw_path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"])
    _key_id, date, region, service, terminator = params["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), terminator)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_signature_check_is_awss_own():
    """AWS's published example of a presigned GET (examplebucket/test.txt, 2013-05-24)."""
    query = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
             ("X-Amz-Credential", "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"),
             ("X-Amz-Date", "20130524T000000Z"), ("X-Amz-Expires", "86400"), ("X-Amz-SignedHeaders", "host")]
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    signature = presigned_signature("GET", "/test.txt", query, {"Host": "examplebucket.s3.amazonaws.com"}, secret)
    assert signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    # Any other Host (a proxy that rewrote it) gives another signature.
    assert presigned_signature("GET", "/test.txt", query, {"Host": "s3.internal:9000"}, secret) != signature


class SigV4Front(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that checks every request's presigned signature, then has moto's server
    answer it. What it saw (method, path as sent, Host) is kept in `seen`."""

    upstream: str = ""
    seen: list[tuple[str, str, str]]  # set on the class each endpoint makes
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Host", "")))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        raw_path, _, raw_query = self.path.partition("?")
        query = parse_qsl(raw_query, keep_blank_values=True)
        params = dict(query)
        problem = ""
        if "X-Amz-Signature" not in params:
            problem = "AccessDenied"
        else:
            signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=int(params["X-Amz-Expires"])):
                problem = "AccessDenied"
            elif not hmac.compare_digest(
                    presigned_signature(self.command, raw_path, query, dict(self.headers.items()), SECRET_KEY),
                    params["X-Amz-Signature"]):
                problem = "SignatureDoesNotMatch"
        if problem:
            answer = f"<Error><Code>{problem}</Code></Error>".encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=body if self.command == "PUT" else None, headers=headers)
        upstream = connection.getresponse()
        data = upstream.read()
        self.send_response(upstream.status)
        for name, value in upstream.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        connection.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle


# ----------------------------------------------------------------------------- the stack


def serve_caddy(tmp: Path, port: int, upstream: str, caddyfile: Path = CADDYFILE) -> subprocess.Popen[bytes]:
    """Caddy on loopback with the Caddyfile as compose configures its media site (plain HTTP here,
    no certificate: `http://`), and `make run`'s API site beside it on the same port."""
    env = {
        "PATH": os.environ["PATH"],
        "AUTEUR_SITE": f"http://:{port}",
        "AUTEUR_CADDY_BIND": "127.0.0.1",
        "AUTEUR_CADDY_ADMIN": "off",
        "AUTEUR_ACCESS_LOG": f'file "{tmp / "access.log"}"',
        "AUTEUR_API_UPSTREAM": "127.0.0.1:9", "AUTEUR_STORAGE_UPSTREAM": "127.0.0.1:9",
        "AUTEUR_ASGI_UPSTREAM": "127.0.0.1:9",
        "AUTEUR_MEDIA_SITE": f"http://media.localhost:{port}",
        "AUTEUR_MEDIA_UPSTREAM": upstream,
        "AWS_STORAGE_BUCKET_NAME": MEDIA_BUCKET, "AUTEUR_PUBLIC_BUCKET_NAME": PUBLIC_BUCKET,
        "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config"),
    }
    proc = subprocess.Popen([str(CADDY), "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env,
                            stdout=subprocess.DEVNULL, stderr=(tmp / "caddy.log").open("wb"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "caddy.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("Caddy did not listen")


@dataclass
class Endpoint:
    moto: str  # the store's own address (compose: minio:9000)
    front: str  # the same store, each signature checked: what Caddy proxies to
    seen: list[tuple[str, str, str]]  # (method, path as sent, Host) of every request the front got


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[Endpoint]:
    """The S3 endpoint compose's MinIO stands for."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    client.create_bucket(Bucket=MEDIA_BUCKET)
    seen: list[tuple[str, str, str]] = []
    front = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), type("Front", (SigV4Front,), {"upstream": f"127.0.0.1:{moto_port}", "seen": seen}))
    # shutdown() waits for the loop's next poll: 0.05 s, not the default 0.5 s
    threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield Endpoint(f"127.0.0.1:{moto_port}", f"127.0.0.1:{front.server_address[1]}", seen)
    finally:
        front.shutdown()
        moto.stop()


@pytest.fixture(scope="module")
def media_site(s3_endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = serve_caddy(tmp_path_factory.mktemp("caddy"), port, s3_endpoint.front)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def signing_storage(settings: Any, s3_endpoint: Endpoint, media_site: int) -> Any:
    """The media storage as compose configures it: the store's own endpoint for the app's calls
    (moto, standing for http://minio:9000), the public name for signed URLs."""
    settings.AWS_S3_PUBLIC_ENDPOINT_URL = public_endpoint_url(f"http://media.localhost:{media_site}", debug=True)
    settings.STORAGES = {**settings.STORAGES, settings.MEDIA_STORAGE_ALIAS: s3_media_storage(
        bucket=MEDIA_BUCKET, endpoint_url=f"http://{s3_endpoint.moto}", region=REGION, access_key=ACCESS_KEY,
        secret_key=SECRET_KEY, addressing_style="path", url_ttl_seconds=300)}
    return get_storage()


def send(port: int, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         host: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """`method` `url` sent to the Caddy on loopback `port`, with the URL's host as its Host header
    (what a client that resolves the public name to this host sends), or `host`."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, f"{parts.path}?{parts.query}" if parts.query else parts.path, body=body,
                       headers={"Host": host or parts.netloc, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, {k.lower(): v for k, v in response.getheaders()}


# ----------------------------------------------------------------------------- a client outside


def test_an_upload_and_a_download_signed_for_the_public_name_pass_through_caddy(signing_storage, media_site,
                                                                                 s3_endpoint):
    key = f"uploads/{uuid.uuid4().hex}/clip.mp4"
    body = os.urandom(64 * 1024)
    ticket = signing_storage.presign_put(key, "video/mp4", len(body))
    url = urlsplit(ticket.url)
    assert (url.scheme, url.netloc) == ("http", f"media.localhost:{media_site}")
    assert url.path == f"/{MEDIA_BUCKET}/{key}"  # path style: the one public name serves both buckets
    status, answer, _ = send(media_site, "PUT", ticket.url, body, {**ticket.headers, "Content-Length": str(len(body))})
    assert status == 200, answer
    # It reached the store with the Host the client sent, which the signature covers.
    assert ("PUT", f"{url.path}?{url.query}", f"media.localhost:{media_site}") in s3_endpoint.seen
    assert signing_storage.head(key) == len(body)
    download = signing_storage.presign_get(key, filename="clip.mp4")
    assert urlsplit(download.url).netloc == f"media.localhost:{media_site}"
    status, answer, headers = send(media_site, "GET", download.url)
    assert status == 200 and answer == body
    assert headers["content-disposition"].startswith('attachment; filename="clip.mp4"')


def test_a_part_of_a_multipart_upload_passes_with_its_checksum(signing_storage, media_site):
    import base64

    key = f"uploads/{uuid.uuid4().hex}/big.mov"
    upload_id = signing_storage.multipart_start(key, "video/quicktime", 5 * 1024**2)
    part = os.urandom(1024)
    sha256 = base64.b64encode(hashlib.sha256(part).digest()).decode()
    ticket = signing_storage.presign_part(key, upload_id, 1, len(part), sha256)
    status, answer, _ = send(media_site, "PUT", ticket.url, part, {**ticket.headers, "Content-Length": str(len(part))})
    assert status == 200, answer
    assert [(p.number, p.size) for p in signing_storage.multipart_parts(key, upload_id)] == [(1, len(part))]


def test_what_the_signature_does_not_cover_is_refused(signing_storage, media_site):
    key = f"uploads/{uuid.uuid4().hex}/clip.mp4"
    ticket = signing_storage.presign_put(key, "video/mp4", 4)
    # Another content type than the one signed; another key than the one signed.
    status, answer, _ = send(media_site, "PUT", ticket.url, b"abcd",
                             {"Content-Type": "text/html", "Content-Length": "4"})
    assert status == 403 and b"SignatureDoesNotMatch" in answer
    other = ticket.url.replace("/clip.mp4?", "/other.mp4?")
    status, answer, _ = send(media_site, "PUT", other, b"abcd", {**ticket.headers, "Content-Length": "4"})
    assert status == 403 and b"SignatureDoesNotMatch" in answer
    assert not signing_storage.exists(key)


def test_a_proxy_that_rewrites_the_host_breaks_every_signed_url(signing_storage, settings, s3_endpoint, tmp_path):
    """Why the media site passes the Host on as it came: the same Caddyfile, but sending the
    upstream's own address as the Host (what a proxy does by default for some), fails the upload."""
    rewritten = tmp_path / "Caddyfile"
    text = CADDYFILE.read_text()
    assert "header_up Host {http.request.hostport}" in text
    rewritten.write_text(text.replace("header_up Host {http.request.hostport}", "header_up Host {upstream_hostport}"))
    port = free_port()
    proc = serve_caddy(tmp_path, port, s3_endpoint.front, rewritten)
    try:
        settings.AWS_S3_PUBLIC_ENDPOINT_URL = f"http://media.localhost:{port}"
        ticket = get_storage().presign_put(f"uploads/{uuid.uuid4().hex}/a.mp4", "video/mp4", 4)
        status, answer, _ = send(port, "PUT", ticket.url, b"abcd", {**ticket.headers, "Content-Length": "4"})
        assert status == 403 and b"SignatureDoesNotMatch" in answer
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("path", [
    "/", f"/{MEDIA_BUCKET}", "/minio/admin/v3/info", "/minio/health/live", "/other-bucket/key",
    f"/{MEDIA_BUCKET}/../minio/admin/v3/info", f"/{MEDIA_BUCKET}/%2e%2e/minio/admin/v3/info",
])
def test_only_the_buckets_objects_are_served(media_site, s3_endpoint, path):
    """The store's bucket listing, its admin and health endpoints never reach it from outside."""
    before = len(s3_endpoint.seen)
    status, _, _ = send(media_site, "GET", f"http://media.localhost:{media_site}{path}")
    assert status == 404
    assert len(s3_endpoint.seen) == before


def test_engines_in_the_workers_get_the_stores_own_address_and_modals_the_public_one(signing_storage, settings,
                                                                                    s3_endpoint, media_site):
    key = f"uploads/{uuid.uuid4().hex}/clip.mp4"
    settings.AUTEUR_GPU_BACKEND = "local"
    assert urlsplit(signing_storage.for_engines().presign_get(key).url).netloc == s3_endpoint.moto
    settings.AUTEUR_GPU_BACKEND = "modal"
    assert urlsplit(signing_storage.for_engines().presign_get(key).url).netloc == f"media.localhost:{media_site}"


@pytest.mark.parametrize(("value", "debug", "message"), [
    ("http://media.example.com", False, "must be https"),
    ("https://media.example.com/s3", True, "a scheme, a host and a port only"),
    ("https://media.example.com?x=1", True, "a scheme, a host and a port only"),
    ("https://user:pw@media.example.com", True, "credentials"),
    ("media.example.com", True, r"absolute http\(s\) URL"),
])
def test_a_public_endpoint_that_would_sign_wrong_urls_is_refused(value, debug, message):
    with pytest.raises(ValueError, match=message):
        public_endpoint_url(value, debug=debug)
    assert public_endpoint_url("https://media.example.com/", debug=False) == "https://media.example.com"


@pytest.mark.django_db
@pytest.mark.parametrize(("backend", "reached_at"), [("local", "store"), ("modal", "public")])
def test_a_jobs_inputs_and_output_targets_name_the_address_its_engine_reaches(signing_storage, settings, s3_endpoint,
                                                                               media_site, backend, reached_at):
    """What the payload code gives a GPU call (jobs/payloads.py, media/services/gpu_outputs.py)."""
    from jobs.payloads import input_ref
    from media.services.gpu_outputs import media_output_targets
    from tests.factories import UserFactory

    settings.AUTEUR_GPU_BACKEND = backend
    expected = s3_endpoint.moto if reached_at == "store" else f"media.localhost:{media_site}"
    assert urlsplit(input_ref(f"media/{uuid.uuid4().hex}/in.mp4", 600)["url"]).netloc == expected
    targets = media_output_targets(job_id=uuid.uuid4(), user_id=UserFactory.create().pk,
                                   outputs={"video": "video/mp4"}, max_bytes=1024, ttl_seconds=600)
    assert urlsplit(targets["video"]["url"]).netloc == expected
