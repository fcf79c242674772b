"""A batch shares its non-idempotent steps' commits between its items (automate.commits).

The guarantee stays: each non-idempotent step's ``running`` record is committed, in the
transaction that confirms its item's lease, before its call, and its outcome is committed
before its run goes on; a record left ``running`` by a crash is never run again.
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
    monkeypatch.setattr(commits.Lockstep, "clock", staticmethod(fake))
    monkeypatch.setattr(batch.ClaimedBatch, "clock", staticmethod(fake))
    return fake


def transactions(captured: CaptureQueriesContext) -> int:
    """Atomic blocks opened (the test's own transaction makes each one a savepoint)."""
    return sum(1 for q in captured.captured_queries if q["sql"].startswith("SAVEPOINT"))


def test_grouped__statements_and_commits_per_batch_do_not_grow_with_its_size(probe):
    probe.observe = False
    probe_workflow(False, False)
    counts = []
    for round_, size in enumerate((5, 40)):
        enqueue(size, start=round_ * 100)
        items = dispatch.claim(100)
        with CaptureQueriesContext(connection) as captured:
            assert dispatch.process_batch(items) == {"done": size}
        counts.append((len(captured.captured_queries), transactions(captured)))
    assert counts[0] == counts[1], counts
    # Making the runs, two per non-idempotent step (its start, its outcome) and the
    # settlement: 6 transactions a batch, where each event alone made 4.
    assert counts[0][1] == 6, counts
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == 2 * 45
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 45


def test_grouped__every_running_record_is_committed_before_any_call(probe):
    probe_workflow(True, False)
    enqueue(3)
    seen = []
    probe.hook = lambda ctx: seen.append(
        (
            ctx.step_name,
            sorted(StepRun.objects.filter(step__name="S2").values_list("status", flat=True)),
        )
    )
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 3}
    # The idempotent S1 of every item first, then every S2 call sees the three S2 records
    # committed as running (the outcomes are committed together after the round's calls).
    assert seen == [("S1", [])] * 3 + [("S2", ["running"] * 3)] * 3


def test_grouped__outcomes_are_committed_before_the_runs_go_on(probe):
    probe_workflow(False, True)
    enqueue(2)
    seen = []
    probe.hook = lambda ctx: (
        ctx.step_name == "S2"
        and seen.append(
            sorted(StepRun.objects.filter(step__name="S1").values_list("status", flat=True))
        )
    )
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2}
    assert seen == [["succeeded", "succeeded"], ["succeeded", "succeeded"]]


def test_grouped__a_crash_after_the_grouped_start_never_repeats_a_call(probe):
    """A worker killed after the running records of the batch were committed: the next
    pass finds them ``running`` without an outcome and dead-letters those runs, as it
    does for one step alone; no call is made twice, and none blindly."""
    probe_workflow(False)
    enqueue(3)
    calls = []

    def die_on_first_call(ctx: StepContext) -> None:
        calls.append(item_of(ctx).payload["n"])
        raise KeyboardInterrupt  # not an Exception: nothing in the worker catches it

    probe.hook = die_on_first_call
    with pytest.raises(KeyboardInterrupt):
        dispatch.process_batch(dispatch.claim(10))
    assert calls == [0]
    assert list(StepRun.objects.values_list("status", flat=True)) == ["running"] * 3
    probe.hook = calls.append
    OutboxItem.objects.update(lease_expires_at=timezone.now())  # the lease runs out
    dispatch.claim(10)  # takes the expired leases back
    OutboxItem.objects.update(status="pending", lease_token="", available_at=timezone.now())
    assert dispatch.process_batch(dispatch.claim(10)) == {"dead": 3}
    assert calls == [0]  # nothing called again
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.DEAD}
    assert set(StepRun.objects.values_list("status", flat=True)) == {StepStatus.INTERRUPTED}


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


def test_grouped__outcomes_wait_no_longer_than_group_seconds(probe, clock):
    """Slow calls: the outcomes already known are committed once GROUP_SECONDS passed,
    not after the round's last call."""
    fake = clock
    probe_workflow(False)
    enqueue(3)
    seen = []

    def slow(ctx: StepContext) -> None:
        seen.append(sorted(StepRun.objects.values_list("status", flat=True)))
        fake.now += commits.GROUP_SECONDS

    probe.hook = slow
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 3}
    assert seen == [
        ["running", "running", "running"],
        ["running", "running", "succeeded"],
        ["running", "succeeded", "succeeded"],
    ]
