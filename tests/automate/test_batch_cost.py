"""What a claimed batch costs the worker in statements, pinned: a fixed number per batch,
whatever its size, and none of it spent reading again what the worker already knows.

The path is the Celery task's (``automate.tasks.process_items``), which the pipeline
runs. Under the test's transaction Django turns each ``atomic`` into a savepoint, so the
counts include SAVEPOINT/RELEASE where a worker sends BEGIN/COMMIT: the same number.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from automate import batch, dispatch, tasks
from automate.models import RunStatus, StepRun, Workflow, WorkflowRun, WorkflowStep
from automate.services import WorkflowService
from automate.steps import StepContext, StepExecutor, StepResult
from automate.steps.base import StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.outbox import queue

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("settled_once_per_batch")]

#: A batch of new events through two idempotent steps, in a transaction (SQLite, or a
#: caller's): the task's SELECT of its items, which says they have no runs yet (so
#: their runs are not read); the wait_for_event match paths, the matching workflows;
#: the runs' INSERT in its transaction (3); the settlement's transaction: the step
#: records' INSERT, the runs' UPDATE, the items' UPDATE, which checks their leases (5).
#: On PostgreSQL outside a transaction: 5 (tests/automate/test_one_statement_settlement.py).
STATEMENTS_PER_BATCH = 11


class NoopStep(StepExecutor):
    key = "cost_noop"
    config_model = StrictConfig
    idempotent = True

    def execute(self, config: StrictConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        return StepResult(output={"step": ctx.step_name})


@pytest.fixture(autouse=True)
def noop():
    step_registry.register(NoopStep)
    yield
    step_registry.unregister("cost_noop")


def workflow(*names: str):
    steps = [{"name": name, "type": "cost_noop", "config": {}} for name in names]
    return WorkflowService().create_workflow(name="Cost", steps=steps, trigger="cost_source")


def run_batch(size: int, start: int) -> list[str]:
    """Enqueue ``size`` events, claim them, run the task on them; return its statements."""
    for n in range(start, start + size):
        queue.enqueue("cost_source", event_type="e", payload={"n": n}, trace_id=f"t{n}")
    items = dispatch.claim(size)
    assert len(items) == size
    with CaptureQueriesContext(connection) as captured:
        assert tasks.process_items([[i.pk, i.lease_token] for i in items]) == {"done": size}
    return [q["sql"] for q in captured.captured_queries]


def test_batch_cost__statements_per_batch_are_pinned_whatever_its_size():
    workflow("First", "Second")
    run_batch(1, 0)  # the first batch of the process reads the version's steps
    # (Not 100 on SQLite: Django splits its INSERTs there at the backend's variable limit.)
    counts = {size: len(run_batch(size, 100 * size)) for size in (1, 10, 40)}
    assert counts == {1: STATEMENTS_PER_BATCH, 10: STATEMENTS_PER_BATCH, 40: STATEMENTS_PER_BATCH}
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 52
    assert StepRun.objects.filter(status="succeeded").count() == 104


def test_batch_cost__nothing_is_read_twice():
    workflow("First", "Second")
    run_batch(1, 0)
    sqls = run_batch(10, 100)
    leases = [s for s in sqls if 'FROM "automate_core_outboxitem"' in s and s.startswith("SELECT")]
    # The task's own SELECT alone: the settlement's UPDATE checks the leases.
    assert len(leases) == 1, leases
    # The steps of a workflow version are compiled once per process, not once per batch.
    assert not [s for s in sqls if s.startswith('SELECT "automate_workflowstep"."id"')]
    # Runs the batch has just made have no step history to read.
    assert not [s for s in sqls if s.startswith("SELECT") and 'FROM "automate_steprun"' in s]
    # New events have no runs to read: the task's SELECT said so.
    assert not [s for s in sqls if s.startswith('SELECT "automate_workflowrun"')]


def test_batch_cost__a_new_version_runs_its_own_steps():
    made = workflow("First", "Second")
    run_batch(1, 0)
    WorkflowService().update_workflow(
        made, steps=[{"name": "Only", "type": "cost_noop", "config": {}}]
    )
    run_batch(1, 1)
    latest = WorkflowRun.objects.order_by("-id").first()
    assert latest is not None and latest.workflow_version == 2
    assert list(latest.step_runs.values_list("step__name", flat=True)) == ["Only"]


def test_batch_cost__a_retried_run_reads_its_history():
    """A run that exists already (a retry, a resumed crash) still gets its step records."""
    workflow("First", "Second")
    queue.enqueue("cost_source", event_type="e", payload={"n": 0}, trace_id="t0")
    items = dispatch.claim(1)
    from automate import runs

    run = runs.ensure_runs(items[0])[0]
    first = run.workflow.all_steps_of(run.workflow_version).get(name="First")
    StepRun.objects.create(run=run, step=first, attempt=1, status="succeeded", output={"x": 1})
    assert tasks.process_items([[items[0].pk, items[0].lease_token]]) == {"done": 1}
    # First's earlier success is reused, not run again.
    assert StepRun.objects.filter(run=run, step=first).count() == 1
    assert StepRun.objects.filter(run=run, step__name="Second", status="succeeded").count() == 1


def test_batch_cost__step_trees_are_bounded(monkeypatch):
    monkeypatch.setattr(batch, "_TREES", {})
    monkeypatch.setattr(batch, "_TREES_MAX", 1)
    workflow("First")
    run_batch(1, 0)
    WorkflowService().create_workflow(
        name="Cost 2",
        steps=[{"name": "A", "type": "cost_noop", "config": {}}],
        trigger="cost_source",
    )
    run_batch(1, 1)
    assert len(batch._TREES) == 1


def rename_in_place(how: str) -> None:
    """Rename the step "Second" of the current version without a new version."""
    steps = WorkflowStep.objects.filter(name="Second")
    if how == "save":
        step = steps.get()
        step.name = "Renamed"
        step.save()
    elif how == "update":
        steps.update(name="Renamed")
    else:
        step = steps.get()
        step.name = "Renamed"
        WorkflowStep.objects.bulk_update([step], ["name"])


def last_run_steps() -> list[str]:
    latest = WorkflowRun.objects.order_by("-id").first()
    assert latest is not None and latest.status == RunStatus.COMPLETED
    return [sr.output["step"] for sr in latest.step_runs.order_by("id")]


@pytest.mark.parametrize("how", ["save", "update", "bulk_update"])
def test_batch_cost__a_step_edited_in_place_is_run_as_edited(how):
    """The worker has the version's steps (its first batch read them); a step edited in
    place marks the workflow changed, which the next batch reads with its runs."""
    made = workflow("First", "Second")
    run_batch(1, 0)
    assert last_run_steps() == ["First", "Second"]
    before = Workflow.objects.get(pk=made.pk).updated_at
    rename_in_place(how)
    assert Workflow.objects.get(pk=made.pk).updated_at > before
    run_batch(1, 1)
    assert last_run_steps() == ["First", "Renamed"]
    assert WorkflowRun.objects.order_by("-id").first().workflow_version == 1


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_batch_cost__a_step_deleted_in_place_is_no_longer_run(how):
    workflow("First", "Second")
    run_batch(1, 0)
    steps = WorkflowStep.objects.filter(name="Second")
    if how == "instance":
        steps.get().delete()
    else:
        steps.delete()
    run_batch(1, 1)
    assert last_run_steps() == ["First"]


@pytest.mark.django_db(transaction=True)  # autocommit, as a project's own code runs
def test_batch_cost__a_failed_edit_leaves_the_workflow_unmarked():
    """The mark and the edit are one transaction: an edit refused by a constraint
    leaves the workflow as it was (its steps are not read again for nothing)."""
    made = workflow("First", "Second")
    before = Workflow.objects.get(pk=made.pk).updated_at
    step = WorkflowStep.objects.get(name="Second")
    step.name = "First"  # names are unique in a version
    with pytest.raises(IntegrityError):
        WorkflowStep.objects.filter(name="Second").update(name="First")
    with pytest.raises(IntegrityError):
        step.save()
    assert Workflow.objects.get(pk=made.pk).updated_at == before


def test_batch_cost__writing_a_new_version_marks_nothing_but_the_workflow_save():
    """New rows are a version being written: no statement per row to mark the workflow."""
    made = workflow("First")
    nested = [
        {
            "name": "Each",
            "type": "for_each",
            "config": {
                "items": "{{ [1] }}",
                "steps": [{"name": "Inner", "type": "cost_noop", "config": {}}],
            },
        }
    ]
    with CaptureQueriesContext(connection) as captured:
        WorkflowService().update_workflow(made, steps=nested)
    updates = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].startswith('UPDATE "automate_workflow"')
    ]
    assert len(updates) == 1  # the workflow's own save
