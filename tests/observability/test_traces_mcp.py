"""An MCP tool call is a CLIENT span, and its HTTP requests are its children."""

from __future__ import annotations

import json

import pytest

from automate.mcp.calls import call_tool
from automate.mcp.models import MCPServer
from automate_core.observability import spans
from tests.mcp.conftest import TOKEN, loopback_allowed, mcp_server  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


def test_traces_mcp__tool_call_span_with_its_http_requests(exporter, mcp_server):  # noqa: F811
    server = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    server.sync_tools()
    exporter.clear()
    with spans.span("step"):
        assert call_tool("my_tools", "echo", {"text": "private words"}) == "echo: private words"
    finished = exporter.get_finished_spans()
    [step] = [s for s in finished if s.name == "step"]
    [tool] = [s for s in finished if s.name == "tools/call echo"]
    assert tool.parent.span_id == step.context.span_id
    assert tool.kind.name == "CLIENT"
    assert tool.attributes["mcp.method.name"] == "tools/call"
    assert tool.attributes["gen_ai.tool.name"] == "echo"
    assert tool.attributes["automate.mcp.server"] == "my_tools"
    http = [s for s in finished if s.name.startswith("HTTP ")]
    assert http and all(s.parent.span_id == tool.context.span_id for s in http)
    assert TOKEN not in json.dumps([dict(s.attributes) for s in finished], default=str)
    assert "private words" not in json.dumps([dict(s.attributes) for s in finished], default=str)
