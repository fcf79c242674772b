"""WorkflowService: validation before saving, versions, triggers, manual runs."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from automate.models import MANUAL_CONNECTOR_KEY, RunStatus, Workflow, WorkflowStep
from automate.services import WorkflowService
from automate.steps import StepExecutor, register_step
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.providers.errors import AutomateError, ErrorCodes

pytestmark = pytest.mark.django_db

ECHO = {
    "name": "Echo",
    "type": "connector_action",
    "config": {"profile": "recorder", "action": "echo", "input": {"q": "{{ event.payload.q }}"}},
}
FILTER = {"name": "Big", "type": "filter", "config": {"condition": "{{ event.payload.n > 1 }}"}}


def invalid(steps, **kwargs) -> AutomateError:
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(name="Bad", steps=steps, **kwargs)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert not Workflow.objects.exists()
    assert not WorkflowStep.objects.exists()
    return info.value


def test_service__create_saves_workflow_and_steps():
    wf = WorkflowService().create_workflow(
        name="Order Paid!", steps=[ECHO, FILTER], trigger={"connector": "my_service"}
    )
    assert wf.key == "order-paid"
    assert wf.version == 1
    assert wf.enabled
    assert wf.trigger_connector == "my_service"
    assert wf.trigger_event_types == []
    rows = list(wf.current_steps().values_list("position", "name", "type", "max_attempts"))
    assert rows == [(0, "Echo", "connector_action", 3), (1, "Big", "filter", 3)]


def test_service__a_step_type_registered_later_is_accepted_unknown_ones_are_not():
    class ToolConfig(BaseModel):
        server: str
        tool: str
        args: dict = {}

    class FakeTool(StepExecutor):
        key = "fake_tool"
        config_model = ToolConfig

        def execute(self, config, ctx):
            return {}

    steps = [
        {
            "name": "Use Tool",
            "type": "fake_tool",
            "config": {
                "server": "my_tools",
                "tool": "search_documents",
                "args": {"query": "{{ event.payload.query }}"},
            },
        }
    ]
    error = invalid(steps)
    assert "unknown step type 'fake_tool'" in error.message
    register_step(FakeTool)
    try:
        workflow = WorkflowService().create_workflow(name="Tool Workflow", steps=steps)
    finally:
        step_registry.unregister("fake_tool")
    assert workflow.key == "tool-workflow"
    assert workflow.trigger_connector == ""
    assert workflow.current_steps().get().config["args"]["query"] == "{{ event.payload.query }}"


@pytest.mark.parametrize(
    ("step", "field", "fragment"),
    [
        ({"name": "S", "type": "nope", "config": {}}, "steps[1].type", "unknown step type 'nope'"),
        ({"name": "S", "type": "filter"}, "steps[1].config.condition", "Field required"),
        (
            {"name": "S", "type": "filter", "config": {"condition": "yes"}},
            "steps[1].config.condition",
            "must be a template",
        ),
        (
            {"name": "S", "type": "filter", "config": {"condition": "{{ ''.__class__.__mro__ }}"}},
            "steps[1].config.condition",
            "'__mro__'",
        ),
        (
            {"name": "S", "type": "connector_action", "config": {"profile": "nope", "action": "x"}},
            "steps[1].config.profile",
            "named 'nope'",
        ),
        (
            {
                "name": "S",
                "type": "connector_action",
                "config": {"profile": "recorder", "action": "x"},
            },
            "steps[1].config.action",
            "has no action 'x'",
        ),
        (
            {
                "name": "S",
                "type": "connector_action",
                "config": {"profile": "recorder", "action": "record", "input": {}},
            },
            "steps[1].config.input",
            "'event' is a required property",
        ),
        (
            {
                "name": "S",
                "type": "connector_action",
                "config": {
                    "profile": "recorder",
                    "action": "record",
                    "input": {"x": "{{ trace_id }}"},
                },
            },
            "steps[1].config.input",
            "missing required field(s) event",
        ),
        (
            {"name": "S", "type": "filter", "config": {"condition": True, "extra": 1}},
            "steps[1].config.extra",
            "Extra inputs are not permitted",
        ),
        (
            {"name": "S", "type": "filter", "config": {"condition": "{{ x }"}},
            "steps[1].config.condition",
            "syntax error",
        ),
        (
            {"name": "Echo", "type": "filter", "config": {"condition": True}},
            "steps[1].name",
            "unique",
        ),
        (
            {
                "name": "S",
                "type": "filter",
                "config": {"condition": True},
                "retry": {"max_attempts": 0},
            },
            "steps[1].retry.max_attempts",
            "positive",
        ),
        (
            {"name": "S", "type": "filter", "config": {"condition": True}, "when": 1},
            "steps[1]",
            "when",
        ),
        (
            {
                "name": "S",
                "type": "http_request",
                "config": {"url": "http://x", "credentials_ref": "tok"},
            },
            "steps[1].config.credentials_ref",
            "secret://NAME",
        ),
    ],
)
def test_service__invalid_step_names_step_and_field(step, field, fragment):
    error = invalid([ECHO, step])
    assert error.details["field"] == field
    assert fragment in error.message
    if field != "steps[1].name":
        assert error.message.startswith("step 'S'") or "steps[1]" in error.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trigger": {"connector": ""}}, "trigger.connector"),
        ({"trigger": {"connector": "_manual"}}, "trigger.connector"),
        ({"trigger": {"connector": "x", "events": [1]}}, "trigger.events"),
        ({"trigger": {"connector": "x", "on": "y"}}, "trigger"),
    ],
)
def test_service__invalid_trigger(kwargs, field):
    assert invalid([ECHO], **kwargs).details["field"] == field


def test_service__empty_steps_and_name_are_rejected():
    assert invalid([]).details["field"] == "steps"
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(name="  ", steps=[ECHO])
    assert info.value.details["field"] == "name"


def test_service__duplicate_key_is_already_exists():
    WorkflowService().create_workflow(name="Same", steps=[ECHO])
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(name="Same", steps=[FILTER])
    assert info.value.code == ErrorCodes.ALREADY_EXISTS
    assert Workflow.objects.count() == 1
    assert WorkflowStep.objects.count() == 1


def test_service__update_makes_a_new_version_and_keeps_the_old():
    service = WorkflowService()
    wf = service.create_workflow(name="V", steps=[ECHO])
    run = service.run_workflow(wf, {"q": "x"})
    wf = service.update_workflow(wf, steps=[FILTER, ECHO], trigger="my_service")
    assert wf.version == 2
    assert [s.name for s in wf.current_steps()] == ["Big", "Echo"]
    assert [s.name for s in wf.steps_of(run.workflow_version)] == ["Echo"]
    assert wf.trigger_connector == "my_service"
    # A rejected update changes nothing.
    with pytest.raises(AutomateError):
        service.update_workflow(wf, steps=[{"name": "x", "type": "nope"}])
    wf.refresh_from_db()
    assert wf.version == 2
    assert WorkflowStep.objects.count() == 3
    # No steps given: same version; trigger=None makes it manual-only.
    wf = service.update_workflow(wf, name="Renamed", trigger=None)
    assert (wf.version, wf.name, wf.trigger_connector) == (2, "Renamed", "")


def test_service__enable_disable_and_matching():
    service = WorkflowService()
    every = service.create_workflow(name="Every", steps=[ECHO], trigger="my_service")
    some = service.create_workflow(
        name="Orders", steps=[ECHO], trigger={"connector": "my_service", "events": ["order.*"]}
    )
    service.create_workflow(name="Other", steps=[ECHO], trigger="recorder")
    service.create_workflow(name="Manual", steps=[ECHO])
    assert service.matching_workflows("my_service", "order.paid") == [every, some]
    assert service.matching_workflows("my_service", "user.created") == [every]
    service.disable(every)
    assert service.matching_workflows("my_service", "order.paid") == [some]
    service.enable(every)
    assert len(service.matching_workflows("my_service", "order.paid")) == 2


def test_service__run_workflow_queues_an_item_and_a_run():
    wf = WorkflowService().create_workflow(name="Manual", steps=[ECHO])
    run = WorkflowService().run_workflow(wf, {"payload": {"q": 1}, "type": "test.manual"})
    item = OutboxItem.objects.get()
    assert item.connector_key == MANUAL_CONNECTOR_KEY
    assert item.status == "pending"
    assert item.payload == {"q": 1}
    assert item.event_type == "test.manual"
    assert run.outbox_item == item
    assert run.status == RunStatus.PENDING
    assert run.event["payload"] == {"q": 1}
    assert run.trace_id == item.trace_id
