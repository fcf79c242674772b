"""The worker heartbeat that ``/health/`` reads (:mod:`automate.health`).

The embedded worker, the Celery-mode dispatcher and Celery's dispatch task call
:func:`beat` when they poll the outbox (through :func:`automate.instrument.claimed`); one
row per process, written at most every ``AUTOMATE["WORKER_HEARTBEAT_SECONDS"]``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.db import DatabaseError
from django.utils import timezone

from automate.conf import settings as app_settings
from automate.models import WorkerHeartbeat

__all__ = ["FORGET_AFTER", "beat", "process_name", "reset_heartbeat"]

logger = logging.getLogger("automate.health")

_beat_lock = threading.Lock()
_last_beat: float | None = None

#: Heartbeat rows of processes gone for this long are deleted by the next beat.
FORGET_AFTER = timedelta(days=1)


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def beat(worker: str = "") -> bool:
    """Record that this process polls the outbox; at most once per
    ``WORKER_HEARTBEAT_SECONDS``. Never raises (a claim must not fail for it)."""
    global _last_beat
    now = time.monotonic()
    with _beat_lock:
        if _last_beat is not None and now - _last_beat < app_settings.WORKER_HEARTBEAT_SECONDS:
            return False
        _last_beat = now
    try:
        seen = timezone.now()
        WorkerHeartbeat.objects.update_or_create(worker=process_name(), defaults={"seen_at": seen})
        WorkerHeartbeat.objects.filter(seen_at__lt=seen - FORGET_AFTER).delete()
    except DatabaseError:
        logger.warning("could not record the worker heartbeat", exc_info=True)
        return False
    return True


def reset_heartbeat() -> None:
    """Let the next :func:`beat` write at once (tests, a forked worker)."""
    global _last_beat
    _last_beat = None
