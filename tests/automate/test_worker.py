"""The embedded worker and the management commands around it."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from automate import dispatch, receivers
from automate.models import RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate.worker import EmbeddedWorker
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.testapp import engine_connectors


def threads() -> int:
    """SQLite's shared in-memory test database locks whole tables: one thread there."""
    return 2 if connection.vendor == "postgresql" else 1


def action(name, act, input_data):
    return {
        "name": name,
        "type": "connector_action",
        "config": {"profile": "recorder", "action": act, "input": input_data},
    }


@pytest.mark.django_db(transaction=True)
def test_worker__command_once_drains_with_threads_and_exits(recorder_calls):
    wf = WorkflowService().create_workflow(
        name="Many", steps=[action("E", "echo", {"n": "{{ event.payload.n }}"})]
    )
    for n in range(6):
        WorkflowService().run_workflow(wf, {"n": n})
    out = io.StringIO()
    call_command(
        "automate_worker", "--once", "--threads", str(threads()), "--batch", "2", stdout=out
    )
    assert "automate worker stopped (done: 6)" in out.getvalue()
    assert sorted(i["n"] for _, i in recorder_calls) == list(range(6))
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"done"}
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}


def _expired_lease() -> OutboxItem:
    """An item leased by a worker that died: its lease ran out a minute ago."""
    (item,) = queue.claim(1, worker="crashed")
    OutboxItem.objects.filter(pk=item.pk).update(
        lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    return item


@pytest.mark.django_db(transaction=True)
def test_worker__reclaims_on_its_first_pass_then_once_per_reclaim_seconds(
    recorder_calls, monkeypatch
):
    wf = WorkflowService().create_workflow(
        name="Reclaimed", steps=[action("E", "echo", {"n": "{{ event.payload.n }}"})]
    )
    WorkflowService().run_workflow(wf, {"n": 0})
    crashed = _expired_lease()
    for n in range(1, 4):
        WorkflowService().run_workflow(wf, {"n": n})
    passes: list[bool] = []
    claim = dispatch.claim

    def spy(*args, reclaim=True, **kwargs):
        passes.append(reclaim)
        return claim(*args, reclaim=reclaim, **kwargs)

    monkeypatch.setattr(dispatch, "claim", spy)
    monkeypatch.setattr(dispatch, "RECLAIM_SECONDS", 3600.0)  # no second look in this run
    EmbeddedWorker(threads=1, batch=1).run(once=True)
    # The first pass took the crashed worker's item back, and the run processed it too;
    # the batches after it did not look again (five statements each, before).
    assert passes == [True, False, False, False, False]
    assert sorted(i["n"] for _, i in recorder_calls) == [0, 1, 2, 3]
    assert OutboxItem.objects.get(pk=crashed.pk).status == "done"

    # The interval decides, not the first pass alone: at 0 every pass looks.
    monkeypatch.setattr(dispatch, "RECLAIM_SECONDS", 0.0)
    passes.clear()
    for n in range(4, 6):
        WorkflowService().run_workflow(wf, {"n": n})
    EmbeddedWorker(threads=1, batch=1).run(once=True)
    assert passes == [True, True, True]


@pytest.mark.django_db
def test_worker__once_with_nothing_to_do():
    out = io.StringIO()
    call_command("automate_worker", "--once", "--threads", "1", stdout=out)
    assert "nothing to do" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_worker__stop_finishes_the_current_step_then_releases(recorder_calls, monkeypatch):
    started, proceed = threading.Event(), threading.Event()
    original = engine_connectors.RecorderConnector.execute_action

    def gated(self, action_name, input_data):
        if action_name == "slow":
            started.set()
            assert proceed.wait(10)
        return original(self, action_name, input_data)

    monkeypatch.setattr(engine_connectors.RecorderConnector, "execute_action", gated)
    wf = WorkflowService().create_workflow(
        name="Two", steps=[action("Slow", "slow", {"seconds": 0}), action("After", "echo", {})]
    )
    run = WorkflowService().run_workflow(wf, {})
    worker = EmbeddedWorker(threads=threads(), poll_seconds=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    worker.stop()  # what SIGTERM does: the step in flight still finishes
    proceed.set()
    thread.join(10)
    assert not thread.is_alive()
    run.refresh_from_db()
    assert list(StepRun.objects.filter(run=run).values_list("step__name", "status")) == [
        ("Slow", "succeeded")
    ]
    item = OutboxItem.objects.get()
    assert item.status == "pending"
    assert item.attempts == 0  # released, not counted as a failure
    # The next worker resumes after the finished step.
    monkeypatch.setattr(engine_connectors.RecorderConnector, "execute_action", original)
    assert EmbeddedWorker(threads=1).run(once=True) == {"done": 1}
    assert [a for a, _ in recorder_calls] == ["slow", "echo"]


@pytest.mark.django_db(transaction=True)
def test_worker__event_accepted_wakes_a_waiting_worker(postgres):
    # PostgreSQL only: this test reads while the worker thread writes, which SQLite's
    # shared in-memory test database answers with "table is locked".
    wf = WorkflowService().create_workflow(name="Wake", steps=[action("E", "echo", {})])
    worker = EmbeddedWorker(threads=threads(), poll_seconds=3600)  # would never poll again
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        WorkflowService().run_workflow(wf, {})  # on commit: event_accepted -> wake
        for _ in range(200):
            if OutboxItem.objects.filter(status="done").exists():
                break
            threading.Event().wait(0.05)
        assert OutboxItem.objects.get().status == "done"
    finally:
        worker.stop()
        thread.join(10)


def test_worker__signal_handler_never_raises(monkeypatch):
    from automate import worker as worker_module

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(worker_module, "wake", broken)
    receivers.start_processing(sender="x", item=None)  # logged, not raised


@pytest.mark.django_db
def test_replay__needs_ids_and_skips_items_that_are_not_dead(recorder_calls):
    with pytest.raises(CommandError, match="name outbox item ids"):
        call_command("automate_replay")
    with pytest.raises(CommandError, match="no workflow run with id 999"):
        call_command("automate_replay", "--run", "999")
    item = queue.enqueue("my_service", payload={}, trace_id="t").item
    err = io.StringIO()
    call_command("automate_replay", str(item.pk), stdout=io.StringIO(), stderr=err)
    assert "not found or not dead/failed" in err.getvalue()
    item.refresh_from_db()
    assert item.status == "pending"


@pytest.mark.django_db
def test_replay__all_dead_items(drain):
    wf = WorkflowService().create_workflow(
        name="Dead", steps=[action("F", "fail", {"code": "invalid_argument"})]
    )
    for _ in range(2):
        WorkflowService().run_workflow(wf, {})
    assert drain() == {"dead": 2}
    out = io.StringIO()
    call_command("automate_replay", "--all", stdout=out)
    assert "replayed 2 item(s)" in out.getvalue()
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.PENDING}


@pytest.mark.django_db(transaction=True)
def test_worker__database_error_does_not_kill_the_thread(monkeypatch, caplog):
    from django.db import OperationalError

    worker = EmbeddedWorker(threads=1, poll_seconds=0)
    calls = []

    def claim(batch=None, *, worker="", reclaim=True):
        calls.append(batch)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        worker_ref.stop()
        return []

    worker_ref = worker
    monkeypatch.setattr(dispatch, "claim", claim)
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert len(calls) == 2  # it went on after the error
    assert "database error" in caplog.text
