"""``workflow`` steps: a child run linked to its parent; a waiting parent parks until the
child ends; depth and cycles are refused at create time."""

from __future__ import annotations

import pytest

from automate.flow.models import RunWait
from automate.models import RunStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from automate_core.providers.errors import AutomateError
from tests.flow.helpers import action, records, start

pytestmark = pytest.mark.django_db


def child_step(name, key, wait=True, **payload):
    return {
        "name": name,
        "type": "workflow",
        "config": {"workflow": key, "payload": payload, "wait": wait},
    }


def make(key, steps):
    return WorkflowService().create_workflow(name=key, key=key, steps=steps)


def test_child__parent_waits_for_the_child_and_gets_its_status_and_outputs(drain, recorder_calls):
    make("reserve", [action("Reserve", input_data={"sku": "{{ event.payload.sku }}"})])
    parent = start(
        [
            child_step("Child", "reserve", sku="{{ event.payload.sku }}"),
            action("After", input_data={"child": "{{ steps.Child.output }}"}),
        ],
        {"sku": "A1"},
    )
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED, parent.error
    child = WorkflowRun.objects.get(parent_run=parent)
    assert child.status == RunStatus.COMPLETED
    assert child.event["payload"] == {"sku": "A1"}
    assert child.trace_id == parent.trace_id
    expected = {"status": "completed", "steps": {"Reserve": {"echo": {"sku": "A1"}}}}
    assert parent.step_runs.get(step__name="Child").output == expected
    assert recorder_calls == [("echo", {"sku": "A1"}), ("echo", {"child": expected})]
    assert RunWait.objects.get(run=parent).status == "child_ended"


def test_child__a_dead_child_resumes_its_parent_with_dead(drain):
    make("boom", [action("Boom", "fail", {"code": "invalid_argument"})])
    parent = start([child_step("Child", "boom"), action("After")])
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert parent.step_runs.get(step__name="Child").output == {"status": "dead", "steps": {}}


def test_child__without_wait_the_parent_goes_on(drain):
    make("side", [action("Side")])
    parent = start([child_step("Child", "side", wait=False), action("After")])
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert parent.step_runs.get(step__name="Child").output["status"] == "started"
    assert WorkflowRun.objects.get(parent_run=parent).status == RunStatus.COMPLETED


def test_child__cancelling_the_parent_cancels_its_waiting_child(drain):
    make("slow", [{"name": "D", "type": "delay", "config": {"seconds": 600}}])
    parent = start([child_step("Child", "slow"), action("After")])
    drain()
    child = WorkflowRun.objects.get(parent_run=parent)
    parent.refresh_from_db()
    assert (parent.status, child.status) == ("waiting", "waiting")
    WorkflowService().cancel_run(parent)
    child.refresh_from_db()
    assert child.status == RunStatus.CANCELLED
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.CANCELLED
    assert [r[0] for r in records(parent)] == ["Child"]


def test_child__cancelling_a_waited_child_resumes_the_parent(drain):
    make("slow", [{"name": "D", "type": "delay", "config": {"seconds": 600}}])
    parent = start([child_step("Child", "slow"), action("After")])
    drain()
    WorkflowService().cancel_run(WorkflowRun.objects.get(parent_run=parent))
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert parent.step_runs.get(step__name="Child").output["status"] == "cancelled"


def test_child__unknown_workflow_self_reference_and_cycles_are_refused():
    with pytest.raises(AutomateError, match="no workflow with key 'nope'"):
        make("a", [child_step("C", "nope")])
    with pytest.raises(AutomateError, match="cycle"):
        make("self", [child_step("C", "self")])
    b = make("b", [action("B")])
    make("a", [child_step("C", "b")])
    with pytest.raises(AutomateError, match="cycle"):  # b -> a -> b
        WorkflowService().update_workflow(b, steps=[child_step("C", "a")])


def test_child__depth_over_the_setting_is_refused(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "FLOW_MAX_CHILD_DEPTH": 2}
    make("w0", [action("A0")])
    make("w1", [child_step("C1", "w0")])
    make("w2", [child_step("C2", "w1")])
    with pytest.raises(AutomateError, match="FLOW_MAX_CHILD_DEPTH"):
        make("w3", [child_step("C3", "w2")])
    # Deepening the bottom of a chain counts the workflows above it too.
    make("x", [action("X")])
    with pytest.raises(AutomateError, match="FLOW_MAX_CHILD_DEPTH"):
        WorkflowService().update_workflow(
            Workflow.objects.get(key="w0"), steps=[child_step("C0", "x")]
        )


def test_child__a_child_the_outbox_dead_letters_still_resumes_its_parent(drain, settings):
    """The child's event runs out of attempts (its step kept failing retryably): the
    outbox dead-letters it, and the waiting parent is resumed with "dead"."""
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTBOX_MAX_ATTEMPTS": 2}
    make(
        "flaky",
        [action("F", "fail", {"code": "unavailable"}, max_attempts=10, backoff_seconds=0.01)],
    )
    parent = start([child_step("Child", "flaky"), action("After")])
    for _ in range(4):
        drain(due=True)
    child = WorkflowRun.objects.get(parent_run=parent)
    assert child.status == RunStatus.DEAD and child.error["code"] == "exhausted"
    drain()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert parent.step_runs.get(step__name="Child").output["status"] == "dead"
