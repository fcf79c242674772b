"""End to end on PostgreSQL + Redis with a real ``celery worker`` process.

A signed webhook is accepted by WebhookView in this process; on commit the
``event_accepted`` signal sends ``automate.dispatch`` through Redis; the Celery worker
process claims the item from the test database, runs the two-step workflow (a connector
action POSTing to a local HTTP server, then a filter) and records the run.
"""

from __future__ import annotations

import json

import pytest

from automate.models import ConnectionProfile, RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import CountingServer, start, stop, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def celery_worker(redis_url: str, queue: str, **env: str):
    args = ["-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "threads"]
    args += ["--concurrency", "2", "--queues", queue, "--loglevel", "WARNING"]
    args += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return start(
        args,
        worker_env(AUTOMATE_WORKER_BROKER_URL=redis_url, AUTOMATE_WORKER_QUEUE=queue, **env),
    )


def test_celery__signed_webhook_runs_the_workflow_in_a_celery_worker(
    postgres, redis_url, celery_queue, csrf_client
):
    with CountingServer() as target:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": target.url}
        )
        WorkflowService().create_workflow(
            name="Search requested",
            trigger={"connector": "my_service", "events": ["search.*"]},
            steps=[
                {
                    "name": "Record",
                    "type": "connector_action",
                    "config": {
                        "profile": "counter",
                        "action": "record",
                        "input": {
                            "event": "{{ event.id }}",
                            "query": "{{ event.payload.query }}",
                            "trace": "{{ trace_id }}",
                        },
                    },
                },
                {
                    "name": "First time",
                    "type": "filter",
                    "config": {"condition": "{{ steps.Record.output.count == 1 }}"},
                },
            ],
        )
        worker = celery_worker(redis_url, celery_queue)
        try:
            body = json.dumps(
                {"id": "evt_e2e", "type": "search.requested", "query": "pgvector"}
            ).encode()
            response = post(csrf_client, body, signature=sign(body))
            assert response.status_code == 202
            trace_id = response.json()["trace_id"]
            wait_for(
                lambda: OutboxItem.objects.filter(status__in=["done", "dead"]).exists(),
                timeout=60,
                what="the Celery worker to finish the event",
            )
        finally:
            errors = stop(worker)
        item = OutboxItem.objects.get()
        assert item.status == "done", (item.last_error, errors[-2000:])
        assert item.leased_by.endswith(":celery")  # claimed by the Celery task
        run = WorkflowRun.objects.get()
        assert run.status == RunStatus.COMPLETED
        assert run.trace_id == trace_id
        steps = list(run.step_runs.order_by("id").values_list("step__name", "status", "output"))
        assert steps == [
            ("Record", "succeeded", {"count": 1}),
            ("First time", "succeeded", {"passed": True}),
        ]
        assert run.step_runs.get(step__name="Record").input["input"] == {
            "event": "evt_e2e",
            "query": "pgvector",
            "trace": trace_id,
        }
        # The target saw the payload through the template, once.
        assert target.bodies == [{"event": "evt_e2e", "query": "pgvector", "trace": trace_id}]
