"""The ASGI entry point (uvicorn): event streams (SSE), `Prefer: wait` submissions and the WebSocket.

Caddy sends `/ws/*`, `*/stream` and waiting submissions here; gunicorn (auteur/wsgi.py) serves the
rest. HTTP goes to Django's own ASGI handler, WebSockets to the Channels consumer. No channel layer
is configured (realtime/ws.py says why).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")
# No persistent database connections here: Django runs each request's sync code in a thread of its
# own under ASGI, so a connection kept past its request would be stranded with that thread.
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
# It serves requests: as the API's own database role where one is given (auteur/wsgi.py).
os.environ["AUTEUR_SERVES_REQUESTS"] = "1"
# Django is set up before anything imports a model.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from auteur.asgi_limits import RequestBodyLimit  # noqa: E402
from auteur.core.collector import startup_objects_frozen  # noqa: E402
from auteur.core.rls import scoped_asgi  # noqa: E402
from realtime.prefer_wait import PreferWait  # noqa: E402
from realtime.ws import JobEventsConsumer  # noqa: E402

# Every call, a WebSocket's whole life included, sees only its caller's rows (auteur/core/rls.py).
application = scoped_asgi(ProtocolTypeRouter({
    # Bodies are refused from their headers before Django would spool them (auteur/asgi_limits.py).
    "http": RequestBodyLimit(PreferWait(django_application)),
    "websocket": URLRouter([path("ws/v1/events", JobEventsConsumer.as_asgi())]),
}))

# Everything loaded so far lives as long as the process: out of the collector's passes.
startup_objects_frozen()
