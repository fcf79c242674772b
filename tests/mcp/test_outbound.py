"""MCP traffic follows the outbound SSRF rules; loopback needs the documented allow-list."""

from __future__ import annotations

import pytest

from automate.mcp.calls import call_tool
from automate.mcp.models import MCPServer
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.mcp.conftest import TOKEN

pytestmark = pytest.mark.django_db


def refused(url, settings, **policy):
    settings.AUTOMATE = {**settings.AUTOMATE, **policy}
    server = MCPServer.objects.create(name="My Tools", url=url, api_key=TOKEN)
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    server.refresh_from_db()
    assert "permission_denied" in server.last_error
    return info.value


def test_outbound__loopback_refused_without_the_allow_list(mcp_server, settings):
    before = len(mcp_server.calls())
    error = refused(mcp_server.url, settings, HTTP_ALLOWED_PORTS="*")
    assert error.code == ErrorCodes.PERMISSION_DENIED
    assert error.details["reason"] == "private_address"
    assert "HTTP_ALLOW_NETWORKS" in error.message
    assert len(mcp_server.calls()) == before


def test_outbound__host_name_is_checked_at_connect_time(mcp_server, settings):
    # "localhost" is not an IP literal: only the guarded network backend sees 127.0.0.1.
    url = f"http://localhost:{mcp_server.port}/mcp"
    error = refused(url, settings, HTTP_ALLOWED_PORTS="*")
    assert error.details["reason"] == "private_address"
    assert "localhost resolves to" in error.message


def test_outbound__allow_hosts_admits_a_named_internal_host(mcp_server, settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "HTTP_ALLOWED_PORTS": "*",
        "HTTP_ALLOW_HOSTS": ["localhost"],
    }
    server = MCPServer.objects.create(
        name="My Tools", url=f"http://localhost:{mcp_server.port}/mcp", api_key=TOKEN
    )
    assert server.sync_tools().total == 6


def test_outbound__port_outside_the_allowed_ports(mcp_server, settings):
    error = refused(mcp_server.url, settings, HTTP_ALLOW_NETWORKS=["127.0.0.0/8"])
    assert error.details["reason"] == "port"


def test_outbound__metadata_address_refused_even_when_allow_listed(settings):
    error = refused("http://169.254.169.254/mcp", settings, HTTP_ALLOW_NETWORKS=["169.254.0.0/16"])
    assert error.details["reason"] == "denied_address"


def test_outbound__credentials_in_the_url_are_refused(mcp_server, settings):
    url = f"http://user:pw@127.0.0.1:{mcp_server.port}/mcp"
    error = refused(url, settings, HTTP_ALLOWED_PORTS="*", HTTP_ALLOW_NETWORKS=["127.0.0.0/8"])
    assert error.details["reason"] == "userinfo"


def test_outbound__calls_are_checked_too(mcp_server, settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "HTTP_ALLOWED_PORTS": "*",
        "HTTP_ALLOW_NETWORKS": ["127.0.0.0/8"],
    }
    MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN).sync_tools()
    settings.AUTOMATE = {**settings.AUTOMATE, "HTTP_ALLOW_NETWORKS": []}
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "echo", {"text": "x"})
    assert info.value.code == ErrorCodes.PERMISSION_DENIED


def test_outbound__compressed_answer_is_refused(tmp_path, settings):
    # The client asks for identity so that the size cap counts what the SDK parses; a
    # server that compresses anyway could otherwise send a decompression bomb.
    from tests.mcp.conftest import start_server

    gzipping = start_server(tmp_path, extra=("--force-gzip",))
    try:
        error = refused(
            gzipping.url, settings, HTTP_ALLOWED_PORTS="*", HTTP_ALLOW_NETWORKS=["127.0.0.0/8"]
        )
    finally:
        gzipping.stop()
    assert error.details["reason"] == "encoding"
    assert "'gzip'-encoded" in error.message
