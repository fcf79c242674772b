"""The runner's pending writes: held in memory, written in bulk, kept until cleared."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate.journal import Journal
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.services import WorkflowService

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow():
    return WorkflowService().create_workflow(
        name="J", steps=[{"name": "F", "type": "filter", "config": {"condition": True}}]
    )


def new_run(workflow, **fields) -> WorkflowRun:
    return WorkflowRun(workflow=workflow, workflow_version=1, trace_id="t", **fields)


def test_journal__nothing_is_written_until_write(workflow):
    journal = Journal()
    assert not journal
    journal.add(new_run(workflow))
    assert journal
    assert not WorkflowRun.objects.exists()
    journal.write()
    assert WorkflowRun.objects.count() == 1


def test_journal__new_rows_get_their_latest_values_and_parents_go_first(workflow):
    journal = Journal()
    run = new_run(workflow)
    step = workflow.current_steps().get()
    record = StepRun(run=run, step=step, status=StepStatus.RUNNING)
    journal.add(run)
    journal.add(record)
    record.status, record.output = StepStatus.SUCCEEDED, {"n": 1}
    journal.update(record, ["status", "output"])  # still pending: nothing more to do
    journal.write()
    stored = StepRun.objects.get()
    assert (stored.run_id, stored.status, stored.output) == (run.pk, "succeeded", {"n": 1})


def test_journal__interleaved_rows_of_two_models_are_two_inserts_parents_first(workflow):
    """As a batch of parked runs journals record, timer, wait, record, timer, wait..."""
    journal = Journal()
    step = workflow.current_steps().get()
    runs = [new_run(workflow) for _ in range(4)]
    for run in runs:
        journal.add(run)
        journal.add(StepRun(run=run, step=step, status=StepStatus.SUCCEEDED))
    with CaptureQueriesContext(connection) as ctx:
        journal.write()
    assert [q["sql"].split()[0] for q in ctx.captured_queries] == ["INSERT", "INSERT"]
    assert sorted(StepRun.objects.values_list("run_id", flat=True)) == sorted(r.pk for r in runs)


def test_journal__a_row_is_never_inserted_before_a_row_it_points_at(workflow):
    journal = Journal()
    step = workflow.current_steps().get()
    first, second = new_run(workflow), new_run(workflow)
    journal.add(first)
    journal.add(StepRun(run=first, step=step, status=StepStatus.SUCCEEDED))
    journal.add(second)
    child = new_run(workflow, parent_run=second)  # a run after the record, pointing at a run
    journal.add(child)
    journal.add(StepRun(run=child, step=step, status=StepStatus.SUCCEEDED))
    journal.write()
    assert WorkflowRun.objects.get(pk=child.pk).parent_run_id == second.pk
    assert StepRun.objects.filter(run=child).count() == 1


def test_journal__updates_of_many_rows_are_one_statement_and_keep_nulls(workflow):
    runs = WorkflowRun.objects.bulk_create(
        [new_run(workflow, error={"code": "x"}) for _ in range(3)]
    )
    journal = Journal()
    now = timezone.now()
    for n, run in enumerate(runs):
        run.status, run.error, run.finished_at = RunStatus.COMPLETED, None, now
        journal.update(run, ["status", "error"])
        journal.update(run, ["finished_at"])  # fields of one row merge
        run.trace_id = f"changed-{n}"  # not named: not written
    with CaptureQueriesContext(connection) as captured:
        journal.write()
    assert len(captured.captured_queries) == 1
    rows = WorkflowRun.objects.values_list("status", "error", "finished_at", "trace_id")
    assert set(rows) == {("completed", None, now, "t")}


def test_journal__update_of_an_unsaved_row_it_does_not_hold_is_refused(workflow):
    with pytest.raises(ValueError, match="no primary key"):
        Journal().update(new_run(workflow), ["status"])


def test_journal__write_keeps_what_it_holds_until_clear(workflow):
    journal = Journal()
    journal.add(new_run(workflow))

    def fail_after_write():
        with transaction.atomic():
            journal.write()
            raise IntegrityError("the caller's transaction fails after the write")

    with pytest.raises(IntegrityError):
        fail_after_write()
    assert not WorkflowRun.objects.exists()
    assert journal  # the caller decides: the runner drops it, never takes it as written
    journal.clear()
    assert not journal


def test_journal__extend_takes_another_journals_writes(workflow):
    first, second = Journal(), Journal()
    first.add(new_run(workflow))
    second.add(new_run(workflow))
    first.extend(second)
    first.write()
    assert WorkflowRun.objects.count() == 2
