"""``automate.emit``: an outbox row in the caller's transaction, processing on commit."""

from __future__ import annotations

import datetime
import math
import threading

import pytest
from django.db import close_old_connections, connections, transaction

from automate import emit, signals
from automate.models import ConnectionProfile, RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = pytest.mark.django_db(transaction=True)


def order_workflow(name: str = "Paid orders", events=("order.*",)):
    return WorkflowService().create_workflow(
        name=name,
        trigger={"connector": "app", "events": list(events)},
        steps=[
            {
                "name": "Echo",
                "type": "connector_action",
                "config": {
                    "profile": "recorder",
                    "action": "echo",
                    "input": {"order": "{{ event.payload.order_id }}", "type": "{{ event.type }}"},
                },
            }
        ],
    )


@pytest.fixture
def accepted():
    """The ``event_accepted`` signals sent, as (sender, item pk)."""
    sent: list[tuple[str, int]] = []

    def receiver(sender, item, **kwargs):
        sent.append((sender, item.pk))

    signals.event_accepted.connect(receiver, dispatch_uid="test_emit.accepted")
    yield sent
    signals.event_accepted.disconnect(dispatch_uid="test_emit.accepted")


def test_emit__commit_starts_the_matching_workflow(drain, recorder_calls, accepted):
    order_workflow()
    assert not ConnectionProfile.objects.filter(key="app").exists()  # a source needs none
    with transaction.atomic():
        item = emit("order.paid", {"order_id": 7})
        assert isinstance(item, OutboxItem)
        assert accepted == []  # not before the commit
    assert accepted == [("app", item.pk)]
    item.refresh_from_db()
    assert (item.connector_key, item.event_type, item.payload) == (
        "app",
        "order.paid",
        {"order_id": 7},
    )
    assert item.external_id is None
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == RunStatus.COMPLETED
    assert run.event["connector"] == "app"
    assert recorder_calls == [("echo", {"order": 7, "type": "order.paid"})]


def test_emit__workflows_see_the_source_emit_and_a_delivery_on_the_same_key_webhook(drain):
    order_workflow()
    emitted = emit("order.paid", {"order_id": 7})
    delivered = queue.enqueue(
        "app",
        event_type="order.paid",
        payload={"order_id": 8},
        headers={"content-type": "application/json"},
        trace_id="t",
    ).item
    drain()
    sources = dict(WorkflowRun.objects.values_list("outbox_item_id", "event__source"))
    assert sources == {emitted.pk: "emit", delivered.pk: "webhook"}


def test_emit__outside_a_transaction_the_row_is_committed_at_once(drain, accepted):
    order_workflow()
    item = emit("order.created", {"order_id": 1})
    assert accepted == [("app", item.pk)]
    drain()
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED


def test_emit__rollback_leaves_no_row_and_no_run(drain, accepted):
    order_workflow()

    def save_order() -> None:
        with transaction.atomic():
            emit("order.paid", {"order_id": 7})
            raise RuntimeError("the order could not be saved")

    with pytest.raises(RuntimeError):
        save_order()
    assert not OutboxItem.objects.exists()
    drain()
    assert not WorkflowRun.objects.exists()
    assert accepted == []


def test_emit__other_sources_and_types_start_only_their_workflows(drain):
    order_workflow()
    emit("invoice.paid", {"order_id": 1})  # no workflow for this type
    emit("order.paid", {"order_id": 2}, source="billing")  # another source
    drain()
    assert not WorkflowRun.objects.exists()
    assert OutboxItem.objects.filter(status="done").count() == 2


def test_emit__same_key_returns_the_first_row_and_starts_nothing(drain, accepted):
    order_workflow()
    with transaction.atomic():
        first = emit("order.paid", {"order_id": 7}, key="order-7-paid")
        again = emit("order.paid", {"order_id": 8}, key="order-7-paid")
        # The duplicate's failed INSERT ran in a savepoint: this transaction goes on.
        later = emit("order.paid", {"order_id": 9}, key="order-9-paid")
    assert again.pk == first.pk and again.payload == {"order_id": 7}
    assert accepted == [("app", first.pk), ("app", later.pk)]
    third = emit("order.paid", {"order_id": 7}, key="order-7-paid")  # in a later transaction
    assert third.pk == first.pk
    assert OutboxItem.objects.count() == 2
    drain()
    assert WorkflowRun.objects.count() == 2


def test_emit__a_key_is_per_source(accepted):
    a = emit("order.paid", {"n": 1}, key="k1")
    b = emit("order.paid", {"n": 1}, key="k1", source="billing")
    assert a.pk != b.pk


def _emit_in_thread(key, results, *, hold=None, rollback=False, started=None):
    try:
        with transaction.atomic():
            item = emit("order.paid", {"thread": threading.current_thread().name}, key=key)
            if started is not None:
                started.set()
            if hold is not None:
                hold.wait(10)
            # The caller's transaction is still usable after a duplicate.
            ConnectionProfile.objects.create(
                key=f"p-{threading.current_thread().name}", connector_key="recorder"
            )
            if rollback:
                raise RuntimeError("rolled back")
            results[threading.current_thread().name] = item.pk
    except RuntimeError:
        results[threading.current_thread().name] = None
    finally:
        connections.close_all()


def _race(*, rollback: bool = False):
    """Thread A emits key "k" and keeps its transaction open until ``hold`` is set; thread B
    emits the same key meanwhile. Returns the results by thread name, A, B and ``hold``."""
    results: dict[str, int | None] = {}
    started, hold = threading.Event(), threading.Event()
    a = threading.Thread(
        target=_emit_in_thread,
        args=("k",),
        name="a",
        kwargs={"results": results, "hold": hold, "started": started, "rollback": rollback},
    )
    b = threading.Thread(target=_emit_in_thread, args=("k",), name="b", kwargs={"results": results})
    a.start()
    assert started.wait(10)
    b.start()
    return results, a, b, hold


def test_emit__concurrent_same_key_makes_one_row(postgres, accepted):
    """B's INSERT waits on A's uncommitted row, then finds it once A commits."""
    results, a, b, hold = _race()
    b.join(0.5)
    assert b.is_alive()  # blocked on the unique index until A ends
    hold.set()
    a.join(10)
    b.join(10)
    close_old_connections()
    assert results["a"] == results["b"] is not None
    assert OutboxItem.objects.count() == 1
    assert ConnectionProfile.objects.filter(key__in=["p-a", "p-b"]).count() == 2
    assert accepted == [("app", results["a"])]


def test_emit__concurrent_same_key_after_a_rollback_makes_the_second_row(postgres, accepted):
    results, a, b, hold = _race(rollback=True)
    hold.set()
    a.join(10)
    b.join(10)
    close_old_connections()
    assert results["a"] is None
    assert OutboxItem.objects.get().pk == results["b"]
    assert accepted == [("app", results["b"])]


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"order": {"at": datetime.date(2026, 1, 1)}}, TypeError, "payload['order']['at']: date"),
        ({"lines": [1, {"x": {1, 2}}]}, TypeError, "payload['lines'][1]['x']: set"),
        ({"a": {1: "x"}}, TypeError, "payload['a']: key 1 is not a string"),
        ({"price": math.nan}, ValueError, "payload['price']: nan is not a JSON number"),
        ({"price": math.inf}, ValueError, "payload['price']: inf"),
        ([1, 2], TypeError, "payload must be a dict, not list"),
        (None, TypeError, "payload must be a dict, not NoneType"),
    ],
)
def test_emit__payload_must_be_json(payload, error, message):
    with pytest.raises(error) as exc:
        emit("order.paid", payload)
    assert message in str(exc.value)
    assert not OutboxItem.objects.exists()


def test_emit__payload_depth_is_bounded(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "EMIT_MAX_DEPTH": 3}
    emit("ok", {"a": {"b": 1}})  # depth 2
    emit("ok", {"a": {"b": [1]}})  # depth 3
    with pytest.raises(
        ValueError, match=r"payload\['a'\]\['b'\]\[0\]: nested deeper than .*EMIT_MAX_DEPTH.* \(3\)"
    ):
        emit("deep", {"a": {"b": [[1]]}})
    loop: dict = {}
    loop["self"] = loop  # a cycle meets the depth limit, not a RecursionError
    with pytest.raises(ValueError, match="nested deeper"):
        emit("cycle", loop)
    assert set(OutboxItem.objects.values_list("event_type", flat=True)) == {"ok"}


def test_emit__payload_size_is_bounded(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "EMIT_MAX_PAYLOAD_BYTES": 100}
    emit("ok", {"text": "x" * 80})
    with pytest.raises(
        ValueError,
        match=r"payload is 1\d\d bytes of JSON, more than .*EMIT_MAX_PAYLOAD_BYTES.* \(100\)",
    ):
        emit("big", {"text": "é" * 60})  # 120 bytes of UTF-8
    assert OutboxItem.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((7, {}), {}, TypeError, "event_type must be a string"),
        (("", {}), {}, ValueError, "event_type must be 1 to 200"),
        (("x" * 201, {}), {}, ValueError, "event_type must be 1 to 200"),
        (("a", {}), {"source": "_schedule"}, ValueError, "must look like a connection key"),
        (("a", {}), {"source": "App"}, ValueError, "must look like a connection key"),
        (("a", {}), {"source": None}, TypeError, "source must be a string"),
        (("a", {}), {"key": 5}, TypeError, "key must be a string or None"),
        (("a", {}), {"key": ""}, ValueError, "key must be 1 to 255"),
    ],
)
def test_emit__bad_arguments(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        emit(*args, **kwargs)
    assert not OutboxItem.objects.exists()


def test_emit__importable_from_the_package():
    import automate
    from automate.events import emit as long_emit

    assert automate.emit is long_emit is emit
    assert "emit" in automate.__all__
