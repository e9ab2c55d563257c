"""Real time: the per-user event streams and the connections that read them."""

from __future__ import annotations

from auteur.settings.environment import env

# ---- Real time: every job event is appended after commit to its owner's Redis Stream
# (jobs/events/stream.py), capped by length and by age; SSE and the WebSocket (realtime/) read
# it (resume from an event id within the window; /jobs/{id}/events is the record).
AUTEUR_EVENT_STREAM_MAXLEN = env.int("AUTEUR_EVENT_STREAM_MAXLEN", default=10_000)
AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS = env.int("AUTEUR_EVENT_STREAM_MAX_AGE_SECONDS", default=24 * 3600)
AUTEUR_STREAM_HEARTBEAT_SECONDS = env.float("AUTEUR_STREAM_HEARTBEAT_SECONDS", default=15.0)
# Events a connection may have waiting; a client that falls this far behind is disconnected.
AUTEUR_STREAM_CLIENT_BUFFER = env.int("AUTEUR_STREAM_CLIENT_BUFFER", default=256)
AUTEUR_WS_AUTH_TIMEOUT_SECONDS = env.float("AUTEUR_WS_AUTH_TIMEOUT_SECONDS", default=5.0)
# Event streams and WebSockets one user may hold open at once, across every ASGI process
# (realtime/leases.py); one more is refused (SSE: 429 too_many_streams, WebSocket:
# close 4429). Each holds a lease in Redis, renewed while open: a crashed server's connections
# stop counting after AUTEUR_STREAM_LEASE_SECONDS.
AUTEUR_MAX_STREAMS_PER_USER = env.int("AUTEUR_MAX_STREAMS_PER_USER", default=20)
# The same across one paying account: every person and key acting in the workspaces it pays for
# (its personal one and the team workspaces it created) together; never below the cap of one of
# them. So more keys or more workspaces do not multiply what one sign-up may hold open.
AUTEUR_MAX_STREAMS_PER_ACCOUNT = env.int("AUTEUR_MAX_STREAMS_PER_ACCOUNT", default=100)
AUTEUR_STREAM_LEASE_SECONDS = env.float("AUTEUR_STREAM_LEASE_SECONDS", default=60.0)
