# The image docker-compose.yml runs as web, worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# pg_dump and pg_restore for `manage.py backup` / `restore`, of the major version of
# docker-compose.yml's postgres:16. Not Debian's own postgresql-client: bookworm's is 15
# (pg_dump refuses a newer server) and trixie's is 17 (its pg_restore begins with
# SET transaction_timeout, which a 16 server refuses). PostgreSQL's apt repository
# (apt.postgresql.org, set up by postgresql-common's script with the key it ships) has 16.
# Moving compose to another postgres major: build with --build-arg PG_MAJOR=<it>.
ARG PG_MAJOR=16
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
 && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
 && apt-get install -y --no-install-recommends postgresql-client-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-cache
COPY . .
# Static files are collected at build time (manifest + compression for whitenoise); the
# placeholder secret and server addresses exist only for this step (nothing is connected to);
# the secret is refused at run time.
RUN DJANGO_ENV=production DJANGO_ALLOWED_HOSTS=build \
    DJANGO_SECRET_KEY=collectstatic-only-placeholder-never-used-to-serve-0123456789 \
    DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput \
 && useradd --system --home /app chosen && mkdir -p /app/var/media && chown -R chosen /app/var
USER chosen
EXPOSE 8000
CMD ["gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "12", "--preload", "--access-logfile", "-"]
