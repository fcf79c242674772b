"""stdio MCP servers declared in AUTOMATE["MCP_STDIO_SERVERS"], against a real program
(tests/mcp/stdio_server.py, the SDK's MCPServer over stdin/stdout)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from automate.mcp.calls import call_tool
from automate.mcp.models import MCPServer, ensure_stdio_server
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.mcp.conftest import assert_all_gone, pids, stdio_entry

pytestmark = pytest.mark.django_db

CLOCK_TOOLS = {"get_current_time", "env_values", "slow", "big"}


def test_stdio__sync_creates_the_row_from_settings_and_caches_the_tools(stdio_servers, tmp_path):
    pid_file = tmp_path / "pids"
    stdio_servers(clock=stdio_entry("--pid-file", str(pid_file), name="Clock", timeout=12))
    out = StringIO()
    call_command("sync_mcp_tools", stdout=out)
    assert "clock: 4 tools (4 new" in out.getvalue()
    server = MCPServer.objects.get(key="clock")
    assert (server.transport, server.name, server.url, server.timeout) == ("stdio", "Clock", "", 12)
    assert set(server.tools.values_list("name", flat=True)) == CLOCK_TOOLS
    assert server.tools.get(name="get_current_time").is_idempotent
    assert server.last_synced_at is not None and server.last_error == ""
    assert_all_gone(pid_file)


def test_stdio__settings_changes_reach_the_row_on_the_next_sync(stdio_servers):
    stdio_servers(clock=stdio_entry())
    call_command("sync_mcp_tools", "clock", stdout=StringIO())
    MCPServer.objects.filter(key="clock").update(enabled=False)
    stdio_servers(clock=stdio_entry(name="Wall clock", timeout=5))
    call_command("sync_mcp_tools", stdout=StringIO())  # syncs enabled servers: none
    server = MCPServer.objects.get(key="clock")
    assert (server.name, server.timeout) == ("Wall clock", 5)
    assert server.enabled is False  # the admin's choice is kept


def test_stdio__a_workflow_run_calls_the_tool_end_to_end(stdio_servers, tmp_path):
    from automate.models import RunStatus, WorkflowRun
    from automate.services import WorkflowService
    from automate.worker import EmbeddedWorker

    pid_file = tmp_path / "pids"
    stdio_servers(clock=stdio_entry("--pid-file", str(pid_file)))
    call_command("sync_mcp_tools", stdout=StringIO())
    service = WorkflowService()
    workflow = service.create_workflow(
        name="What time is it",
        steps=[
            {
                "name": "Ask the clock",
                "type": "mcp_tool",
                "config": {
                    "server": "clock",
                    "tool": "get_current_time",
                    "args": {"timezone": "{{ event.payload.tz }}"},
                },
            }
        ],
    )
    run = service.run_workflow(workflow, {"payload": {"tz": "Europe/Paris"}})
    assert EmbeddedWorker(threads=1, poll_seconds=0).run(once=True) == {"done": 1}
    run = WorkflowRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.COMPLETED, run.step_runs.get().error
    output = run.step_runs.get().output
    assert output["timezone"] == "Europe/Paris"
    assert output["datetime"][-6:] in ("+01:00", "+02:00")
    assert len(pids(pid_file)) == 2  # one program for the sync, one for the call
    assert_all_gone(pid_file)


def test_stdio__a_call_creates_the_row_on_first_use(stdio_servers):
    stdio_servers(clock=stdio_entry())
    output = call_tool("clock", "get_current_time", {"timezone": "UTC"}, timeout=20)
    assert output["timezone"] == "UTC"
    assert MCPServer.objects.get(key="clock").tools.count() == 4


def test_stdio__the_program_gets_only_its_env_with_secrets_resolved(
    stdio_servers, settings, monkeypatch
):
    monkeypatch.setenv("WORKER_DATABASE_PASSWORD", "do-not-leak")
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"CLOCK_TOKEN": "tok-123"}}
    stdio_servers(clock=stdio_entry(env={"GREETING": "hello", "API_TOKEN": "secret://CLOCK_TOKEN"}))

    names = ["GREETING", "API_TOKEN", "WORKER_DATABASE_PASSWORD", "DJANGO_SETTINGS_MODULE", "PATH"]
    seen = call_tool("clock", "env_values", {"names": names}, timeout=20)
    assert seen["GREETING"] == "hello"
    assert seen["API_TOKEN"] == "tok-123"
    assert seen["WORKER_DATABASE_PASSWORD"] is None
    assert seen["DJANGO_SETTINGS_MODULE"] is None
    assert seen["PATH"]


def test_stdio__the_secret_is_not_stored_and_not_in_the_endpoint_repr(stdio_servers, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"CLOCK_TOKEN": "tok-123"}}
    stdio_servers(clock=stdio_entry(env={"API_TOKEN": "secret://CLOCK_TOKEN"}))
    server = ensure_stdio_server("clock")
    endpoint = server.endpoint()
    assert endpoint.stdio is not None and endpoint.stdio.env["API_TOKEN"] == "tok-123"
    assert "tok-123" not in repr(endpoint) + repr(endpoint.stdio)
    stored = MCPServer.objects.filter(key="clock").values().get()
    assert "tok-123" not in str(stored) and "CLOCK_TOKEN" not in str(stored)


def test_stdio__a_command_that_does_not_exist_is_a_configuration_error(stdio_servers):
    stdio_servers(clock={"command": ["/nonexistent/mcp-server-time", "--fast"]})
    server = ensure_stdio_server("clock")
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert info.value.code == ErrorCodes.CONFIGURATION
    assert not info.value.retryable
    assert "'/nonexistent/mcp-server-time': No such file or directory" in info.value.message
    server.refresh_from_db()
    assert "cannot be started" in server.last_error


def test_stdio__a_server_that_exits_at_once_quotes_its_stderr_without_secrets(
    stdio_servers, settings, tmp_path
):
    pid_file = tmp_path / "pids"
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"CLOCK_TOKEN": "tok-123"}}
    stdio_servers(
        clock=stdio_entry(
            "--pid-file",
            str(pid_file),
            "--exit-at-once",
            "3",
            "--leak-env",
            "API_TOKEN",
            env={"API_TOKEN": "secret://CLOCK_TOKEN"},
        )
    )
    with pytest.raises(AutomateError) as info:
        ensure_stdio_server("clock").sync_tools()
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert "exited or closed its output before completing the MCP handshake" in info.value.message
    assert "fatal: cannot log in with token" in info.value.message
    assert "cannot log in with token '[redacted]'" in info.value.message
    assert "tok-123" not in info.value.message
    assert_all_gone(pid_file)


def test_stdio__a_call_that_times_out_stops_the_server_and_its_children(stdio_servers, tmp_path):
    pid_file, child_file = tmp_path / "pids", tmp_path / "grandchildren"
    stdio_servers(
        clock=stdio_entry("--pid-file", str(pid_file), "--grandchild-pid-file", str(child_file))
    )
    ensure_stdio_server("clock").sync_tools()
    with pytest.raises(AutomateError) as info:
        call_tool("clock", "slow", {"seconds": 60}, timeout=1)
    assert info.value.code == ErrorCodes.TIMEOUT
    assert info.value.retryable
    assert "did not answer within 1" in info.value.message
    assert_all_gone(pid_file, child_file)


def test_stdio__a_server_that_never_completes_the_handshake(stdio_servers, settings, tmp_path):
    pid_file = tmp_path / "pids"
    stdio_servers(clock=stdio_entry("--pid-file", str(pid_file), "--hang-at-start"))
    # Long enough for a loaded machine to start Python and write the pid (the SDK is
    # imported after that); the server itself never answers.
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_STDIO_START_TIMEOUT": 5}
    with pytest.raises(AutomateError) as info:
        ensure_stdio_server("clock").sync_tools()
    assert info.value.code == ErrorCodes.TIMEOUT
    assert 'within 5.0 s (AUTOMATE["MCP_STDIO_START_TIMEOUT"])' in info.value.message
    assert_all_gone(pid_file)


def test_stdio__an_oversized_message_is_refused(stdio_servers, settings, tmp_path):
    pid_file = tmp_path / "pids"
    stdio_servers(clock=stdio_entry("--pid-file", str(pid_file)))
    ensure_stdio_server("clock").sync_tools()
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_MAX_RESPONSE_BYTES": 50_000}
    assert len(call_tool("clock", "big", {"size": 1000}, timeout=20)) == 1000
    with pytest.raises(AutomateError) as info:
        call_tool("clock", "big", {"size": 100_000}, timeout=20)
    assert info.value.code == ErrorCodes.PERMISSION_DENIED
    assert info.value.details["reason"] == "too_large"
    assert_all_gone(pid_file)


def test_stdio__a_row_whose_settings_entry_was_removed_fails_clearly(stdio_servers):
    stdio_servers(clock=stdio_entry())
    server = ensure_stdio_server("clock")
    stdio_servers()
    with pytest.raises(AutomateError) as info:
        server.sync_tools()
    assert info.value.code == ErrorCodes.CONFIGURATION
    assert "AUTOMATE[\"MCP_STDIO_SERVERS\"] has no entry 'clock'" in info.value.message


def test_stdio__a_key_taken_by_an_http_server_is_refused(stdio_servers):
    MCPServer.objects.create(name="Clock", url="https://clock.example.com/mcp")
    stdio_servers(clock=stdio_entry())
    with pytest.raises(CommandError, match="clashes with the streamable_http MCP server"):
        call_command("sync_mcp_tools", stdout=StringIO())
    assert MCPServer.objects.get(key="clock").transport == "streamable_http"


def test_stdio__a_stdio_row_holds_no_url_key_or_headers():
    server = MCPServer(key="clock", name="Clock", transport="stdio", url="https://x.example/mcp")
    with pytest.raises(ValidationError, match="has no URL, API key or headers"):
        server.save()
    with pytest.raises(ValidationError, match="http:// or https://"):
        MCPServer(name="Web", url="").save()


def test_stdio__an_entry_the_row_cannot_hold_is_a_configuration_error(stdio_servers):
    stdio_servers(clock=stdio_entry(timeout=0.01))
    with pytest.raises(AutomateError) as info:
        ensure_stdio_server("clock")
    assert info.value.code == ErrorCodes.CONFIGURATION
    assert "AUTOMATE[\"MCP_STDIO_SERVERS\"]['clock'] cannot be stored" in info.value.message
    assert not MCPServer.objects.exists()
