"""Resuming parked runs costs a fixed number of statements per claimed batch, however
many runs it resumes (``benchmarks/parked.py`` measures the rate); a reply resumes its
run in its own claim, and a crash after that takeover loses nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import dispatch, runs, tasks
from automate.flow import matching, parking
from automate.flow.models import RunWait
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.flow.helpers import action

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settled_once_per_batch")]

THEN = {"name": "Then", "type": "filter", "config": {"condition": "{{ true }}"}}
WAIT = {
    "name": "Wait",
    "type": "wait_for_event",
    "config": {"connector": "shop", "event": "reply", "match": {"key": "{{ event.payload.key }}"}},
}


#: Statements of one claimed batch (the plain path's is 12, ``benchmarks/resume_cost.py``):
#: the items' leases, then for due delays one transaction that locks the waits (reading
#: their runs with them), resolves them and takes the runs over, and the runs' step
#: history; for replies (through the Celery task, which reads the items with whether each
#: has runs) the match paths, one transaction that locks the matched waits (reading their
#: runs with them), resolves them and takes the runs over, the workflows the replies
#: trigger and the step history. Then the settlement: BEGIN, the items, the step records,
#: the runs, the waited-on records, COMMIT.
DELAY_BATCH_STATEMENTS = 13
REPLY_BATCH_STATEMENTS = 15


def statements(items, *, task: bool = False) -> int:
    """The statements of the pass over claimed ``items``: ``dispatch.process_batch``'s,
    or with ``task`` the Celery task's (``tasks.process_items``, as the benchmark runs)."""
    with CaptureQueriesContext(connection) as ctx:
        if task:
            assert tasks.process_items([[i.pk, i.lease_token] for i in items]) == {
                "done": len(items)
            }
        else:
            dispatch.process_batch(items)
    # The runs and their waited-on records are finished with one UPDATE per model, not
    # one per row (executemany is logged once, as "N times: ...").
    assert not [q["sql"] for q in ctx.captured_queries if " times: " in q["sql"]]
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
    assert counts == [DELAY_BATCH_STATEMENTS] * 2


def reply(key):
    return queue.enqueue("shop", event_type="reply", payload={"key": key}, trace_id="t").item


def waiting_with_replies(name, n, steps=(THEN,)):
    """``n`` runs of ``[WAIT, *steps]`` parked, their waits in id order, and one stored
    (unprocessed) reply for each, in the same order."""
    wf = start_runs(name, [WAIT, *steps], n, 0)
    waits = list(RunWait.objects.filter(run__workflow=wf).order_by("id"))
    return wf, waits, [reply(f"k{i}") for i in range(n)]


def matched_items():
    """``_resume`` items written for matched events (the path replies no longer take)."""
    return OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, event_type="event.matched")


def test_resume__replies_resume_their_runs_in_their_batch_at_the_same_statements_for_2_as_for_8():
    counts = []
    for n, offset in [(2, 0), (8, 100)]:
        wf = start_runs(f"E{n}", [WAIT, THEN], n, offset)
        replies = [reply(f"k{i}") for i in range(offset, offset + n)]
        counts.append(statements(dispatch.claim(1000), task=True))
        assert completed(wf) == n  # in the replies' own batch: no second trip
        assert not matched_items().exists()
        for run in WorkflowRun.objects.filter(workflow=wf):
            wait = RunWait.objects.get(run=run)
            assert wait.status == "matched"
            assert run.resume_item_id == wait.resolved_by_id
            assert run.resume_item.payload == {"key": run.event["payload"]["key"]}
        assert {r.status for r in OutboxItem.objects.filter(pk__in=[r.pk for r in replies])} == {
            "done"
        }
        outputs = StepRun.objects.filter(run__workflow=wf, step__name="Wait")
        assert sorted(
            o["event"]["payload"]["key"] for o in outputs.values_list("output", flat=True)
        ) == sorted(f"k{i}" for i in range(offset, offset + n))
    assert counts == [REPLY_BATCH_STATEMENTS] * 2


def test_resume__a_reply_batch_whose_takeover_misses_a_run_reads_the_runs_it_took():
    """A wait still waiting whose run is not (as a run ended outside a pass may be left):
    the takeover's UPDATE misses that run, so the batch reads the runs its replies took
    over instead of using those read with the waits, and resumes only the other one."""
    wf, waits, replies = waiting_with_replies("Missed", 2)
    WorkflowRun.objects.filter(pk=waits[0].run_id).update(status=RunStatus.CANCELLED)
    claimed = dispatch.claim(1000)
    assert tasks.process_items([[i.pk, i.lease_token] for i in claimed]) == {"done": 2}
    ended = {run.pk: run for run in WorkflowRun.objects.filter(workflow=wf)}
    assert (ended[waits[0].run_id].status, ended[waits[0].run_id].resume_item) == (
        RunStatus.CANCELLED,
        None,
    )
    assert (ended[waits[1].run_id].status, ended[waits[1].run_id].resume_item) == (
        RunStatus.COMPLETED,
        replies[1],
    )
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 1


def _timer_updates(ctx) -> list[str]:
    """The UPDATEs of the outbox that retire timers (done, not our own claimed items)."""
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith('UPDATE "automate_core_outboxitem"')
        and "\"status\" = 'done'" in q["sql"]
        and '"lease_token"' not in q["sql"]
    ]


def test_resume__replies_to_waits_without_a_timeout_have_no_timer_to_retire():
    wf = start_runs("Endless", [WAIT, THEN], 3, 0)
    assert not RunWait.objects.filter(run__workflow=wf, timer__isnull=False).exists()
    for i in range(3):
        reply(f"k{i}")
    with CaptureQueriesContext(connection) as ctx:
        dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 3
    assert _timer_updates(ctx) == []


def test_resume__a_reply_retires_its_wait_s_pending_timeout_timer():
    timed = {**WAIT, "config": {**WAIT["config"], "timeout_seconds": 3600}}
    wf = start_runs("Timed", [timed, THEN], 2, 0)
    timers = [wait.timer for wait in RunWait.objects.filter(run__workflow=wf).order_by("id")]
    assert all(t is not None and t.status == "pending" for t in timers)
    reply("k0")
    with CaptureQueriesContext(connection) as ctx:
        dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 1 and len(_timer_updates(ctx)) == 1
    first, second = (OutboxItem.objects.get(pk=t.pk) for t in timers)
    assert (first.status, second.status) == ("done", "pending")  # the other still waits


def test_resume__a_wait_won_before_the_batch_locks_it_is_left_to_its_winner():
    wf, waits, replies = waiting_with_replies("Won", 2)
    RunWait.objects.filter(pk=waits[0].pk).update(status="cancelled")  # as cancel_run does
    pairs = list(zip(waits, replies, strict=True))
    won = matching.resolve_all(pairs)
    assert list(won) == [waits[1].run_id]
    assert RunWait.objects.get(pk=waits[0].pk).status == "cancelled"
    second = RunWait.objects.get(pk=waits[1].pk)
    assert (second.status, second.resolved_by, second.event) == (
        "matched",
        replies[1],
        {"type": "reply", "payload": {"key": "k1"}},
    )
    runs = {run.pk: run for run in WorkflowRun.objects.filter(workflow=wf)}
    assert (runs[waits[0].run_id].status, runs[waits[0].run_id].resume_item) == ("waiting", None)
    assert (runs[waits[1].run_id].status, runs[waits[1].run_id].resume_item) == (
        "running",
        replies[1],
    )
    assert matching.resolve_all(pairs) == {}  # nothing left to win
    assert not matched_items().exists()


def test_resume__a_wait_given_twice_goes_to_its_first_event():
    wf, [waiting], [first] = waiting_with_replies("Twice", 1)
    second = reply("k0")
    assert list(matching.resolve_all([(waiting, first), (waiting, second)])) == [waiting.run_id]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.resolved_by) == ("matched", first)
    assert WorkflowRun.objects.get(workflow=wf).resume_item == first
    dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 1
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 1


def crash_after_takeover():
    """Claim the stored replies and take their runs over (committed), then die before
    executing them: the worker's lease on the replies simply runs out."""
    claimed = dispatch.claim(1000)
    runs.ensure_runs_for(claimed)
    OutboxItem.objects.filter(pk__in=[item.pk for item in claimed]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return claimed


def test_resume__a_reply_whose_worker_died_after_the_takeover_resumes_its_run_on_the_next_claim(
    recorder_calls,
):
    charge = action("Charge", act="flaky", input_data={"failures": 0})
    wf, waits, replies = waiting_with_replies("Crash", 2, steps=(charge,))
    crash_after_takeover()
    assert set(WorkflowRun.objects.filter(workflow=wf).values_list("status", flat=True)) == {
        "running"
    }
    assert recorder_calls == []
    dispatch.process_batch(dispatch.claim(1000))  # the expired leases come back first
    assert completed(wf) == 2
    assert [name for name, _ in recorder_calls] == ["flaky", "flaky"]  # once per run
    for wait, item in zip(waits, replies, strict=True):
        run = WorkflowRun.objects.get(pk=wait.run_id)
        assert run.resume_item == item
        assert StepRun.objects.filter(run=run, step__name="Charge").count() == 1
    assert set(
        OutboxItem.objects.filter(pk__in=[r.pk for r in replies]).values_list("status", flat=True)
    ) == {"done"}
    assert not matched_items().exists()


def test_resume__a_non_idempotent_step_cut_off_mid_call_after_a_reply_is_not_repeated(
    recorder_calls,
):
    charge = action("Charge", act="flaky", input_data={"failures": 0})
    wf, _, [item] = waiting_with_replies("MidCall", 1, steps=(charge,))
    crash_after_takeover()
    run = WorkflowRun.objects.get(workflow=wf)
    # What a kill -9 during the call leaves: the step's start committed, no outcome.
    StepRun.objects.create(
        run=run,
        step=run.workflow.steps.get(name="Charge"),
        attempt=1,
        status="running",
        started_at=timezone.now(),
    )
    dispatch.process_batch(dispatch.claim(1000))
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert "interrupted mid-call" in run.error["message"]
    assert recorder_calls == []  # never called a second time
    assert run.step_runs.get(step__name="Wait").status == "succeeded"  # the reply was kept
    assert OutboxItem.objects.get(pk=item.pk).status == "dead"


def due_delays(name, n):
    """``n`` runs of ``[delay, Then]`` parked, their timers due, the waits in id order."""
    delay = {"name": "Wait", "type": "delay", "config": {"seconds": 3600}}
    wf = start_runs(name, [delay, THEN], n, 0)
    OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
        available_at=timezone.now()
    )
    return wf, list(RunWait.objects.filter(run__workflow=wf).order_by("id"))


def meanwhile(monkeypatch, change):
    """Run ``change`` after a resumed batch has read its waits and before its UPDATEs (as
    another worker may on SQLite, which has no row locks): the look for early events is
    the first thing the batch does after the read."""
    real = parking.matching.early_events

    def early_events(waits):
        change()
        return real(waits)

    monkeypatch.setattr(parking.matching, "early_events", early_events)


def test_resume__a_wait_cancelled_between_the_batch_s_read_and_its_update_stays_cancelled(
    monkeypatch,
):
    wf, waits = due_delays("CancelledMeanwhile", 2)
    first = waits[0]

    def cancel():  # what cancel_run writes: the wait, then the run
        RunWait.objects.filter(pk=first.pk).update(status="cancelled")
        WorkflowRun.objects.filter(pk=first.run_id).update(status=RunStatus.CANCELLED)

    meanwhile(monkeypatch, cancel)
    claimed = dispatch.claim(1000)
    found = parking.resumed_runs(claimed)
    assert found[first.timer_id] == []
    [resumed] = found[waits[1].timer_id]
    assert (resumed.pk, resumed.status, resumed.resume_item_id) == (
        waits[1].run_id,
        RunStatus.RUNNING,
        waits[1].timer_id,
    )
    assert resumed.resumed_wait.status == "due"
    assert RunWait.objects.get(pk=first.pk).status == "cancelled"
    monkeypatch.undo()
    dispatch.process_batch(claimed)
    assert completed(wf) == 1
    assert WorkflowRun.objects.get(pk=first.run_id).status == RunStatus.CANCELLED
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 1


def test_resume__a_run_cancelled_between_the_batch_s_read_and_its_takeover_is_not_taken(
    monkeypatch,
):
    """The run ended without its wait (a wait resolved by an earlier claim of the same
    timer, whose takeover never committed, and then a cancel): the takeover misses it."""
    wf, waits = due_delays("RunCancelledMeanwhile", 2)
    first = waits[0]
    meanwhile(
        monkeypatch,
        lambda: WorkflowRun.objects.filter(pk=first.run_id).update(status=RunStatus.CANCELLED),
    )
    claimed = dispatch.claim(1000)
    found = parking.resumed_runs(claimed)
    assert found[first.timer_id] == []
    assert [run.pk for run in found[waits[1].timer_id]] == [waits[1].run_id]
    cancelled = WorkflowRun.objects.get(pk=first.run_id)
    assert (cancelled.status, cancelled.resume_item_id) == (RunStatus.CANCELLED, None)
    monkeypatch.undo()
    dispatch.process_batch(claimed)
    assert completed(wf) == 1
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 1


def test_resume__a_crash_inside_the_resume_transaction_leaves_wait_and_run_waiting(monkeypatch):
    """The waits' settlement and the runs' takeover commit together: a failure between
    the two undoes both, and the timers, claimed again, resume each run once."""
    wf, _ = due_delays("Undone", 3)
    real = parking._take_over

    def dies(won):
        real(won)
        raise RuntimeError("killed")

    monkeypatch.setattr(parking, "_take_over", dies)
    claimed = dispatch.claim(1000)
    with pytest.raises(RuntimeError):
        parking.resumed_runs(claimed)
    assert set(RunWait.objects.filter(run__workflow=wf).values_list("status", flat=True)) == {
        "waiting"
    }
    assert set(WorkflowRun.objects.filter(workflow=wf).values_list("status", flat=True)) == {
        RunStatus.WAITING
    }
    monkeypatch.undo()
    OutboxItem.objects.filter(pk__in=[item.pk for item in claimed]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 3
    assert StepRun.objects.filter(run__workflow=wf, step__name="Then").count() == 3


def test_resume__the_resumed_runs_histories_are_one_compiled_read_that_knows_their_runs():
    """Each resumed run's history comes from one SELECT compiled once per connection and
    number of runs (automate.compiled), every record knowing its run: the pass reads it
    from no table."""
    first = {**THEN, "name": "First"}
    wf = start_runs("H", [first, WAIT, THEN], 3, 0)
    for i in range(3):
        reply(f"k{i}")
    items = dispatch.claim(1000)
    found = runs.ensure_runs_for(items)
    cached = getattr(connection, "_automate_compiled", {})
    assert ("step_history", 3) in cached
    resumed = [run for taken in found.values() for run in taken]
    assert len(resumed) == 3
    with CaptureQueriesContext(connection) as ctx:
        for run in resumed:
            records = list(run.step_runs.all())
            # The filter before the wait, and the wait itself: in id order.
            assert [r.status for r in records] == ["succeeded", "waiting"]
            assert [r.pk for r in records] == sorted(r.pk for r in records)
            assert all(r.run is run for r in records)
    assert ctx.captured_queries == []
    # A further query starts from the run's own, as prefetch_related_objects leaves it.
    for run in resumed:
        waiting = list(run.step_runs.filter(status="waiting"))
        assert [(r.run_id, r.status) for r in waiting] == [(run.pk, "waiting")]
    tasks.process_items([[i.pk, i.lease_token] for i in items])
    assert completed(wf) == 3


def test_resume__a_batch_of_timers_locks_its_waits_with_one_compiled_read():
    """The read that locks a timer batch's waits (with their runs and workflows) is
    compiled once per connection and shape (automate.compiled), not built by the ORM
    each batch; the runs resume as before."""
    delay = {"name": "Wait", "type": "delay", "config": {"seconds": 3600}}
    wf = start_runs("L", [delay, THEN], 3, 0)
    OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
        available_at=timezone.now()
    )
    dispatch.process_batch(dispatch.claim(1000))
    assert completed(wf) == 3
    cached = getattr(connection, "_automate_compiled", {})
    assert (("lock_waits", (3, 0)), 6) in cached


def test_resume__histories_share_one_empty_query_that_a_filter_does_not_change():
    """A batch's prefetched histories (one per run) share one empty query rather than
    building one each; a QuerySet made from one of them (``order_by``, ``filter``)
    clones it, so the others stay as they were."""
    first, second = runs._history_of([]), runs._history_of([])
    assert first.query is second.query
    assert list(first) == [] and list(second) == []
    before = str(first.query.where)
    assert list(first.filter(step__name="x").order_by("-id")) == []
    assert str(second.query.where) == before
    assert first.query.is_empty()
