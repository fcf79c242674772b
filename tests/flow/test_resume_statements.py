"""Resuming parked runs costs a fixed number of statements per claimed batch, however
many runs it resumes (``benchmarks/parked.py`` measures the rate)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import dispatch
from automate.flow import matching
from automate.flow.models import RunWait
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = pytest.mark.django_db

THEN = {"name": "Then", "type": "filter", "config": {"condition": "{{ true }}"}}


def statements(items) -> int:
    with CaptureQueriesContext(connection) as ctx:
        dispatch.process_batch(items)
    return len(ctx.captured_queries)


def start_runs(name, steps, n, offset):
    event = f"{name}.start"
    wf = WorkflowService().create_workflow(
        name=name, trigger={"connector": "shop", "events": [event]}, steps=steps
    )
    for i in range(offset, offset + n):
        queue.enqueue("shop", event_type=event, payload={"key": f"k{i}"}, trace_id="t")
    dispatch.process_batch(dispatch.claim(1000))  # park
    dispatch.process_batch(dispatch.claim(1000))  # a wait_for_event's first timer
    assert WorkflowRun.objects.filter(workflow=wf, status=RunStatus.WAITING).count() == n
    return wf


def completed(wf) -> int:
    return WorkflowRun.objects.filter(workflow=wf, status=RunStatus.COMPLETED).count()


def test_resume__due_delays_cost_the_same_statements_for_2_runs_as_for_8():
    delay = {"name": "Wait", "type": "delay", "config": {"seconds": 3600}}
    counts = []
    for n, offset in [(2, 0), (8, 100)]:
        wf = start_runs(f"D{n}", [delay, THEN], n, offset)
        OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
            available_at=timezone.now()
        )
        counts.append(statements(dispatch.claim(1000)))
        assert completed(wf) == n
        assert set(RunWait.objects.filter(run__workflow=wf).values_list("status", flat=True)) == {
            "due"
        }
        for run in WorkflowRun.objects.filter(workflow=wf):
            assert run.resume_item == RunWait.objects.get(run=run).timer
            wait = StepRun.objects.get(run=run, step__name="Wait")
            assert (wait.status, wait.output["waited"]) == ("succeeded", True)
    assert counts[0] == counts[1]


def test_resume__replies_and_their_resumes_cost_the_same_statements_for_2_runs_as_for_8():
    wait = {
        "name": "Wait",
        "type": "wait_for_event",
        "config": {
            "connector": "shop",
            "event": "reply",
            "match": {"key": "{{ event.payload.key }}"},
        },
    }
    counts = []
    for n, offset in [(2, 0), (8, 100)]:
        wf = start_runs(f"E{n}", [wait, THEN], n, offset)
        for i in range(offset, offset + n):
            queue.enqueue("shop", event_type="reply", payload={"key": f"k{i}"}, trace_id="t")
        replies = statements(dispatch.claim(1000))  # the replies win their waits
        assert completed(wf) == 0
        assert RunWait.objects.filter(run__workflow=wf, status="matched").count() == n
        resumes = statements(dispatch.claim(1000))  # their _resume items
        counts.append((replies, resumes))
        assert completed(wf) == n
        outputs = StepRun.objects.filter(run__workflow=wf, step__name="Wait")
        assert sorted(
            o["event"]["payload"]["key"] for o in outputs.values_list("output", flat=True)
        ) == sorted(f"k{i}" for i in range(offset, offset + n))
    assert counts[0] == counts[1]


def test_resume__a_duplicate_timer_in_the_same_batch_resumes_the_run_once():
    delay = {"name": "Wait", "type": "delay", "config": {"seconds": 3600}}
    wf = start_runs("Dup", [delay, THEN], 1, 0)
    wait = RunWait.objects.get(run__workflow=wf)
    # A second item for the same run, as a replayed timer: it resolves nothing.
    OutboxItem.objects.create(
        connector_key=RESUME_CONNECTOR_KEY, event_type="delay.timer", payload={"run": wait.run_id}
    )
    OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
        available_at=timezone.now()
    )
    dispatch.process_batch(dispatch.claim(1000))
    run = WorkflowRun.objects.get(workflow=wf)
    assert run.status == RunStatus.COMPLETED
    assert run.resume_item_id == wait.timer_id
    assert StepRun.objects.filter(run=run, step__name="Then").count() == 1


def test_resume__a_wait_won_before_the_batch_locks_it_is_left_to_its_winner():
    wait = {
        "name": "Wait",
        "type": "wait_for_event",
        "config": {
            "connector": "shop",
            "event": "reply",
            "match": {"key": "{{ event.payload.key }}"},
        },
    }
    wf = start_runs("Won", [wait, THEN], 2, 0)
    replies = [
        queue.enqueue("shop", event_type="reply", payload={"key": f"k{i}"}, trace_id="t").item
        for i in range(2)
    ]
    first = RunWait.objects.filter(run__workflow=wf).order_by("id").first()
    RunWait.objects.filter(pk=first.pk).update(status="cancelled")  # as cancel_run does
    pairs = [
        (w, replies[n])
        for n, w in enumerate(RunWait.objects.filter(run__workflow=wf).order_by("id"))
    ]
    resumes = OutboxItem.objects.filter(
        connector_key=RESUME_CONNECTOR_KEY, event_type="event.matched"
    )
    assert matching.resolve_all(pairs) == 1
    assert RunWait.objects.get(pk=first.pk).status == "cancelled"
    [item] = resumes
    second = RunWait.objects.get(pk=pairs[1][0].pk)
    assert (second.status, second.resolved_by, second.event) == (
        "matched",
        item,
        {"type": "reply", "payload": {"key": "k1"}},
    )
    assert matching.resolve_all(pairs) == 0  # nothing left to win: no new item
    assert resumes.count() == 1


def test_resume__a_wait_given_twice_keeps_one_resume_item():
    wait = {
        "name": "Wait",
        "type": "wait_for_event",
        "config": {
            "connector": "shop",
            "event": "reply",
            "match": {"key": "{{ event.payload.key }}"},
        },
    }
    wf = start_runs("Twice", [wait, THEN], 1, 0)
    reply = queue.enqueue("shop", event_type="reply", payload={"key": "k0"}, trace_id="t").item
    [waiting] = RunWait.objects.filter(run__workflow=wf)
    assert matching.resolve_all([(waiting, reply), (waiting, reply)]) == 1
    [item] = OutboxItem.objects.filter(
        connector_key=RESUME_CONNECTOR_KEY, event_type="event.matched"
    )
    waiting.refresh_from_db()
    assert (waiting.status, waiting.resolved_by) == ("matched", item)
    dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 1
