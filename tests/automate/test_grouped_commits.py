"""A batch shares its non-idempotent steps' commits between its items (automate.commits).

The guarantee stays: each non-idempotent step's ``running`` record is committed, in the
transaction that confirms its item's lease, before its call, and its outcome is committed
before its run goes on; a record left ``running`` by a crash is never run again. And a
crash costs what it cost before: one call at a time is between its two commits.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import batch, commits, dispatch
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.steps import StepContext
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
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
    # Making the runs, one per call (its start, with the previous call's outcome), the
    # last outcome and the settlement; each call alone made two (4 per event here).
    assert counts == [2 * 5 + 3, 2 * 40 + 3], counts
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
        (1, "S1", [(0, "S1", "succeeded"), (1, "S1", "running")]),
        (
            0,
            "S2",
            [(0, "S1", "succeeded"), (0, "S2", "running"), (1, "S1", "succeeded")],
        ),
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
    assert [s["step"] for s in probe.seen] == ["S1", "S1", "S2"]
    assert not StepRun.objects.filter(run__outbox_item__payload__n=1).exists()


def test_grouped__a_conflict_in_the_group_falls_back_to_one_commit_each(probe, monkeypatch):
    """Another worker on one item's very attempt (its record's INSERT conflicts): that
    item is lost, the others are committed one by one and go on."""
    probe_workflow(False)
    enqueue(3)
    together = commits.Lockstep._commit_together
    alone = commits.Lockstep._commit_alone

    def conflicting(self, requests):
        raise IntegrityError("a record of this attempt exists")

    def one_conflicts(request):
        if request.item.payload["n"] == 1:
            return ("send", False)  # what Commits.start answers on IntegrityError
        return alone(request)

    monkeypatch.setattr(commits.Lockstep, "_commit_together", conflicting)
    monkeypatch.setattr(commits.Lockstep, "_commit_alone", staticmethod(one_conflicts))
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2, "lost": 1}
    assert [s["step"] for s in probe.seen] == ["S1", "S1"]
    assert together is not conflicting


def test_grouped__a_database_error_fails_each_waiting_item(probe, monkeypatch):
    from django.db import OperationalError

    probe_workflow(False)
    enqueue(2)

    def broken(self, requests):
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(commits.Lockstep, "_commit_together", broken)
    assert dispatch.process_batch(dispatch.claim(10)) == {"failed": 2}
    assert probe.seen == []  # no call without its committed record
    assert {i.last_error["message"] for i in OutboxItem.objects.all()} == {
        "OperationalError: the server closed the connection"
    }


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
