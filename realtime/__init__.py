"""Live job events for clients, served by the ASGI server (uvicorn) behind Caddy.

It reads what the jobs app writes and never the reverse: every committed job event is appended
to its owner's Redis Stream by `jobs/events/stream.py`, and this app only reads those streams.

    sse          `GET /api/v1/jobs/{id}/stream` and `GET /api/v1/events/stream` (Server-Sent Events)
    ws           `/ws/v1/events`, the same events over a WebSocket (a Channels consumer)
    prefer_wait  `Prefer: wait=N` on a submission: the ASGI middleware that answers once the job ended
    hub          the one Redis reader per process that fans the streams out to its connections
    leases       the per-user cap on open streams and sockets, across processes
"""
