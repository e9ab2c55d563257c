"""Request bodies at the ASGI server, refused before they are read.

Django's ASGI handler reads a request's whole body, spooling it to disk, before it routes the
request: without this a body of any size sent to uvicorn is stored before the answer (a 405, say)
goes out. Caddy caps bodies in front (the Caddyfile); this is the same rule for a client that
reaches uvicorn past it.

- Event streams (`*/stream`) and the WebSocket's path (`/ws/*`) take a GET without a body and
  nothing else: any other method is answered 405, a body 413, at once, from the headers alone.
- Elsewhere (waiting submissions) a body is capped at AUTEUR_MAX_BODY_BYTES, as the API's: a
  larger Content-Length is answered 413 at once, and a chunked body is cut where it passes the cap.

A refusal closes the connection (`Connection: close`), so the server stops reading what the client
goes on sending instead of reading it to the end to keep the connection alive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from auteur.core.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The Caddyfile's @push matcher (`path /ws/* */stream`): the routes that take no body.
BODILESS_PATH = re.compile(r"^/ws/|/stream$")


def bodiless(path: str) -> bool:
    return BODILESS_PATH.search(path) is not None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {bytes(key).lower(): bytes(value) for key, value in scope.get("headers") or []}


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:  # the server's parser refuses it first; never let it through as "no body"
        return -1


async def refuse(send: Send, status: int, code: str, message: str, details: dict[str, Any],
                 extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error_body(code, message, details)).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"), *(extra_headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, max_bytes: int) -> None:
    await refuse(send, 413, "body_too_large", "The request body is larger than this server accepts.",
                 {"max_bytes": max_bytes})


class RequestBodyLimit:
    """ASGI middleware in front of Django's HTTP handler (see the module docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        length = _content_length(headers)
        chunked = b"transfer-encoding" in headers
        if bodiless(scope["path"]):
            if scope["method"] != "GET":
                await refuse(send, 405, "method_not_allowed", "Only GET is allowed here.",
                             {"allowed": ["GET"]}, [(b"allow", b"GET")])
            elif chunked or (length or 0) != 0:
                await _too_large(send, 0)
            else:
                await self.app(scope, receive, send)
            return
        cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length is not None and not 0 <= length <= cap:
            await _too_large(send, cap)
            return
        await self._capped(scope, receive, send, cap)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        received = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # Django stops reading on a disconnect and answers nothing; the 413 is sent below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, watching_send)
        if over and not started:
            await _too_large(send, cap)
