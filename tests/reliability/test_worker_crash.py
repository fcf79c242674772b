"""Crash test: ``kill -9`` the worker 20 times while it works through 200 events.

Every event must end done or dead (none lost), and the non-idempotent ``record`` action,
counted at its HTTP target, must have run at most once per event (exactly once for every
event that ended done). Two workers are crashed: the embedded ``manage.py automate_worker``
and a real ``celery worker`` fed by ``automate_worker --dispatch-only`` through Redis.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid

import pytest

from automate.models import ConnectionProfile, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import CountingServer, start, stop, wait_for, worker_env

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


def crash_repeatedly(start_worker) -> str:
    """Start a worker, SIGKILL it mid-work KILLS times, then let a last one finish."""
    random.seed(4)
    worker = start_worker()
    try:
        for _ in range(KILLS):
            seen = StepRun.objects.count()
            try:
                wait_for(lambda s=seen: StepRun.objects.count() > s, 60, "the worker to progress")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; worker stderr: {stop(worker)[-3000:]}") from None
            time.sleep(random.uniform(0, 0.3))
            stop(worker, signal.SIGKILL)
            worker = start_worker()
        wait_for(
            lambda: not OutboxItem.objects.exclude(status__in=["done", "dead"]).exists(),
            120,
            "every event to end done or dead",
        )
    finally:
        errors = stop(worker)
    return errors


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
    def embedded_worker():
        args = ["-m", "django", "automate_worker", "--threads", "2", "--batch", "5"]
        return start([*args, "--poll", "0.1"], worker_env(AUTOMATE_WORKER_LEASE_SECONDS="2"))

    with CountingServer(delay=0.05) as target:
        setup_events(target, csrf_client)
        errors = crash_repeatedly(embedded_worker)
    check_outcome(target, errors)


def test_crash__celery_worker_killed_20_times(postgres, redis_url, csrf_client):
    queue = f"automate-crash-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        AUTOMATE_WORKER_BROKER_URL=redis_url,
        AUTOMATE_WORKER_QUEUE=queue,
        AUTOMATE_WORKER_LEASE_SECONDS="4",
        AUTOMATE_WORKER_VISIBILITY_TIMEOUT="5",
        AUTOMATE_WORKER_MAX_IN_FLIGHT="10",
    )

    def celery_worker():
        args = ["-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "threads"]
        args += ["--concurrency", "2", "--queues", queue, "--loglevel", "ERROR"]
        return start([*args, "--without-gossip", "--without-mingle", "--without-heartbeat"], env)

    with CountingServer(delay=0.05) as target:
        setup_events(target, csrf_client)
        dispatcher = start(
            ["-m", "django", "automate_worker", "--dispatch-only", "--batch", "5", "--poll", "0.1"],
            env,
        )
        try:
            errors = crash_repeatedly(celery_worker)
        finally:
            errors_dispatch = stop(dispatcher)
    check_outcome(target, errors + errors_dispatch)
