"""``mcp_tool``: call a tool of a registered MCP server.

    {"name": "Use MCP Tool", "type": "mcp_tool", "config": {
        "server": "my_tools",                    # MCPServer.key
        "tool": "search_documents",
        "args": {"query": "{{ event.payload.query }}"}}}

The arguments are validated against the tool's input schema before the call. The output is
the tool's structured content when it sends some, else its text. A result flagged
``isError`` fails the step with the tool's message; an unreachable server fails it
retryably. A tool is repeated after an unknown outcome only when the server marks it
read-only or idempotent.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate_core.providers.errors import AutomateError, ErrorCodes


class MCPToolConfig(StrictConfig):
    server: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    args: dict[str, Any] | str = Field(default_factory=dict)


class MCPToolStep(StepExecutor):
    key = "mcp_tool"
    display_name = "MCP tool"
    config_model = MCPToolConfig

    @classmethod
    def check(cls, config: MCPToolConfig, *, where: str = "config") -> None:  # type: ignore[override]
        from automate.mcp.models import MCPServer
        from automate.templating import is_template

        if (
            not is_template(config.server)
            and not MCPServer.objects.filter(key=config.server).exists()
        ):
            raise AutomateError(
                ErrorCodes.INVALID_ARGUMENT,
                f"{where}.server: no MCP server {config.server!r}",
                retryable=False,
                details={"field": f"{where}.server"},
            )

    @classmethod
    def is_idempotent(cls, config: MCPToolConfig) -> bool:  # type: ignore[override]
        from automate.mcp.models import MCPTool

        tool = MCPTool.objects.filter(server__key=config.server, name=config.tool).first()
        return tool is not None and tool.is_idempotent

    def execute(self, config: MCPToolConfig, ctx: StepContext) -> Any:  # type: ignore[override]
        from automate.mcp.calls import call_tool

        if not isinstance(config.args, dict):
            raise AutomateError(
                ErrorCodes.INVALID_ARGUMENT,
                "config.args must render to an object",
                retryable=False,
                details={"field": "config.args"},
            )
        # In this thread, not under run_with_timeout: the call reads the database and
        # enforces its own deadline.
        return call_tool(config.server, config.tool, config.args, timeout=ctx.timeout)
