"""Helpers for the workflow engine's tests."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.testapp.engine_connectors import RecorderConnector


@pytest.fixture(autouse=True)
def recorder_calls():
    """The in-process record of RecorderConnector calls, empty for each test."""
    RecorderConnector.calls.clear()
    yield RecorderConnector.calls
    RecorderConnector.calls.clear()


@pytest.fixture
def drain():
    """Run the embedded worker in this thread until nothing is due; ``due=True`` first
    makes every waiting retry due now (instead of sleeping through its backoff)."""
    from automate.worker import EmbeddedWorker
    from automate_core.outbox.models import OutboxItem

    def run(*, due: bool = False) -> dict[str, int]:
        if due:
            OutboxItem.objects.filter(status="failed").update(available_at=timezone.now())
        return EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)

    return run
