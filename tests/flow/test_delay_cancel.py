"""``delay`` parks a run on a timer, ``cancel_run`` ends runs, ``on_failure`` steps run
once when a run dies. Through the embedded worker (``drain``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from automate.flow.models import RunWait
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate.steps.base import StepExecutor, StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.providers.errors import AutomateError
from tests.flow.helpers import action, records, start

pytestmark = pytest.mark.django_db


def delay(name, **config):
    return {"name": name, "type": "delay", "config": config}


def timers():
    return OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY)


def make_due():
    timers().filter(status="pending").update(available_at=timezone.now())


# -- delay ---------------------------------------------------------------------------------


def test_delay__parks_the_run_and_its_timer_resumes_it_once(drain, recorder_calls):
    run = start([action("Before"), delay("Wait", seconds=3600), action("After")])
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    assert records(run) == [("Before", "", 1, "succeeded"), ("Wait", "", 1, "waiting")]
    [timer] = timers()
    assert timer.status == "pending"
    due = timer.available_at - timezone.now()
    assert timedelta(seconds=3590) < due <= timedelta(seconds=3600)
    wait = RunWait.objects.get(run=run)
    assert (wait.kind, wait.status, wait.timer) == ("delay", "waiting", timer)
    assert drain() == {}  # nothing is due: the parked run holds no worker

    make_due()
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.resume_item == timers().get()
    assert records(run) == [
        ("Before", "", 1, "succeeded"),
        ("Wait", "", 1, "succeeded"),
        ("After", "", 1, "succeeded"),
    ]
    assert run.step_runs.get(step__name="Wait").output["waited"] is True
    assert [name for name, _ in recorder_calls] == ["echo", "echo"]
    wait.refresh_from_db()
    assert (wait.status, wait.resolved_by) == ("due", timer)


def test_delay__a_second_item_for_the_same_wait_resumes_nothing(drain, recorder_calls):
    run = start([delay("Wait", seconds=60), action("After")])
    drain()
    make_due()
    drain()
    timer = timers().get()
    # The same timer delivered again (a replayed or duplicated row) finds its wait resolved.
    timer.status, timer.attempts = "pending", 0
    timer.save()
    assert drain() == {"done": 1}
    assert StepRun.objects.filter(run=run, step__name="After").count() == 1
    assert len(recorder_calls) == 1


def test_delay__a_past_until_continues_at_once(drain):
    run = start([delay("Wait", until="2001-01-01T00:00:00Z"), action("After")])
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert not timers().exists()
    assert run.step_runs.get(step__name="Wait").output == {
        "until": "2001-01-01T00:00:00+00:00",
        "waited": False,
    }


def test_delay__until_from_a_template(drain):
    run = start(
        [delay("Wait", until="{{ event.payload.at }}")], {"at": "2999-01-01T09:00:00+01:00"}
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    assert timers().get().available_at.isoformat() == "2999-01-01T08:00:00+00:00"


@pytest.mark.parametrize(
    ("config", "payload", "field"),
    [
        ({"until": "{{ event.payload.x }}"}, {"x": "tomorrow"}, "config.until"),
        ({"until": "{{ event.payload.x }}"}, {"x": 5}, "config.until"),
        ({"seconds": "{{ event.payload.x }}"}, {"x": "soon"}, "config.seconds"),
        ({"seconds": "{{ event.payload.x }}"}, {"x": -1}, "config.seconds"),
    ],
)
def test_delay__a_template_giving_no_datetime_or_number_fails(drain, config, payload, field):
    run = start([delay("Wait", **config)], payload)
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "invalid_argument"
    assert run.error["details"] == {"field": field, "step": "Wait"}
    assert not timers().exists()


@pytest.mark.parametrize(
    "config",
    [{}, {"seconds": 1, "until": "2030-01-01T00:00:00Z"}, {"seconds": -1}, {"until": "soon"}],
)
def test_delay__bad_configs_are_refused_at_create(config):
    with pytest.raises(AutomateError) as exc:
        WorkflowService().create_workflow(name="D", steps=[delay("Wait", **config)])
    assert exc.value.details["step"] == "Wait"


def test_delay__in_a_loop_each_iteration_parks_once(drain, recorder_calls):
    run = start(
        [
            {
                "name": "L",
                "type": "for_each",
                "config": {
                    "items": [1, 2],
                    "steps": [action("A", input_data={"i": "{{ item }}"}), delay("D", seconds=60)],
                },
            },
            action("End"),
        ]
    )
    for _ in range(2):
        drain()
        run.refresh_from_db()
        assert run.status == RunStatus.WAITING
        make_due()
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert timers().count() == 2
    assert [c[1] for c in recorder_calls] == [{"i": 1}, {"i": 2}, {}]
    assert [r[:2] for r in records(run) if r[0] == "D"] == [("D", "0"), ("D", "1")]


# -- cancel_run ----------------------------------------------------------------------------


def test_cancel__a_waiting_run_is_cancelled_and_never_resumed(drain, recorder_calls):
    run = start([delay("Wait", seconds=60), action("After")])
    drain()
    run = WorkflowService().cancel_run(run)
    assert run.status == RunStatus.CANCELLED
    assert run.error["code"] == "cancelled"
    assert RunWait.objects.get(run=run).status == "cancelled"
    assert timers().get().status == "done"  # retired: it would resume nothing
    # Even delivered, a timer of a cancelled wait resumes nothing.
    timers().update(status="pending", available_at=timezone.now())
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert recorder_calls == []
    assert run.resume_item is None


def test_cancel__a_pending_run_ends_before_any_step(drain, recorder_calls):
    run = start([action("A")])
    assert WorkflowService().cancel_run(run).status == RunStatus.CANCELLED
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert recorder_calls == []
    assert not StepRun.objects.filter(run=run).exists()


def test_cancel__a_finished_run_is_left_as_it_is(drain):
    run = start([action("A")])
    drain()
    assert WorkflowService().cancel_run(run).status == RunStatus.COMPLETED


class CancelConfig(StrictConfig):
    pass


class CancelSelf(StepExecutor[CancelConfig]):
    """A step that asks for its own run to be cancelled while the run is running."""

    key = "cancel_self"
    config_model = CancelConfig
    idempotent = True

    def execute(self, config, ctx):
        run = WorkflowService().cancel_run(WorkflowRun.objects.get(pk=ctx.run_id))
        return {"status": run.status, "requested": run.cancel_requested_at is not None}


@pytest.fixture
def cancel_step():
    step_registry.register(CancelSelf)
    yield
    step_registry.unregister("cancel_self")


def test_cancel__a_running_run_stops_at_the_next_step_boundary(
    drain, recorder_calls, cancel_step, settings
):
    settings.AUTOMATE = {**settings.AUTOMATE, "FLOW_CANCEL_CHECK_SECONDS": 0}
    run = start([action("A"), {"name": "Stop", "type": "cancel_self"}, action("B")])
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    # The worker held the run: cancel_run only asked, the runner ended it before B.
    stop = run.step_runs.get(step__name="Stop").output
    assert stop["requested"] is True and stop["status"] != "cancelled"
    assert [r[0] for r in records(run)] == ["A", "Stop"]
    assert len(recorder_calls) == 1


# -- on_failure ----------------------------------------------------------------------------


def test_on_failure__runs_once_with_the_failure(drain, recorder_calls):
    run = start(
        [action("Ok"), action("Boom", "fail", {"code": "invalid_argument"})],
        on_failure=[
            action(
                "Alert",
                input_data={
                    "step": "{{ failure.step }}",
                    "code": "{{ failure.error.code }}",
                    "message": "{{ failure.error.message }}",
                },
            )
        ],
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "invalid_argument"
    assert recorder_calls[-1] == (
        "echo",
        {"step": "Boom", "code": "invalid_argument", "message": "failing on purpose"},
    )
    assert [r[0] for r in records(run)] == ["Ok", "Boom", "Alert"]
    # The dead item is not claimed again: the handler ran once.
    drain(due=True)
    assert [r[0] for r in records(run)] == ["Ok", "Boom", "Alert"]


def test_on_failure__a_failing_handler_step_leaves_the_run_dead_with_its_own_error(drain):
    run = start(
        [action("Boom", "fail", {"code": "invalid_argument"})],
        on_failure=[
            action("Bad", "fail", {"code": "unavailable", "retryable": True}),
            action("Still"),
        ],
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["message"] == "failing on purpose"
    assert [r[:2] + r[3:] for r in records(run)] == [
        ("Boom", "", "failed"),
        ("Bad", "", "failed"),
        ("Still", "", "succeeded"),
    ]
    assert OutboxItem.objects.get().status == "dead"


def test_on_failure__does_not_run_when_the_run_completes(drain, recorder_calls):
    start([action("Ok")], on_failure=[action("Alert")])
    drain()
    assert len(recorder_calls) == 1


def test_on_failure__templates_may_read_failure_only_there():
    with pytest.raises(AutomateError, match="unknown name"):
        WorkflowService().create_workflow(
            name="X", steps=[action("A", input_data={"s": "{{ failure.step }}"})]
        )


def test_on_failure__parking_steps_are_refused_there():
    with pytest.raises(AutomateError, match="cannot be an on_failure step") as exc:
        WorkflowService().create_workflow(
            name="X", steps=[action("A")], on_failure=[delay("D", seconds=1)]
        )
    assert exc.value.details["field"] == "on_failure[0]"
