"""On PostgreSQL, outside a transaction, a claimed batch whose items all finished settles
with one autocommitted statement (automate.commits.HandedOn.settle_at_once): the items
done, if every one is still ours, with their step records and runs; its runs are made
with one autocommitted INSERT (automate.runs); and a claim is one UPDATE ... RETURNING
(automate_core.outbox.queue).

What must not change with them is what tests/automate/test_batch_settlement.py pins on
the transaction path: its scenarios run here again, with no test transaction, with
parameters bound on the client and on the server.
"""

from __future__ import annotations

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from automate import commits, dispatch, runs, tasks
from automate.journal import Journal
from automate.models import RunStatus, StepRun, StepStatus, Workflow, WorkflowRun
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.automate import test_batch_settlement as settlement
from tests.automate.test_batch_settlement import enqueue, probe_workflow
from tests.automate.test_one_statement_start import RoundTrips, binding  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres")]

probe, clock = settlement.probe, settlement.clock

# The transaction path's scenarios, on this path (this module's marks: no test transaction).
test_statements_per_batch_do_not_grow_with_its_size = (
    settlement.test_batch__statements_per_batch_do_not_grow_with_its_size
)
test_item_taken_over_mid_run_writes_nothing = (
    settlement.test_batch__item_taken_over_mid_run_writes_nothing_and_skips_side_effects
)
test_item_lost_before_it_settles_is_not_written = (
    settlement.test_batch__item_lost_before_it_settles_is_not_written
)
test_error_in_one_item_fails_only_that_item = (
    settlement.test_batch__error_in_one_item_fails_only_that_item
)
test_a_crash_mid_batch_settles_nothing = settlement.test_batch__a_crash_mid_batch_settles_nothing
test_a_run_made_meanwhile_by_another_worker_is_taken_as_it_is = (
    settlement.test_batch__a_run_made_meanwhile_by_another_worker_is_taken_as_it_is
)
test_finished_items_settle_within_flush_seconds = (
    settlement.test_batch__finished_items_settle_within_flush_seconds
)

#: A batch of new events through two idempotent steps, in the Celery task: the task's
#: SELECT of its items, which says they have no runs yet; the wait_for_event match
#: paths, the matching workflows; the runs' INSERT; the settlement. Each autocommitted:
#: no BEGIN, no COMMIT (on the transaction path: 11, tests/automate/test_batch_cost.py).
STATEMENTS_PER_BATCH = 5


def test_one_statement__a_batch_is_five_autocommitted_statements_whatever_its_size(
    probe, monkeypatch
):
    probe.observe = False
    probe_workflow(True, True)
    enqueue(1, start=1000)  # the process's first batch reads the version's steps once
    dispatch.process_batch(dispatch.claim(1))
    for size in (1, 12, 40):
        enqueue(size, start=size * 100)
        items = dispatch.claim(100)
        trips = RoundTrips(monkeypatch)
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.execute_wrapper(trips):
            assert tasks.process_items([[i.pk, i.lease_token] for i in items]) == {"done": size}
        assert len(trips.statements) == STATEMENTS_PER_BATCH, trips.statements
        assert len(trips.autocommitted()) == STATEMENTS_PER_BATCH
        assert trips.commits == 0
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 54
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == 108
    assert not OutboxItem.objects.exclude(status="done").exists()
    assert not OutboxItem.objects.filter(completed_at__isnull=True).exists()


def test_one_statement__a_claim_is_one_autocommitted_statement(probe, monkeypatch):
    enqueue(3)
    trips = RoundTrips(monkeypatch)
    with connections[DEFAULT_DB_ALIAS].execute_wrapper(trips):
        items = queue.claim(10, reclaim=False)
    assert [i.payload["n"] for i in items] == [0, 1, 2]
    assert len(trips.autocommitted()) == 1 and trips.commits == 0, trips.statements


def test_one_statement__an_item_lost_means_nothing_of_the_batch_but_the_held_outcome(probe):
    """The statement writes every item or none: when one is no longer ours, it writes the
    held outcome alone and says so (the caller's transaction then settles the others)."""
    probe_workflow(True)
    enqueue(2)
    items = dispatch.claim(10)
    [run] = runs.ensure_runs(items[1])
    OutboxItem.objects.filter(pk=items[0].pk).update(lease_token="another-worker")
    handed, journal = commits.HandedOn(), Journal()
    workflow = Workflow.objects.get()
    workflow.description = "held outcome"
    handed.held.update(workflow, ["description"])
    run.status = RunStatus.COMPLETED
    journal.update(run, ["status"])
    assert handed.settle_at_once(journal, items) is False
    assert Workflow.objects.get().description == "held outcome" and not handed.held
    assert WorkflowRun.objects.get().status == RunStatus.PENDING  # not written
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"leased"}
    # All ours again: everything is written and the items are done.
    OutboxItem.objects.filter(pk=items[0].pk).update(lease_token=items[0].lease_token)
    assert handed.settle_at_once(journal, items) is True
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"done"}
    assert all(item.status == "done" and item.completed_at for item in items)


def test_one_statement__what_one_statement_cannot_say_takes_the_transaction(probe):
    """Nothing is sent when the journal changes an item of the batch (one statement must
    not UPDATE a row twice), when the items are of several claims, or in a transaction."""
    probe_workflow(True)
    enqueue(2)
    items = dispatch.claim(10)
    handed, journal = commits.HandedOn(), Journal()
    changed = OutboxItem.objects.get(pk=items[1].pk)
    changed.event_type = "changed"
    journal.update(changed, ["event_type"])
    assert handed.settle_at_once(journal, items) is None
    other = dispatch.claim(10)  # nothing left: a second token, made by hand
    assert other == []
    items[1].lease_token = "a second claim"
    assert handed.settle_at_once(Journal(), items) is None
    items[1].lease_token = OutboxItem.objects.get(pk=items[1].pk).lease_token
    with transaction.atomic():
        assert handed.settle_at_once(Journal(), items) is None
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"leased"}
    assert OutboxItem.objects.get(pk=items[1].pk).event_type == "e"
