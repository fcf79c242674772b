"""How to reach one MCP server, resolved: what :meth:`MCPServer.endpoint` builds for the client.

Free of the SDK and of the database, so the models build it and the client reads it
without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from automate.mcp.stdio import StdioCommand

STREAMABLE_HTTP = "streamable_http"
SSE = "sse"
STDIO = "stdio"


@dataclass(frozen=True)
class Endpoint:
    """Everything one session needs, resolved (secrets included) outside the event loop."""

    key: str
    url: str
    headers: dict[str, str] = field(repr=False)
    timeout: float
    transport: str = STREAMABLE_HTTP
    #: For a stdio server: the program to start (then ``url`` and ``headers`` are empty).
    stdio: StdioCommand | None = field(default=None, repr=False)
    #: Seconds a stdio server gets to start and finish the handshake.
    start_timeout: float = 30.0
