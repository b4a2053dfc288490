"""The one settings module. Every value comes from the environment."""

import os
import sys
from pathlib import Path

import dj_database_url
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envstr(name, default=""):
    return os.environ.get(name, default)


def envbool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envfloat(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def envlist(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = envstr("SECRET_KEY", "dev-insecure-secret-key-change-me-in-production-0123456789")
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# Behind HTTPS in production (HTTPS=true): secure cookies, redirects and HSTS, so that
# `manage.py check --deploy` passes. SECURE_PROXY_SSL_HEADER trusts a proxy's X-Forwarded-Proto.
HTTPS = envbool("HTTPS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", HTTPS)
if envbool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Fernet keys that encrypt webhook secrets at rest (experiments_app/secrets_at_rest.py), comma-separated:
# the first encrypts, all decrypt. Empty: a key derived from SECRET_KEY (development only).
SECRETS_ENCRYPTION_KEYS = envlist("SECRETS_ENCRYPTION_KEYS", "")
# After a secret rotation the old secret still signs and verifies this long (24 h).
WEBHOOK_SECRET_ROTATION_SECONDS = envint("WEBHOOK_SECRET_ROTATION_SECONDS", 24 * 3600)
# Hosts allowed to resolve to private/loopback/link-local addresses (SSRF guard).
WEBHOOK_ALLOWED_HOSTS = envlist("WEBHOOK_ALLOWED_HOSTS", "")
# Absolute base of the callbackUrl sent to applications: where the dashboard serves (SPEC §4).
# Every process must agree on it, so it never comes from a process's own PORT (honcho gives
# each Procfile process a different one): `make run` computes it once and exports it.
PUBLIC_URL = (envstr("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "experiments_app",
    "webui",
]
if sys.version_info < (3, 12):  # Django 5.2: template partials come from the package
    INSTALLED_APPS.append("template_partials")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
                "webui.context_processors.chrome",
            ],
        },
    }
]
if sys.version_info < (3, 12):  # Django 6's built-in {% partialdef %} comes from the package on 5.2
    TEMPLATES[0]["OPTIONS"]["builtins"] = ["template_partials.templatetags.partials"]

DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and scheduler share one file: WAL lets readers run beside a
    # writer, IMMEDIATE avoids deadlocking upgrades, the timeout waits out locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (not :memory:) so a real worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": envstr("TEST_DATABASE_NAME", "") or None}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds the rate-limit counters (experiments_app/ratelimit.py). With Redis every web
# process shares them (CACHE_URL, by default the broker's Redis); the file cache is shared by the
# processes of one machine only.
CACHE_URL = envstr("CACHE_URL", "") or (envstr("CELERY_BROKER_URL") if envstr("CELERY_BROKER_URL").startswith("redis") else "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "dashboard"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }
# "N/S": at most N requests in S seconds. Sign-in attempts per address and per user name;
# result posts per application.
RATE_LIMIT_LOGIN_IP = envstr("RATE_LIMIT_LOGIN_IP", "100/300")
RATE_LIMIT_LOGIN = envstr("RATE_LIMIT_LOGIN", "10/300")
RATE_LIMIT_RESULTS = envstr("RATE_LIMIT_RESULTS", "6000/60")

AUTH_PASSWORD_VALIDATORS = []
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/experiments/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # vendor/plotly.min.js from the installed plotly package, never a committed copy
    "dashboard.staticfiles.PlotlyFinder",
]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# WhiteNoise serves static/ from every process (runserver with DEBUG off, gunicorn);
# with finders on, no collectstatic is needed for `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 20 * 1024 * 1024)

# Celery: the broker is only a wake-up call; the database is the source of truth.
# The filesystem transport ignores the host; naming one keeps kombu from warning about it.
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / envstr("CELERY_BROKER_DIR", "broker")
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")) and envstr("CELERY_BROKER_KEY_PREFIX"):
    # Several deployments (or a test run beside a developer's) can share one Redis database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": envstr("CELERY_BROKER_KEY_PREFIX")}
# The filesystem broker cannot wake an event loop, so a prefork worker on it uses billiard's
# blocking pool, whose idle processes share one read lock on the task queue: a pool process
# killed while waiting for work left it held and every process started in its place hung.
# Threads share no such lock (and cost less memory); with Redis, prefork gets a queue per process.
CELERY_WORKER_POOL = envstr("CELERY_WORKER_POOL", "threads" if CELERY_BROKER_URL.startswith("filesystem://") else "prefork")
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Two queues. A dispatcher holds a worker process for the length of a run, so the
# sweeper (which errors silent tests, recovers lost leases and wakes dispatchers) has
# its own queue: the Procfile and docker-compose run one small worker on it, so it
# never waits behind busy dispatchers. A plain `celery worker` consumes both.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery"), Queue("sweep"))
CELERY_TASK_ROUTES = {
    "experiments_app.tasks.sweep_tests": {"queue": "sweep"},
    "experiments_app.tasks.sweep_event_deliveries": {"queue": "sweep"},
}
# How often the sweeper re-dispatches expired leases and errors silent tests (seconds).
SWEEP_INTERVAL_SECONDS = envint("SWEEP_INTERVAL_SECONDS", 5)
# Delivery policy (SPEC §4): at least 4 attempts, first retry within 5 s, doubling to 60 s.
WEBHOOK_MAX_ATTEMPTS = envint("WEBHOOK_MAX_ATTEMPTS", 5)
WEBHOOK_RETRY_BASE_SECONDS = envfloat("WEBHOOK_RETRY_BASE_SECONDS", 2.0)
WEBHOOK_RETRY_MAX_SECONDS = envfloat("WEBHOOK_RETRY_MAX_SECONDS", 60.0)
WEBHOOK_RETRY_AFTER_MAX_SECONDS = envfloat("WEBHOOK_RETRY_AFTER_MAX_SECONDS", 120.0)
# A dispatcher owns one application this long between renewals; it waits up to
# DISPATCH_IDLE_SECONDS for retries about to fall due before leaving them to the sweeper.
DISPATCH_LEASE_SECONDS = envfloat("DISPATCH_LEASE_SECONDS", 30.0)
DISPATCH_IDLE_SECONDS = envfloat("DISPATCH_IDLE_SECONDS", 15.0)
# A run started with stop_when_decided looks at its live verdict at most this often (seconds).
LIVE_LOOK_SECONDS = envfloat("LIVE_LOOK_SECONDS", 0.5)
# A claimed test is its dispatcher's for 2 × timeout_seconds plus this margin; after
# that (the worker died mid-request) the sweeper hands it to another dispatcher.
DISPATCH_TEST_LEASE_MARGIN_SECONDS = envfloat("DISPATCH_TEST_LEASE_MARGIN_SECONDS", 15.0)
RESULT_MAX_BYTES = envint("RESULT_MAX_BYTES", 5 * 1024 * 1024)
# Event endpoints (SPEC §4): each attempt's timeout; an endpoint is disabled after this many
# deliveries in a row were given up on, or after failing this many days without a success.
EVENT_TIMEOUT_SECONDS = envfloat("EVENT_TIMEOUT_SECONDS", 10.0)
EVENT_DISABLE_AFTER_FAILURES = envint("EVENT_DISABLE_AFTER_FAILURES", 100)
EVENT_DISABLE_AFTER_DAYS = envfloat("EVENT_DISABLE_AFTER_DAYS", 5.0)
# runs/{id}/?wait=N: at most this many requests per web process wait at once (each holds a
# thread); the others answer at once with the run as it is. The wait polls the run this often.
LONG_POLL_MAX_WAITERS = envint("LONG_POLL_MAX_WAITERS", 16)
LONG_POLL_INTERVAL_SECONDS = envfloat("LONG_POLL_INTERVAL_SECONDS", 0.25)
# A dispatcher that holds its lease but has not moved for this long (or 2 × timeout_seconds plus
# the margin, if longer) is stalled: the sweeper takes its application back (runs/health.py).
DISPATCH_STALL_SECONDS = envfloat("DISPATCH_STALL_SECONDS", 60.0)
# A dispatcher keeps its requests and their answers through a database outage this long.
DISPATCH_DATABASE_OUTAGE_SECONDS = envfloat("DISPATCH_DATABASE_OUTAGE_SECONDS", 60.0)
# A test whose worker died while sending it this many times is errored, not sent again.
DISPATCH_MAX_LOST_ATTEMPTS = envint("DISPATCH_MAX_LOST_ATTEMPTS", 3)
# An application whose deliveries all fail, at least this many in a row over at least this
# long, is disabled until someone re-enables it.
APPLICATION_DISABLE_AFTER_FAILURES = envint("APPLICATION_DISABLE_AFTER_FAILURES", 100)
APPLICATION_DISABLE_AFTER_SECONDS = envfloat("APPLICATION_DISABLE_AFTER_SECONDS", 3600.0)
# Pull mode: how often a waiting pending-tests long poll looks for work (seconds).
PULL_POLL_INTERVAL_SECONDS = envfloat("PULL_POLL_INTERVAL_SECONDS", 0.2)
# At most this many pending-tests long polls wait at once per web process (each holds a thread).
PULL_MAX_WAITERS = envint("PULL_MAX_WAITERS", 16)
CELERY_BEAT_SCHEDULE = {
    # A sweep not started within a few intervals is dropped: the next one does its work.
    "sweep-tests": {
        "task": "experiments_app.tasks.sweep_tests",
        "schedule": float(SWEEP_INTERVAL_SECONDS),
        "options": {"expires": float(SWEEP_INTERVAL_SECONDS * 3)},
    },
    # Event deliveries whose wake-up was lost (a broker restart, a dead worker) or fell due.
    "sweep-event-deliveries": {
        "task": "experiments_app.tasks.sweep_event_deliveries",
        "schedule": float(SWEEP_INTERVAL_SECONDS),
        "options": {"expires": float(SWEEP_INTERVAL_SECONDS * 3)},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "experiments_app.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "experiments_app.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_PARSER_CLASSES": ["experiments_app.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["experiments_app.api.renderers.FastJSONRenderer"],
    "EXCEPTION_HANDLER": "experiments_app.api_errors.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "experiments_app.api.schema.ApiSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Experiments dashboard API",
    "DESCRIPTION": "Baselines, variants, runs and results for LLM application experiments. "
    "Authenticate with `Authorization: Bearer <team API token>`.\n\n"
    "This page describes the inbound API. What your application under test receives (the signed webhook, "
    "its payload and `overrides`), how it answers (synchronously or 202 plus a callback to "
    "`POST /api/v1/tests/{id}/result/`), retries and de-duplication are in the integration guide: "
    "[Integrating your application](/docs/integrating/) (docs/integrating.md in the repository).",
    "VERSION": "1.0.0",
    # 3.1: nullable references (`change: null`) are `oneOf [ref, null]`, valid under strict validators,
    # and the outbound payloads can be described in `webhooks`.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "experiments_app.api.webhook_docs.simplify_nullable_any",
        "experiments_app.api.webhook_docs.state_request_limits",
    ],
    # What the product sends out: test deliveries, pings and events (OpenAPI 3.1 `webhooks`).
    "WEBHOOKS": [
        "experiments_app.api.webhook_docs.test_delivery",
        "experiments_app.api.webhook_docs.ping",
        "experiments_app.api.webhook_docs.event",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ExperimentStatusEnum": "experiments_app.states.State",
        "RunStatusEnum": "experiments_app.models.RunStatus",
        "TestStatusEnum": "experiments_app.models.TestStatus",
        "RoleEnum": "experiments_app.models.Role",
        "EventTypeEnum": "experiments_app.models.EventType",
        "DeliveryStatusEnum": "experiments_app.models.DeliveryStatus",
        "ParameterEnum": "experiments_app.overrides.PARAMETER_NAMES",
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "webhookSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "webhook-signature",
                "description": "Standard Webhooks signature made with the application's secret, "
                "with the webhook-id and webhook-timestamp headers.",
            },
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}
