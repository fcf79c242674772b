"""manage.py sync_mcp_tools."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from automate.mcp.models import MCPServer
from tests.mcp.conftest import TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


def test_sync_mcp_tools__syncs_every_enabled_server(mcp_server):
    on = MCPServer.objects.create(name="On", url=mcp_server.url, api_key=TOKEN)
    off = MCPServer.objects.create(name="Off", url=mcp_server.url, api_key=TOKEN, enabled=False)
    out = StringIO()
    call_command("sync_mcp_tools", stdout=out)
    assert "on: 6 tools (6 new" in out.getvalue()
    assert on.tools.count() == 6 and not off.tools.exists()


def test_sync_mcp_tools__failure_is_a_command_error(mcp_server):
    MCPServer.objects.create(name="Good", url=mcp_server.url, api_key=TOKEN)
    MCPServer.objects.create(name="Bad", url=mcp_server.url, api_key="wrong")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="sync failed for: bad"):
        call_command("sync_mcp_tools", "good", "bad", stdout=out, stderr=err)
    assert "good: 6 tools" in out.getvalue()
    assert "unauthenticated" in err.getvalue()


def test_sync_mcp_tools__unknown_key():
    with pytest.raises(CommandError, match="no MCP server with key: nope"):
        call_command("sync_mcp_tools", "nope")
