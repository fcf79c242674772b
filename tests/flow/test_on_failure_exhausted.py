"""``on_failure`` steps of runs the outbox dead-lettered (error ``exhausted``): they run
once, from an alert item of their own, never by running the steps that killed the run.

Both ways a run dies so: the reclaim sweep (its item's lease ran out on every attempt:
here a step that takes the worker down with it) and the settlement (its retries used
all the item's attempts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import dispatch
from automate.flow import failure
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate.steps.base import StepExecutor, StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from tests.flow.helpers import action, records, start

pytestmark = pytest.mark.django_db

FAILURE = {
    "step": "{{ failure.step }}",
    "code": "{{ failure.error.code }}",
    "message": "{{ failure.error.message }}",
}


class WorkerDied(BaseException):
    """What a step that takes its worker down looks like to the worker: nothing catches
    it, nothing after it in the pass is written, the item stays leased."""


class CrashConfig(StrictConfig):
    crashes: int = 1_000_000  # how many calls take the worker down before one succeeds
    idempotent: bool = False


class CrashWorker(StepExecutor[CrashConfig]):
    key = "crash_worker"
    config_model = CrashConfig
    calls: list[str] = []

    @classmethod
    def is_idempotent(cls, config: CrashConfig) -> bool:
        return config.idempotent

    def execute(self, config, ctx):
        self.calls.append(ctx.step_name)
        if len([c for c in self.calls if c == ctx.step_name]) <= config.crashes:
            raise WorkerDied(ctx.step_name)
        return {"survived": True}


@pytest.fixture
def crash_step():
    CrashWorker.calls = []
    step_registry.register(CrashWorker)
    yield CrashWorker.calls
    step_registry.unregister("crash_worker")


@pytest.fixture
def one_attempt(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTBOX_MAX_ATTEMPTS": 1}


def crash(name, **config):
    return {"name": name, "type": "crash_worker", "config": config}


def alerts():
    return OutboxItem.objects.filter(
        connector_key=RESUME_CONNECTOR_KEY, event_type=failure.ALERT_EVENT
    )


def crashed_pass(drain):
    """A worker's pass that dies with its item leased."""
    with pytest.raises(WorkerDied):
        drain()


def lease_runs_out():
    OutboxItem.objects.filter(status="leased").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def alert_calls(recorder_calls):
    return [data for name, data in recorder_calls if name == "echo" and "code" in data]


# -- the reclaim sweep -----------------------------------------------------------------------


@pytest.mark.parametrize(("idempotent", "known_step"), [(False, "Crash"), (True, None)])
def test_sweep__a_run_whose_lease_ran_out_runs_its_on_failure_steps_once(
    drain, recorder_calls, crash_step, one_attempt, idempotent, known_step
):
    """A step that takes the worker down every time: the outbox dead-letters the event,
    the sweep marks the run dead and writes its alert item, whose pass runs the
    on_failure steps with the failure, and never the crashing step again. The step is
    known when its record was written before the call (not idempotent)."""
    run = start(
        [action("Ok"), crash("Crash", idempotent=idempotent), action("Never")],
        on_failure=[action("Alert", input_data=FAILURE)],
    )
    crashed_pass(drain)
    lease_runs_out()
    assert drain() == {}  # the reclaim dead-letters the item; its sweep kills the run
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error == {"code": "exhausted", "message": dispatch.GAVE_UP}
    [item] = alerts()
    assert item.payload == {"on_failure": run.pk, "replay": 0}
    assert item.trace_id == run.trace_id

    assert drain() == {"done": 1}
    assert alert_calls(recorder_calls) == [
        {"step": known_step, "code": "exhausted", "message": dispatch.GAVE_UP}
    ]
    assert crash_step == ["Crash"]  # the poisoned step never ran again
    run.refresh_from_db()
    assert (run.status, run.error["message"]) == (RunStatus.DEAD, dispatch.GAVE_UP)
    assert [r[0] for r in records(run) if r[3] == "succeeded"][-1] == "Alert"
    # Nothing is claimed again: the alert ran once.
    assert drain(due=True) == {}
    assert len(alert_calls(recorder_calls)) == 1


def test_sweep__the_on_failure_steps_see_the_outputs_of_the_steps_before(
    drain, recorder_calls, crash_step, one_attempt
):
    start(
        [action("Ok", input_data={"n": 7}), crash("Crash")],
        on_failure=[action("Alert", input_data={"seen": "{{ steps.Ok.output.echo.n }}"})],
    )
    crashed_pass(drain)
    lease_runs_out()
    drain()
    drain()
    assert [data["seen"] for _, data in recorder_calls if "seen" in data] in ([7], ["7"])


def test_sweep__a_second_sweep_of_the_same_death_writes_no_second_alert(
    drain, crash_step, one_attempt
):
    run = start([crash("Crash")], on_failure=[action("Alert")])
    crashed_pass(drain)
    lease_runs_out()
    drain()
    assert alerts().count() == 1
    # Another sweeper saw it die too (the same time stamp): the alert item is unique.
    assert failure.alert_swept(WorkflowRun.objects.get(pk=run.pk).finished_at) == 1
    assert alerts().count() == 1


def test_sweep__a_sweeper_killed_before_writing_the_alert_leaves_the_run_to_the_next(
    drain, crash_step, one_attempt, monkeypatch
):
    """The sweep's UPDATE, the alert's INSERT and the parents' wake commit together: a
    sweeper that dies between them (here: the alert's write raises) leaves the run
    unfinished, and the next sweep marks it dead and writes its alert."""
    run = start([crash("Crash")], on_failure=[action("Alert")])
    crashed_pass(drain)
    lease_runs_out()
    queue.reclaim_expired()  # the item is dead-lettered; its run is not swept yet

    def killed(finished_at):
        raise WorkerDied("sweeper")

    monkeypatch.setattr(failure, "alert_swept", killed)
    with pytest.raises(WorkerDied):
        dispatch.sweep_dead_runs()
    run.refresh_from_db()
    assert run.status != RunStatus.DEAD
    assert not alerts().exists()

    monkeypatch.undo()
    assert dispatch.sweep_dead_runs() == 1
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")
    assert alerts().count() == 1


def test_sweep__a_crash_in_the_middle_of_the_on_failure_steps_repeats_none(
    drain, recorder_calls, crash_step, one_attempt, settings
):
    """The alert's pass dies in its second on_failure step, after the first (not
    idempotent: its record committed before its call) ran; the next pass does not run
    the first again, runs the second again (idempotent: its record was not written) and
    goes on with the third."""
    run = start(
        [crash("Crash")],
        on_failure=[
            action("Notify", "flaky", {"failures": 0}),
            crash("Shaky", crashes=1, idempotent=True),
            action("Last"),
        ],
    )
    crashed_pass(drain)
    lease_runs_out()
    drain()
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTBOX_MAX_ATTEMPTS": 3}
    crashed_pass(drain)  # the alert's pass: Notify ran, then Shaky took the worker down
    lease_runs_out()
    assert drain() == {"done": 1}
    assert [name for name, _ in recorder_calls] == ["flaky", "echo"]  # Notify once, Last
    assert crash_step == ["Crash", "Shaky", "Shaky"]
    assert [r[0] for r in records(run)] == ["Crash", "Notify", "Shaky", "Last"]
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")


def test_sweep__an_alert_whose_steps_keep_crashing_is_dead_lettered_and_nothing_loops(
    drain, crash_step, one_attempt
):
    run = start([crash("Crash")], on_failure=[crash("Also crashes")])
    crashed_pass(drain)
    lease_runs_out()
    drain()
    crashed_pass(drain)
    lease_runs_out()
    assert drain() == {}
    assert alerts().get().status == "dead"
    assert alerts().count() == 1  # the run, dead already, is not alerted again
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")


def test_sweep__a_failing_on_failure_step_is_recorded_and_the_next_runs(
    drain, recorder_calls, crash_step, one_attempt
):
    run = start(
        [crash("Crash")],
        on_failure=[action("Bad", "fail", {"code": "invalid_argument"}), action("Still")],
    )
    crashed_pass(drain)
    lease_runs_out()
    drain()
    assert drain() == {"done": 1}
    assert [r[0] + ":" + r[3] for r in records(run)] == [
        "Crash:running",
        "Bad:failed",
        "Still:succeeded",
    ]
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")


def test_sweep__a_child_s_alert_does_not_keep_its_parent_waiting(drain, crash_step, one_attempt):
    WorkflowService().create_workflow(
        name="child", key="child", steps=[crash("Crash")], on_failure=[action("Alert")]
    )
    parent = start([{"name": "Child", "type": "workflow", "config": {"workflow": "child"}}])
    crashed_pass(drain)  # the parent parks; its child's pass takes the worker down
    lease_runs_out()
    drain()
    drain()
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert parent.step_runs.get(step__name="Child").output["status"] == "dead"
    child = WorkflowRun.objects.get(parent_run=parent)
    assert [r[0] for r in records(child)] == ["Crash", "Alert"]


# -- the settlement -------------------------------------------------------------------------


def test_settle__a_run_whose_retries_used_all_its_attempts_runs_its_on_failure_steps(
    drain, recorder_calls, one_attempt
):
    run = start(
        [action("Flaky", "flaky", {"failures": 5}, max_attempts=5)],
        on_failure=[action("Alert", input_data=FAILURE)],
    )
    assert drain() == {"dead": 1, "done": 1}  # the event, then its alert
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "exhausted"
    assert alert_calls(recorder_calls) == [
        {"step": "Flaky", "code": "exhausted", "message": "the event used all its outbox attempts"}
    ]
    assert [name for name, _ in recorder_calls].count("flaky") == 1
    assert drain(due=True) == {}


def test_settle__a_replay_before_the_alert_runs_takes_the_run_back(
    drain, recorder_calls, one_attempt
):
    """The operator replays the dead event before its alert item is claimed: the run is
    its event's again (it runs its own on_failure steps if it dies again), and the
    alert item is done with nothing to run."""
    run = start(
        [action("Flaky", "flaky", {"failures": 1}, max_attempts=5)],
        on_failure=[action("Alert", input_data=FAILURE)],
    )
    [event] = queue.claim(1)
    assert dispatch.process_item(event) == "dead"
    dispatch.replay([event.pk])
    assert drain() == {"done": 2}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert alert_calls(recorder_calls) == []
    assert alerts().get().status == "done"


def test_sweep__a_run_whose_cancel_was_asked_before_it_died_is_not_alerted(
    drain, recorder_calls, crash_step, one_attempt
):
    """A cancel is its user's choice: a run asked to stop while its worker held it, then
    killed by the outbox, runs no on_failure steps (its alert item is done with none)."""
    run = start([crash("Crash")], on_failure=[action("Alert", input_data=FAILURE)])
    crashed_pass(drain)
    WorkflowService().cancel_run(run)  # its item is leased: the cancel is only asked
    lease_runs_out()
    drain()
    assert drain() == {"done": 1}
    assert alert_calls(recorder_calls) == []
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")


def test_settle__a_workflow_without_on_failure_steps_adds_no_item_and_no_statement(
    one_attempt,
):
    """The pass whose settlement kills retrying runs: the only statement on_failure steps
    add is their alert item's INSERT; without them, none (nothing is read for them)."""

    def exhaust(on_failure):
        name = "with" if on_failure else "without"
        start(
            [action("Flaky", "flaky", {"failures": 5}, max_attempts=5)],
            name=name,
            on_failure=on_failure,
        )
        items = queue.claim(1)
        with CaptureQueriesContext(connection) as ctx:
            assert dispatch.process_batch(items, checked=True) == {"dead": 1}
        return [q["sql"] for q in ctx.captured_queries]

    without = exhaust(None)
    with_alert = exhaust([action("Alert")])
    [item] = alerts()
    assert item.payload["on_failure"] == WorkflowRun.objects.get(workflow__key="with").pk
    assert len(with_alert) == len(without) + 1

    def outbox_inserts(queries):
        return [sql for sql in queries if "INSERT" in sql and "outboxitem" in sql]

    assert (len(outbox_inserts(without)), len(outbox_inserts(with_alert))) == (0, 1)


def test_sweep__without_on_failure_steps_a_sweep_writes_no_item(crash_step, one_attempt, drain):
    """A sweep with nothing to sweep is one statement (in its transaction); one that kills
    a run of a workflow without on_failure steps looks for them (one SELECT) and writes
    nothing."""
    run = start([crash("Crash")])
    with CaptureQueriesContext(connection) as idle:
        assert dispatch.sweep_dead_runs() == 0
    # (The test's own transaction turns the sweep's into a savepoint.)
    assert len([q for q in idle.captured_queries if "SAVEPOINT" not in q["sql"]]) == 1
    crashed_pass(drain)
    lease_runs_out()
    queue.reclaim_expired()
    with CaptureQueriesContext(connection) as ctx:
        assert dispatch.sweep_dead_runs() == 1
    assert not [q for q in ctx.captured_queries if q["sql"].startswith("INSERT")]
    assert not alerts().exists()
    run.refresh_from_db()
    assert (run.status, run.error["code"]) == (RunStatus.DEAD, "exhausted")
