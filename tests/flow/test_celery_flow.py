"""Control flow through a real ``celery worker`` fed by ``automate_worker --dispatch-only``
(PostgreSQL + Redis): a branch, a loop, a delay, a wait for a later webhook and a child
workflow, in one run."""

from __future__ import annotations

import json
import uuid

import pytest

from automate.flow.models import RunWait
from automate.flow.tree import run_tree
from automate.models import ConnectionProfile, RunStatus, WorkflowRun
from automate.services import WorkflowService
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import CountingServer, start, stop, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def record(name, key):
    return {
        "name": name,
        "type": "connector_action",
        "config": {"profile": "counter", "action": "record", "input": {"event": key}},
    }


def send(csrf_client, event_id, event_type, **payload):
    body = json.dumps({"id": event_id, "type": event_type, **payload}).encode()
    assert post(csrf_client, body, signature=sign(body)).status_code == 202


def test_celery__branch_loop_delay_wait_and_child_in_a_celery_worker(
    postgres, redis_url, csrf_client
):
    queue = f"automate-flow-{uuid.uuid4().hex[:8]}"
    env = worker_env(AUTOMATE_WORKER_BROKER_URL=redis_url, AUTOMATE_WORKER_QUEUE=queue)
    with CountingServer() as target:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": target.url}
        )
        WorkflowService().create_workflow(
            name="Child", key="child", steps=[record("In child", "{{ event.payload.k }}")]
        )
        WorkflowService().create_workflow(
            name="Flow",
            trigger={"connector": "my_service", "events": ["start"]},
            steps=[
                {"name": "Big?", "type": "branch", "config": {
                    "if": "{{ event.payload.n > 1 }}",
                    "then": [{"name": "Each", "type": "for_each", "config": {
                        "items": "{{ range(event.payload.n) | list }}",
                        "steps": [record("Line", "line-{{ item }}")]}}],
                    "else": [record("Small", "small")],
                }},
                {"name": "Pause", "type": "delay", "config": {"seconds": 1}},
                {"name": "Reply", "type": "wait_for_event", "config": {
                    "connector": "my_service", "event": "reply",
                    "match": {"to": "{{ event.id }}"}, "timeout_seconds": 120}},
                {"name": "Sub", "type": "workflow", "config": {
                    "workflow": "child",
                    "payload": {"k": "child-{{ steps.Reply.output.event.payload.n }}"}}},
                record("End", "end-{{ steps.Sub.output.status }}"),
            ],
        )  # fmt: skip
        worker = start(
            ["-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "threads",
             "--concurrency", "2", "--queues", queue, "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env,
        )  # fmt: skip
        dispatcher = start(
            ["-m", "django", "automate_worker", "--dispatch-only", "--poll", "0.1"], env
        )
        try:
            send(csrf_client, "evt_1", "start", n=3)
            wait_for(
                lambda: RunWait.objects.filter(kind="event", status="waiting").exists(),
                60,
                "the run to loop, sleep and wait for the reply",
            )
            send(csrf_client, "reply_1", "reply", to="evt_1", n=9)
            wait_for(
                lambda: WorkflowRun.objects.filter(
                    workflow__key="flow", status__in=["completed", "dead"]
                ).exists(),
                60,
                "the run to end",
            )
        finally:
            errors = stop(worker) + stop(dispatcher)
    run = WorkflowRun.objects.get(workflow__key="flow")
    assert run.status == RunStatus.COMPLETED, (run.error, errors[-2000:])
    assert dict(target.counts) == {
        "line-0": 1, "line-1": 1, "line-2": 1, "child-9": 1, "end-completed": 1,
    }  # fmt: skip
    tree = run_tree(run)
    assert [node["step"] for node in tree] == ["Big?", "Pause", "Reply", "Sub", "End"]
    assert tree[0]["took"] == "then"
    assert len(tree[0]["steps"][0]["iterations"]) == 3
    assert tree[1]["wait"]["status"] == "due"
    assert tree[2]["wait"]["status"] == "matched"
    assert tree[3]["child"]["status"] == "completed"
    # Resumed by an item the Celery-mode dispatcher claimed for the Celery worker.
    assert run.resume_item is not None and run.resume_item.leased_by.endswith(":dispatch")
