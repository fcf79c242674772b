"""``emit`` and schedules with a real ``celery worker``: an emit's commit sends
``automate.dispatch`` through Redis and the worker process runs the workflow (a
rolled-back emit sends nothing); ``automate_worker --dispatch-only --once`` fires the
ticks due now and hands them to the worker."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from automate import emit
from automate.models import RunStatus, Schedule, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.engine_support import stop, wait_for
from tests.integration.test_celery_end_to_end import celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def test_emit__a_celery_worker_runs_the_workflow_after_the_commit(
    postgres,
    redis_url,
    celery_queue,
):
    WorkflowService().create_workflow(
        name="Paid orders",
        trigger={"connector": "app", "events": ["order.*"]},
        steps=[
            {
                "name": "Big",
                "type": "filter",
                "config": {"condition": "{{ event.payload.total > 100 }}"},
            }
        ],
    )
    worker = celery_worker(redis_url, celery_queue)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():  # noqa: PT012
            emit("order.paid", {"total": 1}, key="rolled-back")
            raise RuntimeError("the order save failed")
        with transaction.atomic():
            item = emit("order.paid", {"total": 250}, key="order-1-paid")
        wait_for(
            lambda: OutboxItem.objects.filter(pk=item.pk, status__in=["done", "dead"]).exists(),
            timeout=60,
            what="the Celery worker to finish the event",
        )
    finally:
        errors = stop(worker)
    item.refresh_from_db()
    assert item.status == "done", (item.last_error, errors[-2000:])
    assert item.leased_by.endswith(":celery")
    assert OutboxItem.objects.count() == 1
    run = WorkflowRun.objects.get()
    assert (run.status, run.event["payload"]) == (RunStatus.COMPLETED, {"total": 250})


def test_dispatch_only_once__fires_due_ticks_for_a_celery_worker(postgres, redis_url, celery_queue):
    workflow = WorkflowService().create_workflow(
        name="Hourly",
        trigger={"every": 3600},
        steps=[{"name": "Go", "type": "filter", "config": {"condition": "{{ true }}"}}],
    )
    last_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    Schedule.objects.filter(workflow=workflow).update(next_tick_at=last_hour)
    worker = celery_worker(redis_url, celery_queue)
    try:
        call_command("automate_worker", "--dispatch-only", "--once", stdout=io.StringIO())
        wait_for(
            lambda: WorkflowRun.objects.filter(status=RunStatus.COMPLETED).exists(),
            timeout=60,
            what="the Celery worker to run the tick",
        )
    finally:
        errors = stop(worker)
    run = WorkflowRun.objects.get()
    assert run.event["payload"]["scheduled_for"] == last_hour.isoformat(), errors[-2000:]
    assert run.outbox_item.leased_by.endswith(":dispatch")  # claimed by the dispatcher
    assert Schedule.objects.get().next_tick_at == last_hour + timedelta(hours=1)
