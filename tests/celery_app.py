"""The Celery app of the test suite, configured from Django settings (``CELERY_*``).

Worker processes load it with ``celery -A tests.celery_app worker`` and
``DJANGO_SETTINGS_MODULE=tests.worker_settings``; Celery's Django fix-up sets Django up.
"""

from __future__ import annotations

from celery import Celery

app = Celery("automate_tests", include=["automate.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
