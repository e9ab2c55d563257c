"""`Prefer: wait=N` on a job submission: answer once the job has ended, up to N seconds.

A submission carrying the preference is routed by Caddy to the ASGI server, where `PreferWait`
wraps Django: the normal submission view runs as it always does (in Django's thread for sync
views), and if it answers 202, the wrapper awaits the job's terminal event on the process's hub
(realtime/hub.py), holding no thread while it waits. The job ended in time: 201 with the job as
`GET /jobs/{id}` shows it, `Preference-Applied: wait=N`; otherwise the 202 as it was.

How the header is read (N at most MAX_WAIT_SECONDS, a malformed preference ignored) and what gunicorn answers
instead (202 at once, `Location` naming the job's event stream) are the jobs app's:
jobs/prefer_header.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.sync import sync_to_async
from redis.exceptions import RedisError
from rest_framework.renderers import JSONRenderer

from auteur.users.selectors import member_sees_credits
from jobs.errors import JobNotFound
from jobs.models import TERMINAL_STATUSES, Job
from jobs.prefer_header import prefer_wait
from jobs.selectors.jobs import job_detail_get
from realtime.hub import TERMINAL_EVENT_TYPES, get_hub

logger = logging.getLogger(__name__)

SUBMISSION_PATH = re.compile(r"^/api/v1/jobs/[a-z][a-z-]*$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _owner_and_status(job_id: str) -> tuple[uuid.UUID, str] | None:
    row = Job.objects.filter(pk=job_id).values_list("user_id", "status").first()
    return (row[0], row[1]) if row else None


def _job_for_submitter(job_id: str, owner_id: uuid.UUID) -> dict[str, Any]:
    """The job as GET /jobs/{id} shows it to its submitter, who is the request's caller: the
    balance only if their seat, as the database says now, may see the workspace's credits. (The
    request's own view ran in another context, whose seat is not this code's to read.)"""
    member_id = Job.objects.filter(pk=job_id).values_list("member_id", flat=True).first()
    shown = member_sees_credits(workspace_id=owner_id, member_id=member_id)
    return job_detail_get(user_id=owner_id, job_id=job_id, balances=shown)


async def _until_terminal(job_id: str, user_id: uuid.UUID) -> None:
    sub = await get_hub().subscribe(user_id, job_ids={job_id})
    try:
        # Subscribed first, then read: an end committed in between is seen by one or the other.
        found = await sync_to_async(_owner_and_status)(job_id)
        if found is None or found[1] in TERMINAL_STATUSES:
            return
        while True:
            event = await sub.get(3600)
            if event is not None and event["type"] in TERMINAL_EVENT_TYPES:
                return
    finally:
        sub.close()


class PreferWait:
    """ASGI middleware around Django's HTTP application (see the module docstring)."""

    def __init__(self, app: Any) -> None:  # Django's ASGIHandler (its stubs type scope as a dict)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wait = None
        if scope["type"] == "http" and scope["method"] == "POST" and SUBMISSION_PATH.match(scope["path"]):
            wait = prefer_wait(_header(scope, b"prefer"))
        if wait is None or wait[0] == 0:
            await self.app(scope, receive, send)
            return
        seconds, lowered = wait
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        start = held[0] if held else None
        if start is None or start["status"] != 202:
            for message in held:
                await send(message)
            return
        body = b"".join(m.get("body", b"") for m in held[1:])
        try:
            job_id = str(uuid.UUID(str(json.loads(body)["job_id"])))
        except (ValueError, KeyError, TypeError):  # not a submission's answer: passed on as it is
            job_id = ""
        found = await sync_to_async(_owner_and_status)(job_id) if job_id else None
        if found is None:
            for message in held:
                await send(message)
            return
        ended = await self._wait(job_id, found[0], seconds, receive)
        applied = [(b"preference-applied", f"wait={seconds}".encode())]
        job = None
        if ended:
            with contextlib.suppress(JobNotFound):  # deleted with its project meanwhile
                job = await sync_to_async(_job_for_submitter)(job_id, found[0])
        if job is None:
            start["headers"] = [*start["headers"], *applied]
            for message in held:
                await send(message)
            return
        payload = JSONRenderer().render(job)
        kept = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"location")]
        await send({
            "type": "http.response.start", "status": 201,
            "headers": [*kept, *applied, (b"location", f"/api/v1/jobs/{job_id}".encode()),
                        (b"content-length", str(len(payload)).encode())],
        })
        await send({"type": "http.response.body", "body": payload})
        if lowered:
            logger.info("Prefer: wait lowered to %s s", seconds)

    async def _wait(self, job_id: str, user_id: uuid.UUID, seconds: int, receive: Receive) -> bool:
        """True once the job ended within `seconds`; False on timeout, disconnect or no Redis."""
        ended = asyncio.ensure_future(_until_terminal(job_id, user_id))
        gone = asyncio.ensure_future(receive())  # http.disconnect: the client left
        try:
            done, _ = await asyncio.wait({ended, gone}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ended, gone):
                task.cancel()
        if ended in done:
            try:
                ended.result()
            except RedisError:
                return False
            return True
        return False
