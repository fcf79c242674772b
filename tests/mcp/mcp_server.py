"""A real MCP server for the tests, built with the official SDK (run as a subprocess).

    python tests/mcp/mcp_server.py --port 8123 --token secret --record calls.jsonl

Streamable HTTP on 127.0.0.1 at ``/mcp`` (``--sse`` serves the older SSE transport at
``/sse`` instead). Every HTTP request must carry ``Authorization: Bearer <token>``, else
401. ``tools/list`` answers ``--page-size`` tools per page, so clients must follow
``nextCursor``; ``late_tool`` is listed only while the ``--late-tool-flag`` file
exists, so tests can make a tool appear and vanish without a restart. Each tool call is
appended to ``--record`` as a JSON line with the arguments and the Authorization header
the server received, so tests assert on what actually crossed the wire. ``--force-gzip``
compresses every answer whatever the client accepts (a misbehaving server).
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from pydantic import BaseModel

AUTHORIZATION: dict[str, str] = {}


class SearchResult(BaseModel):
    query: str
    hits: list[str]
    count: int


class PagedMCPServer(MCPServer):
    """The SDK's server answers tools/list in one page; this one pages with a cursor."""

    page_size = 2
    late_tool_flag: Path | None = None

    def late_tool(self) -> bool:
        """late_tool is listed while the flag file exists (tools that come and go)."""
        return self.late_tool_flag is not None and self.late_tool_flag.exists()

    async def _handle_list_tools(self, ctx: Any, params: PaginatedRequestParams | None):  # type: ignore[override]
        tools = [t for t in await self.list_tools() if t.name != "late_tool" or self.late_tool()]
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
        )


def build(record: str) -> PagedMCPServer:
    server = PagedMCPServer("Test Tools")

    def remember(tool: str, arguments: dict[str, Any]) -> None:
        with open(record, "a", encoding="utf-8") as fh:
            line = {"tool": tool, "arguments": arguments, "authorization": AUTHORIZATION.get("v")}
            fh.write(json.dumps(line) + "\n")

    @server.tool(
        description="Search the documents for a query.",
        annotations=ToolAnnotations(read_only_hint=True),
    )
    def search_documents(query: str, limit: int = 3) -> SearchResult:
        remember("search_documents", {"query": query, "limit": limit})
        hits = [f"{query} result {i}" for i in range(1, limit + 1)]
        return SearchResult(query=query, hits=hits, count=len(hits))

    @server.tool(description="Echo the text back as plain text.", structured_output=False)
    def echo(text: str) -> str:
        remember("echo", {"text": text})
        return f"echo: {text}"

    @server.tool(description="Always fails with a tool error.")
    def explode(reason: str) -> str:
        remember("explode", {"reason": reason})
        raise ToolError(f"exploded because {reason}")

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        remember("add", {"a": a, "b": b})
        return a + b

    @server.tool(description="Answer with a long text.", structured_output=False)
    def big(size: int) -> str:
        remember("big", {"size": size})
        return "x" * size

    @server.tool(description="Sleep for a while, then answer.")
    def slow(seconds: float) -> str:
        remember("slow", {"seconds": seconds})
        time.sleep(seconds)
        return "done"

    @server.tool(description="Listed only while the --late-tool-flag file exists.")
    def late_tool(name: str) -> str:
        remember("late_tool", {"name": name})
        return f"hello {name}"

    return server


def bearer_guard(app: Any, token: str) -> Any:
    """ASGI middleware: 401 unless the bearer token matches; remembers the header."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        if header != expected:
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        AUTHORIZATION["v"] = header.decode()
        await app(scope, receive, send)

    return guarded


def always_gzip(app: Any) -> Any:
    """ASGI middleware: gzip every response, whatever the client accepts (a bad server)."""

    async def gzipped(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        compressor = zlib.compressobj(wbits=31)

        async def send_gzipped(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                message = {**message, "headers": [*headers, (b"content-encoding", b"gzip")]}
            elif message["type"] == "http.response.body":
                body = compressor.compress(message.get("body", b""))
                more = message.get("more_body", False)
                body += compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
                message = {**message, "body": body}
            await send(message)

        await app(scope, receive, send_gzipped)

    return gzipped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--page-size", type=int, default=2)
    parser.add_argument("--late-tool-flag", type=Path)
    parser.add_argument("--sse", action="store_true")
    parser.add_argument("--force-gzip", action="store_true")
    args = parser.parse_args()
    server = build(args.record)
    server.page_size = args.page_size
    server.late_tool_flag = args.late_tool_flag
    app = server.sse_app() if args.sse else server.streamable_http_app()
    if args.force_gzip:
        app = always_gzip(app)
    uvicorn.run(
        bearer_guard(app, args.token), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
