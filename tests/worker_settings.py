"""Settings for worker processes started by the tests (Celery workers, automate_worker).

A worker must reach the *test* database that pytest-django created, so the test passes
its connection settings in ``AUTOMATE_WORKER_DATABASE`` (JSON); Celery's broker and queue
come from ``AUTOMATE_WORKER_BROKER_URL`` and ``AUTOMATE_WORKER_QUEUE``.
"""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import AUTOMATE

DATABASES = {"default": json.loads(os.environ["AUTOMATE_WORKER_DATABASE"])}

CELERY_BROKER_URL = os.environ.get("AUTOMATE_WORKER_BROKER_URL") or None
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("AUTOMATE_WORKER_QUEUE", "celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How soon Redis hands an unacknowledged task of a killed worker to another worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("AUTOMATE_WORKER_VISIBILITY_TIMEOUT", "3600"))
}

AUTOMATE = {
    **AUTOMATE,
    "OUTBOX_LEASE_SECONDS": int(os.environ.get("AUTOMATE_WORKER_LEASE_SECONDS", "300")),
    "WORKER_POLL_SECONDS": 0.1,
    "DISPATCH_MAX_IN_FLIGHT": int(os.environ.get("AUTOMATE_WORKER_MAX_IN_FLIGHT", "200")),
    # Any other keys a test sets, as JSON (e.g. an allow-list for a loopback endpoint).
    **json.loads(os.environ.get("AUTOMATE_WORKER_EXTRA", "{}")),
}

# As a project's __init__ does: load the Celery app so shared tasks bind to it (the
# dispatcher process sends them).
import tests.celery_app  # noqa: E402, F401
