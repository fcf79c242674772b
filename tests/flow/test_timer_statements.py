"""A batch of ``wait_for_event`` timers (the first look for events that came meanwhile,
the re-arm on the timeout timer, the timeout itself) costs a fixed number of statements
however many waits it holds (``benchmarks/parked.py``), and keeps every guarantee: a
reply and a timeout that race resume the run once, an early event is found, a worker that
dies after settling the waits loses nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import dispatch, runs
from automate.flow import parking
from automate.flow.models import RunWait
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settled_once_per_batch")]

THEN = {"name": "Then", "type": "filter", "config": {"condition": "{{ true }}"}}


def wait_step(timeout=3600):
    config = {"connector": "shop", "event": "reply", "match": {"key": "{{ event.payload.key }}"}}
    if timeout:
        config["timeout_seconds"] = timeout
    return {"name": "Wait", "type": "wait_for_event", "config": config}


def park(name, n, *, timeout=3600):
    """``n`` runs of ``[Wait, Then]`` parked, their first timers due and not yet run."""
    wf = WorkflowService().create_workflow(
        name=name,
        trigger={"connector": "shop", "events": [f"{name}.start"]},
        steps=[wait_step(timeout), THEN],
    )
    for i in range(n):
        queue.enqueue(
            "shop", event_type=f"{name}.start", payload={"key": f"{name}{i}"}, trace_id="t"
        )
    dispatch.process_batch(dispatch.claim(1000))
    assert RunWait.objects.filter(run__workflow=wf, status="waiting").count() == n
    return wf


def reply(key, **fields):
    item = queue.enqueue("shop", event_type="reply", payload={"key": key}, trace_id="t").item
    if fields:
        OutboxItem.objects.filter(pk=item.pk).update(**fields)
    return item


#: Statements of one claimed batch of first timers, timeouts or a mix (fixed, whatever
#: the batch's size): the waits are locked by the read that finds them (with their runs),
#: resolved or re-armed and their runs taken over in one transaction.
REARM_STATEMENTS = 10
NO_TIMEOUT_STATEMENTS = 9
TIMEOUT_STATEMENTS = 14
EARLY_EVENT_STATEMENTS = 14
MIXED_STATEMENTS = 17


def statements() -> int:
    items = dispatch.claim(1000)
    with CaptureQueriesContext(connection) as ctx:
        dispatch.process_batch(items)
    return len(ctx.captured_queries)


def timers_of(wf):
    return OutboxItem.objects.filter(
        connector_key=RESUME_CONNECTOR_KEY,
        payload__run__in=list(wf.runs.values_list("pk", flat=True)),
    )


def make_due(wf):
    """As if the timeout had passed: the waits' deadlines and their timers' due times."""
    past = timezone.now() - timedelta(seconds=1)
    RunWait.objects.filter(run__workflow=wf, status="waiting").update(due_at=past)
    timers_of(wf).filter(status="pending").update(available_at=past)


def completed(wf) -> int:
    return WorkflowRun.objects.filter(workflow=wf, status=RunStatus.COMPLETED).count()


def test_first_timers_re_arm_their_waits_in_the_same_statements_for_1_as_for_20():
    counts = []
    for name, n in [("A", 1), ("B", 20)]:
        wf = park(name, n)
        counts.append(statements())
        waits = RunWait.objects.filter(run__workflow=wf)
        assert {w.status for w in waits} == {"waiting"}
        pending = {t.pk: t for t in timers_of(wf).filter(status="pending")}
        assert sorted(pending) == sorted(w.timer_id for w in waits)  # one timeout timer each
        for wait in waits:
            timer = pending[wait.timer_id]
            assert (timer.available_at, timer.event_type) == (wait.due_at, "event.timer")
            assert (timer.payload, timer.trace_id) == ({"run": wait.run_id}, "t")
        assert timers_of(wf).filter(status="done").count() == n  # the first timers
    assert counts == [REARM_STATEMENTS] * 2


def test_waits_without_a_timeout_drop_their_timer_in_the_same_statements_for_1_as_for_20():
    counts = []
    for name, n in [("A", 1), ("B", 20)]:
        wf = park(name, n, timeout=None)
        counts.append(statements())
        assert set(RunWait.objects.filter(run__workflow=wf).values_list("timer", flat=True)) == {
            None
        }
        assert not timers_of(wf).filter(status="pending").exists()
    assert counts == [NO_TIMEOUT_STATEMENTS] * 2


def test_timeouts_resume_their_runs_in_the_same_statements_for_1_as_for_20():
    counts = []
    for name, n in [("A", 1), ("B", 20)]:
        wf = park(name, n)
        dispatch.process_batch(dispatch.claim(1000))  # first timers: re-armed
        make_due(wf)
        counts.append(statements())
        assert completed(wf) == n
        for wait in RunWait.objects.filter(run__workflow=wf):
            assert (wait.status, wait.resolved_by_id) == ("timed_out", wait.timer_id)
            assert WorkflowRun.objects.get(pk=wait.run_id).resume_item_id == wait.timer_id
        outputs = StepRun.objects.filter(run__workflow=wf, step__name="Wait")
        assert {tuple(o.items()) for o in outputs.values_list("output", flat=True)} == {
            (("timed_out", True),)
        }
    assert counts == [TIMEOUT_STATEMENTS] * 2


def test_first_timers_find_early_events_in_the_same_statements_for_1_as_for_20():
    counts = []
    for name, n in [("A", 1), ("B", 20)]:
        wf = park(name, n)
        events = [reply(f"{name}{i}", status="done") for i in range(n)]  # processed elsewhere
        counts.append(statements())
        assert completed(wf) == n
        for wait in RunWait.objects.filter(run__workflow=wf):
            assert (wait.status, wait.resolved_by_id) == ("matched", wait.timer_id)
            assert wait.event["payload"] == {"key": wait.match["key"]}
        assert {e.pk for e in events} == set(OutboxItem.objects.filter(
            pk__in=[e.pk for e in events]).values_list("pk", flat=True))  # fmt: skip
    assert counts == [EARLY_EVENT_STATEMENTS] * 2


def test_a_mixed_batch_of_timers_costs_the_same_statements_for_3_waits_each_as_for_12():
    """Re-arms, timeouts and early events in one batch: each kind a fixed cost."""
    counts = []
    for name, n in [("A", 3), ("B", 12)]:
        rearmed, timing_out, early = (park(f"{name}{k}", n) for k in ("r", "t", "e"))
        dispatch.process_batch(dispatch.claim(1000))  # every first timer: all re-armed
        park(f"{name}r2", n)  # fresh first timers, to re-arm
        make_due(timing_out)
        for i in range(n):
            reply(f"{name}e{i}", status="done")
        timers_of(early).filter(status="pending").update(available_at=timezone.now())
        counts.append(statements())
        assert completed(timing_out) == completed(early) == n
        assert RunWait.objects.filter(run__workflow=rearmed, status="waiting").count() == n
    assert counts == [MIXED_STATEMENTS] * 2


# -- races -----------------------------------------------------------------------------------


def due_timeout_and_reply(name):
    """One parked run whose timeout is due and a matching reply, both due: a race."""
    wf = park(name, 1)
    dispatch.process_batch(dispatch.claim(1000))  # the first timer: re-armed
    make_due(wf)
    return wf, RunWait.objects.get(run__workflow=wf), reply(f"{name}0")


def assert_resumed_once(wf, wait):
    run = WorkflowRun.objects.get(workflow=wf)
    assert run.status == RunStatus.COMPLETED
    assert StepRun.objects.filter(run=run, step__name="Then").count() == 1
    wait.refresh_from_db()
    assert wait.status in ("matched", "timed_out")
    assert run.resume_item_id == wait.resolved_by_id
    assert set(
        OutboxItem.objects.filter(pk__in=[wait.timer_id, wait.resolved_by_id]).values_list(
            "status", flat=True
        )
    ) == {"done"}
    return wait


def test_a_reply_and_a_due_timeout_in_one_batch_resume_the_run_once():
    wf, wait, item = due_timeout_and_reply("Same")
    claimed = dispatch.claim(1000)
    assert {i.pk for i in claimed} == {wait.timer_id, item.pk}
    dispatch.process_batch(claimed)
    wait = assert_resumed_once(wf, wait)
    assert (wait.status, wait.resolved_by_id) == ("matched", item.pk)  # the reply looks first


def test_a_timer_batch_that_read_its_wait_before_a_reply_won_it_leaves_it_to_the_reply():
    """The batch read the wait as waiting; a reply won it before the batch's UPDATEs."""
    wf, wait, item = due_timeout_and_reply("Stale")
    claimed = dispatch.claim(1000)
    [timer] = [i for i in claimed if i.pk == wait.timer_id]
    dispatch.process_batch([i for i in claimed if i.pk == item.pk])  # the reply wins
    parking._settle_timers([timer], {timer.pk: wait}, {})  # ``wait`` as read: waiting
    assert parking.resumed_runs([timer]) == {timer.pk: []}
    dispatch.process_batch([timer])
    wait = assert_resumed_once(wf, wait)
    assert (wait.status, wait.resolved_by_id) == ("matched", item.pk)


def test_a_first_timer_that_read_its_wait_before_a_reply_won_it_arms_no_timer():
    wf = park("Arm", 1)
    wait = RunWait.objects.get(run__workflow=wf)
    item = reply("Arm0")
    claimed = dispatch.claim(1000)
    [first] = [i for i in claimed if i.pk == wait.timer_id]
    dispatch.process_batch([i for i in claimed if i.pk == item.pk])  # the reply wins
    before = OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY).count()
    parking._settle_timers([first], {first.pk: wait}, {})  # ``wait`` as read: waiting
    assert OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY).count() == before
    assert RunWait.objects.get(pk=wait.pk).timer_id == first.pk
    dispatch.process_batch([first])
    wait = assert_resumed_once(wf, wait)
    assert (wait.status, wait.resolved_by_id) == ("matched", item.pk)


def test_a_worker_that_died_after_settling_its_timers_resumes_them_on_the_next_claim():
    wf = park("Crash", 3)
    dispatch.process_batch(dispatch.claim(1000))  # re-armed
    make_due(wf)
    claimed = dispatch.claim(1000)
    timers = {w.timer_id: w for w in RunWait.objects.filter(run__workflow=wf)}
    assert {i.pk for i in claimed} == set(timers)
    # What a kill -9 right after the waits' transaction committed left when the takeover
    # committed apart (rows an older version may have left): resolved waits, runs still
    # waiting, the timers leased.
    parking._settle_timers(claimed, timers, {})
    assert set(WorkflowRun.objects.filter(workflow=wf).values_list("status", flat=True)) == {
        "waiting"
    }
    OutboxItem.objects.filter(pk__in=list(timers)).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 3
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 3


def test_a_first_timer_claimed_again_after_its_re_arm_arms_no_second_timer():
    wf = park("Again", 2)
    claimed = dispatch.claim(1000)
    runs.ensure_runs_for(claimed)  # re-armed, committed; then the worker dies
    OutboxItem.objects.filter(pk__in=[i.pk for i in claimed]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.process_batch(dispatch.claim(1000))
    assert timers_of(wf).filter(status="pending").count() == 2
    assert sorted(timers_of(wf).filter(status="pending").values_list("pk", flat=True)) == sorted(
        RunWait.objects.filter(run__workflow=wf).values_list("timer_id", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_a_reply_and_a_due_timeout_on_two_workers_at_once_resume_the_run_once(postgres):
    for round_ in range(5):
        wf, wait, item = due_timeout_and_reply(f"Race{round_}")
        claimed = dispatch.claim(1000)
        batches = [[i for i in claimed if i.pk == item.pk], [i for i in claimed if i.pk != item.pk]]
        start = threading.Barrier(2)
        errors: list[Exception] = []

        def work(batch, start=start, errors=errors):
            try:
                start.wait()
                dispatch.process_batch(batch)
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert_resumed_once(wf, wait)
