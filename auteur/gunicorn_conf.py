"""gunicorn settings shared by `make run`, the Dockerfile and the benchmarks."""

import os

# Sync workers: DRF is CPU-bound under the GIL, and gthread workers lose time handing the GIL
# between threads of one process; more processes serve more requests (bench/ measures it).
worker_class = "sync"
# Preloading imports Django once in the master; forked workers share those pages.
preload_app = True
# Recycle workers now and then so that a slow leak cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
graceful_timeout = 20
# A worker busy with one request for this long is killed and replaced. A sync worker never waits
# on a slow client: Caddy hands it only complete requests and takes the response at once (the
# Caddyfile), so this bounds the application's own time. (A gthread worker, the storage server
# of `make run`, answers the master from its main loop and is not bound by it per request.)
timeout = 30
# No control socket: its default path (~/.gunicorn/gunicorn.ctl) is one per user, which every
# gunicorn on the machine (the API and storage servers of `make run`, a second checkout) would share.
control_socket_disable = True
# X-Forwarded-Proto (the request's scheme) is believed from the reverse proxy's addresses only: the
# FORWARDED_ALLOW_IPS that uvicorn and the app (auteur/core/proxies.py) read too; the app's settings
# refuse "*" at start-up, and preload_app loads them in the master.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
# %(U)s is the path without its query string: signed download/upload URLs carry their signature
# in the query, and no signed URL may reach a log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms req=%({x-request-id}o)s'


def pre_fork(server: object, worker: object) -> None:
    """The preloaded application's objects are out of the collector's passes in every worker
    (auteur/core/collector.py); frozen before the fork, they also stay on pages the workers share."""
    from auteur.core.collector import startup_objects_frozen

    startup_objects_frozen()


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges leave the API's summed metrics (prometheus-client multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
