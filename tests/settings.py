"""Settings for the test suite; the database comes from tests.databases."""

from __future__ import annotations

from tests.databases import database_settings

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "automate_core",
    "automate_connectors",
    "automate",
    "automate_llm",
    "rag",
    "rag.contrib.pgvector",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": database_settings()}
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AUTOMATE = {
    "ENCRYPTION_KEYS": ["kQHKMyc0hW0aZcB7uPzMZxHXk5l1lM8Cr2Ow0ySvpO0="],
    "SECRETS": {"my-service-webhook": "settings-secret-value"},
    "CONNECTORS": {
        "my_service": {"secrets": ["secret://my-service-webhook"]},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "trace": {"()": "automate_core.tracing.TraceIdFilter"},
        "redact": {"()": "automate_core.redaction.RedactingFilter"},
    },
    "handlers": {"null": {"class": "logging.NullHandler", "filters": ["trace", "redact"]}},
    "loggers": {"automate": {"handlers": ["null"], "level": "INFO"}},
}

# The workflow engine's tests: a connection for the recorder connector (tests/testapp).
AUTOMATE["CONNECTORS"]["recorder"] = {}

# The REST API's OpenAPI schema (automate.api).
INSTALLED_APPS += ["drf_spectacular"]
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {"TITLE": "Django Automate", "VERSION": "0.1"}
