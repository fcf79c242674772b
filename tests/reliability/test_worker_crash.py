"""Crash test: ``kill -9`` the worker 20 times while it works through 200 events.

Every event must end done or dead (none lost), and the non-idempotent ``record`` action,
counted at its HTTP target, must have run at most once per event (exactly once for every
event that ended done). The worker is ``manage.py automate_worker``: the same code path
as the Celery tasks (:func:`automate.dispatch.process_batch`).
"""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from automate.models import ConnectionProfile, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import CountingServer, start, stop, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EVENTS = 200
KILLS = 20


def embedded_worker():
    args = ["-m", "django", "automate_worker", "--threads", "2", "--batch", "5", "--poll", "0.1"]
    return start(args, worker_env(AUTOMATE_WORKER_LEASE_SECONDS="2"))


def test_crash__kill_9_twenty_times_loses_nothing_and_never_repeats(postgres, csrf_client):
    random.seed(4)
    with CountingServer(delay=0.05) as target:
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

        def steps_started() -> int:
            return StepRun.objects.count()

        worker = embedded_worker()
        try:
            for _ in range(KILLS):
                seen = steps_started()
                wait_for(lambda s=seen: steps_started() > s, 30, "the worker to make progress")
                time.sleep(random.uniform(0, 0.3))
                stop(worker, signal.SIGKILL)
                worker = embedded_worker()
            wait_for(
                lambda: not OutboxItem.objects.exclude(status__in=["done", "dead"]).exists(),
                90,
                "every event to end done or dead",
            )
        finally:
            errors = stop(worker)

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
        run = WorkflowRun.objects.get(outbox_item=item)
        if item.status == "done":
            assert count == 1
            assert run.status == RunStatus.COMPLETED
        else:
            assert run.status == RunStatus.DEAD
            assert count <= 1
