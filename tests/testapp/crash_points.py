"""Pauses a worker process at a chosen point, so a crash test can kill it exactly there.

``AUTOMATE_TEST_PAUSE_AFTER_TICK=<marker path>``: right after a schedule tick's row is
inserted (its transaction still open), the process writes the marker file and sleeps, so
the test can ``kill -9`` it mid-tick. Only worker processes started by the tests set it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def connect_from_environment() -> None:
    marker = os.environ.get("AUTOMATE_TEST_PAUSE_AFTER_TICK")
    if not marker:
        return
    from django.db.models.signals import post_save

    from automate.models import ScheduleTick

    def pause(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        if created:
            Path(marker).write_text(instance.scheduled_for.isoformat())
            time.sleep(600)

    post_save.connect(pause, sender=ScheduleTick, weak=False, dispatch_uid="tests.pause_tick")
