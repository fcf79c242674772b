"""The Celery app of the benchmark workers: the project's batch task and a bare task."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

app = Celery("bench", include=["automate.tasks", "benchmarks.bench_app.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
