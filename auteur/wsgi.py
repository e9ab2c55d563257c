import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auteur.settings")
# This process serves requests: it logs in to Postgres as the API's own role where one is given
# (DATABASE_API_URL; auteur/core/rls.py).
os.environ["AUTEUR_SERVES_REQUESTS"] = "1"
application = get_wsgi_application()

# Here, in gunicorn's master (preload_app): every forked worker's first job submission finds
# Celery set up instead of paying ~70 ms for it.
from auteur.celery import warm_up_publisher  # noqa: E402

warm_up_publisher()
