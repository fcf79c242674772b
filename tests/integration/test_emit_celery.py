"""``emit`` with a real ``celery worker``: the commit sends ``automate.dispatch`` through
Redis and the worker process runs the workflow; a rolled-back emit sends nothing."""

from __future__ import annotations

import pytest
from django.db import transaction

from automate import emit
from automate.models import RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.engine_support import stop, wait_for
from tests.integration.test_celery_end_to_end import celery_queue, celery_worker  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def test_emit__a_celery_worker_runs_the_workflow_after_the_commit(
    postgres,
    redis_url,
    celery_queue,  # noqa: F811
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
