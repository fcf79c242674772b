"""On PostgreSQL, outside a transaction, a non-idempotent step's start is one autocommitted
statement (automate.commits): it renews the item's lease, writes the outcome held from
the previous call and, only if the renewal found the item still ours, the item's pending
writes and the step's ``running`` record.

What must not change with it is what tests/automate/test_grouped_commits.py pins on the
transaction path; its scenarios run here again on this one (the ones that break a start
through ``queue.renew``, which this path does not call, have their own versions below).
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.utils import timezone

from automate import commits, dispatch
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.steps import StepContext
from automate_core.models import OutboxItem
from tests.automate import test_grouped_commits as grouped
from tests.automate.test_batch_settlement import enqueue, item_of, probe_workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres")]

# The fixtures of those scenarios (autouse: a registered probe step, a clock that stands still).
probe, clock = grouped.probe, grouped.clock


@pytest.fixture(autouse=True, params=["client-side binding", "server-side binding"])
def binding(request, postgres):
    """Every scenario twice: psycopg binding parameters in the client (Django's default),
    and on the server (``OPTIONS={"server_side_binding": True}``), where PostgreSQL types
    each ``$n`` from its place in the statement (a parameter it cannot type is an error)
    and ``executemany`` sends prepared statements.

    The server-side run gets a connection of its own, to the same test database, as the
    default alias: a setting is read when a connection opens.
    """
    if request.param == "client-side binding":
        yield
        return
    import psycopg

    original = connections[DEFAULT_DB_ALIAS]
    options = {**original.settings_dict["OPTIONS"], "server_side_binding": True}
    own = type(original)({**original.settings_dict, "OPTIONS": options}, DEFAULT_DB_ALIAS)
    connections[DEFAULT_DB_ALIAS] = own
    try:
        own.ensure_connection()
        assert not issubclass(own.connection.cursor_factory, psycopg.ClientCursor)
        yield
    finally:
        own.close()
        connections[DEFAULT_DB_ALIAS] = original


# The transaction path's scenarios, on this path (this module's marks: no test transaction).
test_each_call_sees_its_record_and_the_previous_outcome_committed = (
    grouped.test_grouped__each_call_sees_its_record_and_the_previous_outcome_committed
)
test_outcomes_are_committed_before_the_runs_go_on = (
    grouped.test_grouped__outcomes_are_committed_before_the_runs_go_on
)
test_a_crash_mid_batch_leaves_one_unknown_call = (
    grouped.test_grouped__a_crash_mid_batch_leaves_one_unknown_call
)
test_an_item_lost_before_its_start_is_not_called = (
    grouped.test_grouped__an_item_lost_before_its_start_is_not_called
)
test_a_conflict_on_a_start_loses_that_item_and_keeps_the_held_outcome = (
    grouped.test_grouped__a_conflict_on_a_start_loses_that_item_and_keeps_the_held_outcome
)
test_an_idempotent_call_waits_for_the_held_outcome = (
    grouped.test_grouped__an_idempotent_call_waits_for_the_held_outcome
)
test_the_last_outcome_lands_with_the_settlement_even_for_a_lost_item = (
    grouped.test_grouped__the_last_outcome_lands_with_the_settlement_even_for_a_lost_item
)
test_a_crash_before_the_held_outcome_is_committed_never_calls_twice = (
    grouped.test_grouped__a_crash_before_the_held_outcome_is_committed_never_calls_twice
)
test_loops_and_delays_of_non_idempotent_steps = (
    grouped.test_grouped__loops_and_delays_of_non_idempotent_steps
)


class RoundTrips:
    """Every statement sent (with whether a transaction was open) and every COMMIT."""

    def __init__(self, monkeypatch) -> None:
        self.statements: list[tuple[str, bool]] = []
        self.commits = 0
        db = connections[DEFAULT_DB_ALIAS]
        commit = db._commit

        def counted_commit():
            self.commits += 1
            return commit()

        monkeypatch.setattr(db, "_commit", counted_commit)

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, connection.in_atomic_block))
        return execute(sql, params, many, context)

    def autocommitted(self) -> list[str]:
        return [sql for sql, in_transaction in self.statements if not in_transaction]


def test_one_statement__each_start_is_one_round_trip(probe, monkeypatch):
    """Per non-idempotent call: one statement, autocommitted (no BEGIN, no COMMIT);
    all the rest of a batch (making its runs, settling) does not grow with its size."""
    probe.observe = False
    probe_workflow(False, False)
    totals = []
    trips = RoundTrips(monkeypatch)
    # A process reads a workflow version's steps once (automate.batch.step_tree): warm up.
    enqueue(1, start=1000)
    assert dispatch.process_batch(dispatch.claim(100)) == {"done": 1}
    for round_, size in enumerate((5, 40)):
        enqueue(size, start=round_ * 100)
        items = dispatch.claim(100)
        trips.statements, trips.commits = [], 0
        with connection.execute_wrapper(trips):
            assert dispatch.process_batch(items) == {"done": size}
        starts = [sql for sql in trips.autocommitted() if sql.startswith("WITH lease AS (UPDATE")]
        assert len(starts) == 2 * size
        # A COMMIT also ends a transaction its BEGIN opened: two round trips per commit.
        totals.append(len(trips.statements) + 2 * trips.commits - len(starts))
    assert totals[0] == totals[1], totals  # the batch's own round trips, whatever its size
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == 2 * 46
    assert WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() == 46


def test_one_statement__the_start_writes_the_held_outcome_the_run_and_the_record(probe):
    """The statement of S2's start carries S1's outcome; S1's carries the run's start."""
    probe_workflow(False, False)
    enqueue(1)
    seen = []
    probe.hook = lambda ctx: seen.append(
        (
            ctx.step_name,
            sorted(StepRun.objects.values_list("step__name", "status")),
            WorkflowRun.objects.get(pk=ctx.run_id).status,
        )
    )
    statements = []
    with connection.execute_wrapper(
        lambda execute, sql, *rest: statements.append(sql) or execute(sql, *rest)
    ):
        assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1}
    assert seen == [
        ("S1", [("S1", "running")], RunStatus.RUNNING),
        ("S2", [("S1", "succeeded"), ("S2", "running")], RunStatus.RUNNING),
    ]
    starts = [sql for sql in statements if sql.startswith("WITH lease AS")]
    assert len(starts) == 2
    assert '"automate_workflowrun"' in starts[0] and "INSERT INTO" in starts[0]
    assert starts[1].count("UPDATE") == 2  # the lease and S1's outcome


def test_one_statement__a_lease_lost_since_the_claim_means_no_call_and_no_record(probe):
    """The item was reclaimed by another worker after its runs were made, just before the
    first start: the statement finds the lease gone, writes nothing of the item (not even
    the run's start), and nothing is called."""
    probe_workflow(False, False)
    enqueue(1)
    stolen = []

    def reclaimed_before_the_start(execute, sql, params, many, context):
        if sql.startswith("WITH lease AS") and not stolen:
            stolen.append(OutboxItem.objects.update(lease_token="another-worker"))
        return execute(sql, params, many, context)

    items = dispatch.claim(10)
    with connection.execute_wrapper(reclaimed_before_the_start):
        assert dispatch.process_batch(items) == {"lost": 1}
    assert stolen == [1]
    assert probe.seen == []
    assert not StepRun.objects.exists()
    assert WorkflowRun.objects.get().status == RunStatus.PENDING  # the run's start not written


def test_one_statement__a_conflict_keeps_nothing_of_the_statement_but_the_held_outcome(probe):
    """Another worker's record of the same attempt: the statement fails whole (the lease
    renewal and the item's writes with it), the held outcome is committed on its own."""
    probe_workflow(False, False)
    enqueue(1)

    leased_until = OutboxItem.objects.values_list("lease_expires_at", flat=True)
    renewed_by_s1 = []

    def another_worker_starts_s2(ctx: StepContext) -> None:
        if ctx.step_name == "S1":
            renewed_by_s1.append(leased_until.get())
            run = WorkflowRun.objects.get(pk=ctx.run_id)
            s2 = run.workflow.steps.get(name="S2", version=run.workflow_version)
            StepRun.objects.create(
                run=run, step=s2, attempt=1, status=StepStatus.RUNNING, started_at=timezone.now()
            )

    probe.hook = another_worker_starts_s2
    assert dispatch.process_batch(dispatch.claim(10)) == {"lost": 1}
    assert [s["step"] for s in probe.seen] == ["S1"]
    rows = StepRun.objects.values_list("step__name", "status", "output")
    assert sorted(rows) == [("S1", "succeeded", {"ok": "S1"}), ("S2", "running", None)]
    assert leased_until.get() == renewed_by_s1[0]  # S2's renewal went with its statement


def test_one_statement__a_database_error_fails_the_item_and_keeps_the_held_outcome(
    probe, monkeypatch
):
    probe_workflow(False, False)
    enqueue(2)

    def broken_for_second(execute, sql, params, many, context):
        if sql.startswith("WITH lease AS") and len(probe.seen) == 2:  # item 1's first start
            raise OperationalError("the server closed the connection")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(broken_for_second):
        grouped.assert_the_second_item_failed_on_its_start(probe)


def test_one_statement__inside_a_transaction_the_start_is_a_transaction_of_its_own(probe):
    """A caller's transaction: the start is its savepoint, as before (no autocommit)."""
    from django.db import transaction

    from automate import runner, runs

    probe_workflow(False)
    enqueue(1)
    (item,) = dispatch.claim(10)
    (run,) = runs.ensure_runs(item)
    statements = []
    with (
        transaction.atomic(),
        connection.execute_wrapper(
            lambda execute, sql, *rest: statements.append(sql) or execute(sql, *rest)
        ),
    ):
        outcome = runner.execute_run(run)
    assert outcome.status == "completed"
    assert not any(sql.startswith("WITH") for sql in statements)
    assert StepRun.objects.get().status == StepStatus.SUCCEEDED


def test_one_statement__an_idempotent_step_s_record_goes_with_the_next_start_if_ours(probe):
    """S1 (idempotent) is recorded by S2's start, in its statement: when the lease is gone
    by then, neither record is written (S1 runs again on the next claim, as idempotent
    means) and S2 is not called."""
    probe_workflow(True, False)
    enqueue(2)

    def steal_second_before_its_s2(ctx: StepContext) -> None:
        item = item_of(ctx)
        if ctx.step_name == "S1" and item.payload["n"] == 1:
            OutboxItem.objects.filter(pk=item.pk).update(lease_token="another-worker")

    probe.hook = steal_second_before_its_s2
    assert dispatch.process_batch(dispatch.claim(10)) == {"done": 1, "lost": 1}
    assert [s["step"] for s in probe.seen] == ["S1", "S2", "S1"]
    rows = StepRun.objects.values_list("run__outbox_item__payload__n", "step__name", "status")
    assert sorted(rows) == [(0, "S1", "succeeded"), (0, "S2", "succeeded")]


def _idempotent_steps_then_one_that_is_not(before: int) -> None:
    probe_workflow(*[True] * before, False)


@pytest.mark.parametrize("over", [False, True], ids=["at the cap", "over the cap"])
def test_one_statement__a_start_of_more_rows_than_the_cap_takes_the_transaction(
    probe, monkeypatch, over
):
    """The non-idempotent step's start carries one INSERT per idempotent step recorded
    before it, the run's start and its own record: ``ONE_STATEMENT_ROWS`` of them still go
    as one statement, one more as BEGIN, the writes and the lease's renewal, COMMIT. Either
    way the call sees everything before it committed, its own record ``running``."""
    before = commits.ONE_STATEMENT_ROWS - 2 + over
    _idempotent_steps_then_one_that_is_not(before)
    last = f"S{before + 1}"
    enqueue(1)
    seen = {}
    trips = RoundTrips(monkeypatch)

    def at_the_call(ctx: StepContext) -> None:
        if ctx.step_name == last:
            seen["statements"] = list(trips.statements)
            seen["rows"] = Counter(StepRun.objects.values_list("status", flat=True))

    probe.hook = at_the_call
    items = dispatch.claim(10)
    with connection.execute_wrapper(trips):
        assert dispatch.process_batch(items) == {"done": 1}

    starts = [sql for sql, _ in seen["statements"] if sql.startswith("WITH lease AS")]
    in_transaction = [sql for sql, in_transaction in seen["statements"] if in_transaction]
    renewed = [sql for sql in in_transaction if sql.startswith('UPDATE "automate_core_outboxitem"')]
    if over:
        assert starts == []
        assert len(renewed) == 1, renewed
        assert any(sql.startswith('INSERT INTO "automate_steprun"') for sql in in_transaction)
    else:
        assert len(starts) == 1
        assert starts[0].count("INSERT INTO") == before + 1
        assert renewed == []
    assert seen["rows"] == {StepStatus.SUCCEEDED: before, StepStatus.RUNNING: 1}
    assert StepRun.objects.filter(status=StepStatus.SUCCEEDED).count() == before + 1
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED


def test_one_statement__over_the_cap_a_lost_lease_means_no_call_and_no_record(probe):
    """The transaction path's renewal finds the item gone: none of the idempotent steps'
    records, nor the run's start, nor the non-idempotent step's record is written (they
    run again on the next claim, as idempotent means), and the step is not called."""
    before = commits.ONE_STATEMENT_ROWS - 1
    _idempotent_steps_then_one_that_is_not(before)
    enqueue(1)

    def reclaimed_after_the_last_idempotent_step(ctx: StepContext) -> None:
        if ctx.step_name == f"S{before}":
            OutboxItem.objects.update(lease_token="another-worker")

    probe.hook = reclaimed_after_the_last_idempotent_step
    assert dispatch.process_batch(dispatch.claim(10)) == {"lost": 1}
    assert [s["step"] for s in probe.seen] == [f"S{n}" for n in range(1, before + 1)]
    assert not StepRun.objects.exists()
    assert WorkflowRun.objects.get().status == RunStatus.PENDING
