"""Settings of the benchmarked server and workers: the example project, plus the bench app
(the baseline view, a no-op step, bare Celery and procrastinate tasks), DEBUG off."""

from __future__ import annotations

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import AUTOMATE, INSTALLED_APPS, LOGGING

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.bench_app"]
# One log line per accepted webhook costs about as much as the INSERT; the baseline logs
# nothing, so both run at WARNING.
LOGGING = {**LOGGING, "loggers": {"automate": {"handlers": ["console"], "level": "WARNING"}}}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BENCH_QUEUE", "bench")
AUTOMATE = {
    **AUTOMATE,
    "DISPATCH_MAX_IN_FLIGHT": int(os.environ.get("BENCH_MAX_IN_FLIGHT", "1000")),
    "WORKER_POLL_SECONDS": 0.05,
}
