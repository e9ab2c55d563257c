"""The jobs tests' fixtures that the real-time tests use too: a funded user with a project and its
media, and the GPU backend a worker runs (the worker itself is tests/jobs/conftest.py's)."""

from __future__ import annotations

from tests.jobs.support import (  # noqa: F401 - fixtures for every test module here
    funded_fixture,
    gpu_backend_fixture,
    make_media_fixture,
    media_fixture,
    project_fixture,
)
