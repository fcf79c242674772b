"""The execution core: steps in order, retries, dead letters, replay, side-effect record."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from automate import dispatch, runner
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
from automate.services import WorkflowService
from automate.steps.registry import steps as step_registry
from automate_core import redaction
from automate_core.models import OutboxItem
from automate_core.outbox import queue

pytestmark = pytest.mark.django_db


def action(name, act, input_data, **retry):
    step = {
        "name": name,
        "type": "connector_action",
        "config": {"profile": "recorder", "action": act, "input": input_data},
    }
    if retry:
        step["retry"] = retry
    return step


def start(steps, payload=None, name="W"):
    wf = WorkflowService().create_workflow(name=name, steps=steps)
    return WorkflowService().run_workflow(wf, {"payload": payload or {}, "type": "t"})


def step_rows(run):
    return list(
        StepRun.objects.filter(run=run)
        .order_by("id")
        .values_list("step__name", "attempt", "status")
    )


def test_runner__two_steps_run_in_order_and_are_recorded(drain, recorder_calls):
    run = start(
        [
            action("Echo", "echo", {"q": "{{ event.payload.q }}", "meta": "{{ event.payload }}"}),
            {
                "name": "Check",
                "type": "filter",
                "config": {"condition": "{{ steps.Echo.output.echo.q == 'hello' }}"},
            },
        ],
        {"q": "hello"},
    )
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.started_at <= run.finished_at
    assert step_rows(run) == [("Echo", 1, "succeeded"), ("Check", 1, "succeeded")]
    echo = run.step_runs.get(step__name="Echo")
    assert echo.input == {
        "profile": "recorder",
        "action": "echo",
        "input": {"q": "hello", "meta": {"q": "hello"}},
    }
    assert echo.output == {"echo": {"q": "hello", "meta": {"q": "hello"}}}
    assert run.step_runs.get(step__name="Check").output == {"passed": True}
    assert recorder_calls == [("echo", {"q": "hello", "meta": {"q": "hello"}})]
    assert OutboxItem.objects.get().status == "done"


def test_runner__payload_template_text_stays_text(drain, recorder_calls):
    run = start(
        [action("Echo", "echo", {"q": "{{ event.payload.q }}"})],
        {"q": "{{ ''.__class__.__mro__ }}"},
    )
    drain()
    assert recorder_calls == [("echo", {"q": "{{ ''.__class__.__mro__ }}"})]
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED


def test_runner__filter_stops_the_run(drain, recorder_calls):
    run = start(
        [
            {
                "name": "Big",
                "type": "filter",
                "config": {"condition": "{{ event.payload.n > 10 }}"},
            },
            action("Echo", "echo", {}),
        ],
        {"n": 3},
    )
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.FILTERED
    assert step_rows(run) == [("Big", 1, "stopped")]
    assert recorder_calls == []


def test_runner__retryable_failure_backs_off_then_succeeds(drain, recorder_calls):
    run = start([action("Flaky", "flaky", {"failures": 1}, max_attempts=3, backoff_seconds=40)])
    before = timezone.now()
    assert drain() == {"failed": 1}
    item = OutboxItem.objects.get()
    run.refresh_from_db()
    assert run.status == RunStatus.RETRYING
    assert run.error["code"] == "unavailable"
    # The step's own backoff (equal jitter: between half and all of 40 s), not the outbox's.
    assert before + timedelta(seconds=20) <= item.available_at
    assert item.available_at <= timezone.now() + timedelta(seconds=40)
    assert drain() == {}  # not due yet
    assert drain(due=True) == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert step_rows(run) == [("Flaky", 1, "failed"), ("Flaky", 2, "succeeded")]
    assert run.step_runs.get(attempt=2).output == {"call": 2}


def test_runner__backoff_grows_exponentially_with_jitter():
    step = type("S", (), {"backoff_seconds": 2.0, "max_backoff_seconds": 10.0})()
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = {runner.backoff_seconds(step, attempt) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered


def test_runner__exhausted_attempts_dead_letter_then_replay(drain, recorder_calls):
    run = start([action("Flaky", "flaky", {"failures": 3}, max_attempts=2)])
    drain()
    assert drain(due=True) == {"dead": 1}
    item = OutboxItem.objects.get()
    run.refresh_from_db()
    assert item.status == "dead"
    assert run.status == RunStatus.DEAD
    assert item.last_error["code"] == "unavailable"
    assert drain(due=True) == {}  # the dead stay dead
    out = io.StringIO()
    call_command("automate_replay", str(item.pk), stdout=out)
    assert out.getvalue().strip() == "replayed 1 item(s)"
    run.refresh_from_db()
    assert (run.status, run.replay_count) == (RunStatus.PENDING, 1)
    drain()  # call 3 fails: a fresh budget of two attempts, so it retries
    assert drain(due=True) == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert [r[1:] for r in step_rows(run)] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "succeeded"),
    ]


def test_runner__permanent_error_dead_letters_at_once(drain):
    run = start([action("Fail", "fail", {"code": "invalid_argument"}), action("Next", "echo", {})])
    assert drain() == {"dead": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "invalid_argument"
    assert step_rows(run) == [("Fail", 1, "failed")]
    assert OutboxItem.objects.get().attempts == 1


def test_runner__retry_never_repeats_a_succeeded_step(drain, recorder_calls):
    run = start(
        [
            action("Charge", "flaky", {"failures": 0}),  # non-idempotent, succeeds
            action("Then", "fail", {"code": "unavailable"}, max_attempts=2),
        ]
    )
    drain()
    drain(due=True)
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert [a for a, _ in recorder_calls] == ["flaky", "fail", "fail"]
    assert step_rows(run) == [
        ("Charge", 1, "succeeded"),
        ("Then", 1, "failed"),
        ("Then", 2, "failed"),
    ]


def _crash_during(step_name, run):
    """Leave the run as a worker killed mid-step would: claimed, step row 'running'."""
    [item] = queue.claim(1, worker="doomed")
    runner.ensure_runs(item)
    step = run.workflow.current_steps().get(name=step_name)
    StepRun.objects.create(run=run, step=step, attempt=1, status=StepStatus.RUNNING)
    OutboxItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now())
    return item


def test_runner__interrupted_non_idempotent_step_is_not_repeated(drain, recorder_calls):
    run = start([action("Record", "record", {"event": "e1"})])
    _crash_during("Record", run)
    assert drain() == {"dead": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert "outcome is unknown" in run.error["message"]
    assert step_rows(run) == [("Record", 1, "interrupted")]
    assert recorder_calls == []


def test_runner__interrupted_idempotent_step_runs_again(drain, recorder_calls):
    run = start([action("Echo", "echo", {"a": 1})])
    _crash_during("Echo", run)
    assert drain() == {"done": 1}
    assert step_rows(run) == [("Echo", 1, "interrupted"), ("Echo", 2, "succeeded")]
    assert recorder_calls == [("echo", {"a": 1})]


def test_runner__timeout_retries_idempotent_but_not_a_charge(drain):
    slow = start([action("Slow", "slow", {"seconds": 0.5}, timeout_seconds=0.05, max_attempts=2)])
    charge = start(
        [action("Charge", "slow_charge", {"seconds": 0.5}, timeout_seconds=0.05)], name="C"
    )
    drain()
    slow.refresh_from_db()
    charge.refresh_from_db()
    assert slow.status == RunStatus.RETRYING
    assert slow.error["code"] == "timeout"
    assert charge.status == RunStatus.DEAD
    assert charge.error["code"] == "timeout"
    assert "no retry" in charge.error["message"]


def test_runner__render_error_is_permanent_and_names_the_field(drain):
    run = start([action("Echo", "echo", {"q": "{{ event.payload.nope }}"})], {"q": 1})
    assert drain() == {"dead": 1}
    row = StepRun.objects.get(run=run)
    assert row.status == "failed"
    assert row.error["details"]["field"] == "config.input.q"
    assert row.error["step"] == "Echo"


def test_runner__step_type_unregistered_after_create_dead_letters(drain):
    from automate.steps.filter import FilterStep

    run = start([{"name": "F", "type": "filter", "config": {"condition": True}}])
    step_registry.unregister("filter")
    try:
        assert drain() == {"dead": 1}
    finally:
        step_registry.register(FilterStep, builtin=True)
    run.refresh_from_db()
    assert run.error["code"] == "configuration"


def test_runner__lost_lease_stops_without_running_steps(recorder_calls):
    start([action("Echo", "echo", {})])
    [item] = queue.claim(1)
    OutboxItem.objects.filter(pk=item.pk).update(lease_token="someone-else")
    assert dispatch.process_item(item) == dispatch.LOST
    assert recorder_calls == []


@override_settings(AUTOMATE={"OUTBOX_MAX_ATTEMPTS": 1, "CONNECTORS": {"recorder": {}}})
def test_runner__out_of_outbox_attempts_kills_retrying_runs(drain):
    run = start([action("Flaky", "flaky", {"failures": 5}, max_attempts=5)])
    assert drain() == {"dead": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == "exhausted"


def test_runner__webhook_items_run_every_matching_workflow(drain, recorder_calls):
    service = WorkflowService()
    service.create_workflow(name="A", steps=[action("E", "echo", {"w": "A"})], trigger="my_service")
    service.create_workflow(
        name="B",
        steps=[action("E", "echo", {"w": "B"})],
        trigger={"connector": "my_service", "events": ["other.*"]},
    )
    queue.enqueue("my_service", event_type="order.paid", payload={}, trace_id="t1")
    queue.enqueue("my_service", event_type="other.thing", payload={}, trace_id="t2")
    queue.enqueue("recorder", event_type="order.paid", payload={}, trace_id="t3")
    assert drain() == {"done": 3}
    assert sorted(i["w"] for _, i in recorder_calls) == ["A", "A", "B"]
    assert WorkflowRun.objects.filter(trace_id="t2").count() == 2
    assert not WorkflowRun.objects.filter(trace_id="t3").exists()


def test_runner__secrets_are_redacted_in_stored_input(drain):
    redaction.remember("sk_live_supersecret")
    run = start(
        [action("Echo", "echo", {"token": "{{ event.payload.t }}"})], {"t": "sk_live_supersecret"}
    )
    drain()
    row = StepRun.objects.get(run=run)
    assert row.input["input"]["token"] == "[redacted]"
    assert row.output == {"echo": {"token": "[redacted]"}}
