"""A poison event: its step ends the worker process every time it runs (a crash, an
OOM kill). Real worker processes, on PostgreSQL.

The outbox gives up on the event once its lease ran out ``OUTBOX_MAX_ATTEMPTS`` times;
its run is then dead (``exhausted``) and the workflow's ``on_failure`` step, a
non-idempotent call counted at its HTTP target, runs exactly once, from an item of its
own: the poisoned step is not run again, and no worker dies for the alert."""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from automate.models import ConnectionProfile, RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import CountingServer, start_embedded_worker, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ATTEMPTS = 2


def test_poison_event__its_on_failure_step_runs_once_and_kills_no_worker(postgres, csrf_client):
    with CountingServer() as target:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": target.url}
        )
        WorkflowService().create_workflow(
            name="Poisoned",
            trigger="my_service",
            steps=[
                {
                    "name": "Die",
                    "type": "connector_action",
                    "config": {"profile": "counter", "action": "die", "input": {}},
                }
            ],
            on_failure=[
                {
                    "name": "Alert",
                    "type": "connector_action",
                    "config": {
                        "profile": "counter",
                        "action": "record",  # ActionSpec(idempotent=False)
                        "input": {"event": "{{ event.id }}:{{ failure.error.code }}"},
                    },
                }
            ],
        )
        body = json.dumps({"id": "evt_poison", "type": "charge"}).encode()
        assert post(csrf_client, body, signature=sign(body)).status_code == 202
        extra = json.dumps({"OUTBOX_MAX_ATTEMPTS": ATTEMPTS})
        deaths = 0
        deadline = time.monotonic() + 120
        while not target.counts and time.monotonic() < deadline:
            worker = start_embedded_worker(AUTOMATE_WORKER_EXTRA=extra)
            # Until it dies, or the alert is counted (a worker that does neither in 30 s is
            # stopped and the next one tried).
            with contextlib.suppress(AssertionError):
                wait_for(lambda w=worker: w.poll() is not None or bool(target.counts), 30, "work")
            deaths += worker.poll() == 70
            errors = stop(worker)
        assert target.counts == {"evt_poison:exhausted": 1}, errors[-2000:]
        assert deaths == ATTEMPTS
        # One more worker finds nothing to do: the alert ran once, the event stays dead.
        worker = start_embedded_worker(AUTOMATE_WORKER_EXTRA=extra)
        time.sleep(3)
        assert worker.poll() is None
        stop(worker)
    assert target.counts == {"evt_poison:exhausted": 1}
    run = WorkflowRun.objects.get()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")
    assert sorted(OutboxItem.objects.values_list("event_type", "status")) == [
        ("charge", "dead"),
        ("run.failed", "done"),
    ]
