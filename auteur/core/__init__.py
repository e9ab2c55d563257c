"""The foundations every app may use: errors and their API answers, the API's views and schema,
row-level security, quotas, rate limits, publishing tasks, retention sweeps, running untrusted
parsers, logging, TLS and secrets. They import no app (tests/test_layering.py): apps import
`auteur.core` and `auteur.users`, never the rest of `auteur`, which is the wiring (settings,
URLs, the ASGI/WSGI entry points, the Celery app, health checks, middleware).
"""
