"""The hooks the kernel's callers use: outbound HTTP, LLM calls, MCP tool calls.

Each is a context manager holding a span (:mod:`.spans`) and feeding the metrics
(:mod:`.metrics`); both parts are no-ops when their extra is missing. Attributes follow
OpenTelemetry's semantic conventions (``http.*``, ``server.*``, ``gen_ai.*``,
``mcp.*``) and never carry a URL path or query, a body, a header value or a message.
"""

from __future__ import annotations

from typing import Any

from automate_core.observability import metrics, spans

__all__ = ["llm_call", "llm_result", "mcp_call", "outbound", "refused"]


class outbound:
    """One request through the guarded transport: a CLIENT span whose context the request
    carries (W3C ``traceparent``), and ``automate_http_requests_total{host, status}``.

    ``with outbound(request) as call: response = call.done(send(request))``
    """

    __slots__ = ("host", "request", "span", "status")

    def __init__(self, request: Any) -> None:
        url = request.url
        self.request, self.host, self.status = request, url.host, "error"
        self.span = spans.span(
            f"HTTP {request.method}",
            {
                "http.request.method": request.method,
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "url.scheme": url.scheme,
            },
            kind="client",
        )

    def __enter__(self) -> outbound:
        self.span.__enter__()
        spans.inject(self.request.headers)
        return self

    def done(self, response: Any) -> Any:
        code = response.status_code
        self.status = str(code)
        self.span.set("http.response.status_code", code)
        if code >= 500:
            self.span.fail(str(code))
        return response

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None:
            self.status = "refused" if _is_refusal(exc) else "error"
            # refused() (the client's refusal report) must not count or trace it again.
            exc._automate_span = True  # type: ignore[attr-defined]
        metrics.http_request(self.host, self.status)
        return self.span.__exit__(exc_type, exc, tb)


def _is_refusal(exc: BaseException) -> bool:
    return type(exc).__name__ == "SSRFError"


def refused(exc: BaseException, method: str, url: Any) -> None:
    """A request the SSRF rules refused (before or inside the transport): counted as
    ``status="refused"``, and a failed CLIENT span when the transport opened none."""
    try:
        import httpx

        host = httpx.URL(str(url)).host
    except Exception:
        host = "unknown"
    if getattr(exc, "_automate_span", False):
        return  # the transport's outbound() counted and traced it
    metrics.http_request(host, "refused")
    with spans.span(
        f"HTTP {method}", {"http.request.method": method, "server.address": host}, kind="client"
    ) as refusal:
        refusal.fail(str(getattr(exc, "code", "") or "permission_denied"), type(exc).__name__)


def llm_call(provider: str, model: str, operation: str = "chat") -> Any:
    """A CLIENT span for one LLM call (``gen_ai.*``); set the response with
    :func:`llm_result`."""
    return spans.span(
        f"{operation} {model}".strip(),
        {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model or None,
        },
        kind="client",
    )


def llm_result(span: Any, result: Any) -> Any:
    """Record a chat result's model, token usage and finish reason on ``span``."""
    if span is spans.NO_SPAN:
        return result
    usage = getattr(result, "usage", None)
    span.update(
        {
            "gen_ai.response.model": getattr(result, "model", None) or None,
            "gen_ai.usage.input_tokens": getattr(usage, "input_tokens", None),
            "gen_ai.usage.output_tokens": getattr(usage, "output_tokens", None),
        }
    )
    reason = getattr(result, "finish_reason", None)
    if reason:
        span.set("gen_ai.response.finish_reasons", [str(reason)])
    return result


def mcp_call(server: str, tool: str) -> Any:
    """A CLIENT span for one MCP ``tools/call``."""
    return spans.span(
        f"tools/call {tool}",
        {
            "mcp.method.name": "tools/call",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "automate.mcp.server": server,
        },
        kind="client",
    )
