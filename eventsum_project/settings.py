"""Eventsum settings: everything comes from the environment (see .env.example and the README)."""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from eventsum_project.embedded_postgres import configured_data_dir
from eventsum_project.env import env_bool, env_int, env_list, env_str, env_time_format

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core -----------------------------------------------------------------------------------
PRODUCTION = env_bool("EVENTSUM_PRODUCTION", False)
DEBUG = env_bool("EVENTSUM_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("EVENTSUM_DEBUG=true is refused when EVENTSUM_PRODUCTION=true.")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when EVENTSUM_PRODUCTION=true.")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("EVENTSUM_ALLOWED_HOSTS") or ["*"]
CSRF_TRUSTED_ORIGINS = env_list("EVENTSUM_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "events.apps.EventsumAdminConfig",  # django.contrib.admin with Eventsum's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "grouping",
    "events",
]

# Under the server, POST /capture is answered past this list (events/capture.py, with the same headers and
# log line); a middleware that must see captures has to be added there too.
MIDDLEWARE = [
    "events.observability.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "events.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "events.errors.DatabaseOutageMiddleware",
]

# Django's standard checks on the passwords people choose (createsuperuser, changepassword, the admin's forms).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
SESSION_ENGINE = "events.sessions"  # Django's database sessions, with the cookie's key checked first

ROOT_URLCONF = "eventsum_project.urls"
WSGI_APPLICATION = "eventsum_project.wsgi.application"
# Every API path answers with and without its slash (eventsum_project/urls.py), so only a path that is found
# with the slash alone, the admin's, is redirected to it: /admin typed in a browser opens the admin.
APPEND_SLASH = True

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
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------------
EVENTSUM_DATA_DIR = configured_data_dir()
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
if DATABASE_URL:
    import dj_database_url

    try:
        _database = dj_database_url.parse(DATABASE_URL)
    except ValueError as error:  # the message names the part, never the password
        raise ImproperlyConfigured(f"DATABASE_URL is not a postgres://... URL: {error}") from None
    if _database.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres://...).")
else:
    from eventsum_project.embedded_postgres import embedded_database_settings

    _database = embedded_database_settings(EVENTSUM_DATA_DIR)
_database["ENGINE"] = "eventsum_project.postgresql"  # Django's, with a health check that needs no round trip
_database["CONN_MAX_AGE"] = env_int("EVENTSUM_DB_CONN_MAX_AGE", 60, minimum=0)
# A reused connection is checked before each request's first query (a poll of its socket); without the
# check, a connection the database dropped (a restart) fails one request with 503 before it is replaced.
_database["CONN_HEALTH_CHECKS"] = env_bool("EVENTSUM_DB_HEALTH_CHECKS", True)
_database.setdefault("OPTIONS", {})["connect_timeout"] = env_int("EVENTSUM_DB_CONNECT_TIMEOUT", 5, minimum=1)
# PostgreSQL's asynchronous commit for this service's connections (set by eventsum_project.postgresql): a
# commit (and so a capture's 200) no longer waits for its WAL to reach the disk. A crash of PostgreSQL or its
# machine can then lose the last moments of acknowledged writes, never part of one (docs/operations.md).
EVENTSUM_DB_ASYNC_COMMIT = env_bool("EVENTSUM_DB_ASYNC_COMMIT", False)
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Internationalization: UTC everywhere ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (the admin's CSS and JS), served by whitenoise -----------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from the apps when collectstatic has not been run

# --- Eventsum --------------------------------------------------------------------------------------
EVENTSUM_TIME_FORMAT = env_time_format("EVENTSUM_TIME_FORMAT", "%Y-%m-%d %H:%M:%S")
EVENTSUM_TIME_INTERVAL = env_int("EVENTSUM_TIME_INTERVAL", 1, minimum=1, maximum=1440)  # bucket size, minutes
EVENTSUM_AUTO_CREATE = env_bool("EVENTSUM_AUTO_CREATE", True)
EVENTSUM_INGEST_KEYS = env_list("EVENTSUM_INGEST_KEYS")
EVENTSUM_PUBLIC_READ = env_bool("EVENTSUM_PUBLIC_READ", False)
# A body is held and parsed in the worker's memory, and an array is written in one statement: the caps stop a
# typo (a zero too many) from letting one request take a worker's memory (10,000 events of the README's example,
# 13 MB: 12 s and ~250 MB).
EVENTSUM_MAX_BODY_BYTES = env_int("EVENTSUM_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=100 * 1024 * 1024)
EVENTSUM_MAX_BATCH = env_int("EVENTSUM_MAX_BATCH", 1000, minimum=1, maximum=10_000)
EVENTSUM_RETENTION_DAYS = env_int("EVENTSUM_RETENTION_DAYS", 90, minimum=1)
EVENTSUM_RATE_LIMIT = env_int("EVENTSUM_RATE_LIMIT", 0, minimum=0)  # events per minute per service; 0: off

# Django refuses bigger bodies itself; /capture checks first so it can answer 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = EVENTSUM_MAX_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10000

# --- Django REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "events.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["events.permissions.CanRead"],
    "DEFAULT_RENDERER_CLASSES": ["events.renderers.ORJSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "events.renderers.JSONOnlyNegotiation",
    "DEFAULT_PARSER_CLASSES": ["events.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "events.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Eventsum API",
    "DESCRIPTION": "Capture, search and triage application events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "events.schema.without_trailing_slashes",
    ],
}

# --- Security for production -----------------------------------------------------------------------
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("EVENTSUM_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

EVENTSUM_LOG_FORMAT = env_str("EVENTSUM_LOG_FORMAT", "text").lower()
if EVENTSUM_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"EVENTSUM_LOG_FORMAT={EVENTSUM_LOG_FORMAT!r} must be text or json.")
EVENTSUM_LOG_LEVEL = env_str("EVENTSUM_LOG_LEVEL", "INFO").upper()
if EVENTSUM_LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR"):
    raise ImproperlyConfigured(f"EVENTSUM_LOG_LEVEL={EVENTSUM_LOG_LEVEL!r} must be DEBUG, INFO, WARNING or ERROR.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "events.observability.JsonLineFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": EVENTSUM_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": EVENTSUM_LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        # Our own line per request replaces Django's warning per 4xx.
        "django.request": {"level": "ERROR"},
    },
}
