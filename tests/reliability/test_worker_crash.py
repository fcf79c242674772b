"""Crash test: ``kill -9`` the worker 20 times while it works through 200 events.

Every event must end done or dead (none lost), and the non-idempotent ``record`` action,
counted at its HTTP target, must have run at most once per event (exactly once for every
event that ended done). Two workers are crashed: the embedded ``manage.py automate_worker``
and a real ``celery worker`` fed by ``automate_worker --dispatch-only`` through Redis.
"""

from __future__ import annotations

import json

import pytest

from automate.models import ConnectionProfile, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import (
    CountingServer,
    crash_celery_repeatedly,
    crash_repeatedly,
    start_embedded_worker,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EVENTS = 200
KILLS = 20


def setup_events(target: CountingServer, csrf_client) -> None:
    ConnectionProfile.objects.create(
        key="counter", connector_key="recorder", config={"url": target.url}
    )
    WorkflowService().create_workflow(
        name="Charge",
        trigger="my_service",
        steps=[
            {
                "name": "Charge",
                "type": "connector_action",
                "config": {
                    "profile": "counter",
                    "action": "record",  # ActionSpec(idempotent=False)
                    "input": {"event": "{{ event.id }}"},
                },
            },
            {"name": "Paid", "type": "filter", "config": {"condition": "{{ true }}"}},
        ],
    )
    for n in range(EVENTS):
        body = json.dumps({"id": f"evt_{n}", "type": "charge"}).encode()
        assert post(csrf_client, body, signature=sign(body)).status_code == 202


def every_event_ended() -> bool:
    return not OutboxItem.objects.exclude(status__in=["done", "dead"]).exists()


#: How both tests kill their worker: KILLS times mid-work, then one finishes every event.
#: Two threads, 50 ms a call, killed up to 0.3 s after the first: a life can end a dozen
#: events, 20 lives more than the 200, so the last may end before the last kill. The kills
#: stop there (the next worker would have nothing to progress on).
CRASHES = {
    "kills": KILLS,
    "progress": StepRun.objects.count,
    "finished": every_event_ended,
    "out_of_work": every_event_ended,
    "what": "every event to end done or dead",
    "seed": 4,
}


def check_outcome(target: CountingServer, errors: str) -> None:
    items = list(OutboxItem.objects.order_by("id"))
    dead = sum(item.status == "dead" for item in items)
    interrupted = StepRun.objects.filter(status="interrupted").count()
    print(f"crash test: {len(items) - dead} done, {dead} dead, {interrupted} steps interrupted")
    assert len(items) == EVENTS, errors[-2000:]
    assert {item.status for item in items} <= {"done", "dead"}
    # The crashes happened mid-work: some items were claimed again after a lost lease.
    assert any(item.attempts > 1 for item in items)
    assert max(target.counts.values()) == 1, "a non-idempotent action ran twice"
    for item in items:
        count = target.counts.get(item.external_id, 0)
        run = WorkflowRun.objects.filter(outbox_item=item).first()
        if item.status == "done":
            assert count == 1
            assert run.status == RunStatus.COMPLETED
        else:
            # Dead before any worker made its run (every lease ran out), or dead with it.
            assert run is None or run.status == RunStatus.DEAD
            assert count <= 1


def test_crash__embedded_worker_killed_20_times(postgres, csrf_client):
    with CountingServer(delay=0.05) as target:
        setup_events(target, csrf_client)
        errors = crash_repeatedly(start_embedded_worker, **CRASHES)
    check_outcome(target, errors)


def test_crash__celery_worker_killed_20_times(postgres, redis_url, csrf_client):
    with CountingServer(delay=0.05) as target:
        setup_events(target, csrf_client)
        errors = crash_celery_repeatedly(redis_url, "crash", **CRASHES)
    check_outcome(target, errors)
