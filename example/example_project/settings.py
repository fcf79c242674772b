"""The example project: embedded by default (SQLite), PostgreSQL by environment.

DATABASE_URL=postgresql://user:pass@127.0.0.1:5432/automate   use PostgreSQL
CELERY_BROKER_URL=redis://127.0.0.1:6379/0                      run workflows on Celery
DJANGO_DEBUG=0 DJANGO_SECRET_KEY=... GITHUB_WEBHOOK_SECRET=...  serve it for real

With DEBUG off the project refuses to start on the demo secret key or the demo webhook
secret: both are published in this repository, so anyone could forge deliveries or
sessions with them. Static files (the admin's) are served by WhiteNoise when it is
installed (``pip install whitenoise``, as the Dockerfile does) from ``DJANGO_STATIC_ROOT``
after ``manage.py collectstatic``.

Without CELERY_BROKER_URL workflows run in ``manage.py automate_worker`` (embedded mode);
with it, ``celery -A example_project worker`` executes them and
``manage.py automate_worker --dispatch-only`` hands due events to Celery.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Published in this repository: good for `make demo`, refused with DEBUG off (see the end).
DEMO_SECRET_KEY = "example-only-change-me"
DEMO_GITHUB_WEBHOOK_SECRET = "demo-github-secret"

# An empty variable counts as unset, as docker compose's ${VAR:?} treats it.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or DEMO_SECRET_KEY
GITHUB_WEBHOOK_SECRET = os.environ.get("GITHUB_WEBHOOK_SECRET") or DEMO_GITHUB_WEBHOOK_SECRET
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "automate_core",
    "automate_connectors",
    "automate",
    "automate_llm",
    "rag",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Django serves static files only from runserver with DEBUG on; under gunicorn WhiteNoise
# does it (after SecurityMiddleware, as its docs ask). Optional, so that `make demo` runs on
# a plain install.
if find_spec("whitenoise") is not None:
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

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


def _database() -> dict:
    url = os.environ.get("DATABASE_URL")
    if not url:
        path = os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    parsed = urlparse(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        # Persistent connections: the webhook path is one INSERT, and reconnecting per
        # request costs more than the request itself.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }


DATABASES = {"default": _database()}

# Celery: only when a broker is configured; otherwise the embedded worker runs workflows.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep the worker's database connections between tasks (Celery's Django fixup otherwise
# closes them around every task: a new PostgreSQL connection per batch). Django
# Automate's tasks still apply CONN_MAX_AGE and CONN_HEALTH_CHECKS per task.
CELERY_DB_REUSE_MAX = 10_000
# A task whose worker died is redelivered after this long; the outbox lease (5 min) has
# already handed its events to another worker by then, and the redelivered task skips them.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {"TITLE": "Django Automate example", "VERSION": "0.1"}

AUTOMATE = {
    # Demo values only: real projects keep secrets in the environment or a secret store
    # and refer to them as secret://NAME.
    "SECRETS": {
        "github-webhook": GITHUB_WEBHOOK_SECRET,
    },
    "CONNECTORS": {
        "github": {"secrets": ["secret://github-webhook"]},
    },
}
if DEBUG:
    # The demo's Jira connection (manage.py automate_demo) refers to these; a served
    # project has no use for secrets that everyone knows.
    AUTOMATE["SECRETS"].update(
        {
            "demo-jira-token": "demo-jira-token-not-real",
            "demo-jira-webhook": "demo-jira-webhook-secret",
        }
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "trace": {"()": "automate_core.tracing.TraceIdFilter"},
        "redact": {"()": "automate_core.redaction.RedactingFilter"},
    },
    "formatters": {"plain": {"format": "%(levelname)s %(name)s [%(trace_id)s] %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["trace", "redact"],
            "formatter": "plain",
        }
    },
    "loggers": {"automate": {"handlers": ["console"], "level": "INFO"}},
}


def _refuse_published_secrets() -> None:
    """With DEBUG off, a secret from this file would let anyone sign webhooks or cookies."""
    published = {
        "DJANGO_SECRET_KEY": SECRET_KEY == DEMO_SECRET_KEY,
        "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET == DEMO_GITHUB_WEBHOOK_SECRET,
    }
    names = [name for name, is_demo in published.items() if is_demo]
    if names:
        one = len(names) == 1
        raise ImproperlyConfigured(
            f"DJANGO_DEBUG=0 but {' and '.join(names)} {'is' if one else 'are'} unset or "
            "set to the demo value published in this repository: set "
            f"{'it' if one else 'them'} in the environment to a secret of your own "
            "(DJANGO_DEBUG=1 is for the local demo only)."
        )


if not DEBUG:
    _refuse_published_secrets()
