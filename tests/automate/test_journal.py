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


def finish_each(runs, journal, now):
    """Journal each run finished with values of its own: alternately an error and a
    finish time, and none (so a column may be NULL in every row or only in some)."""
    for n, run in enumerate(runs):
        run.status = RunStatus.DEAD if n % 2 else RunStatus.COMPLETED
        run.error = {"code": f"e{n}", "n": n} if n % 2 else None
        run.finished_at = now if n % 2 else None
        journal.update(run, ["status", "error", "finished_at"])


@pytest.mark.parametrize("size", [2, 8])
def test_journal__rows_with_values_of_their_own_are_one_statement_not_one_per_row(workflow, size):
    """A resumed batch finishes each run and each waited-on record with its own values:
    one UPDATE for the rows of one model and field set, whatever their number, and a
    column NULL in every row or only in some keeps its type (jsonb, timestamptz)."""
    runs = WorkflowRun.objects.bulk_create(
        [new_run(workflow, error={"code": "old"}) for _ in range(size)]
    )
    others = WorkflowRun.objects.bulk_create([new_run(workflow) for _ in range(2)])
    journal, now = Journal(), timezone.now()
    finish_each(runs, journal, now)
    with CaptureQueriesContext(connection) as captured:
        journal.write()
    [sql] = [q["sql"] for q in captured.captured_queries]
    assert "times:" not in sql and "VALUES" in sql  # one statement, not executemany's N
    stored = {r.pk: r for r in WorkflowRun.objects.filter(pk__in=[r.pk for r in runs])}
    for n, run in enumerate(runs):
        got = stored[run.pk]
        assert (got.status, got.error, got.finished_at) == (
            run.status,
            {"code": f"e{n}", "n": n} if n % 2 else None,
            now if n % 2 else None,
        )
    untouched = WorkflowRun.objects.filter(pk__in=[r.pk for r in others])
    assert set(untouched.values_list("status", "finished_at")) == {("pending", None)}


def test_journal__every_value_null_keeps_the_columns_types(workflow):
    runs = WorkflowRun.objects.bulk_create(
        [new_run(workflow, error={"code": "old"}, finished_at=timezone.now()) for _ in range(3)]
    )
    journal = Journal()
    for run in runs:
        run.error, run.finished_at = None, None
        journal.update(run, ["error", "finished_at"])
    journal.write()
    assert set(WorkflowRun.objects.values_list("error", "finished_at")) == {(None, None)}


def test_journal__a_row_deleted_before_the_write_is_skipped_and_the_others_written(workflow):
    runs = WorkflowRun.objects.bulk_create([new_run(workflow) for _ in range(3)])
    journal, now = Journal(), timezone.now()
    finish_each(runs, journal, now)
    WorkflowRun.objects.filter(pk=runs[1].pk).delete()  # e.g. its workflow was deleted
    journal.write()
    stored = dict(WorkflowRun.objects.values_list("pk", "status"))
    assert stored == {runs[0].pk: "completed", runs[2].pk: "completed"}


def test_journal__rows_beyond_the_parameter_limit_take_more_statements(workflow, monkeypatch):
    """One statement carries at most what the backend's parameter limit allows."""
    monkeypatch.setattr(connection.features, "max_query_params", 8)  # 2 rows of 4
    runs = WorkflowRun.objects.bulk_create([new_run(workflow) for _ in range(5)])
    journal, now = Journal(), timezone.now()
    finish_each(runs, journal, now)
    with CaptureQueriesContext(connection) as captured:
        journal.write()
    assert len(captured.captured_queries) == 3
    stored = dict(WorkflowRun.objects.values_list("pk", "status"))
    assert stored == {run.pk: run.status for run in runs}


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
