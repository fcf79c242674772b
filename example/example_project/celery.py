"""The example project's Celery app; used only when CELERY_BROKER_URL is set.

celery -A example_project worker            # executes workflow batches
python manage.py automate_worker --dispatch-only   # claims due events, sends batches
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
