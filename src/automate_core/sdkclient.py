"""Guarded ``httpx2`` clients for the SDKs that speak HTTP through ``httpx2`` (OpenAI, Anthropic).

The official ``openai`` and ``anthropic`` SDKs take an ``http_client`` but insist on their
``httpx2`` fork (``isinstance(client, httpx2.Client)``), whose sockets come from
``httpcore2``, not the ``httpcore`` that :mod:`automate_core.http` guards. The clients
built here apply the same rules on that stack:

* every request passes :func:`automate_core.net.check_url` and every connection resolves
  the host once, checks EVERY address (allow-lists of the call's ``purpose``, metadata
  addresses always refused) and connects to a checked address;
* proxies are never taken from the environment (``trust_env=False``): a proxy would
  connect on our behalf, past the checks, and see the API key;
* redirects are not followed; bodies are asked for and accepted uncompressed only, and
  counted while they stream: past ``max_size`` bytes the call fails with
  :class:`~automate_core.net.ResponseTooLarge`;
* inside :func:`deadline` every socket read and write is clamped to the time left, so a
  server that drips its answer cannot hold a call past its total deadline::

      with deadline(30):
          client.chat.completions.create(...)  # TIMEOUT after 30 s, however it drips

``httpx2`` and ``httpcore2`` are imported with this module: only the LLM providers and the
MCP client (whose SDKs depend on them) import it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import httpx2

from automate_core._deadline import DEADLINE, AsyncDeadlineStream, DeadlineStream
from automate_core._netguard import AsyncGuardedConnect, GuardedConnect, SSRFError, check_url
from automate_core.net import ResponseTooLarge

__all__ = ["DEFAULT_MAX_SIZE", "acapped_body", "capped_body", "deadline", "guarded_sdk_client"]

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
_CONNECT_ERRORS = (httpcore2.ConnectError, httpcore2.ConnectTimeout)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """A total deadline for every guarded call made inside (the earlier one wins)."""
    at = time.monotonic() + seconds
    current = DEADLINE.get()
    token = DEADLINE.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        # A generator finished in another context has nothing to restore there.
        with contextlib.suppress(ValueError):
            DEADLINE.reset(token)


class _DeadlineStream(DeadlineStream, httpcore2.NetworkStream):
    expired = httpcore2.ReadTimeout


class _AsyncDeadlineStream(AsyncDeadlineStream, httpcore2.AsyncNetworkStream):
    expired = httpcore2.ReadTimeout


class _GuardedBackend(GuardedConnect, httpcore2.NetworkBackend):
    """The sync httpcore2 backend: resolve once, check every address, connect to one."""

    connect_errors = _CONNECT_ERRORS
    stream = _DeadlineStream

    def __init__(self, purpose: str | None) -> None:
        self._inner = httpcore2.SyncBackend()
        self.purpose = purpose


class _AsyncGuardedBackend(AsyncGuardedConnect, httpcore2.AsyncNetworkBackend):
    connect_errors = _CONNECT_ERRORS
    stream = _AsyncDeadlineStream

    def __init__(self, purpose: str | None) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self.purpose = purpose


def _refuse_encoded(response: httpx2.Response, url: str) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise SSRFError(
            f"the server sent a {encoding!r}-encoded body although the client asked for identity",
            reason="encoding",
            url=url,
        )


class _CappedStream(httpx2.SyncByteStream):
    def __init__(self, inner: Any, max_size: int, url: str) -> None:
        self._inner, self._max_size, self._url = inner, max_size, url

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._max_size:
                raise ResponseTooLarge(self._max_size, self._url)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncCappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, max_size: int, url: str) -> None:
        self._inner, self._max_size, self._url = inner, max_size, url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._max_size:
                raise ResponseTooLarge(self._max_size, self._url)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def capped_body(response: httpx2.Response, max_size: int, url: str) -> httpx2.Response:
    """``response`` (to a request for ``url``) with its body counted while it streams:
    past ``max_size`` bytes, reading it raises :class:`~automate_core.net.ResponseTooLarge`.
    An encoded body is refused (SSRFError, reason ``encoding``) and the response closed:
    the client asked for identity, so the bytes counted are the bytes parsed and a
    decompression bomb cannot pass.

    The one cap of the httpx2 stack: the LLM SDKs' transports here and the MCP client's
    (:mod:`automate.mcp.transport`) both call it, or :func:`acapped_body`.
    """
    try:
        _refuse_encoded(response, url)
    except SSRFError:
        response.close()
        raise
    assert isinstance(response.stream, httpx2.SyncByteStream)
    response.stream = _CappedStream(response.stream, max_size, url)
    return response


async def acapped_body(response: httpx2.Response, max_size: int, url: str) -> httpx2.Response:
    """The async twin of :func:`capped_body`."""
    try:
        _refuse_encoded(response, url)
    except SSRFError:
        await response.aclose()
        raise
    assert isinstance(response.stream, httpx2.AsyncByteStream)
    response.stream = _AsyncCappedStream(response.stream, max_size, url)
    return response


class GuardedTransport(httpx2.HTTPTransport):
    """``httpx2.HTTPTransport`` with the guarded backend, a URL check and a body cap."""

    def __init__(self, *, purpose: str | None, max_size: int) -> None:
        super().__init__(trust_env=False)
        self.purpose, self.max_size = purpose, max_size
        # httpx2 has no argument for the network backend: replace the pool it built.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(), network_backend=_GuardedBackend(purpose)
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        check_url(request.url, purpose=self.purpose)
        return capped_body(super().handle_request(request), self.max_size, str(request.url))


class AsyncGuardedTransport(httpx2.AsyncHTTPTransport):
    """The async twin of :class:`GuardedTransport`."""

    def __init__(self, *, purpose: str | None, max_size: int) -> None:
        super().__init__(trust_env=False)
        self.purpose, self.max_size = purpose, max_size
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            network_backend=_AsyncGuardedBackend(purpose),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        check_url(request.url, purpose=self.purpose)
        return await acapped_body(
            await super().handle_async_request(request), self.max_size, str(request.url)
        )


def guarded_sdk_client(
    *,
    asynchronous: bool,
    timeout: float,
    purpose: str | None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> httpx2.Client | httpx2.AsyncClient:
    """An ``httpx2`` client (async when asked) for an SDK, under the outbound rules.

    ``timeout`` is httpx's per-operation timeout; wrap the SDK call in :func:`deadline`
    for a total one. ``purpose`` picks ``AUTOMATE["HTTP_ALLOW_FOR"]``'s allow-list.
    """
    options: dict[str, Any] = {
        "timeout": httpx2.Timeout(timeout),
        "trust_env": False,
        "follow_redirects": False,
        "headers": {"Accept-Encoding": "identity"},
    }
    if asynchronous:
        return httpx2.AsyncClient(
            transport=AsyncGuardedTransport(purpose=purpose, max_size=max_size), **options
        )
    return httpx2.Client(transport=GuardedTransport(purpose=purpose, max_size=max_size), **options)
