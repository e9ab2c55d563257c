"""The fixtures the exporter's test shares with the jobs and media tests: a real Celery worker on
the test database (tests/jobs/conftest.py) and the sample media (tests/media/conftest.py)."""

from __future__ import annotations

from tests.jobs.conftest import start_worker  # noqa: F401 - fixtures for every test module here
from tests.media.conftest import samples  # noqa: F401
