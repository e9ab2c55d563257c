"""Fixtures the contract test shares with the job and media tests."""

from tests.billing.conftest import stripe_fake  # noqa: F401 - fixture
from tests.jobs.support import gpu_backend_fixture  # noqa: F401 - fixture
from tests.media.conftest import local_storage, samples  # noqa: F401 - fixtures
