"""What a test needs to start the API or a worker as a subprocess on the test's own servers."""

from __future__ import annotations

from django.conf import settings


def subprocess_database_url() -> str:
    """DATABASE_URL of the test database (once django_db_setup has run), for a subprocess."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
