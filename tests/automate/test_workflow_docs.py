"""docs/workflows.md's trigger examples run as written.

The ``emit`` section's blocks define real models (``Order`` with ``save()``, ``Invoice``
with a ``post_save`` receiver): they are executed once as a module of the test app, their
tables are created for each test, and the page's promises are checked in the database:
one event per paid order, one per committed invoice, none for a rolled-back one.
"""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from automate.models import RunStatus, Schedule, WorkflowRun
from automate_core.models import OutboxItem

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks(section: str) -> list[str]:
    """The Python blocks of the ``### <section>`` part of the page."""
    for part in re.split(r"^### ", DOC.read_text(), flags=re.MULTILINE)[1:]:
        title, _, text = part.partition("\n")
        if title.strip() == section:
            return BLOCK_RE.findall(text.split("\n## ")[0])
    raise AssertionError(f"no section {section!r} in {DOC}")


_models: dict[str, Any] = {}


def doc_module() -> dict[str, Any]:
    """The model blocks, executed once as ``tests.testapp.workflow_docs`` (models register
    with the app registry, which must happen once per process)."""
    if not _models:
        namespace: dict[str, Any] = {"__name__": "tests.testapp.workflow_docs"}
        _, order_block, invoice_block, _ = blocks("From your own code: `emit`")
        exec(order_block, namespace)
        exec(invoice_block, namespace)
        _models.update(namespace)
    return _models


@pytest.fixture
def page(transactional_db):
    namespace = doc_module()
    models = [namespace["Order"], namespace["Invoice"]]
    with connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)
    yield dict(namespace)
    with connection.schema_editor() as editor:
        for model in models:
            editor.delete_model(model)


def test_docs__emit_sections_have_the_four_blocks():
    emit_blocks = blocks("From your own code: `emit`")
    assert len(emit_blocks) == 4
    assert "def save(self" in emit_blocks[1]
    assert "@receiver(post_save" in emit_blocks[2]


def test_docs__emit_example_runs_as_written(page, drain):
    [first, _, _, usage] = blocks("From your own code: `emit`")
    exec(first, dict(page))
    assert OutboxItem.objects.get(external_id="order-42-paid").event_type == "order.paid"
    exec(usage, page)
    events = list(OutboxItem.objects.order_by("id").values_list("event_type", "payload"))
    assert events == [
        ("order.paid", {"order_id": 42, "total": "129.90"}),
        ("order.paid", {"order_id": page["order"].pk, "total": "250.00"}),
        ("invoice.created", {"number": "A-1"}),
    ]
    assert list(page["Invoice"].objects.values_list("number", flat=True)) == ["A-1"]
    drain()
    runs = {
        (run.workflow.name, run.event["payload"].get("order_id"), run.status)
        for run in WorkflowRun.objects.select_related("workflow")
    }
    assert runs == {
        ("Big paid orders", 42, RunStatus.COMPLETED),
        ("Big paid orders", page["order"].pk, RunStatus.COMPLETED),
        ("New invoices", None, RunStatus.COMPLETED),
    }


def test_docs__save_emits_once_and_a_rolled_back_save_leaves_no_row_and_no_run(page, drain):
    Order = page["Order"]
    order = Order.objects.create(total="20.00")
    assert not OutboxItem.objects.exists()  # not paid yet
    order.status = "paid"
    order.save()
    order.save()  # already paid: no second event
    assert OutboxItem.objects.count() == 1

    def pay_then_fail() -> None:
        with transaction.atomic():
            other = Order.objects.create(total="30.00")
            other.status = "paid"
            other.save()
            raise RuntimeError("the payment was refused")

    with pytest.raises(RuntimeError):
        pay_then_fail()
    assert Order.objects.count() == 1
    assert OutboxItem.objects.count() == 1
    drain()
    assert not WorkflowRun.objects.exists()  # no workflow subscribed here; no run at all


def test_docs__a_rolled_back_post_save_leaves_no_row_and_no_run(page, drain):
    from automate.services import WorkflowService

    WorkflowService().create_workflow(
        name="Invoices",
        trigger={"connector": "app", "events": ["invoice.*"]},
        steps=[{"name": "Go", "type": "filter", "config": {"condition": "{{ true }}"}}],
    )

    def create_then_fail() -> None:
        with transaction.atomic():
            page["Invoice"].objects.create(number="B-1")
            assert OutboxItem.objects.count() == 1  # written, not committed
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert not page["Invoice"].objects.exists()
    assert not OutboxItem.objects.exists()
    drain()
    assert not WorkflowRun.objects.exists()


@pytest.mark.django_db
def test_docs__schedule_example_runs_as_written():
    [example] = blocks("Schedules")
    exec(example, {"__name__": "docs_example"})
    weekday = Schedule.objects.get(workflow__name="Weekday sync")
    assert (weekday.cron, weekday.timezone, weekday.catch_up) == (
        "0 9 * * 1-5",
        "Europe/Paris",
        "latest",
    )
    paris = weekday.spec().local(weekday.next_tick_at)
    assert (paris.hour, paris.minute) == (9, 0) and paris.isoweekday() <= 5
    heartbeat = Schedule.objects.get(workflow__name="Heartbeat")
    assert (heartbeat.every_seconds, heartbeat.catch_up) == (30, "none")
    assert heartbeat.next_tick_at.astimezone(UTC).second in (0, 30)
