"""``mcp_tool``: call a tool of a registered MCP server.

    {"name": "Use MCP Tool", "type": "mcp_tool", "config": {
        "server": "my_tools",                    # MCPServer.key
        "tool": "search_documents",
        "args": {"query": "{{ event.payload.query }}"}}}

``WorkflowService.create_workflow`` checks the step against what the last sync cached: the
server must exist, the tool must be among its listed tools, and the literal arguments must
fit the tool's input schema (a value holding a template is checked once rendered, at run
time). Sync the server first (``server.sync_tools()`` or ``manage.py sync_mcp_tools``).

At run time the rendered arguments are validated against the input schema before the
call. The output is the tool's structured content when it sends some, else its text. A
result flagged ``isError`` fails the step with the tool's message; an unreachable server
fails it retryably. A tool is repeated after an unknown outcome only when the server marks it
read-only or idempotent.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from automate.mcp import stdio
from automate.mcp.models import MCPServer, MCPTool
from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate.templating import is_template
from automate_core.providers.errors import invalid_argument


class MCPToolConfig(StrictConfig):
    server: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    args: dict[str, Any] | str = Field(default_factory=dict)


class MCPToolStep(StepExecutor[MCPToolConfig]):
    key = "mcp_tool"
    display_name = "MCP tool"
    config_model = MCPToolConfig

    @classmethod
    def check(cls, config: MCPToolConfig, *, where: str = "config") -> None:
        if is_template(config.server):
            return
        server = _server(config.server, where)
        if is_template(config.tool):
            return
        tool = _tool(server, config.tool, where)
        _check_args(tool, config.args, where)

    @classmethod
    def is_idempotent(cls, config: MCPToolConfig) -> bool:
        tool = MCPTool.objects.filter(server__key=config.server, name=config.tool).first()
        return tool is not None and tool.is_idempotent

    def execute(self, config: MCPToolConfig, ctx: StepContext) -> Any:
        # optional extra: automate.mcp.calls loads the mcp SDK (the "mcp" extra)
        from automate.mcp.calls import call_tool

        if not isinstance(config.args, dict):
            raise invalid_argument("config.args", "config.args must render to an object")
        # In this thread, not under run_with_timeout: the call reads the database and
        # enforces its own deadline.
        return call_tool(config.server, config.tool, config.args, timeout=ctx.timeout)


def _server(key: str, where: str) -> MCPServer:
    server = MCPServer.objects.filter(key=key).first()
    if server is not None:
        return server
    if key in stdio.entries():
        raise invalid_argument(
            f"{where}.server",
            f'{where}.server: the MCP server {key!r} is declared in AUTOMATE["MCP_STDIO_SERVERS"] '
            f"but its tools were never synced: run manage.py sync_mcp_tools {key}",
        )
    known = ", ".join(MCPServer.objects.values_list("key", flat=True)) or "none"
    raise invalid_argument(
        f"{where}.server", f"{where}.server: no MCP server {key!r} (known: {known})"
    )


def _tool(server: MCPServer, name: str, where: str) -> MCPTool:
    tool = server.tools.filter(name=name, enabled=True).first()
    if tool is not None:
        return tool
    listed = ", ".join(server.tools.filter(enabled=True).values_list("name", flat=True))
    if server.last_synced_at is None:
        hint = f"its tools were never synced: run manage.py sync_mcp_tools {server.key}"
    else:
        hint = f"its last sync listed: {listed or 'nothing'}"
    raise invalid_argument(
        f"{where}.tool",
        f"{where}.tool: the MCP server {server.key!r} has no tool {name!r} ({hint})",
    )


def _check_args(tool: MCPTool, args: dict[str, Any] | str, where: str) -> None:
    """The literal parts of ``args`` against the cached input schema.

    An error about a value that holds a template (or contains one) is left to run time,
    when the value is rendered; errors about which keys are present are reported now.
    """
    # optional extra: automate.mcp.calls loads the mcp SDK (the "mcp" extra)
    from automate.mcp.calls import schema_errors

    field = f"{where}.args"
    if isinstance(args, str):
        if not is_template(args):
            raise invalid_argument(field, f"{field} must be an object or a template")
        return
    for error in schema_errors(tool, args):
        if error.validator not in _KEY_LEVEL and _has_template(error.instance):
            continue
        path = ".".join(str(p) for p in error.absolute_path)
        at = f"{field}.{path}" if path else field
        raise invalid_argument(
            at,
            f"{at}: does not fit the input schema of {tool.server.key}.{tool.name}: "
            f"{error.message}",
        )


#: Schema keywords about which keys or how many items there are, not about the values:
#: a templated value cannot change their verdict.
_KEY_LEVEL = frozenset(
    {
        "required",
        "additionalProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "minItems",
        "maxItems",
    }
)


def _has_template(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return is_template(value)
