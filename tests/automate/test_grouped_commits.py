"""A batch hands each non-idempotent call's outcome on to its next commit (automate.commits).

The guarantee stays: each non-idempotent step's ``running`` record is committed, in the
transaction that confirms its item's lease, before its call, and its outcome is committed
before its run goes on to another call; a record left ``running`` by a crash is never run
again. And a crash costs what it cost before: one call at a time is between its two
commits, and every outcome of a call that returned is committed.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import batch, commits, dispatch
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.steps import StepContext
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.automate.test_batch_settlement import (
    Clock,
    ProbeStep,
    enqueue,
    item_of,
    probe_workflow,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def probe():
    step_registry.register(ProbeStep)
    ProbeStep.seen, ProbeStep.hook, ProbeStep.observe = [], None, True
    yield ProbeStep
    step_registry.unregister("probe")


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """Time stands still unless a test moves it: a slow machine groups the same way."""
    fake = Clock()
    monkeypatch.setattr(batch.ClaimedBatch, "clock", staticmethod(fake))
    return fake


def transactions(captured: CaptureQueriesContext) -> int:
    """Atomic blocks opened (the test's own transaction makes each one a savepoint)."""
    return sum(1 for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT"))


def test_grouped__one_commit_per_non_idempotent_call(probe):
    probe.observe = False
    probe_workflow(False, False)
    counts = []
    for round_, size in enumerate((5, 40)):
        enqueue(size, start=round_ * 100)
        items = dispatch.claim(100)
        with CaptureQueriesContext(connection) as captured:
            assert dispatch.process_batch(items) == {"done": size}
        counts.append(transactions(captured))
    # Making the runs, one per call (its start, with the previous call's outcome) and the
    # settlement (with the last outcome); each call alone made two (4 per event here).
    assert counts == [2 * 5 + 2, 2 * 40 + 2], counts
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == 2 * 45
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 45


def test_grouped__each_call_sees_its_record_and_the_previous_outcome_committed(probe):
    probe_workflow(False, False)
    enqueue(2)
    seen = []
    probe.hook = lambda ctx: seen.append(
        (
            item_of(ctx).payload["n"],
            ctx.step_name,
            sorted(
                StepRun.objects.values_list("run__outbox_item__payload__n", "step__name", "status")
            ),
        )
    )
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2}
    assert seen == [
        (0, "S1", [(0, "S1", "running")]),
        (0, "S2", [(0, "S1", "succeeded"), (0, "S2", "running")]),
        (1, "S1", [(0, "S1", "succeeded"), (0, "S2", "succeeded"), (1, "S1", "running")]),
        (
            1,
            "S2",
            [
                (0, "S1", "succeeded"),
                (0, "S2", "succeeded"),
                (1, "S1", "succeeded"),
                (1, "S2", "running"),
            ],
        ),
    ]


def test_grouped__outcomes_are_committed_before_the_runs_go_on(probe):
    probe_workflow(False, True)
    enqueue(2)
    seen = []
    probe.hook = lambda ctx: (
        ctx.step_name == "S2"
        and seen.append(
            list(
                StepRun.objects.filter(run_id=ctx.run_id, step__name="S1").values_list(
                    "status", flat=True
                )
            )
        )
    )
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2}
    assert seen == [["succeeded"], ["succeeded"]]  # its own S1's outcome, committed


def test_grouped__a_crash_mid_batch_leaves_one_unknown_call(probe):
    """A worker killed during a call: that call's record is ``running`` without an
    outcome, and the next pass dead-letters its run rather than call again; the batch's
    other events, whose calls never started, have no record and run normally."""
    probe_workflow(False)
    enqueue(3)
    calls = []

    def die_on_second_call(ctx: StepContext) -> None:
        calls.append(item_of(ctx).payload["n"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # not an Exception: nothing in the worker catches it

    probe.hook = die_on_second_call
    with pytest.raises(KeyboardInterrupt):
        dispatch.process_batch(dispatch.claim(10))
    assert calls == [0, 1]
    rows = StepRun.objects.values_list("run__outbox_item__payload__n", "status")
    assert sorted(rows) == [(0, "succeeded"), (1, "running")]
    probe.hook = lambda ctx: calls.append(item_of(ctx).payload["n"])
    OutboxItem.objects.update(status="pending", lease_token="", available_at=timezone.now())
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2, "dead": 1}
    assert calls == [0, 1, 2]  # 1 not called again; 0's outcome was kept
    run_of_1 = WorkflowRun.objects.get(outbox_item__payload__n=1)
    assert run_of_1.status == RunStatus.DEAD
    assert "interrupted mid-call" in run_of_1.error["message"]


def test_grouped__an_item_lost_before_its_start_is_not_called(probe):
    probe_workflow(True, False)
    enqueue(2)

    def steal_second(ctx: StepContext) -> None:
        if ctx.step_name == "S1" and item_of(ctx).payload["n"] == 1:
            OutboxItem.objects.filter(payload__n=1).update(lease_token="another-worker")

    probe.hook = steal_second
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "lost": 1}
    assert [s["step"] for s in probe.seen] == ["S1", "S2", "S1"]
    assert not StepRun.objects.filter(run__outbox_item__payload__n=1).exists()
    assert StepRun.objects.get(run__outbox_item__payload__n=0, step__name="S2").status == (
        StepStatus.SUCCEEDED  # the outcome held for the lost item's start was committed
    )


def test_grouped__a_conflict_on_a_start_loses_that_item_and_keeps_the_held_outcome(probe):
    """Another worker on one item's very attempt (its record's INSERT conflicts): that
    item is lost, that step uncalled; the outcome that waited for its start (the item's
    first call's) is committed anyway, and the batch goes on."""
    probe_workflow(False, False)
    enqueue(3)

    def another_worker_starts_s2(ctx: StepContext) -> None:
        item = item_of(ctx)
        if ctx.step_name == "S1" and item.payload["n"] == 1:
            run = WorkflowRun.objects.get(outbox_item=item)
            s2 = run.workflow.steps.get(name="S2", version=run.workflow_version)
            StepRun.objects.create(
                run=run, step=s2, attempt=1, status=StepStatus.RUNNING, started_at=timezone.now()
            )

    probe.hook = another_worker_starts_s2
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2, "lost": 1}
    assert [s["step"] for s in probe.seen] == ["S1", "S2", "S1", "S1", "S2"]
    rows = StepRun.objects.values_list("run__outbox_item__payload__n", "step__name", "status")
    assert sorted(rows) == [
        (0, "S1", "succeeded"),
        (0, "S2", "succeeded"),
        (1, "S1", "succeeded"),  # held, then committed alone after the conflict
        (1, "S2", "running"),  # the other worker's
        (2, "S1", "succeeded"),
        (2, "S2", "succeeded"),
    ]


def test_grouped__an_idempotent_call_waits_for_the_held_outcome(probe):
    probe_workflow(False)
    probe_workflow(True, name="Second workflow")
    enqueue(1)
    seen = []
    probe.hook = lambda ctx: seen.append(sorted(StepRun.objects.values_list("status", flat=True)))
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1}
    assert seen == [["running"], ["succeeded"]]


def test_grouped__a_database_error_on_a_start_fails_that_item_and_keeps_the_held_outcome(
    probe, monkeypatch
):
    from django.db import OperationalError

    probe_workflow(False, False)
    enqueue(2)
    renew = queue.renew

    def broken_for_second(item, seconds):
        if item.payload["n"] == 1:
            raise OperationalError("the server closed the connection")
        return renew(item, seconds)

    monkeypatch.setattr(queue, "renew", broken_for_second)
    assert_the_second_item_failed_on_its_start(probe)


def assert_the_second_item_failed_on_its_start(probe) -> None:
    """Two items of two non-idempotent steps, the second's first start broken: the first
    is done, the second failed with no call made and no record written."""
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "failed": 1}
    assert [s["step"] for s in probe.seen] == ["S1", "S2"]  # no call without its record
    rows = StepRun.objects.values_list("run__outbox_item__payload__n", "step__name", "status")
    assert sorted(rows) == [(0, "S1", "succeeded"), (0, "S2", "succeeded")]
    failed = OutboxItem.objects.get(payload__n=1)
    assert failed.last_error["message"] == "OperationalError: the server closed the connection"


def test_grouped__the_last_outcome_lands_with_the_settlement_even_for_a_lost_item(probe):
    probe_workflow(False)
    enqueue(1)

    def lose_the_lease(ctx: StepContext) -> None:
        OutboxItem.objects.update(lease_token="another-worker")

    probe.hook = lose_the_lease
    assert dispatch.process_batch(dispatch.claim(10)) == {"lost": 1}
    assert StepRun.objects.get().status == StepStatus.SUCCEEDED  # a known outcome, kept


def test_grouped__a_crash_before_the_held_outcome_is_committed_never_calls_twice(
    probe, monkeypatch
):
    """Killed after a call returned but before its outcome's commit (the next start): the
    call is ``running`` in the database, so the next pass dead-letters the run as an
    unknown outcome instead of calling again."""
    probe_workflow(False, False)
    enqueue(1)
    start = commits.HandedOn.start

    def killed_when_an_outcome_waits(self, journal, record, confirm):
        if self.held:
            raise KeyboardInterrupt  # a kill: nothing in the worker catches it
        return start(self, journal, record, confirm)

    monkeypatch.setattr(commits.HandedOn, "start", killed_when_an_outcome_waits)
    with pytest.raises(KeyboardInterrupt):
        dispatch.process_batch(dispatch.claim(10))
    assert [s["step"] for s in probe.seen] == ["S1"]
    assert list(StepRun.objects.values_list("step__name", "status")) == [("S1", "running")]
    monkeypatch.setattr(commits.HandedOn, "start", start)
    OutboxItem.objects.update(status="pending", lease_token="", available_at=timezone.now())
    assert dispatch.process_batch(dispatch.claim(10)) == {"dead": 1}
    assert [s["step"] for s in probe.seen] == ["S1"]  # not called again
    run = WorkflowRun.objects.get()
    assert run.status == RunStatus.DEAD
    assert "interrupted mid-call" in run.error["message"]


def test_grouped__loops_and_delays_of_non_idempotent_steps(probe):
    from automate.services import WorkflowService

    WorkflowService().create_workflow(
        name="Lines",
        trigger="probe_source",
        steps=[
            {
                "name": "Each",
                "type": "for_each",
                "config": {
                    "items": [0, 1, 2],
                    "steps": [
                        {"name": "Reserve", "type": "probe", "config": {"idempotent": False}}
                    ],
                },
            },
            {"name": "Pause", "type": "delay", "config": {"seconds": 0}},
            {"name": "After", "type": "probe", "config": {"idempotent": False}},
        ],
    )
    enqueue(4)
    counts = dispatch.process_batch(dispatch.claim(10))
    assert counts == {"done": 4}
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert len(probe.seen) == 4 * 4
