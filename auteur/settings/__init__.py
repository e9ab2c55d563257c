"""Settings, read from the environment in this package only (docs/configuration.md lists them all),
one module per concern, each importing what it reads of the others (every one `environment`):

    environment  `.env`, DEBUG, where files live, the secrets and how they are read
    framework    Django itself: apps, middleware, hosts, templates, static files, time
    datastores   Postgres, Redis, MongoDB, and TLS to each
    storage      object storage, signed URLs, the public store a CDN serves
    media        quotas, the probe's limits
    gpu          the GPU backend, local runners, results, the sandbox
    jobs         concurrency, the reaper and deadlines, fair share, pieces, quotes, the cache
    realtime     event streams and their connections
    webhooks     outbound deliveries
    retention    how long things are kept
    projects     EDL documents' limits, the render's pieces
    billing      plans, credits, Stripe
    api          authentication, every rate limit, bodies and documents, the proxy, the schema
    security     cookies, HSTS, the Content-Security-Policy, the admin's login
    ops          beat, health checks, metrics, logging

Celery's own settings (celeryconfig.py) take their values from here; the benchmarks' settings
(bench/settings.py) import these and add what only drills may use.
"""

from auteur.settings.api import *  # noqa: F403
from auteur.settings.billing import *  # noqa: F403
from auteur.settings.datastores import *  # noqa: F403
from auteur.settings.environment import *  # noqa: F403
from auteur.settings.framework import *  # noqa: F403
from auteur.settings.gpu import *  # noqa: F403
from auteur.settings.jobs import *  # noqa: F403
from auteur.settings.media import *  # noqa: F403
from auteur.settings.ops import *  # noqa: F403
from auteur.settings.projects import *  # noqa: F403
from auteur.settings.realtime import *  # noqa: F403
from auteur.settings.retention import *  # noqa: F403
from auteur.settings.security import *  # noqa: F403
from auteur.settings.storage import *  # noqa: F403
from auteur.settings.webhooks import *  # noqa: F403
