"""Admin: write-only API key, "Sync tools" button and action, tools inline, last error."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from automate.mcp.models import MCPServer, ensure_stdio_server
from tests.mcp.conftest import TOKEN, free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def add_form(url, **extra):
    return {
        "name": "My Tools",
        "key": "",
        "url": url,
        "transport": "streamable_http",
        "headers": "{}",
        "timeout": "10",
        "enabled": "on",
        "new_api_key": TOKEN,
        "tools-TOTAL_FORMS": "0",
        "tools-INITIAL_FORMS": "0",
        "tools-MIN_NUM_FORMS": "0",
        "tools-MAX_NUM_FORMS": "1000",
        **extra,
    }


def test_admin__add_stores_the_key_encrypted_and_never_shows_it(admin_client, mcp_server):
    response = admin_client.post(reverse("admin:automate_mcpserver_add"), add_form(mcp_server.url))
    assert response.status_code == 302, response.content
    server = MCPServer.objects.get()
    assert server.key == "my_tools"
    assert server.api_key.startswith("fernet:")
    page = admin_client.get(reverse("admin:automate_mcpserver_change", args=[server.pk]))
    assert TOKEN.encode() not in page.content
    assert server.api_key.encode() not in page.content
    assert b"set (encrypted)" in page.content
    assert b'id="mcp-sync-button"' in page.content


def test_admin__empty_key_field_keeps_the_current_key_and_clear_removes_it(admin_client):
    server = MCPServer.objects.create(name="My Tools", url="https://t.example.com/mcp", api_key="k")
    url = reverse("admin:automate_mcpserver_change", args=[server.pk])
    form = add_form(server.url, key="my_tools", new_api_key="")
    assert admin_client.post(url, form).status_code == 302
    assert MCPServer.objects.get().endpoint().headers["Authorization"] == "Bearer k"
    assert admin_client.post(url, {**form, "clear_api_key": "on"}).status_code == 302
    assert MCPServer.objects.get().api_key == ""


def test_admin__sync_button_lists_the_tools(admin_client, mcp_server):
    server = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    response = admin_client.post(
        reverse("admin:automate_mcpserver_sync", args=[server.pk]), follow=True
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "synced 6 tools (6 new" in content
    for name in ("search_documents", "echo", "explode", "add", "slow", "big"):
        assert name in content
    assert server.tools.count() == 6


def test_admin__sync_needs_post(admin_client, mcp_server):
    server = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    response = admin_client.get(reverse("admin:automate_mcpserver_sync", args=[server.pk]))
    assert response.status_code == 405
    assert not server.tools.exists()


def test_admin__sync_action_reports_failures_and_shows_last_error(admin_client, mcp_server):
    good = MCPServer.objects.create(name="Good", url=mcp_server.url, api_key=TOKEN)
    bad = MCPServer.objects.create(name="Bad", url=mcp_server.url, api_key="wrong")
    response = admin_client.post(
        reverse("admin:automate_mcpserver_changelist"),
        {"action": "sync_tools_action", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    content = response.content.decode()
    assert "Good: synced 6 tools" in content
    assert "Bad: sync failed: [bad:unauthenticated]" in content
    assert good.tools.count() == 6 and not bad.tools.exists()
    page = admin_client.get(reverse("admin:automate_mcpserver_change", args=[bad.pk]))
    assert b"refused the credentials (HTTP 401)" in page.content


def test_admin__unreachable_server_error_is_shown(admin_client):
    server = MCPServer.objects.create(
        name="Down", url=f"http://127.0.0.1:{free_port()}/mcp", api_key=TOKEN
    )
    response = admin_client.post(
        reverse("admin:automate_mcpserver_sync", args=[server.pk]), follow=True
    )
    assert "sync failed: [down:unavailable]" in response.content.decode()


# -- stdio servers: declared in settings, never typed in the admin ------------------------


@pytest.fixture
def clock(settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "SECRETS": {"CLOCK_TOKEN": "tok-123"},
        "MCP_STDIO_SERVERS": {
            "clock": {
                "command": ["mcp-server-time", "--local-timezone", "UTC"],
                "env": {"API_TOKEN": "secret://CLOCK_TOKEN", "LEVEL": "debug"},
            }
        },
    }
    return ensure_stdio_server("clock")


def test_admin__a_stdio_server_cannot_be_added(admin_client):
    response = admin_client.post(
        reverse("admin:automate_mcpserver_add"),
        add_form("", name="Shell", transport="stdio", new_api_key=""),
    )
    assert response.status_code == 200
    assert "transport" in response.context["adminform"].form.errors
    assert not MCPServer.objects.exists()


def test_admin__a_stdio_server_shows_its_command_and_env_names_only(admin_client, clock):
    page = admin_client.get(reverse("admin:automate_mcpserver_change", args=[clock.pk]))
    content = page.content.decode()
    assert "mcp-server-time --local-timezone UTC" in content
    assert "API_TOKEN, LEVEL" in content
    assert (
        "tok-123" not in content
        and "secret://CLOCK_TOKEN" not in content
        and "debug" not in content
    )
    changelist = admin_client.get(reverse("admin:automate_mcpserver_changelist"))
    assert "stdio: mcp-server-time" in changelist.content.decode()


def test_admin__only_enabled_of_a_stdio_server_can_change(admin_client, clock):
    response = admin_client.post(
        reverse("admin:automate_mcpserver_change", args=[clock.pk]),
        {
            "name": "Renamed",
            "key": "other",
            "url": "https://evil.example.com/mcp",
            "transport": "streamable_http",
            "tools-TOTAL_FORMS": "0",
            "tools-INITIAL_FORMS": "0",
            "tools-MIN_NUM_FORMS": "0",
            "tools-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content
    clock.refresh_from_db()
    assert (clock.name, clock.key, clock.url, clock.transport) == ("clock", "clock", "", "stdio")
    assert clock.enabled is False  # the unticked checkbox
