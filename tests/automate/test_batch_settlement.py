"""A claimed batch settles together: few statements, and nothing written for items lost.

What the worker holds back (idempotent steps' records, the runs' and items' final states)
and what it commits at once (a non-idempotent step's record, before and after its call)
is described in :mod:`automate.journal`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import batch, dispatch, runner
from automate import runs as run_making
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.services import WorkflowService
from automate.steps import StepContext, StepExecutor, StepResult
from automate.steps.base import StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = pytest.mark.django_db


class ProbeConfig(StrictConfig):
    idempotent: bool = True


class ProbeStep(StepExecutor):
    """Runs the test's ``hook`` with its context; its idempotency comes from its config."""

    key = "probe"
    config_model = ProbeConfig
    hook: ClassVar[Callable[[StepContext], Any] | None] = None
    seen: ClassVar[list[dict[str, Any]]] = []
    observe: ClassVar[bool] = True  # look for its own StepRun rows (a query) when called

    @classmethod
    def is_idempotent(cls, config: ProbeConfig) -> bool:  # type: ignore[override]
        return config.idempotent

    def execute(self, config: ProbeConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        if self.observe:
            own = StepRun.objects.filter(run_id=ctx.run_id, step__name=ctx.step_name)
            self.seen.append({"step": ctx.step_name, "own_rows": list(own.values_list("status"))})
        hook = type(self).hook
        if hook is not None:
            hook(ctx)
        return StepResult(output={"ok": ctx.step_name})


@pytest.fixture(autouse=True)
def probe():
    step_registry.register(ProbeStep)
    ProbeStep.seen, ProbeStep.hook, ProbeStep.observe = [], None, True
    yield ProbeStep
    step_registry.unregister("probe")


def probe_workflow(*idempotent: bool, name: str = "Probe") -> None:
    steps = [
        {"name": f"S{n}", "type": "probe", "config": {"idempotent": flag}}
        for n, flag in enumerate(idempotent, 1)
    ]
    WorkflowService().create_workflow(name=name, steps=steps, trigger="probe_source")


def enqueue(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        queue.enqueue("probe_source", event_type="e", payload={"n": i}, trace_id=f"t{i}")


def item_of(ctx: StepContext) -> OutboxItem:
    return WorkflowRun.objects.get(pk=ctx.run_id).outbox_item


def test_batch__statements_per_batch_do_not_grow_with_its_size(probe):
    probe.observe = False
    probe_workflow(True, True)
    enqueue(1, start=1000)  # the process's first batch reads the version's steps once
    dispatch.process_batch(dispatch.claim(1))
    counts = []
    for size in (5, 40):
        enqueue(size, start=len(counts) * 100)
        items = dispatch.claim(100)
        with CaptureQueriesContext(connection) as captured:
            assert dispatch.process_batch(items) == {"done": size}
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == 2 * 46
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 46


def test_batch__idempotent_step_has_no_running_row_non_idempotent_one_has(probe):
    probe_workflow(True, False)
    enqueue(1)
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1}
    assert probe.seen == [
        {"step": "S1", "own_rows": []},  # held back until the item settles
        {"step": "S2", "own_rows": [("running",)]},  # written before the call
    ]
    rows = StepRun.objects.order_by("id").values_list("step__name", "status", "output")
    assert list(rows) == [("S1", "succeeded", {"ok": "S1"}), ("S2", "succeeded", {"ok": "S2"})]


def test_batch__non_idempotent_step_commits_what_came_before_it(probe):
    probe_workflow(True, False)
    enqueue(1)
    seen_runs = []
    probe.hook = lambda ctx: seen_runs.append(
        list(StepRun.objects.filter(run_id=ctx.run_id).values_list("step__name", "status"))
    )
    dispatch.process_batch(dispatch.claim(10))
    # When S2 runs, S1's success is already written, in the transaction that wrote S2's start.
    assert seen_runs[1] == [("S1", "succeeded"), ("S2", "running")]
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED


def test_batch__item_taken_over_mid_run_writes_nothing_and_skips_side_effects(probe):
    probe_workflow(True, False)
    enqueue(2)

    def steal_first(ctx: StepContext) -> None:
        item = item_of(ctx)
        if item.payload["n"] == 0:
            OutboxItem.objects.filter(pk=item.pk).update(lease_token="another-worker")

    probe.hook = steal_first
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "lost": 1}
    lost = OutboxItem.objects.get(payload__n=0)
    assert (lost.status, lost.lease_token) == ("leased", "another-worker")
    # The stolen item's non-idempotent S2 never ran, and its S1 result was dropped.
    assert [s["step"] for s in probe.seen] == ["S1", "S1", "S2"]
    assert not StepRun.objects.filter(run__outbox_item=lost).exists()
    assert OutboxItem.objects.get(payload__n=1).status == "done"


def test_batch__item_lost_before_it_settles_is_not_written(probe):
    probe_workflow(True)
    enqueue(2)

    def steal_other(ctx: StepContext) -> None:
        if item_of(ctx).payload["n"] == 1:
            OutboxItem.objects.filter(payload__n=0).update(lease_token="another-worker")

    probe.hook = steal_other
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "lost": 1}
    assert not StepRun.objects.filter(run__outbox_item__payload__n=0).exists()
    assert WorkflowRun.objects.get(outbox_item__payload__n=0).status == RunStatus.PENDING
    assert StepRun.objects.filter(run__outbox_item__payload__n=1).count() == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(batch.ClaimedBatch, "clock", staticmethod(fake))
    return fake


def test_batch__leases_are_renewed_once_a_third_has_passed(probe, clock, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTBOX_LEASE_SECONDS": 30}  # renew after 10 s
    probe_workflow(True, True)
    enqueue(3)
    items = dispatch.claim(10)
    first_expiry = OutboxItem.objects.get(payload__n=2).lease_expires_at
    renewals = []

    def tick(ctx: StepContext) -> None:
        clock.now += 4  # a third of the lease (10 s) has passed at the fourth step
        renewals.append(OutboxItem.objects.get(payload__n=2).lease_expires_at)

    probe.hook = tick
    with CaptureQueriesContext(connection) as captured:
        assert dispatch.process_batch(items) == {"done": 3}
    lease_updates = [q for q in captured.captured_queries if 'SET "lease_expires_at"' in q["sql"]]
    assert len(lease_updates) == 1  # not one per step
    assert renewals[:3] == [first_expiry] * 3
    assert all(later > first_expiry for later in renewals[3:])


def test_batch__renewal_finds_items_lost_and_skips_them(probe, clock, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTBOX_LEASE_SECONDS": 30}  # renew after 10 s
    probe_workflow(True)
    enqueue(2)

    def slow_first(ctx: StepContext) -> None:
        if item_of(ctx).payload["n"] == 0:
            clock.now += 20
            OutboxItem.objects.filter(payload__n=1).update(lease_token="another-worker")

    probe.hook = slow_first
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "lost": 1}
    assert len(probe.seen) == 1  # the second item's step never ran


def test_batch__finished_items_settle_within_flush_seconds(probe, clock):
    probe_workflow(True)
    enqueue(3)
    states = []

    def look(ctx: StepContext) -> None:
        states.append(sorted(OutboxItem.objects.values_list("status", flat=True)))
        clock.now += dispatch.FLUSH_SECONDS

    probe.hook = look
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 3}
    assert states == [
        ["leased", "leased", "leased"],
        ["done", "leased", "leased"],
        ["done", "done", "leased"],
    ]


def test_batch__error_in_one_item_fails_only_that_item(probe, monkeypatch):
    probe_workflow(True)
    enqueue(2)
    execute_run = runner.execute_run

    def broken_for_first(run, **kwargs):
        if run.event["payload"]["n"] == 0:
            raise RuntimeError("a bug")
        return execute_run(run, **kwargs)

    monkeypatch.setattr(runner, "execute_run", broken_for_first)
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "failed": 1}
    failed = OutboxItem.objects.get(payload__n=0)
    assert failed.last_error["message"] == "RuntimeError: a bug"
    assert not StepRun.objects.filter(run__outbox_item=failed).exists()


def test_batch__a_crash_mid_batch_settles_nothing(probe):
    probe_workflow(True)
    enqueue(2)

    def crash(ctx: StepContext) -> None:
        if item_of(ctx).payload["n"] == 1:
            raise KeyboardInterrupt  # not an Exception: nothing in the worker catches it

    probe.hook = crash
    with pytest.raises(KeyboardInterrupt):
        dispatch.process_batch(dispatch.claim(10))
    # Both items keep their leases and come back when they expire; nothing was written.
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"leased"}
    assert not StepRun.objects.exists()


def test_batch__retry_and_dead_items_settle_beside_done_ones(recorder_calls):
    def workflow(event: str, max_attempts: int) -> None:
        WorkflowService().create_workflow(
            name=event,
            trigger={"connector": "probe_source", "events": [event]},
            steps=[
                {
                    "name": "Act",
                    "type": "connector_action",
                    "config": {
                        "profile": "recorder",
                        "action": "fail",
                        "input": {"code": "unavailable", "retryable": True},
                    },
                    "retry": {"max_attempts": max_attempts},
                }
            ],
        )

    workflow("retry", 3)
    workflow("dead", 1)
    probe_workflow(True)
    for n, kind in enumerate(["retry", "dead", "ok"]):
        queue.enqueue("probe_source", event_type=kind, payload={"n": n}, trace_id=f"m{n}")
    assert dispatch.process_batch(dispatch.claim(10)) == {"failed": 1, "dead": 1, "done": 1}
    statuses = dict(WorkflowRun.objects.values_list("outbox_item__event_type", "status"))
    assert statuses == {"retry": RunStatus.RETRYING, "dead": RunStatus.DEAD, "ok": "completed"}
    assert OutboxItem.objects.get(event_type="retry").available_at > timezone.now()


def test_batch__a_run_made_meanwhile_by_another_worker_is_taken_as_it_is(probe, monkeypatch):
    probe_workflow(True)
    enqueue(2)
    items = dispatch.claim(10)
    matching = run_making.matching_workflows

    def and_another_worker_makes_a_run(connector_key, event_type):
        found = matching(connector_key, event_type)
        if not WorkflowRun.objects.exists():  # between our SELECT and our INSERT
            WorkflowRun.objects.create(
                workflow=found[0], workflow_version=1, outbox_item=items[0],
                trace_id="theirs", event={"payload": {"n": 0}},
            )  # fmt: skip
        return found

    monkeypatch.setattr(run_making, "matching_workflows", and_another_worker_makes_a_run)
    assert dispatch.process_batch(items) == {"done": 2}
    runs = WorkflowRun.objects.order_by("id")
    assert [(r.trace_id, r.status) for r in runs] == [("theirs", "completed"), ("t1", "completed")]
    assert StepRun.objects.filter(status="succeeded").count() == 2


def test_batch__runs_that_cannot_be_made_fail_only_their_item(probe, monkeypatch):
    probe_workflow(True)
    enqueue(3)
    make_runs = run_making.ensure_runs_for

    def broken_for_first(items):
        if any(item.payload["n"] == 0 for item in items):
            raise RuntimeError("cannot make runs")
        return make_runs(items)

    monkeypatch.setattr(run_making, "ensure_runs_for", broken_for_first)
    # The batch's one INSERT fails; made one item at a time, only the culprit fails.
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 2, "failed": 1}
    failed = OutboxItem.objects.get(status="failed")
    assert failed.payload == {"n": 0}
    assert failed.last_error["message"] == "RuntimeError: cannot make runs"
