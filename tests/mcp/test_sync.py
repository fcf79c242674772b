"""sync_tools against a real MCP server: pagination, upserts, failures keep the cache."""

from __future__ import annotations

import pytest

from automate.mcp.models import MCPServer, MCPTool, derive_key, schema_hash
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.mcp.conftest import TOKEN, start_server

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]

ALL_TOOLS = {"add", "big", "echo", "explode", "search_documents", "slow"}


def make_server(url, api_key=TOKEN, **kwargs):
    return MCPServer.objects.create(name="My Tools", url=url, api_key=api_key, **kwargs)


def test_sync_tools__follows_every_page(mcp_server):
    server = make_server(mcp_server.url)
    result = server.sync_tools()
    assert set(result.added) == ALL_TOOLS  # six tools, two per page: three pages
    assert result.total == 6
    tools = {t.name: t for t in server.tools.all()}
    assert set(tools) == ALL_TOOLS
    search = tools["search_documents"]
    assert search.enabled
    assert search.description == "Search the documents for a query."
    assert search.input_schema["properties"]["query"]["type"] == "string"
    assert search.input_schema["required"] == ["query"]
    assert search.schema_hash == schema_hash(search.input_schema)
    assert search.annotations == {"readOnlyHint": True}
    assert search.is_idempotent  # a read-only tool may be retried after an unknown outcome
    assert tools["echo"].annotations == {}
    assert not tools["echo"].is_idempotent
    server.refresh_from_db()
    assert server.last_synced_at is not None
    assert server.last_error == ""


def test_sync_tools__page_cap_stops_an_endless_listing(mcp_server, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_MAX_TOOL_PAGES": 2}
    server = make_server(mcp_server.url)
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert "more pages after 2" in info.value.message
    assert not server.tools.exists()


def test_sync_tools__second_sync_changes_nothing(mcp_server):
    server = make_server(mcp_server.url)
    server.sync_tools()
    again = server.sync_tools()
    assert (again.added, again.updated, again.disabled, again.total) == ([], [], [], 6)


def test_sync_tools__vanished_tools_are_disabled_and_new_ones_added(own_mcp_server):
    own_mcp_server.offer_late_tool(True)
    server = make_server(own_mcp_server.url)
    assert "late_tool" in server.sync_tools().added
    own_mcp_server.offer_late_tool(False)
    result = server.sync_tools()
    assert result.disabled == ["late_tool"]
    assert not MCPTool.objects.get(server=server, name="late_tool").enabled
    assert MCPTool.objects.get(server=server, name="echo").enabled
    own_mcp_server.offer_late_tool(True)
    result = server.sync_tools()
    assert result.updated == ["late_tool"]  # back again: enabled
    assert MCPTool.objects.get(server=server, name="late_tool").enabled


def test_sync_tools__changed_schema_is_updated(mcp_server):
    server = make_server(mcp_server.url)
    server.sync_tools()
    MCPTool.objects.filter(server=server, name="add").update(
        input_schema={"type": "object"}, schema_hash="old", description="stale"
    )
    result = server.sync_tools()
    assert result.updated == ["add"]
    tool = MCPTool.objects.get(server=server, name="add")
    assert tool.description == "Add two integers."
    assert tool.schema_hash == schema_hash(tool.input_schema) != "old"


def test_sync_tools__wrong_key_is_unauthenticated_and_keeps_the_cache(mcp_server):
    server = make_server(mcp_server.url)
    server.sync_tools()
    server.api_key = "wrong-key"
    server.save()
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert info.value.code == ErrorCodes.UNAUTHENTICATED
    assert not info.value.retryable
    assert "401" in info.value.message
    assert "wrong-key" not in str(info.value)
    server.refresh_from_db()
    assert server.last_error.startswith("[my_tools:unauthenticated]")
    assert server.tools.filter(enabled=True).count() == 6  # the cached list is kept


def test_sync_tools__unreachable_server_is_unavailable_and_retryable(mcp_server):
    from tests.mcp.conftest import free_port

    server = make_server(f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable
    server.refresh_from_db()
    assert "unavailable" in server.last_error
    assert server.last_synced_at is None


def test_sync_tools__disabled_server_is_refused(mcp_server):
    server = make_server(mcp_server.url, enabled=False)
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert info.value.code == ErrorCodes.CONFIGURATION
    assert mcp_server.port  # the server was up: refusal is ours, not the network's


def test_sync_tools__sse_transport_for_older_servers(tmp_path):
    old = start_server(tmp_path, extra=("--sse",), path="/sse")
    try:
        server = make_server(old.url, transport=MCPServer.Transport.SSE)
        result = server.sync_tools()
    finally:
        old.stop()
    assert set(result.added) == ALL_TOOLS


def test_derive_key__slug_with_underscores():
    assert derive_key("My Tools") == "my_tools"
    assert derive_key("  CRM-Search v2 ") == "crm_search_v2"
