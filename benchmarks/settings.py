"""Settings of the benchmarked server and workers: the example project, plus the bench app
(the baseline view, a no-op step, bare Celery and procrastinate tasks), DEBUG off."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

from example_project.settings import *  # noqa: F403
from example_project.settings import AUTOMATE, DATABASES, INSTALLED_APPS, LOGGING

# An embedded server's URL names its Unix socket directory as ?host=...
_query = parse_qs(urlparse(os.environ.get("DATABASE_URL", "")).query)
if _query.get("host"):
    DATABASES["default"]["HOST"] = _query["host"][0]

# BENCH_CONN_HEALTH_CHECKS=0: no connection health check before a request's first
# statement (the example project checks, as a production project behind restarts would).
if os.environ.get("BENCH_CONN_HEALTH_CHECKS") == "0":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.bench_app"]
# One log line per accepted webhook costs about as much as the INSERT; the baseline logs
# nothing, so both run at WARNING.
LOGGING = {**LOGGING, "loggers": {"automate": {"handlers": ["console"], "level": "WARNING"}}}
if os.environ.get("BENCH_RAG"):
    # The RAG benchmark's server has pgvector; the others' need not.
    INSTALLED_APPS += [app for app in ("rag", "rag.contrib.pgvector") if app not in INSTALLED_APPS]
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BENCH_QUEUE", "bench")
AUTOMATE = {
    **AUTOMATE,
    "DISPATCH_MAX_IN_FLIGHT": int(os.environ.get("BENCH_MAX_IN_FLIGHT", "1000")),
    "DISPATCH_MAX_BATCHES_IN_FLIGHT": int(os.environ.get("BENCH_MAX_BATCHES", "8")),
    "WORKER_POLL_SECONDS": 0.05,
}

# BENCH_OBSERVABILITY=on: traces and metrics on, as a production project would have them
# (an SDK tracer provider whose batch processor hands spans to an exporter that drops
# them, and prometheus-client writing to a multiprocess directory); off: both extras
# blocked, as when they are not installed. Unset: whatever the virtualenv has.
_observability = os.environ.get("BENCH_OBSERVABILITY", "")
if _observability == "off":
    import sys

    for _name in ("opentelemetry", "prometheus_client"):
        sys.modules[_name] = None  # type: ignore[assignment]
elif _observability == "on":
    from benchmarks.observability_setup import start_tracing

    start_tracing()
