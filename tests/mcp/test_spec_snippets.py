"""The spec's "MCP Server Integration" snippets, unchanged, against a real server on :3000."""

from __future__ import annotations

import pytest

from automate.mcp.calls import call_tool
from tests.conftest import service_missing
from tests.mcp.conftest import port_is_free, start_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]

SPEC_STEP = {
    "name": "Use MCP Tool",
    "type": "mcp_tool",
    "config": {
        "server": "my_tools",
        "tool": "search_documents",
        "args": {"query": "{{ event.payload.query }}"},
    },
}


@pytest.fixture
def server_on_3000(tmp_path):
    if not port_is_free(3000):
        service_missing("port 3000 is taken; the spec's snippet names http://localhost:3000/mcp")
    server = start_server(tmp_path, port=3000, token="secret")
    yield server
    server.stop()


def test_spec__register_and_sync_then_call_the_step_tool(server_on_3000):
    # -- the spec's snippet, verbatim --
    from automate.models import MCPServer

    # Via Admin UI or programmatically
    server = MCPServer.objects.create(
        name="My Tools",
        url="http://localhost:3000/mcp",
        api_key="secret",
        enabled=True,
    )

    # Sync available tools
    server.sync_tools()
    # -- end of the snippet --

    assert server.key == "my_tools"
    assert "search_documents" in set(server.tools.values_list("name", flat=True))

    # What the mcp_tool step runs once the engine has rendered its args for an event
    # whose payload is {"query": "quarterly report"}.
    config = SPEC_STEP["config"]
    output = call_tool(config["server"], config["tool"], {"query": "quarterly report"})
    assert output["hits"][0] == "quarterly report result 1"
    (received,) = server_on_3000.calls()
    assert received["arguments"]["query"] == "quarterly report"
    assert received["authorization"] == "Bearer secret"


def test_spec__the_mcp_workflow_runs_on_an_event(server_on_3000):
    from automate.mcp.models import MCPServer
    from automate.models import RunStatus, WorkflowRun
    from automate.worker import EmbeddedWorker

    MCPServer.objects.create(
        name="My Tools", url="http://localhost:3000/mcp", api_key="secret", enabled=True
    ).sync_tools()

    # -- the spec's snippet, verbatim --
    from automate.services import WorkflowService

    service = WorkflowService()
    workflow = service.create_workflow(
        name="MCP Workflow",
        steps=[
            {
                "name": "Use MCP Tool",
                "type": "mcp_tool",
                "config": {
                    "server": "my_tools",
                    "tool": "search_documents",
                    "args": {"query": "{{ event.payload.query }}"},
                },
            }
        ],
    )
    # -- end of the snippet --

    run = service.run_workflow(workflow, {"payload": {"query": "renewal contracts"}})
    assert EmbeddedWorker(threads=1, poll_seconds=0).run(once=True) == {"done": 1}
    run = WorkflowRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.COMPLETED
    step = run.step_runs.get()
    assert step.input["args"] == {"query": "renewal contracts"}
    assert step.output["hits"][0] == "renewal contracts result 1"
    (received,) = server_on_3000.calls()
    assert received["arguments"]["query"] == "renewal contracts"
    assert received["authorization"] == "Bearer secret"


def test_spec__a_server_that_stops_fails_the_step_retryably(tmp_path):
    from automate.mcp.models import MCPServer
    from automate.models import RunStatus, WorkflowRun
    from automate.services import WorkflowService
    from automate.worker import EmbeddedWorker
    from tests.mcp.conftest import free_port

    server = start_server(tmp_path, port=free_port(), token="secret")
    MCPServer.objects.create(
        name="My Tools", url=server.url, api_key="secret", enabled=True
    ).sync_tools()
    workflow = WorkflowService().create_workflow(name="MCP Workflow", steps=[SPEC_STEP])
    server.stop()
    run = WorkflowService().run_workflow(workflow, {"payload": {"query": "q"}})
    EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
    run = WorkflowRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.RETRYING
    step = run.step_runs.get()
    assert step.error["code"] == "unavailable"
    assert step.error["retryable"] is True
