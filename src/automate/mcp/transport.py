"""The httpx2 client the MCP SDK talks through, under the outbound SSRF rules.

The SDK (2.x) speaks HTTP with ``httpx2``, whose sockets come from ``httpcore2`` rather
than the ``httpcore`` that :mod:`automate_core.http` guards. Instead of resolving and
checking once before the call (a second lookup inside the SDK could then answer
differently: DNS rebinding), the client built here gets a transport whose connection pool
uses :class:`GuardedAsyncBackend`: every connection resolves the host once, checks EVERY
address with :func:`automate_core.net.check_address` (the same allow-/deny-lists,
metadata blocks and notations as the kernel's client: the backend is the kernel's
:class:`automate_core.net.AsyncGuardedConnect`) and connects to a checked address.
Each request also passes :func:`automate_core.net.check_url` (scheme, userinfo,
port allow-list, deny-listed names, IP literals). Proxies from the environment are
ignored: a proxy would connect on our behalf, past the address checks. Redirects are
followed by the SDK only within the endpoint's origin, and each hop is a new request
through the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpcore2
import httpx2

from automate_core.net import AsyncGuardedConnect, check_url
from automate_core.observability import hooks
from automate_core.sdkclient import acapped_body

#: Responses the observer remembers, so a 401 lost inside the SDK can still be reported.
_REMEMBERED_STATUSES = frozenset({401, 403, 404, 429, 500, 502, 503, 504})


class GuardedAsyncBackend(AsyncGuardedConnect, httpcore2.AsyncNetworkBackend):
    """An httpcore2 backend that resolves once, checks every address and connects to one."""

    connect_errors = (httpcore2.ConnectError, httpcore2.ConnectTimeout)
    #: MCP servers are reached under AUTOMATE["HTTP_ALLOW_FOR"]["mcp"] (and the global lists).
    purpose = "mcp"

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()


class GuardedAsyncTransport(httpx2.AsyncHTTPTransport):
    """``httpx2.AsyncHTTPTransport`` with the guarded backend, a URL check per request and
    a cap on every response body.

    The client asks for uncompressed bodies and a compressed answer is refused, so the
    bytes counted here are the bytes the SDK parses (no decompression bomb).
    """

    def __init__(self, *, max_size: int) -> None:
        super().__init__(trust_env=False)
        self.max_size = max_size
        # httpx2 has no argument for the network backend: replace the pool it built. The
        # MCP SSRF tests (a host name resolving to a private address is refused) fail if
        # this stops taking effect.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(), network_backend=GuardedAsyncBackend()
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        with hooks.outbound(request) as call:  # a CLIENT span, traceparent, metrics
            check_url(request.url, purpose="mcp")
            response = call.done(await super().handle_async_request(request))
        return await acapped_body(response, self.max_size, str(request.url))


@dataclass
class StatusObserver:
    """Remembers notable HTTP statuses the SDK saw (it reports a 401 as a generic error)."""

    statuses: list[int] = field(default_factory=list)

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code in _REMEMBERED_STATUSES:
            self.statuses.append(response.status_code)


def guarded_client(
    headers: Mapping[str, str], timeout: float, observer: StatusObserver, *, max_size: int
) -> httpx2.AsyncClient:
    """The ``httpx2.AsyncClient`` handed to the SDK's transports for one session."""
    return httpx2.AsyncClient(
        headers={**headers, "Accept-Encoding": "identity"},
        timeout=httpx2.Timeout(timeout),
        transport=GuardedAsyncTransport(max_size=max_size),
        trust_env=False,
        follow_redirects=False,
        event_hooks={"response": [observer]},
    )
