"""Firing schedule ticks: once per tick, catch-up modes, enable/disable, the worker's poll.

The clock is controlled: each test puts the schedule's ``next_tick_at`` where it wants
and calls ``fire_due(now=...)``.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate.models import RunStatus, Schedule, ScheduleTick, Workflow, WorkflowRun
from automate.schedules.fire import SCHEDULE_CONNECTOR_KEY, fire_due
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.flow.helpers import action

T0 = datetime(2027, 5, 3, 9, 0, tzinfo=UTC)  # a Monday, later than any real poll here


STEPS = [action("Echo", input_data={"at": "{{ event.payload.scheduled_for }}"})]


def scheduled(trigger, *, name: str = "Sync", at: datetime | None = T0, enabled: bool = True):
    workflow = WorkflowService().create_workflow(
        name=name, trigger=trigger, enabled=enabled, steps=STEPS
    )
    if at is not None and enabled:
        Schedule.objects.filter(workflow=workflow).update(next_tick_at=at)
    return workflow


def fired_ticks(workflow) -> list[str]:
    return [
        run.event["payload"]["scheduled_for"]
        for run in WorkflowRun.objects.filter(workflow=workflow).order_by("id")
    ]


def iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.django_db
def test_fire__one_run_per_tick_with_scheduled_for():
    wf = scheduled({"every": 60})
    assert fire_due(now=T0 - timedelta(seconds=1)) == 0
    assert fire_due(now=T0 + timedelta(seconds=1)) == 1
    assert fire_due(now=T0 + timedelta(seconds=1)) == 0  # the same poll again
    run = WorkflowRun.objects.get()
    assert run.workflow == wf and run.status == RunStatus.PENDING
    assert run.event["payload"] == {
        "scheduled_for": "2027-05-03T09:00:00+00:00",
        "trigger": {"every": 60, "catch_up": "latest"},
    }
    assert (run.event["connector"], run.event["type"]) == (SCHEDULE_CONNECTOR_KEY, "schedule")
    assert run.event["source"] == "schedule"
    tick = ScheduleTick.objects.get()
    assert (tick.scheduled_for, tick.outbox_item_id) == (T0, run.outbox_item_id)
    assert run.outbox_item.external_id == f"{wf.pk}:2027-05-03T09:00:00+00:00"
    schedule = Schedule.objects.get()
    assert schedule.next_tick_at == T0 + timedelta(minutes=1)
    assert schedule.last_tick_at == T0


@pytest.mark.django_db(transaction=True)
def test_fire__the_run_executes_like_any_other(drain, recorder_calls):
    scheduled({"schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}, at=T0 - timedelta(hours=2))
    assert fire_due(now=T0 - timedelta(hours=2)) == 1  # 09:00 in Paris (UTC+2 in May)
    drain()
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED
    assert recorder_calls == [("echo", {"at": "2027-05-03T09:00:00+02:00"})]
    # Next: Tuesday 09:00 Paris.
    assert Schedule.objects.get().next_tick_at == datetime(2027, 5, 4, 7, tzinfo=UTC)


@pytest.mark.django_db
def test_fire__a_new_schedule_is_due_at_its_next_tick():
    before = timezone.now()
    wf = scheduled({"every": 3600}, at=None)
    next_tick = Schedule.objects.get(workflow=wf).next_tick_at
    assert before < next_tick <= before + timedelta(hours=1)
    assert next_tick.minute == next_tick.second == 0


@pytest.mark.django_db
def test_fire__nothing_due_is_one_query(django_assert_num_queries):
    scheduled({"every": 60}, at=T0 + timedelta(hours=1))
    with django_assert_num_queries(1):
        assert fire_due(now=T0) == 0


LATE = {
    # now, relative to T0, for an hourly schedule due since T0 (T0 ... T0+5h are due)
    "on_time": timedelta(hours=5, seconds=10),
    "all_late": timedelta(hours=5, minutes=30),
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("catch_up", "late", "expected"),
    [
        ("latest", "on_time", [5]),
        ("latest", "all_late", [5]),  # one run for the latest missed tick
        ("none", "on_time", [5]),
        ("none", "all_late", []),  # missed ticks are skipped
        ("all", "on_time", [0, 1, 2, 3, 4, 5]),
        ("all", "all_late", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_fire__catch_up_modes(catch_up, late, expected):
    wf = scheduled({"every": 3600, "catch_up": catch_up})
    now = T0 + LATE[late]
    assert fire_due(now=now) == len(expected)
    assert fired_ticks(wf) == [iso(T0 + timedelta(hours=h)) for h in expected]
    assert Schedule.objects.get().next_tick_at == T0 + timedelta(hours=6)
    assert fire_due(now=now) == 0


@pytest.mark.django_db
def test_fire__on_time_ticks_all_fire_within_the_grace(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SCHEDULE_MISFIRE_GRACE_SECONDS": 5}
    wf = scheduled({"every": 1})
    # A poll 3 s late: the three ticks are on time, none is lost.
    assert fire_due(now=T0 + timedelta(seconds=2)) == 3
    # A poll 30 s late: only the latest tick (catch_up "latest").
    assert fire_due(now=T0 + timedelta(seconds=40)) == 6
    assert fired_ticks(wf)[-6:] == [iso(T0 + timedelta(seconds=s)) for s in range(35, 41)]


@pytest.mark.django_db
def test_fire__catch_up_all_is_bounded(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SCHEDULE_MAX_CATCH_UP": 3}
    wf = scheduled({"every": 1, "catch_up": "all"}, at=T0 - timedelta(days=365))
    assert fire_due(now=T0) == 3
    assert fired_ticks(wf) == [iso(T0 - timedelta(seconds=s)) for s in (2, 1, 0)]


@pytest.mark.django_db
def test_fire__a_tick_already_fired_elsewhere_is_not_fired_again():
    wf = scheduled({"every": 60})
    ScheduleTick.objects.create(workflow=wf, scheduled_for=T0)  # another process was first
    assert fire_due(now=T0 + timedelta(seconds=1)) == 0
    assert not WorkflowRun.objects.exists()
    assert Schedule.objects.get().next_tick_at == T0 + timedelta(minutes=1)


@pytest.mark.django_db
def test_fire__the_outbox_constraint_also_refuses_a_second_item_for_a_tick():
    wf = scheduled({"every": 60})
    external_id = f"{wf.pk}:{T0.isoformat()}"
    queue.enqueue(SCHEDULE_CONNECTOR_KEY, external_id=external_id, trace_id="t")
    assert fire_due(now=T0 + timedelta(seconds=1)) == 0
    assert not WorkflowRun.objects.exists()
    assert OutboxItem.objects.get().external_id == external_id


@pytest.mark.django_db
def test_fire__disabled_workflows_do_not_fire_and_do_not_catch_up():
    wf = scheduled({"every": 60})
    WorkflowService().disable(wf)
    assert Schedule.objects.get().next_tick_at is None
    assert fire_due(now=T0 + timedelta(days=1)) == 0
    WorkflowService().enable(wf)
    next_tick = Schedule.objects.get().next_tick_at
    assert next_tick > timezone.now() - timedelta(seconds=1)
    assert not WorkflowRun.objects.exists()
    # Created disabled: no due time either.
    scheduled({"every": 60}, name="Off", enabled=False)
    assert Schedule.objects.filter(next_tick_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_fire__a_bare_save_stops_and_restarts_the_schedule():
    """Project code that saves the workflow itself, not through WorkflowService."""
    wf = scheduled({"every": 60})
    wf.enabled = False
    wf.save()
    assert Schedule.objects.get().next_tick_at is None
    wf.enabled = True
    wf.save()
    next_tick = Schedule.objects.get().next_tick_at
    assert next_tick is not None and next_tick > timezone.now() - timedelta(seconds=1)
    assert fire_due(now=next_tick) == 1
    wf.name = "Renamed"
    wf.save()  # still enabled: the next tick stays
    assert Schedule.objects.get().next_tick_at > next_tick


@pytest.mark.django_db
def test_fire__a_bare_save_of_a_broken_schedule_saves_and_retries_it_later(caplog):
    wf = scheduled({"every": 60})
    wf.enabled = False
    wf.save()
    Schedule.objects.filter(workflow=wf).update(
        cron="0 9 * * *", every_seconds=None, timezone="Nowhere/Gone"
    )
    wf.enabled = True
    before = timezone.now()
    wf.save()  # does not raise: the schedule is the poll's to retry
    next_tick = Schedule.objects.get().next_tick_at
    assert before + timedelta(seconds=59) <= next_tick <= timezone.now() + timedelta(seconds=61)
    assert "has no next tick" in caplog.text


@pytest.mark.django_db
def test_update_workflow__replaces_or_removes_the_schedule():
    service = WorkflowService()
    wf = scheduled({"every": 60})
    service.update_workflow(wf, name="Renamed")  # trigger unchanged: schedule kept
    assert Schedule.objects.get().every_seconds == 60
    service.update_workflow(wf, trigger={"schedule": "0 9 * * *", "timezone": "Asia/Tokyo"})
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.every_seconds, schedule.timezone) == (
        "0 9 * * *",
        None,
        "Asia/Tokyo",
    )
    assert schedule.next_tick_at.astimezone(UTC).hour == 0  # 09:00 in Tokyo
    service.update_workflow(wf, trigger={"connector": "app", "events": ["order.*"]})
    assert not Schedule.objects.exists()
    wf.refresh_from_db()
    assert wf.trigger_connector == "app"
    service.update_workflow(wf, trigger={"every": 5})
    wf.refresh_from_db()
    assert (wf.trigger_connector, Schedule.objects.get().every_seconds) == ("", 5)


@pytest.mark.django_db
def test_fire__a_broken_schedule_is_logged_and_retried_later_without_stopping_others(caplog):
    broken = scheduled({"every": 60}, name="Broken")
    Schedule.objects.filter(workflow=broken).update(
        cron="0 9 * * *", every_seconds=None, timezone="Nowhere/Gone"
    )
    ok = scheduled({"every": 60}, name="Fine")
    with caplog.at_level(logging.ERROR, logger="automate.schedules"):
        assert fire_due(now=T0 + timedelta(seconds=1)) == 1
    assert fired_ticks(ok) == [iso(T0)]
    assert "could not fire" in caplog.text
    assert Schedule.objects.get(workflow=broken).next_tick_at == T0 + timedelta(seconds=61)


@pytest.mark.django_db(transaction=True)
def test_worker_once__fires_the_ticks_due_now(recorder_calls):
    last_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    scheduled({"every": 3600}, at=last_hour)  # due since the hour began
    out = io.StringIO()
    call_command("automate_worker", "--once", "--threads", "1", stdout=out)
    assert "done: 1" in out.getvalue()
    assert WorkflowRun.objects.get().status == RunStatus.COMPLETED
    assert len(recorder_calls) == 1


@pytest.mark.django_db(transaction=True)
def test_fire__two_pollers_at_once_fire_each_tick_once(postgres):
    """Real concurrent transactions: the row lock or the unique rows leave one run each."""
    wf = scheduled({"every": 1, "catch_up": "all"})
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def poll() -> None:
        try:
            barrier.wait(10)
            counts.append(fire_due(now=T0 + timedelta(seconds=30)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(counts) == 31
    assert sorted(fired_ticks(wf)) == sorted(iso(T0 + timedelta(seconds=s)) for s in range(31))
    assert ScheduleTick.objects.count() == 31


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def schedule_queries(captured) -> int:
    return sum(1 for q in captured.captured_queries if "automate_schedule" in q["sql"])


@pytest.mark.django_db
def test_poll__no_schedule_query_while_none_can_be_due(monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automate import dispatch
    from automate.schedules import fire

    clock = Monotonic()
    monkeypatch.setattr(fire.time, "monotonic", clock)
    counts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as captured:
            dispatch.claim(10)
        counts.append(schedule_queries(captured))
    assert counts == [2, 0, 0]  # the first poll looks (due ones, the soonest); not the next
    clock.now += fire.RECHECK_SECONDS  # another process may have made one meanwhile
    with CaptureQueriesContext(connection) as captured:
        dispatch.claim(10)
    assert schedule_queries(captured) == 2


@pytest.mark.django_db
def test_poll__a_saved_schedule_is_looked_at_by_the_next_poll(monkeypatch):
    from automate import dispatch
    from automate.schedules import fire

    clock = Monotonic()
    monkeypatch.setattr(fire.time, "monotonic", clock)
    dispatch.claim(10)  # nothing scheduled: the next look is a second away
    workflow = scheduled({"every": 60}, at=None)  # saved: the next poll looks
    schedule = Schedule.objects.get(workflow=workflow)
    schedule.next_tick_at = timezone.now() - timedelta(seconds=1)
    schedule.save()
    dispatch.claim(10)
    schedule.refresh_from_db()
    assert schedule.next_tick_at > timezone.now()  # the poll looked, and moved it on


@pytest.mark.django_db
def test_poll__a_tick_due_soon_is_looked_at_when_it_is_due(monkeypatch):
    from automate import dispatch
    from automate.schedules import fire

    clock = Monotonic()
    monkeypatch.setattr(fire.time, "monotonic", clock)
    workflow = scheduled({"every": 60}, at=None)
    Schedule.objects.filter(workflow=workflow).update(  # no signal, as from another process
        next_tick_at=timezone.now() + timedelta(seconds=0.5)
    )
    fire.look_next_poll()
    dispatch.claim(10)  # looks: due in half a second, so the next look is then, not later
    assert fire._next_look <= clock.now + 0.5
    assert fired_ticks(workflow) == []


def schedule_statements(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if '"automate_schedule"' in q["sql"]]


@pytest.mark.django_db
def test_services__each_save_follows_enabled_once():
    """The schedule follows the workflow's ``enabled`` from the workflow's save (for the
    service's saves as for a bare one): one statement when nothing changes, none for a
    new workflow (no schedule can point at it yet)."""
    service = WorkflowService()
    with CaptureQueriesContext(connection) as captured:
        plain = service.create_workflow(
            name="Plain", trigger={"connector": "app", "events": ["x"]}, steps=STEPS
        )
    assert schedule_statements(captured) == []
    with CaptureQueriesContext(connection) as captured:
        service.update_workflow(plain, name="Still plain")
    assert len(schedule_statements(captured)) == 1

    wf = scheduled({"every": 60})
    with CaptureQueriesContext(connection) as captured:
        service.update_workflow(wf, name="Renamed")
    assert len(schedule_statements(captured)) == 1  # looked, nothing to do
    assert Schedule.objects.get().next_tick_at == T0
    with CaptureQueriesContext(connection) as captured:
        service.disable(wf)
    assert len(schedule_statements(captured)) == 1  # the UPDATE
    assert Schedule.objects.get().next_tick_at is None
    with CaptureQueriesContext(connection) as captured:
        service.enable(wf)
    assert len(schedule_statements(captured)) == 2  # the stopped schedule, its next tick
    assert Schedule.objects.get().next_tick_at > timezone.now() - timedelta(seconds=1)
    with CaptureQueriesContext(connection) as captured:
        service.update_workflow(wf, trigger={"every": 60}, enabled=False)  # the same spec
    assert len(schedule_statements(captured)) == 2  # stopped; the spec read and kept
    schedule = Schedule.objects.get()
    assert (schedule.every_seconds, schedule.next_tick_at) == (60, None)


class Transaction(threading.Thread):
    """``work`` in a thread of its own, so on a database connection of its own."""

    def __init__(self, work) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.pid: int | None = None  # its PostgreSQL backend
        self.holds_its_first_lock = threading.Event()
        self.error: BaseException | None = None
        self.started = threading.Event()

    def run(self) -> None:
        self.started.set()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.work()
        except BaseException as exc:
            self.error = exc
            self.holds_its_first_lock.set()  # nobody waits for it any more
        finally:
            connections.close_all()


def pause_until_waiting_or_done(other: Transaction) -> None:
    """Hold on (in the current transaction, its locks kept) until ``other`` waits for a
    lock or has finished: the moment the two transactions' lock orders meet."""
    with connection.cursor() as cursor:
        for _ in range(3000):  # a bound, never reached: 30 s
            if other.started.is_set() and not other.is_alive():
                return
            if other.pid is not None:
                cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", [other.pid])
                if cursor.fetchone()[0]:
                    return
            time.sleep(0.01)
    pytest.fail("the other transaction neither waited nor finished")


def pause_in(thread_of: Callable[[], Transaction], model, other: Callable[[], Transaction]):
    """A pre_save receiver of ``model``: in the thread ``thread_of()`` only, tell that it
    holds its first lock, and pause until ``other()`` waits for a lock or is done."""

    def pause(sender, instance, **kwargs) -> None:
        side = thread_of()
        if threading.current_thread() is side and not side.holds_its_first_lock.is_set():
            side.holds_its_first_lock.set()
            pause_until_waiting_or_done(other())

    pre_save.connect(pause, sender=model, weak=False, dispatch_uid="tests.lock_order")
    return lambda: pre_save.disconnect(sender=model, dispatch_uid="tests.lock_order")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["tick", "disable"])
def test_fire__a_tick_and_disabling_the_workflow_at_once_never_deadlock(postgres, first):
    """A tick being fired locks the schedule row, then writes rows pointing at the
    workflow (their foreign key checks take a KEY SHARE lock on the workflow row);
    ``disable()`` locks the workflow row, then its save's receiver updates the schedule
    row. Each is stopped right after its first lock until the other waits (or is done):
    were the workflow's lock a FOR UPDATE (which KEY SHARE waits for), each would wait
    for the other and PostgreSQL would kill one with a deadlock error."""
    wf = scheduled({"every": 60})
    tick = Transaction(lambda: fire_due(now=T0 + timedelta(seconds=1)))
    disable = Transaction(lambda: WorkflowService().disable(wf))
    sides = {"tick": (tick, ScheduleTick, disable), "disable": (disable, Workflow, tick)}
    paused, model, second = sides[first]
    stop_pausing = pause_in(lambda: paused, model, lambda: second)
    try:
        paused.start()
        assert paused.holds_its_first_lock.wait(30)
        second.start()
        for side in (tick, disable):
            side.join(60)
    finally:
        stop_pausing()
    assert (tick.error, disable.error) == (None, None)
    assert not tick.is_alive() and not disable.is_alive()
    # Fired before the workflow was disabled (its transaction saw it enabled): one run.
    assert fired_ticks(wf) == [iso(T0)]
    assert Schedule.objects.get().next_tick_at is None
    assert not Workflow.objects.get(pk=wf.pk).enabled
