"""Calling one MCP tool: what the workflow engine's ``mcp_tool`` step executes.

    from automate.mcp.calls import call_tool

    output = call_tool("my_tools", "search_documents", {"query": "refunds"}, timeout=10)

The step executor is a thin adapter over :func:`call_tool`: it renders the step's
``args`` with the template context and hands them here. The rules:

* the server is found by ``key`` and must be enabled (a key declared in
  ``AUTOMATE["MCP_STDIO_SERVERS"]`` gets its row on first use); the tool must be in its
  cached list, else the list is re-synced ONCE before the call fails with NOT_FOUND;
* arguments are validated against the tool's ``input_schema`` before anything is sent
  (INVALID_ARGUMENT, with the failing path in ``details``);
* ``timeout`` (else the server's) bounds the whole call;
* the output is the result's structured content when present, else its text (or the
  raw content blocks when there is no text);
* a result flagged ``isError`` fails with the tool's own message (not retryable);
  an unreachable or vanished server fails retryably (UNAVAILABLE).
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError
from jsonschema.validators import validator_for

from automate.mcp import client, stdio
from automate.mcp.models import MCPServer, MCPTool, ensure_stdio_server
from automate_core.observability import hooks
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument


def get_server(server_key: str) -> MCPServer:
    server = MCPServer.objects.filter(key=server_key).first()
    if server is None and server_key in stdio.entries():
        server = ensure_stdio_server(server_key)
    if server is None:
        known = ", ".join(MCPServer.objects.values_list("key", flat=True)) or "none"
        raise AutomateError(
            ErrorCodes.NOT_FOUND,
            f"no MCP server with key {server_key!r} (known: {known})",
            provider=server_key,
            retryable=False,
        )
    if not server.enabled:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"the MCP server {server_key!r} is disabled",
            provider=server_key,
        )
    return server


def resolve_tool(server: MCPServer, tool_name: str) -> MCPTool:
    """The cached tool, re-syncing the server once when it is not (or no longer) listed."""
    tool = server.tools.filter(name=tool_name, enabled=True).first()
    if tool is not None:
        return tool
    server.sync_tools()
    tool = server.tools.filter(name=tool_name, enabled=True).first()
    if tool is None:
        names = ", ".join(server.tools.filter(enabled=True).values_list("name", flat=True))
        raise AutomateError(
            ErrorCodes.NOT_FOUND,
            f"the MCP server {server.key!r} has no tool {tool_name!r} "
            f"(it lists: {names or 'nothing'})",
            provider=server.key,
            retryable=False,
        )
    return tool


def validate_arguments(tool: MCPTool, arguments: Any) -> None:
    """Check ``arguments`` against the tool's input schema before anything is sent."""
    where = f"{tool.server.key}.{tool.name}"
    if not isinstance(arguments, dict):
        raise invalid_argument(
            "arguments",
            f"the arguments of {where} must be an object, not {type(arguments).__name__}",
            provider=tool.server.key,
        )
    error = jsonschema.exceptions.best_match(schema_errors(tool, arguments))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise invalid_argument(
            None,
            f"invalid arguments for {where} at {path}: {error.message}",
            provider=tool.server.key,
            path=path,
            tool=tool.name,
        )


def schema_errors(tool: MCPTool, arguments: dict[str, Any]) -> list[ValidationError]:
    """The ways ``arguments`` break the tool's input schema (top-level errors, the most
    relevant first; an ``anyOf`` failure is one error with the branches' in its context)."""
    schema = tool.input_schema or {"type": "object"}
    try:
        cls = validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"the MCP server published an invalid input schema for "
            f"{tool.server.key}.{tool.name}: {exc.message}",
            provider=tool.server.key,
            retryable=False,
        ) from None
    errors = cls(schema).iter_errors(arguments)
    return sorted(errors, key=jsonschema.exceptions.relevance, reverse=True)


def call_tool(
    server_key: str,
    tool_name: str,
    arguments: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
) -> Any:
    """Call ``tool_name`` on the server ``server_key`` and return its output."""
    server = get_server(server_key)
    tool = resolve_tool(server, tool_name)
    arguments = {} if arguments is None else arguments
    validate_arguments(tool, arguments)
    endpoint = server.endpoint(timeout=timeout)
    with hooks.mcp_call(server.key, tool_name):
        result = client.call_tool(endpoint, tool_name, arguments, timeout=endpoint.timeout)
    if result.is_error:
        raise AutomateError(
            ErrorCodes.INTERNAL,
            result.text or f"the tool {tool_name} reported an error",
            provider=server.key,
            retryable=False,
            details={"tool": tool_name, "tool_error": True, "content": result.content},
        )
    if result.structured is not None:
        return result.structured
    if result.text or not result.content:
        return result.text
    return result.content
