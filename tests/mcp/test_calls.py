"""call_tool (the mcp_tool step's logic) against a real MCP server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from automate.mcp import client
from automate.mcp.calls import call_tool
from automate.mcp.models import MCPServer
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.mcp.conftest import TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


@pytest.fixture
def tools(mcp_server):
    server = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    server.sync_tools()
    return server


def calls_of(server, tool):
    return [c for c in server.calls() if c["tool"] == tool]


def test_call_tool__structured_output_and_what_the_server_received(tools, mcp_server):
    output = call_tool("my_tools", "search_documents", {"query": "refund policy", "limit": 2})
    assert output == {
        "query": "refund policy",
        "hits": ["refund policy result 1", "refund policy result 2"],
        "count": 2,
    }
    received = calls_of(mcp_server, "search_documents")[-1]
    assert received["arguments"] == {"query": "refund policy", "limit": 2}
    assert received["authorization"] == f"Bearer {TOKEN}"


def test_call_tool__text_output_when_no_structured_content(tools):
    assert call_tool("my_tools", "echo", {"text": "hi"}) == "echo: hi"


def test_call_tool__is_error_fails_with_the_tools_message(tools):
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "explode", {"reason": "the disk is full"})
    assert "exploded because the disk is full" in info.value.message
    assert info.value.code == ErrorCodes.INTERNAL
    assert not info.value.retryable
    assert info.value.details["tool_error"] is True


@pytest.mark.parametrize(
    ("tool", "arguments", "path"),
    [
        ("search_documents", {}, "(root)"),
        ("add", {"a": 1, "b": "two"}, "b"),
        ("search_documents", {"query": 42}, "query"),
    ],
)
def test_call_tool__arguments_are_validated_before_sending(
    tools, mcp_server, tool, arguments, path
):
    before = len(mcp_server.calls())
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", tool, arguments)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.details["path"] == path
    assert len(mcp_server.calls()) == before  # nothing was sent


def test_call_tool__arguments_must_be_an_object(tools):
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "echo", ["hi"])  # type: ignore[arg-type]
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT


def test_call_tool__unknown_tool_resyncs_once_then_fails(tools, monkeypatch):
    syncs = []
    original = MCPServer.sync_tools
    monkeypatch.setattr(MCPServer, "sync_tools", lambda self: syncs.append(1) or original(self))
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "no_such_tool", {})
    assert info.value.code == ErrorCodes.NOT_FOUND
    assert "no_such_tool" in info.value.message and "search_documents" in info.value.message
    assert len(syncs) == 1


def test_call_tool__tool_added_since_the_last_sync_is_found_by_the_resync(own_mcp_server):
    MCPServer.objects.create(name="My Tools", url=own_mcp_server.url, api_key=TOKEN).sync_tools()
    own_mcp_server.offer_late_tool(True)
    assert call_tool("my_tools", "late_tool", {"name": "Ada"}) == {"result": "hello Ada"}
    assert MCPServer.objects.get().tools.filter(name="late_tool", enabled=True).exists()


def test_call_tool__unknown_or_disabled_server(tools):
    with pytest.raises(AutomateError) as info:
        call_tool("nope", "echo", {"text": "x"})
    assert info.value.code == ErrorCodes.NOT_FOUND
    assert "my_tools" in info.value.message  # lists the known keys
    MCPServer.objects.filter(key="my_tools").update(enabled=False)
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "echo", {"text": "x"})
    assert info.value.code == ErrorCodes.CONFIGURATION


def test_call_tool__per_call_timeout(tools):
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "slow", {"seconds": 5}, timeout=0.5)
    assert info.value.code == ErrorCodes.TIMEOUT
    assert info.value.retryable


def test_call_tool__server_stopped_before_the_call_is_retryable(own_mcp_server):
    MCPServer.objects.create(name="My Tools", url=own_mcp_server.url, api_key=TOKEN).sync_tools()
    own_mcp_server.stop()
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "echo", {"text": "x"})
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable


def test_call_tool__server_stopping_mid_call_is_retryable(own_mcp_server):
    MCPServer.objects.create(name="My Tools", url=own_mcp_server.url, api_key=TOKEN).sync_tools()
    endpoint = MCPServer.objects.get(key="my_tools").endpoint()
    outcome: list[BaseException] = []

    def slow_call() -> None:
        try:
            client.call_tool(endpoint, "slow", {"seconds": 20}, timeout=25)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=slow_call)
    worker.start()
    for _ in range(400):  # until the server has the call in hand
        if own_mcp_server.calls():
            break
        time.sleep(0.025)
    assert own_mcp_server.calls(), "the call never reached the server"
    own_mcp_server.stop()
    worker.join(30)
    assert not worker.is_alive()
    (error,) = outcome
    assert isinstance(error, AutomateError)
    assert error.code == ErrorCodes.UNAVAILABLE
    assert error.retryable


def test_client__runs_inside_a_running_event_loop(tools):
    endpoint = tools.endpoint()

    async def from_async_code():
        return client.list_tools(endpoint, max_pages=10)

    listed = asyncio.run(from_async_code())
    assert {t.name for t in listed} >= {"echo", "search_documents"}


def _ran_in() -> threading.Thread:
    """Where ``client.run`` ran a session for a caller that runs an event loop."""

    async def session() -> threading.Thread:
        return threading.current_thread()

    async def from_async_code() -> threading.Thread:
        return client.run(session)

    return asyncio.run(from_async_code())


def test_client__calls_from_a_running_loop_share_one_helper_thread(tools):
    endpoint = tools.endpoint()
    before = set(threading.enumerate())
    helpers = {_ran_in() for _ in range(20)}

    async def from_async_code():
        return client.list_tools(endpoint, max_pages=10)

    for _ in range(3):  # real sessions, in the same thread
        assert {t.name for t in asyncio.run(from_async_code())} >= {"echo"}
    helpers.add(_ran_in())
    (helper,) = helpers  # one thread for every call, not one per call
    assert helper is not threading.current_thread() and helper.is_alive()
    assert helper.name.startswith("automate-mcp")
    assert set(threading.enumerate()) - before <= {helper}


def test_client__a_forked_process_runs_sessions_from_a_loop_too(in_forked_child):
    """The child has no helper thread (the parent's does not survive the fork): it starts
    its own, where the parent's pool would take the session and never run it."""
    assert _ran_in().is_alive()  # the parent's helper runs
    in_forked_child(_runs_from_a_loop_in_child, "session from a loop")


def _runs_from_a_loop_in_child() -> bool:
    helper = _ran_in()
    again = _ran_in()
    return helper is again and helper is not threading.current_thread() and helper.is_alive()


def test_call_tool__wrong_key_is_unauthenticated(tools):
    tools.api_key = "not-the-key"
    tools.save()
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "echo", {"text": "x"})
    assert info.value.code == ErrorCodes.UNAUTHENTICATED


def test_call_tool__oversized_response_is_refused(tools, settings):
    assert call_tool("my_tools", "big", {"size": 1000}) == "x" * 1000
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_MAX_RESPONSE_BYTES": 50_000}
    with pytest.raises(AutomateError) as info:
        call_tool("my_tools", "big", {"size": 200_000})
    assert info.value.code == ErrorCodes.PERMISSION_DENIED
    assert info.value.details["reason"] == "too_large"
    assert not info.value.retryable
