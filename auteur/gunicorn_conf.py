"""gunicorn settings shared by `make run`, the Dockerfile and the benchmarks."""

# Sync workers: DRF is CPU-bound under the GIL, and gthread workers lose time handing the GIL
# between threads of one process; more processes serve more requests (bench/ measures it).
worker_class = "sync"
# Preloading imports Django once in the master; forked workers share those pages.
preload_app = True
# Recycle workers now and then so that a slow leak cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
graceful_timeout = 20
accesslog = "-"
# %(U)s is the path without its query string: signed download/upload URLs carry their signature
# in the query, and no signed URL may reach a log.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms req=%({x-request-id}o)s'
