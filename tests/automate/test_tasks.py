"""Celery tasks and the Celery-mode dispatcher (in this process; the real worker process
is in tests/integration and tests/reliability)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from automate import dispatch
from automate.models import RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate.tasks import dispatch_batch, process_items, prune
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = pytest.mark.django_db

STEP = {
    "name": "E",
    "type": "connector_action",
    "config": {"profile": "recorder", "action": "echo"},
}


def make_items(n: int) -> list[OutboxItem]:
    wf = WorkflowService().create_workflow(name=f"W{uuid.uuid4().hex[:6]}", steps=[STEP])
    return [WorkflowService().run_workflow(wf, {"n": i}).outbox_item for i in range(n)]


def test_process_items__runs_its_leases_and_skips_stale_ones(recorder_calls):
    make_items(2)
    first, second = queue.claim(2)
    stale = [second.pk, "not-the-token"]
    assert process_items([[first.pk, first.lease_token], stale]) == {"done": 1, "skipped": 1}
    # Redelivered (acks_late) after it already ran: nothing runs twice.
    assert process_items([[first.pk, first.lease_token]]) == {"skipped": 1}
    assert len(recorder_calls) == 1
    assert OutboxItem.objects.get(pk=second.pk).status == "leased"


def test_dispatch_batch__claims_and_processes(recorder_calls):
    make_items(3)
    assert dispatch_batch(2) == {"done": 2}
    assert dispatch_batch() == {"done": 1}
    assert dispatch_batch() == {}
    assert len(recorder_calls) == 3


def test_dispatch_batch__reclaims_expired_leases_at_most_every_reclaim_seconds(
    recorder_calls, monkeypatch
):
    """One task is sent per accepted event: a worker process's tasks return expired leases
    (and sweep dead runs) at their first call, then at most once per RECLAIM_SECONDS."""
    from automate import tasks

    make_items(2)
    queue.claim(1)  # a crashed worker's lease ...
    OutboxItem.objects.filter(status="leased").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    monkeypatch.setattr(tasks._reclaims, "next", 0.0)
    reclaims = []
    claim = dispatch.claim

    def spy(*args, **kwargs):
        reclaims.append(kwargs["reclaim"])
        return claim(*args, **kwargs)

    monkeypatch.setattr(dispatch, "claim", spy)
    # ... is taken back by the first task and run with the other event.
    called_at = time.monotonic()
    assert dispatch_batch() == {"done": 2}
    assert tasks._reclaims.next >= called_at + dispatch.RECLAIM_SECONDS  # its next look
    # (Put further away than the time this test takes on the slowest machine.)
    monkeypatch.setattr(tasks._reclaims, "next", time.monotonic() + 60)
    make_items(1)
    queue.claim(1)
    OutboxItem.objects.filter(status="leased").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # Until then the next task leaves the expired lease alone ...
    assert dispatch_batch() == {}
    assert OutboxItem.objects.filter(status="leased").count() == 1
    # ... and the first task after it takes it back.
    monkeypatch.setattr(tasks._reclaims, "next", time.monotonic())
    assert dispatch_batch() == {"done": 1}
    assert reclaims == [True, False, True]
    assert len(recorder_calls) == 3


#: A broker that is down fails the send at once (no retries), as the dispatcher must see.
NO_RETRIES = {
    "task_publish_retry": False,
    "broker_connection_retry": False,
    "broker_connection_max_retries": 0,
    "broker_transport_options": {"max_retries": 0, "socket_connect_timeout": 0.5},
}


def test_dispatch_to_celery__broker_down_releases_the_items(
    celery_broker, caplog, django_capture_on_commit_callbacks
):
    celery_broker("redis://127.0.0.1:1/0", **NO_RETRIES)  # nothing listens there
    make_items(2)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(5) == 2  # claimed; sending fails on commit
    assert set(OutboxItem.objects.values_list("status", "attempts")) == {("pending", 0)}
    assert "could not send 2 outbox items to Celery" in caplog.text


def test_dispatch_to_celery__stops_at_max_in_flight(
    celery_queue, settings, django_capture_on_commit_callbacks
):
    settings.AUTOMATE = {**settings.AUTOMATE, "DISPATCH_MAX_IN_FLIGHT": 3}
    make_items(5)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(2) == 2
        assert dispatch.dispatch_to_celery(2) == 1
        assert dispatch.dispatch_to_celery(2) == 0
    assert OutboxItem.objects.filter(status="leased").count() == 3
    with current_app.connection_for_write() as conn:
        assert conn.default_channel.client.llen(celery_queue) == 2  # two batch tasks


def test_dispatch_to_celery__sends_a_short_argsrepr_not_the_leases(
    celery_queue, django_capture_on_commit_callbacks
):
    """The message's ``argsrepr`` header (logs, monitors) names the batch; Celery's own
    repr of every lease would cost the dispatcher CPU per send."""
    import json

    make_items(3)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(5) == 3
    with current_app.connection_for_write() as conn:
        [raw] = conn.default_channel.client.lrange(celery_queue, 0, -1)
    message = json.loads(raw)
    first, *_, last = OutboxItem.objects.order_by("id").values_list("id", flat=True)
    assert message["headers"]["argsrepr"] == f"[3 leases, ids {first}..{last}]"
    assert message["headers"]["task"] == dispatch.PROCESS_ITEMS_TASK


def test_dispatch_to_celery__waits_for_a_batch_to_finish_at_max_batches_in_flight(
    celery_queue, settings, django_capture_on_commit_callbacks
):
    """At the batch limit nothing more is claimed; the events waiting meanwhile then leave
    in one full batch instead of one small batch per poll."""
    settings.AUTOMATE = {**settings.AUTOMATE, "DISPATCH_MAX_BATCHES_IN_FLIGHT": 2}
    make_items(7)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(1) == 1
        assert dispatch.dispatch_to_celery(1) == 1
        assert dispatch.dispatch_to_celery(5) == 0  # two batches leased: wait
    [first, _] = OutboxItem.objects.filter(status="leased").order_by("id")
    assert queue.complete(first)  # a worker finished one batch
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(5) == 5
    with current_app.connection_for_write() as conn:
        assert conn.default_channel.client.llen(celery_queue) == 3  # tasks of 1, 1 and 5


def test_dispatch_to_celery__reclaims_expired_leases_at_most_every_reclaim_seconds(
    celery_queue, monkeypatch, django_capture_on_commit_callbacks
):
    make_items(2)
    past = timezone.now() - timedelta(seconds=1)
    monkeypatch.setattr(dispatch._dispatcher_reclaims, "next", 0.0)
    with django_capture_on_commit_callbacks(execute=True):
        called_at = time.monotonic()
        assert dispatch.dispatch_to_celery(1) == 1  # this poll reclaimed (none expired)
        schedule = dispatch._dispatcher_reclaims
        assert schedule.next >= called_at + dispatch.RECLAIM_SECONDS  # its next look
        # (Put further away than the time this test takes on the slowest machine.)
        monkeypatch.setattr(schedule, "next", time.monotonic() + 60)
        OutboxItem.objects.filter(status="leased").update(lease_expires_at=past)
        # Until then the next poll leaves the expired lease alone ...
        assert dispatch.dispatch_to_celery(5) == 1
        assert OutboxItem.objects.filter(status="leased").count() == 2
        # ... and the first poll after it returns the lease to the queue and claims it.
        monkeypatch.setattr(dispatch._dispatcher_reclaims, "next", time.monotonic())
        OutboxItem.objects.filter(status="leased").update(lease_expires_at=past)
        assert dispatch.dispatch_to_celery(5) == 2
    assert set(OutboxItem.objects.values_list("status", "attempts")) == {("leased", 2)}


def test_dispatch_to_celery__at_the_limit_still_reclaims_crashed_leases(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.AUTOMATE = {**settings.AUTOMATE, "DISPATCH_MAX_BATCHES_IN_FLIGHT": 1}
    make_items(1)
    queue.claim(1)
    OutboxItem.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    WorkflowRun.objects.update(status=RunStatus.RUNNING)
    OutboxItem.objects.update(attempts=99)  # out of attempts: dead, and its run with it
    monkeypatch.setattr(dispatch._dispatcher_reclaims, "next", 0.0)
    assert dispatch.dispatch_to_celery(5) == 0
    assert OutboxItem.objects.get().status == "dead"
    assert WorkflowRun.objects.get().status == RunStatus.DEAD


def test_tasks__keep_the_names_queued_messages_carry():
    assert process_items.name == dispatch.PROCESS_ITEMS_TASK == "automate.process_items"
    assert dispatch_batch.name == dispatch.DISPATCH_TASK == "automate.dispatch"


def test_dispatch_to_celery__sends_the_task_automate_tasks_registered(
    celery_broker, recorder_calls, django_capture_on_commit_callbacks
):
    """Sent by name, the batch still goes through ``process_items`` itself: in eager mode
    it runs here (a plain ``send_task`` would ignore eager mode and only queue it)."""
    celery_broker("memory://", task_always_eager=True)
    make_items(2)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch_to_celery(5) == 2
    assert set(OutboxItem.objects.values_list("status", flat=True)) == {"done"}
    assert len(recorder_calls) == 2


def test_sweep__runs_of_items_the_outbox_killed_are_dead():
    [item] = make_items(1)
    WorkflowRun.objects.update(status=RunStatus.RUNNING)
    OutboxItem.objects.filter(pk=item.pk).update(status="dead")
    assert dispatch.sweep_dead_runs() == 1
    run = WorkflowRun.objects.get()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "exhausted"


def test_execution_mode__auto_follows_the_broker_setting(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.CELERY_BROKER_URL = None
    assert dispatch.execution_mode() == "embedded"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    assert dispatch.execution_mode() == "celery"
    settings.AUTOMATE = {**settings.AUTOMATE, "EXECUTION": "embedded"}
    assert dispatch.execution_mode() == "embedded"
    settings.AUTOMATE = {**settings.AUTOMATE, "EXECUTION": "sometimes"}
    with pytest.raises(ImproperlyConfigured, match="EXECUTION"):
        dispatch.execution_mode()


def test_dispatch_to_celery__a_poll_is_one_statement_on_postgres(
    postgres, celery_queue, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The claim counts what is leased in its own statement: a poll with room to claim and
    a poll of a full pipeline each send one statement (no COUNT before the claim)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.AUTOMATE = {**settings.AUTOMATE, "DISPATCH_MAX_BATCHES_IN_FLIGHT": 2}
    make_items(4)
    monkeypatch.setattr(
        dispatch._dispatcher_reclaims, "next", time.monotonic() + 60
    )  # not these polls
    with django_capture_on_commit_callbacks(execute=True):
        # The first poll also looks for due schedule ticks and writes the heartbeat, which
        # later polls do only now and then.
        assert dispatch.dispatch_to_celery(1) == 1
        with CaptureQueriesContext(connection) as with_room:
            assert dispatch.dispatch_to_celery(2) == 2
        with CaptureQueriesContext(connection) as full:
            assert dispatch.dispatch_to_celery(2) == 0  # two batches leased: the limit
    assert len(with_room.captured_queries) == 1, [q["sql"] for q in with_room.captured_queries]
    assert len(full.captured_queries) == 1, [q["sql"] for q in full.captured_queries]
    assert OutboxItem.objects.filter(status="leased").count() == 3


def test_claim__in_flight_limits_count_items_and_batches_in_the_claim():
    """``in_flight`` on every backend: the items leased count against ``items``, the lease
    tokens against ``batches``; a negative room claims nothing."""
    make_items(6)
    assert len(queue.claim(2, in_flight=queue.InFlight(items=3, batches=5))) == 2
    assert len(queue.claim(5, in_flight=queue.InFlight(items=3, batches=5))) == 1
    assert queue.claim(5, in_flight=queue.InFlight(items=3, batches=5)) == []
    assert queue.claim(5, in_flight=queue.InFlight(items=1, batches=5)) == []  # 3 > 1
    assert queue.claim(5, in_flight=queue.InFlight(items=100, batches=2)) == []  # 2 batches
    assert len(queue.claim(5, in_flight=queue.InFlight(items=100, batches=3))) == 3
    assert OutboxItem.objects.filter(status="leased").count() == 6


def _needs_a_real_close() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        # SQLite's in-memory test database ignores close(): it would lose the database.
        pytest.skip("needs a connection that closes; `make test` runs this on PostgreSQL too")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "task", [lambda: process_items([]), dispatch_batch, lambda: prune(only=["ticks"])]
)
def test_tasks__close_a_connection_past_conn_max_age_as_a_request_would(task):
    """Each task is a Django request cycle for its connections: with Celery keeping them
    between tasks (CELERY_DB_REUSE_MAX), CONN_MAX_AGE still ends them."""
    from django.db import connection

    _needs_a_real_close()
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1  # the age CONN_MAX_AGE allows, passed
    task()
    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_process_items__replaces_a_connection_an_error_broke():
    """A connection a failed statement left unusable (the server ended it) is closed at the
    task's end, not handed to the next task."""
    from django.db import OperationalError, connection

    _needs_a_real_close()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute("SET idle_session_timeout = 1")  # the server ends it after 1 ms idle
    time.sleep(0.2)
    connection.close_at = None  # as CONN_MAX_AGE = None would: only errors close it
    with pytest.raises(OperationalError):
        process_items([[1, "token"]])
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


@pytest.mark.django_db(transaction=True)
def test_tasks__in_a_transaction_leave_the_callers_connection_alone(recorder_calls):
    """Called in process inside the caller's atomic block (eagerly, or from a test), a task
    does not close the connection the block runs on."""
    from django.db import connection, transaction

    make_items(1)
    with transaction.atomic():
        raw = connection.connection
        connection.close_at = time.monotonic() - 1
        assert dispatch_batch() == {"done": 1}
        assert connection.connection is raw
    assert len(recorder_calls) == 1


def test_example_project__celery_keeps_the_database_connection_between_tasks(postgres):
    """The example settings set CELERY_DB_REUSE_MAX: Celery's own Django fixup, set up as a
    worker sets it up from them, leaves the connection open around a task (without it, it
    closes every connection before and after each task: a new PostgreSQL connection per
    batch)."""
    import importlib

    from celery import Celery
    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    example = importlib.import_module("example_project.settings")
    app = Celery("example_project", set_as_current=False)
    app.config_from_object(example, namespace="CELERY")
    fixup = DjangoWorkerFixup(app)
    connection.ensure_connection()
    raw = connection.connection
    for _ in range(3):
        fixup.on_task_prerun(sender=process_items)
        fixup.on_task_postrun(sender=process_items)
    assert connection.connection is raw
