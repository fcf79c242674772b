"""create_workflow checks an mcp_tool step against the server's synced tools and their
cached input schemas, as it checks a connector_action step against the connector."""

from __future__ import annotations

import pytest

from automate.mcp.models import MCPServer
from automate.services import WorkflowService
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.mcp.conftest import TOKEN, stdio_entry

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


@pytest.fixture
def tools(mcp_server):
    server = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    server.sync_tools()
    return server


def step(tool="add", args=None, server="my_tools"):
    return {
        "name": "Use MCP Tool",
        "type": "mcp_tool",
        "config": {"server": server, "tool": tool, "args": {} if args is None else args},
    }


def rejected(*steps) -> AutomateError:
    with pytest.raises(AutomateError) as info:
        WorkflowService().create_workflow(name="MCP", steps=list(steps))
    error = info.value
    assert error.code == ErrorCodes.INVALID_ARGUMENT
    assert error.details["step"] == "Use MCP Tool"
    assert error.message.startswith("step 'Use MCP Tool': ")
    return error


def test_validation__a_tool_the_server_does_not_list(tools):
    error = rejected(step(tool="serach_documents", args={"query": "q"}))
    assert error.details["field"] == "steps[0].config.tool"
    assert "has no tool 'serach_documents'" in error.message
    assert "search_documents" in error.message  # the listed tools, to spot the typo


def test_validation__a_tool_no_longer_listed(tools):
    tools.tools.filter(name="add").update(enabled=False)
    error = rejected(step(args={"a": 1, "b": 2}))
    assert error.details["field"] == "steps[0].config.tool"


def test_validation__a_server_never_synced_says_so(mcp_server):
    MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    error = rejected(step(args={"a": 1, "b": 2}))
    assert "never synced: run manage.py sync_mcp_tools my_tools" in error.message


def test_validation__an_unknown_server(tools):
    error = rejected(step(server="my_tool"))
    assert error.details["field"] == "steps[0].config.server"
    assert "no MCP server 'my_tool' (known: my_tools)" in error.message


def test_validation__a_declared_stdio_server_not_synced_yet(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_STDIO_SERVERS": {"clock": stdio_entry()}}
    error = rejected(step(server="clock", tool="get_current_time", args={"timezone": "UTC"}))
    assert error.details["field"] == "steps[0].config.server"
    assert "run manage.py sync_mcp_tools clock" in error.message


def test_validation__a_literal_argument_of_the_wrong_type(tools):
    error = rejected(step(args={"a": 1, "b": "two"}))
    assert error.details["field"] == "steps[0].config.args.b"
    assert error.message == (
        "step 'Use MCP Tool': config.args.b: does not fit the input schema of my_tools.add: "
        "'two' is not of type 'integer'"
    )


def test_validation__a_missing_required_argument(tools):
    error = rejected(step(args={"a": 1}))
    assert error.details["field"] == "steps[0].config.args"
    assert "'b' is a required property" in error.message


def test_validation__a_missing_argument_is_caught_even_beside_a_template(tools):
    error = rejected(step(args={"a": "{{ event.payload.a }}"}))
    assert "'b' is a required property" in error.message


def test_validation__args_that_are_a_plain_string(tools):
    error = rejected(step(args="a=1"))
    assert error.details["field"] == "steps[0].config.args"


def test_validation__the_second_step_is_named(tools):
    ok = {**step(args={"a": 1, "b": 2}), "name": "First"}
    error = rejected(ok, step(args={"a": 1, "b": None}))
    assert error.details["field"] == "steps[1].config.args.b"


def test_validation__update_workflow_checks_too(tools):
    service = WorkflowService()
    workflow = service.create_workflow(name="MCP", steps=[step(args={"a": 1, "b": 2})])
    with pytest.raises(AutomateError) as info:
        service.update_workflow(workflow, steps=[step(args={"a": 1, "b": "x"})])
    assert info.value.details["field"] == "steps[0].config.args.b"


@pytest.mark.parametrize(
    "args",
    [
        {"a": 1, "b": 2},
        {"a": "{{ event.payload.a }}", "b": 2},  # a templated value is checked once rendered
        {"a": "{{ event.payload.a }}", "b": "{{ event.payload.b }}"},
        "{{ event.payload }}",  # the whole arguments object from the event
    ],
)
def test_validation__good_and_templated_arguments_are_accepted(tools, args):
    workflow = WorkflowService().create_workflow(name="MCP", steps=[step(args=args)])
    assert workflow.steps.get().config["args"] == args


def test_validation__templated_server_or_tool_is_checked_at_run_time(tools):
    WorkflowService().create_workflow(
        name="MCP", steps=[step(server="{{ event.payload.server }}", tool="anything")]
    )
    WorkflowService().create_workflow(name="MCP 2", steps=[step(tool="{{ event.payload.tool }}")])


def test_validation__a_templated_value_is_checked_after_rendering_at_run_time(tools):
    from automate.models import RunStatus, WorkflowRun
    from automate.worker import EmbeddedWorker

    service = WorkflowService()
    workflow = service.create_workflow(
        name="MCP", steps=[step(args={"a": "{{ event.payload.a }}", "b": 2})]
    )
    good = service.run_workflow(workflow, {"payload": {"a": 40}})
    bad = service.run_workflow(workflow, {"payload": {"a": "forty"}})
    EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
    good, bad = WorkflowRun.objects.get(pk=good.pk), WorkflowRun.objects.get(pk=bad.pk)
    assert good.status == RunStatus.COMPLETED
    assert good.step_runs.get().output == {"result": 42}
    assert bad.status == RunStatus.DEAD  # not retried: rendering again gives the same value
    error = bad.step_runs.get().error
    assert error["code"] == "invalid_argument"
    assert "invalid arguments for my_tools.add at a" in error["message"]
