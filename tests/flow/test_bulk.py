"""``update_each``: one UPDATE giving each row its own values, and its Case form."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate.flow import bulk
from automate.flow.models import RunWait
from automate.models import StepRun
from automate_core.models import OutboxItem
from tests.flow.helpers import action, start

pytestmark = pytest.mark.django_db


def _waits(name: str, count: int, **fields) -> list[RunWait]:
    """``count`` waiting ``event`` waits, each of a run of its own."""
    waits = []
    for i in range(count):
        run = start([action("A")], {"n": i}, name=f"{name}{i}")
        record = StepRun.objects.create(run=run, step=run.workflow.steps.get(), attempt=1)
        waits.append(
            RunWait.objects.create(
                run=run, step_run=record, kind="event", created_at=timezone.now(), **fields
            )
        )
    return waits


@pytest.mark.parametrize("update", [bulk.update_each, bulk.with_case])
def test_update_each__gives_each_row_its_values_where_the_condition_holds(update):
    rows = _waits("W", 3)
    first, second, third = rows
    RunWait.objects.filter(pk=third.pk).update(status="cancelled")
    items = [OutboxItem.objects.create(connector_key="_resume", trace_id="t") for _ in rows]
    now = timezone.now()
    changed = update(
        RunWait,
        {
            w.pk: [{"type": "x", "payload": {"n": n, "s": "it's"}}, items[n].pk]
            for n, w in enumerate(rows)
        },
        ["event", "resolved_by"],
        same={"status": "matched", "resolved_at": now},
        only_if={"status": "waiting"},
    )
    assert changed == 2
    for n, wait in enumerate([first, second]):
        wait.refresh_from_db()
        assert (wait.status, wait.resolved_by_id, wait.resolved_at) == ("matched", items[n].pk, now)
        assert wait.event == {"type": "x", "payload": {"n": n, "s": "it's"}}
    third.refresh_from_db()
    assert (third.status, third.resolved_by_id, third.event) == ("cancelled", None, None)


def test_update_each__no_rows_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert bulk.update_each(RunWait, {}, ["event"], same={"status": "matched"}) == 0


@pytest.mark.parametrize("update", [bulk.update_each, bulk.with_case])
def test_update_each__changes_only_rows_that_have_their_own_condition_values(update):
    runs = [start([action("A")], {"n": i}, name=f"C{i}") for i in range(3)]
    old = [OutboxItem.objects.create(connector_key="_resume", trace_id="t") for _ in runs]
    new = [OutboxItem.objects.create(connector_key="_resume", trace_id="t") for _ in runs]
    waits = []
    for run, timer in zip(runs, old, strict=True):
        record = StepRun.objects.create(run=run, step=run.workflow.steps.get(), attempt=1)
        waits.append(
            RunWait.objects.create(
                run=run, step_run=record, kind="event", timer=timer, created_at=timezone.now()
            )
        )
    RunWait.objects.filter(pk=waits[1].pk).update(timer=new[1])  # moved meanwhile
    changed = update(
        RunWait,
        {w.pk: [new[n].pk, old[n].pk] for n, w in enumerate(waits)},
        ["timer"],
        same={},
        only_if={"status": "waiting"},
        only_if_each=["timer"],
    )
    assert changed == 2
    assert [RunWait.objects.get(pk=w.pk).timer_id for w in waits] == [t.pk for t in new]
    RunWait.objects.filter(pk=waits[2].pk).update(timer=old[2])
    assert update(
        RunWait,
        {waits[2].pk: [new[2].pk, new[2].pk]},
        ["timer"],
        same={},
        only_if={"status": "waiting"},
        only_if_each=["timer"],
    ) == 0  # fmt: skip
    assert RunWait.objects.get(pk=waits[2].pk).timer_id == old[2].pk


def test_update_each__rows_beyond_the_parameter_limit_take_more_statements(monkeypatch):
    """Each statement carries what the backend's parameter limit allows, ``same`` and
    ``only_if`` included; the count returned is the sum of the statements'."""
    waits = _waits("L", 5)
    RunWait.objects.filter(pk=waits[4].pk).update(status="cancelled")  # in the last chunk
    items = [OutboxItem.objects.create(connector_key="_resume", trace_id="t") for _ in waits]
    # 3 parameters per row (pk, event, resolved_by) and 3 more (2 of same, 1 of only_if).
    monkeypatch.setattr(connection.features, "max_query_params", 9)  # 2 rows a statement
    now = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        changed = bulk.update_each(
            RunWait,
            {w.pk: [{"n": n}, items[n].pk] for n, w in enumerate(waits)},
            ["event", "resolved_by"],
            same={"status": "matched", "resolved_at": now},
            only_if={"status": "waiting"},
        )
    assert len(captured.captured_queries) == 3
    assert changed == 4
    stored = RunWait.objects.order_by("pk").values_list("status", "event", "resolved_by_id")
    assert list(stored) == [
        *(("matched", {"n": n}, items[n].pk) for n in range(4)),
        ("cancelled", None, None),
    ]


@pytest.mark.parametrize("update", [bulk.update_each, bulk.with_case])
def test_update_each__nulls_in_json_and_timestamp_columns_are_sql_nulls(update):
    """Every value of a column NULL: PostgreSQL types such a ``VALUES`` column, or a
    ``CASE`` whose every branch is NULL, ``text``, which a ``jsonb`` or ``timestamptz``
    column does not take; the ``VALUES`` form casts, the ``Case`` form sets NULL."""
    waits = _waits("N", 3, event={"old": True}, resolved_at=timezone.now())
    changed = update(
        RunWait, {w.pk: [None, None] for w in waits}, ["event", "resolved_at"], same={}, only_if={}
    )
    assert changed == 3
    assert RunWait.objects.filter(event__isnull=True, resolved_at__isnull=True).count() == 3


@pytest.mark.parametrize("update", [bulk.update_each, bulk.with_case])
def test_update_each__a_column_with_some_nulls_gives_each_row_its_value(update):
    waits = _waits("M", 2, event={"old": True}, resolved_at=timezone.now())
    now = timezone.now()
    changed = update(
        RunWait,
        {waits[0].pk: [None, now], waits[1].pk: [{"new": 1}, None]},
        ["event", "resolved_at"],
        same={},
        only_if={},
    )
    assert changed == 2
    stored = RunWait.objects.order_by("pk").values_list("event", "resolved_at")
    assert list(stored) == [(None, now), ({"new": 1}, None)]
