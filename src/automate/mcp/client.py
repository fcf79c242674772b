"""One MCP session at a time, over the official SDK, from synchronous Django code.

The SDK is asynchronous; Django views, management commands and the workflow worker are
not. :func:`run` executes a coroutine with ``asyncio.run`` in the calling thread, or in the
process's MCP helper thread when that thread already runs an event loop (an async view, a
Jupyter cell), because ``asyncio.run`` refuses to nest. Everything that touches the
database or the secret backends happens before the coroutine starts, in the caller's
thread: :class:`Endpoint` carries the resolved URL, headers and timeout.

Every failure leaves here as an :class:`AutomateError` with a stable code
(:func:`translate`): refused credentials UNAUTHENTICATED, a server that cannot be reached
or drops the connection UNAVAILABLE (retryable), a missed deadline TIMEOUT (retryable),
SSRF refusals PERMISSION_DENIED, protocol errors from the server INTERNAL. For a stdio
server (:mod:`automate.mcp.stdio`), a program that cannot be started is CONFIGURATION,
one that exits or closes its output early UNAVAILABLE (quoting the end of its stderr), and
the start (spawn and handshake) and the work each have their own deadline.

:class:`Endpoint`, :class:`ToolInfo` and the transport names are defined in
:mod:`automate.mcp.endpoint` and :mod:`automate.mcp.listing` (which need no SDK) and
importable from here as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

try:
    import anyio
    import httpx2
    import mcp  # noqa: F401
except ImportError as exc:
    raise ImproperlyConfigured(
        f'MCP servers need the official MCP SDK: pip install "django-automate[mcp]" ({exc})'
    ) from exc

from automate.conf import settings as app_settings
from automate.mcp.endpoint import SSE, Endpoint
from automate.mcp.endpoint import STDIO as STDIO
from automate.mcp.endpoint import STREAMABLE_HTTP as STREAMABLE_HTTP
from automate.mcp.listing import ToolInfo
from automate.mcp.stdio import StdioCommand
from automate.mcp.stdio_transport import stderr_file, stderr_tail, stdio_transport
from automate.mcp.transport import StatusObserver, guarded_client
from automate_core import redaction
from automate_core.net import check_url
from automate_core.offloop import HelperThread, in_event_loop
from automate_core.providers.errors import AutomateError, ErrorCodes

T = TypeVar("T")


@dataclass(frozen=True)
class ToolResult:
    """The parts of a ``tools/call`` result that a workflow step uses."""

    is_error: bool
    structured: Any
    text: str
    content: list[dict[str, Any]]


# -- Running coroutines from sync code ------------------------------------------------


#: Where :func:`run` runs sessions for a thread that already runs an event loop: one
#: thread per process, started for the first such call (and again in a forked child).
#: Its own, not the connection loader's: a lookup never waits behind a long tool call.
_runner = HelperThread("automate-mcp")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` to completion from synchronous code, whatever thread we are on."""
    if not in_event_loop():
        return asyncio.run(_as_coroutine(factory))
    return _runner.call(lambda: asyncio.run(_as_coroutine(factory)))


async def _as_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


# -- Sessions --------------------------------------------------------------------------


def _transport(endpoint: Endpoint, http: httpx2.AsyncClient) -> AbstractAsyncContextManager[Any]:
    if endpoint.transport == SSE:
        from mcp.client.sse import sse_client

        def factory(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:  # type: ignore[no-untyped-def]
            return http

        return sse_client(
            endpoint.url,
            timeout=endpoint.timeout,
            sse_read_timeout=endpoint.timeout,
            httpx_client_factory=factory,
        )
    from mcp.client.streamable_http import streamable_http_client

    return streamable_http_client(endpoint.url, http_client=http)


async def _session(endpoint: Endpoint, timeout: float, work: Callable[[Any], Awaitable[T]]) -> T:
    if endpoint.stdio is not None:
        return await _stdio_session(endpoint, endpoint.stdio, timeout, work)
    from mcp import Client

    observer = StatusObserver()
    try:
        with anyio.fail_after(timeout):
            http = guarded_client(
                endpoint.headers,
                endpoint.timeout,
                observer,
                max_size=app_settings.MCP_MAX_RESPONSE_BYTES,
            )
            async with AsyncExitStack() as stack:
                if endpoint.transport != SSE:  # sse_client opens and closes the client itself
                    await stack.enter_async_context(http)
                transport = _transport(endpoint, http)
                client = await stack.enter_async_context(
                    Client(transport, read_timeout_seconds=timeout)
                )
                return await work(client)
    except BaseException as exc:
        # Cancellation and interpreter exits pass through, even wrapped in a task group's
        # exception group; everything else becomes an AutomateError.
        if not all(isinstance(leaf, Exception) for leaf in _leaves(exc)):
            raise
        raise translate(exc, endpoint, observer) from None


async def _stdio_session(
    endpoint: Endpoint,
    command: StdioCommand,
    timeout: float,
    work: Callable[[Any], Awaitable[T]],
) -> T:
    """Start the program, run ``work`` and stop the program, each phase on its deadline.

    One cancel scope whose deadline moves from the start deadline to the work deadline
    once the handshake is done (a scope per phase cannot be exited while the SDK's task
    groups opened inside it are still running).
    """
    from mcp import Client

    started = False
    with stderr_file() as errlog:
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + endpoint.start_timeout) as scope:
                transport = stdio_transport(
                    command,
                    errlog,
                    max_size=app_settings.MCP_MAX_RESPONSE_BYTES,
                    label=f"stdio:{endpoint.key}",
                )
                async with Client(transport, read_timeout_seconds=timeout) as client:
                    started = True
                    scope.deadline = anyio.current_time() + timeout
                    return await work(client)
            raise TimeoutError
        except BaseException as exc:
            if not all(isinstance(leaf, Exception) for leaf in _leaves(exc)):
                raise
            raise translate_stdio(
                exc, endpoint, command, started=started, timeout=timeout, stderr=stderr_tail(errlog)
            ) from None


def _precheck(endpoint: Endpoint) -> None:
    """URL rules before any connection (the transport checks every connection too)."""
    if endpoint.stdio is not None:
        return
    try:
        url = httpx2.URL(endpoint.url)
    except (httpx2.InvalidURL, TypeError) as exc:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"the MCP server URL cannot be parsed: {exc}",
            provider=endpoint.key,
        ) from None
    check_url(url, purpose="mcp")


def list_tools(endpoint: Endpoint, *, max_pages: int) -> list[ToolInfo]:
    """Every tool the server lists, following ``nextCursor`` for at most ``max_pages``."""
    _precheck(endpoint)

    async def work(client: Any) -> list[ToolInfo]:
        tools: list[ToolInfo] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _page in range(max_pages):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(
                ToolInfo(t.name, t.description or "", dict(t.input_schema or {}), _annotations(t))
                for t in page.tools
            )
            cursor = page.next_cursor
            if not cursor:
                return tools
            if cursor in seen:
                raise AutomateError(
                    ErrorCodes.INTERNAL,
                    f"the MCP server repeated the tools/list cursor {cursor!r}",
                    provider=endpoint.key,
                )
            seen.add(cursor)
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"tools/list still had more pages after {max_pages}; raise "
            'AUTOMATE["MCP_MAX_TOOL_PAGES"] if the server really lists that many tools',
            provider=endpoint.key,
        )

    return run(lambda: _session(endpoint, endpoint.timeout, work))


def _annotations(tool: Any) -> dict[str, Any]:
    """The tool's behaviour hints (readOnlyHint, idempotentHint...) as the wire spells them."""
    if tool.annotations is None:
        return {}
    return tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)


def call_tool(
    endpoint: Endpoint, name: str, arguments: dict[str, Any], *, timeout: float
) -> ToolResult:
    """One ``tools/call``; ``timeout`` bounds the whole session (connect, handshake, call)."""
    _precheck(endpoint)

    async def work(client: Any) -> ToolResult:
        result = await client.call_tool(name, arguments, read_timeout_seconds=timeout)
        content = [block.model_dump(mode="json", by_alias=True) for block in result.content]
        text = "\n".join(b["text"] for b in content if b.get("type") == "text")
        return ToolResult(bool(result.is_error), result.structured_content, text, content)

    return run(lambda: _session(endpoint, timeout, work))


# -- Errors ----------------------------------------------------------------------------


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def translate(exc: BaseException, endpoint: Endpoint, observer: StatusObserver) -> AutomateError:
    """The :class:`AutomateError` for whatever the SDK or the network raised."""
    leaves = list(_leaves(exc))
    own = _own_error(leaves, endpoint)
    if own is not None:
        return own
    where = f"the MCP server {endpoint.key!r} ({redaction.redact(endpoint.url)})"
    if 401 in observer.statuses:
        return AutomateError(
            ErrorCodes.UNAUTHENTICATED,
            f"{where} refused the credentials (HTTP 401): check the server's API key",
            provider=endpoint.key,
            retryable=False,
        )
    if 403 in observer.statuses:
        return AutomateError(
            ErrorCodes.PERMISSION_DENIED,
            f"{where} refused access (HTTP 403)",
            provider=endpoint.key,
            retryable=False,
        )
    leaf = leaves[0] if leaves else exc
    message = redaction.redact(str(leaf) or type(leaf).__name__)
    if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
        return AutomateError(
            ErrorCodes.TIMEOUT,
            f"{where} did not answer within {endpoint.timeout} s",
            provider=endpoint.key,
        )
    if isinstance(leaf, httpx2.HTTPStatusError):
        status = leaf.response.status_code
        code = ErrorCodes.UNAVAILABLE if status >= 500 or status == 429 else ErrorCodes.INTERNAL
        return AutomateError(code, f"{where} answered HTTP {status}", provider=endpoint.key)
    if isinstance(leaf, httpx2.TransportError | anyio.ClosedResourceError | anyio.EndOfStream):
        return AutomateError(
            ErrorCodes.UNAVAILABLE,
            f"{where} cannot be reached or closed the connection: {message}",
            provider=endpoint.key,
        )
    server_failed = any(s >= 500 for s in observer.statuses)
    return _answer_error(leaf, where, endpoint.key, server_failed=server_failed)


def _own_error(leaves: list[BaseException], endpoint: Endpoint) -> AutomateError | None:
    """An AutomateError raised on our side (SSRF refusal, size cap...), if any."""
    for leaf in leaves:
        if isinstance(leaf, AutomateError):
            if leaf.provider is None:
                leaf.provider = endpoint.key
            return leaf
    return None


def _mcp_error_code(mcp_code: int) -> ErrorCodes:
    from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS, METHOD_NOT_FOUND, REQUEST_TIMEOUT

    return {
        CONNECTION_CLOSED: ErrorCodes.UNAVAILABLE,
        REQUEST_TIMEOUT: ErrorCodes.TIMEOUT,
        INVALID_PARAMS: ErrorCodes.INVALID_ARGUMENT,
        METHOD_NOT_FOUND: ErrorCodes.NOT_FOUND,
    }.get(mcp_code, ErrorCodes.INTERNAL)


def translate_stdio(
    exc: BaseException,
    endpoint: Endpoint,
    command: StdioCommand,
    *,
    started: bool,
    timeout: float,
    stderr: str,
) -> AutomateError:
    """The :class:`AutomateError` for a failed stdio session (the program is stopped)."""
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    leaves = list(_leaves(exc))
    own = _own_error(leaves, endpoint)
    if own is not None:
        return own
    where = f"the MCP server {endpoint.key!r} (stdio: {command.program})"
    said = f"; its stderr ends with: {stderr}" if stderr else " (it wrote nothing to stderr)"
    leaf = leaves[0] if leaves else exc
    if isinstance(leaf, TimeoutError):
        if not started:
            return AutomateError(
                ErrorCodes.TIMEOUT,
                f"{where} did not start and complete the MCP handshake within "
                f'{endpoint.start_timeout} s (AUTOMATE["MCP_STDIO_START_TIMEOUT"])',
                provider=endpoint.key,
            )
        return AutomateError(
            ErrorCodes.TIMEOUT, f"{where} did not answer within {timeout} s", provider=endpoint.key
        )
    if not started and isinstance(leaf, OSError) and not isinstance(leaf, ConnectionError):
        reason = leaf.strerror or type(leaf).__name__
        return AutomateError(
            ErrorCodes.CONFIGURATION,
            f"{where} cannot be started: {command.program!r}: {reason} (check "
            f'AUTOMATE["MCP_STDIO_SERVERS"][{endpoint.key!r}]["command"] and the PATH)',
            provider=endpoint.key,
            retryable=False,
        )
    closed = isinstance(
        leaf, anyio.ClosedResourceError | anyio.EndOfStream | anyio.BrokenResourceError
    ) or (isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED)
    if closed or isinstance(leaf, ConnectionError):
        when = "during the call" if started else "before completing the MCP handshake"
        return AutomateError(
            ErrorCodes.UNAVAILABLE,
            f"{where} exited or closed its output {when}{said}",
            provider=endpoint.key,
        )
    return _answer_error(leaf, where, endpoint.key, said=said)


def _answer_error(
    leaf: BaseException, where: str, key: str, *, server_failed: bool = False, said: str = ""
) -> AutomateError:
    """The server's own MCP error (UNAVAILABLE when the server failed), or INTERNAL for
    anything else; shared by the HTTP and stdio transports."""
    from mcp.shared.exceptions import MCPError  # optional extra: the mcp SDK

    message = redaction.redact(str(leaf) or type(leaf).__name__)
    if isinstance(leaf, MCPError):
        return AutomateError(
            ErrorCodes.UNAVAILABLE if server_failed else _mcp_error_code(leaf.code),
            f"{where} answered with an error: {message}",
            provider=key,
            details={"mcp_code": leaf.code},
        )
    return AutomateError(
        ErrorCodes.INTERNAL,
        f"talking to {where} failed: {type(leaf).__name__}: {message}{said}",
        provider=key,
        retryable=False,
    )
